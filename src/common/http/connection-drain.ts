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

/**
 * A connection, as cheaply as every request allows: until shutdown begins, its latest answer is
 * remembered (and the earlier ones while a client pipelines), and no listener is added to any
 * answer; from then on, each answer's end is heard (`watch`), for the times the waits need.
 */
interface Connection {
  readonly drain: ConnectionDrain;
  /** Its latest answer. */
  last: ServerResponse | undefined;
  /** Earlier answers still under way when a later request came (a client that pipelines). */
  earlier: ServerResponse[] | undefined;
  /** When it last went idle, as far as it matters: its accept, or the end of an answer heard. */
  idleSince: number;
}

/** Where a tracked socket keeps its `Connection`: found from an answer without a look-up. */
const CONNECTION = Symbol('connection');

type TrackedSocket = Socket & { [CONNECTION]?: Connection };

export class ConnectionDrain {
  private readonly connections = new Map<Socket, Connection>();
  private draining = false;
  /** Set once shutdown begins: from then on each answer's end is heard (`watchAnswers`). */
  private watching = false;
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
    // First in line, so that even an answer sent before any other listener runs is marked. The
    // server's one listener (the framework's) is wrapped rather than joined by a second: an
    // event with several listeners copies their array on every emit, one request each.
    const listeners = server.listeners('request') as Array<(request: IncomingMessage, response: ServerResponse) => void>;
    server.removeAllListeners('request');
    server.on('request', (request: IncomingMessage, response: ServerResponse) => {
      this.onRequest(request, response);
      for (const listener of listeners) listener.call(server, request, response);
    });
    // `server.close()` calls this, meant to destroy every idle connection at once.
    server.closeIdleConnections = () => this.onListenerClose();
  }

  /** From now on every answer tells its client to close the connection. */
  closeAfterEachAnswer(): void {
    this.draining = true;
    this.watchAnswers();
    for (const connection of this.connections.values()) {
      for (const answer of underWay(connection)) markLast(answer);
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
    for (const connection of this.connections.values()) {
      for (const answer of underWay(connection)) if (!answer.headersSent) answer.removeHeader('connection');
    }
  }

  /** From now on the end of every answer is heard; those under way now included. */
  private watchAnswers(): void {
    if (this.watching) return;
    this.watching = true;
    for (const connection of this.connections.values()) {
      for (const answer of underWay(connection)) answer.on('close', ConnectionDrain.onAnswerClosed);
    }
  }

  /** The last accept, or the end of the last answer that sent its client to reconnect. */
  private lastActivityAt(): number {
    return Math.max(this.lastAcceptAt, this.lastClosingAnswerAt);
  }

  private track(socket: TrackedSocket): void {
    this.lastAcceptAt = Date.now();
    const connection: Connection = { drain: this, last: undefined, earlier: undefined, idleSince: this.lastAcceptAt };
    this.connections.set(socket, connection);
    socket[CONNECTION] = connection;
    socket.once('close', () => this.connections.delete(socket));
  }

  private onRequest(request: IncomingMessage, response: ServerResponse): void {
    if (this.draining) markLast(response);
    const connection = (request.socket as TrackedSocket)[CONNECTION];
    if (!connection) return;
    const previous = connection.last;
    if (previous !== undefined && !hasEnded(previous)) {
      connection.earlier = [...(connection.earlier ?? []).filter((answer) => !hasEnded(answer)), previous];
    }
    connection.last = response;
    // An answer closes once: `on` spares the wrapper `once` makes, and one shared listener the
    // closure each answer would allocate.
    if (this.watching) response.on('close', ConnectionDrain.onAnswerClosed);
  }

  /** Listens to an answer's `close` once shutdown has begun (`this` is the answer). */
  private static onAnswerClosed(this: ServerResponse): void {
    const connection = (this.req.socket as TrackedSocket)[CONNECTION];
    if (!connection) return;
    connection.idleSince = Date.now();
    if (this.getHeader('connection') === 'close') connection.drain.lastClosingAnswerAt = connection.idleSince;
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
      if (idleSince <= quietSince && underWay(connection).length === 0) socket.destroy();
    }
  }
}

/** The connection's answers not yet ended, oldest first (more than one only when pipelining). */
function underWay(connection: Connection): ServerResponse[] {
  const answers = [...(connection.earlier ?? []), ...(connection.last ? [connection.last] : [])];
  return answers.filter((answer) => !hasEnded(answer));
}

/** Sent in full, or never to be (its connection was destroyed). */
function hasEnded(answer: ServerResponse): boolean {
  return answer.writableFinished || answer.destroyed;
}

function markLast(response: ServerResponse): void {
  if (!response.headersSent) response.setHeader('connection', 'close');
}
