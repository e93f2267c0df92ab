/**
 * How the HTTP server lets go of its connections on shutdown without resetting a request.
 *
 * HTTP/1.1 gives a server no way to tell an idle keep-alive connection to go away: it can only
 * close it, and a client may be sending a request on it at that very moment (the client sees
 * "other side closed" or ECONNRESET, and cannot know whether its POST was applied). Node's
 * `server.close()` closes every idle connection at once, which is what reset requests before.
 * The sequence instead (LifecycleService drives it):
 *
 * 1. The drain (`closeAfterEachAnswer`): every answer says `Connection: close`, answers under
 *    way included while their headers are not out, so each connection closes after an answer,
 *    when no request can be on its way in it, and clients stop reusing connections.
 * 2. After the drain (`closeListenerWhenQuiet`): answers keep their connections open again, and
 *    the listener closes once no new connection has come for QUIET_MS, right after the event
 *    loop has accepted what was waiting. Closing a listener resets (RST) every connection the
 *    kernel has completed but the process has not accepted yet, and clients told to close
 *    reconnect at once: on a busy event loop a dozen such connections were reset at the close.
 * 3. Once the listener is closed, every answer says `Connection: close` again, and an idle
 *    connection is closed only after `graceMs` without a request since the close: a request on
 *    its way arrives well within that and is answered.
 *
 * With no drain configured, `graceMs` is 0: idle connections close with the listener, as in Node.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { setImmediate as afterPoll, setTimeout as sleep } from 'node:timers/promises';

/** How often idle connections are looked at once the listener is closed. */
const REAP_EVERY_MS = 50;
/** No new connection for this long: the accept queue is empty and clients have settled. */
const QUIET_MS = 100;

interface Connection {
  /** Answers under way on it (more than one only when a client pipelines). */
  readonly answers: Set<ServerResponse>;
  /** When it last went idle: its accept, or the end of its last answer. */
  idleSince: number;
}

export class ConnectionDrain {
  private readonly connections = new Map<Socket, Connection>();
  private draining = false;
  private lastAcceptAt = 0;
  private listenerClosedAt = Number.POSITIVE_INFINITY;
  private reaper: NodeJS.Timeout | undefined;
  private server: Server | undefined;

  /**
   * @param graceMs how long a connection may stay idle once the listener is closed, and the
   * longest `closeListenerWhenQuiet` waits for quiet
   */
  constructor(private readonly graceMs: number) {}

  attach(server: Server): void {
    this.server = server;
    server.on('connection', (socket: Socket) => this.track(socket));
    // First in line, so that even an answer sent before any other listener runs is marked.
    server.prependListener('request', (request: IncomingMessage, response: ServerResponse) =>
      this.onRequest(request, response),
    );
    // `server.close()` calls this, meant to destroy every idle connection at once.
    server.closeIdleConnections = () => this.onListenerClose();
  }

  /** From now on every answer tells its client to close the connection. */
  closeAfterEachAnswer(): void {
    this.draining = true;
    for (const { answers } of this.connections.values()) {
      for (const answer of answers) markLast(answer);
    }
  }

  /**
   * Lets answers keep their connections open again, and closes the listener once no new
   * connection has come for QUIET_MS (or after `graceMs` at most), so that none is waiting to
   * be accepted then. The listener's close turns `Connection: close` back on.
   */
  async closeListenerWhenQuiet(): Promise<void> {
    const server = this.server;
    if (this.graceMs <= 0 || !server?.listening) return;
    this.keepConnectionsOpen();
    const until = Date.now() + this.graceMs;
    do {
      await sleep(10);
      // Right after the event loop's poll phase, which accepted whatever was waiting: closing
      // now leaves only what arrived since to be reset.
      await afterPoll();
    } while (Date.now() - this.lastAcceptAt < QUIET_MS && Date.now() < until);
    // Fastify's own close, later, waits for the connections to end as usual.
    server.close();
  }

  private keepConnectionsOpen(): void {
    this.draining = false;
    for (const { answers } of this.connections.values()) {
      for (const answer of answers) if (!answer.headersSent) answer.removeHeader('connection');
    }
  }

  private track(socket: Socket): void {
    this.lastAcceptAt = Date.now();
    this.connections.set(socket, { answers: new Set(), idleSince: Date.now() });
    socket.once('close', () => this.connections.delete(socket));
  }

  private onRequest(request: IncomingMessage, response: ServerResponse): void {
    const connection = this.connections.get(request.socket);
    if (this.draining) markLast(response);
    if (!connection) return;
    connection.answers.add(response);
    response.once('close', () => {
      connection.answers.delete(response);
      connection.idleSince = Date.now();
    });
  }

  private onListenerClose(): void {
    this.closeAfterEachAnswer();
    if (this.listenerClosedAt !== Number.POSITIVE_INFINITY) return;
    this.listenerClosedAt = Date.now();
    this.closeQuietConnections();
    if (this.connections.size === 0) return;
    this.reaper = setInterval(() => {
      // Right after the event loop's poll phase: a request that has reached the socket by then
      // has been read, and its connection is no longer idle.
      setImmediate(() => this.closeQuietConnections());
      if (this.connections.size === 0) {
        clearInterval(this.reaper);
        this.reaper = undefined;
      }
    }, REAP_EVERY_MS);
    // The server's close waits for its connections; this timer alone keeps nothing alive.
    this.reaper.unref();
  }

  /** Closes the connections idle for `graceMs`, counted from the listener's close at the earliest. */
  private closeQuietConnections(): void {
    const quietSince = Date.now() - this.graceMs;
    for (const [socket, connection] of this.connections) {
      const idleSince = Math.max(connection.idleSince, this.listenerClosedAt);
      if (connection.answers.size === 0 && idleSince <= quietSince) socket.destroy();
    }
  }
}

function markLast(response: ServerResponse): void {
  if (!response.headersSent) response.setHeader('connection', 'close');
}
