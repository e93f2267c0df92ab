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
 * 2. After the drain (`closeListenerWhenQuiet`): answers keep their connections open again, so
 *    that clients stop reconnecting, and the listener closes once no connection has come, and
 *    no answer has sent a client to reconnect, for a while (QUIET_MS, longer on a slow event
 *    loop), and none waits in the kernel's accept queue. Closing a listener resets (RST) every
 *    connection waiting there; with clients told to close reconnecting at once, a dozen were.
 *    The wait is bounded (the grace, then as long again for the queue to empty).
 * 3. Once the listener is closed, every answer says `Connection: close` again, and an idle
 *    connection is closed only after the grace without a request since the close: a request on
 *    its way arrives well within that and is answered.
 *
 * The grace is `graceMs`, longer when this process's event loop lags (a starved process, and
 * likely starved clients: requests are slow to arrive), up to `maxGraceMs`. With no drain
 * configured it is 0: idle connections close with the listener, as in Node.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { setImmediate as afterPoll, setTimeout as sleep } from 'node:timers/promises';
import { waitingToBeAccepted } from './accept-queue.js';

/** How often idle connections are looked at once the listener is closed. */
const REAP_EVERY_MS = 50;
/** No new connection, and no client sent to reconnect, for this long: clients have settled. */
const QUIET_MS = 100;
/** How often the quiet is checked, and the event loop's lag measured, after the drain. */
const TICK_MS = 10;
/** How many times the event loop's worst lag the waits for clients last, at least. */
const LAG_FACTOR = 4;

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
  /** When an answer that told its client to close last ended: that client reconnects next. */
  private lastClosingAnswerAt = 0;
  private listenerClosedAt = Number.POSITIVE_INFINITY;
  private reaper: NodeJS.Timeout | undefined;
  private server: Server | undefined;
  /** The event loop's worst lag seen since the drain ended. */
  private lagMs = 0;

  /**
   * @param graceMs how long a connection may stay idle once the listener is closed, and how
   * long `closeListenerWhenQuiet` waits for quiet, on a responsive event loop
   * @param maxGraceMs the longest either lasts on a lagging one
   */
  constructor(
    private readonly graceMs: number,
    private readonly maxGraceMs = graceMs,
  ) {}

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
   * Lets answers keep their connections open again, and closes the listener once clients have
   * settled and no connection waits to be accepted (step 2 above). Fastify's own close, later,
   * waits for the connections to end as usual.
   */
  async closeListenerWhenQuiet(): Promise<void> {
    const server = this.server;
    if (this.graceMs <= 0 || !server?.listening) return;
    this.keepConnectionsOpen();
    const startedAt = Date.now();
    for (;;) {
      const before = Date.now();
      await sleep(TICK_MS);
      // Right after the event loop's poll phase, which accepted whatever was waiting then.
      await afterPoll();
      const now = Date.now();
      this.lagMs = Math.max(this.lagMs, now - before - TICK_MS);
      const waited = now - startedAt;
      const quiet = now - this.lastActivityAt() >= Math.max(QUIET_MS, LAG_FACTOR * this.lagMs);
      const settled = quiet || waited >= this.grace();
      if ((settled && (waitingToBeAccepted(server) ?? 0) === 0) || waited >= 2 * this.grace()) break;
    }
    server.close();
  }

  /** How long to wait for clients: `graceMs`, more on a lagging event loop, up to `maxGraceMs`. */
  private grace(): number {
    return Math.min(this.maxGraceMs, Math.max(this.graceMs, LAG_FACTOR * this.lagMs));
  }

  private keepConnectionsOpen(): void {
    this.draining = false;
    for (const { answers } of this.connections.values()) {
      for (const answer of answers) if (!answer.headersSent) answer.removeHeader('connection');
    }
  }

  /** The last accept, or the end of the last answer that sent its client to reconnect. */
  private lastActivityAt(): number {
    return Math.max(this.lastAcceptAt, this.lastClosingAnswerAt);
  }

  private track(socket: Socket): void {
    this.lastAcceptAt = Date.now();
    this.connections.set(socket, { answers: new Set(), idleSince: this.lastAcceptAt });
    socket.once('close', () => this.connections.delete(socket));
  }

  private onRequest(request: IncomingMessage, response: ServerResponse): void {
    const connection = this.connections.get(request.socket);
    if (this.draining) markLast(response);
    if (!connection) return;
    connection.answers.add(response);
    // An answer closes once: `on` spares the wrapper `once` makes for every request.
    response.on('close', () => {
      connection.answers.delete(response);
      connection.idleSince = Date.now();
      if (response.getHeader('connection') === 'close') this.lastClosingAnswerAt = connection.idleSince;
    });
  }

  private onListenerClose(): void {
    this.closeAfterEachAnswer();
    if (this.listenerClosedAt !== Number.POSITIVE_INFINITY) return;
    this.listenerClosedAt = Date.now();
    this.closeQuietConnections();
    if (this.connections.size === 0) return;
    let tickAt = Date.now();
    this.reaper = setInterval(() => {
      this.lagMs = Math.max(this.lagMs, Date.now() - tickAt - REAP_EVERY_MS);
      tickAt = Date.now();
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

  /** Closes the connections idle for the grace, counted from the listener's close at the earliest. */
  private closeQuietConnections(): void {
    const quietSince = Date.now() - this.grace();
    for (const [socket, connection] of this.connections) {
      const idleSince = Math.max(connection.idleSince, this.listenerClosedAt);
      if (connection.answers.size === 0 && idleSince <= quietSince) socket.destroy();
    }
  }
}

function markLast(response: ServerResponse): void {
  if (!response.headersSent) response.setHeader('connection', 'close');
}
