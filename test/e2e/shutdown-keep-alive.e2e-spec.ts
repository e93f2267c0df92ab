/**
 * Shutdown with zero resets, on the built server in its own process.
 *
 * Step by step, over raw keep-alive connections: during the drain an idle connection stays
 * open, and each answer says `Connection: close` and is followed by the server closing that
 * connection; once the listener is closed a new connection is refused, while a request sent on
 * a connection still open is answered. And the count of connections waiting in the kernel's
 * accept queue, which the server reads before closing its listener, is right. A client that
 * pipelines has every answer under way marked in the drain and unmarked after it, not only the
 * latest.
 *
 * Under load: twenty keep-alive clients (Node's fetch) keep sending GETs and POSTs through
 * SIGTERM and ignore readiness, until the process has exited. Whatever reached the process is
 * answered: no reset, no 5xx; a refused connection (ECONNREFUSED) is the one failure allowed.
 * Every POST answered 201 is stored, and only those: no task was created for a client that did
 * not learn of it. Ten rounds, each a server of its own, since a reset is a race and one round
 * proves little.
 *
 * CI budget: 170 s
 */
import { spawn } from 'node:child_process';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConnectionDrain } from '../../src/common/http/connection-drain.js';
import { freePort, spawnServer, waitForStatus, type ServerProcess } from '../support/server-process.js';
import { databaseUrlFor, dropDatabase, REDIS_URL, uniqueName, withDatabase } from '../support/test-app.js';
import { waitUntil } from '../support/wait.js';

const ROUNDS = 10;
const WORKERS = 20;
/** Two seconds: on a loaded machine readiness may be seen to fail half a second late. */
const DRAIN_MS = 2_000;
const TIMEOUT_MS = 10_000;
/** Start-up, on a machine loaded by others. */
const START_TIMEOUT_MS = 30_000;
/** A client that keeps its connections open: a second is ample warm-up for twenty of them. */
const LOAD_BEFORE_SIGNAL_MS = 1_000;
/** How often the test's own event loop lag is sampled during a round. */
const LAG_TICK_MS = 10;

/** Listens, says so, then blocks its event loop and reports what waits to be accepted. */
const BLOCKED_SERVER = `
  import { createServer } from 'node:net';
  import { waitingToBeAccepted } from '${path.resolve('dist/src/common/http/accept-queue.js')}';
  const server = createServer().listen(0, '127.0.0.1', () => {
    console.log(server.address().port);
    console.log('waiting before: ' + waitingToBeAccepted(server));
    const until = Date.now() + 5000;
    while (Date.now() < until);
    console.log('waiting while blocked: ' + waitingToBeAccepted(server));
  });
`;

interface Outcome {
  kind: 'GET' | 'POST';
  sentAt: number;
  status?: number;
  connection?: string | null;
  /** The code of a failed request (ECONNREFUSED, ECONNRESET, UND_ERR_SOCKET, …). */
  error?: string;
  failedAt?: number;
}

describe('shutdown under keep-alive clients that ignore readiness (e2e)', () => {
  const databaseName = uniqueName();
  const bufferPath = mkdtempSync(path.join(tmpdir(), 'taskd-buffer-'));
  let answeredInDrain = 0;

  afterAll(async () => {
    rmSync(bufferPath, { recursive: true, force: true });
    await dropDatabase(databaseName);
  });

  const serverEnv = () => ({
    NODE_ENV: 'test',
    DATABASE_URL: databaseUrlFor(databaseName),
    REDIS_URL,
    REDIS_KEY_PREFIX: `${databaseName}:`,
    BUFFER_PATH: bufferPath,
    SHUTDOWN_DRAIN_MS: String(DRAIN_MS),
    SHUTDOWN_TIMEOUT_MS: String(TIMEOUT_MS),
    LOG_LEVEL: 'warn',
  });

  it('closes each connection after an answer that says so, never an idle one in the drain, and refuses new ones once closed', async () => {
    const server = spawnServer(serverEnv(), await freePort());
    const connections: RawConnection[] = [];
    try {
      await waitForStatus(`${server.url}/health/ready`, 200, START_TIMEOUT_MS);
      const [answered, late, idle] = await Promise.all([1, 2, 3].map(() => RawConnection.open(server.port)));
      connections.push(answered!, late!, idle!);
      for (const connection of connections) {
        expect(await connection.get('/docs-json')).toMatchObject({ status: 200, connection: 'keep-alive' });
      }

      server.child.kill('SIGTERM');
      await waitForStatus(`${server.url}/health/ready`, 503, DRAIN_MS);
      // In the drain: an answer tells the client to close, and the server closes after it.
      expect(await answered!.get('/docs-json')).toMatchObject({ status: 200, connection: 'close' });
      await answered!.closedByServer;
      // Idle connections were left alone.
      expect(late!.isOpen && idle!.isOpen).toBe(true);

      await waitUntil('the listener is closed', async () => (await connectError(server.port)) === 'ECONNREFUSED', TIMEOUT_MS);
      // A request that was on its way in an open connection is answered, then that one closes too.
      expect(await late!.get('/docs-json')).toMatchObject({ status: 200, connection: 'close' });
      await late!.closedByServer;
      // One that stays idle is closed in the end, without an answer: nothing was sent on it.
      await idle!.closedByServer;
      expect(idle!.unread).toBe('');
      expect((await server.exited).code).toBe(0);
    } finally {
      for (const connection of connections) connection.destroy();
      server.child.kill('SIGKILL');
    }
  }, 60_000);

  it('marks every answer under way on a pipelining connection when the drain begins, and unmarks them all after it', async () => {
    // The drain alone, on a plain HTTP server whose answers the test sends when it chooses.
    const waiting: ServerResponse[] = [];
    const server = createServer((_request, response) => void waiting.push(response));
    const drain = new ConnectionDrain(200);
    drain.attach(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = await RawConnection.open((server.address() as AddressInfo).port);
    try {
      client.send('/first');
      client.send('/second');
      await waitUntil('both requests reach the server', () => waiting.length === 2);

      drain.closeAfterEachAnswer();
      expect(waiting.map((answer) => answer.getHeader('connection'))).toEqual(['close', 'close']);
      // After the drain, answers keep their connections open again: the earlier one too, or it
      // would close the connection under the later one.
      const closing = drain.closeListenerWhenQuiet();
      expect(waiting.map((answer) => answer.getHeader('connection'))).toEqual([undefined, undefined]);
      for (const answer of waiting) answer.end('ok');
      // Both answered (the first did not close the connection under the second), neither with
      // `Connection: close` (this plain server names no Connection header otherwise).
      expect([await client.answer(), await client.answer()]).toEqual([
        { status: 200, connection: undefined },
        { status: 200, connection: undefined },
      ]);

      await closing;
      // The listener is closed; the connection, idle since, is closed after the grace.
      await client.closedByServer;
      expect(client.unread).toBe('');
    } finally {
      client.destroy();
      server.closeAllConnections();
      server.close();
    }
  });

  it('sees the connections waiting in the kernel to be accepted, which closing the listener would reset', async () => {
    // A server whose event loop is blocked accepts nothing: what connects meanwhile waits.
    const child = spawn(process.execPath, ['--input-type=module', '-e', BLOCKED_SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
    const lines = linesOf(child.stdout!);
    const clients: net.Socket[] = [];
    try {
      const port = Number(await lines.next());
      expect(await lines.next()).toBe('waiting before: 0');
      clients.push(...(await Promise.all([1, 2, 3].map(() => connected(port)))));
      expect(await lines.next()).toBe('waiting while blocked: 3');
    } finally {
      for (const client of clients) client.destroy();
      child.kill('SIGKILL');
    }
  });

  it.each(Array.from({ length: ROUNDS }, (_, i) => i + 1))(
    'round %i: answers or refuses every request, resets none, and exits 0',
    async (round) => {
      const server = spawnServer(serverEnv(), await freePort());
      try {
        await waitForStatus(`${server.url}/health/ready`, 200, START_TIMEOUT_MS);
        await waitUntil('PostgreSQL is up', async () => (await readiness(server.url)).postgres === 'up', 15_000);
        const token = await signUp(server.url, `keep-alive-${round}-${Date.now()}@example.com`);
        const storedBefore = await storedTasks(databaseName);

        const run = await loadThroughShutdown(server, token);

        // Described with their timing: a reset at the listener's close (the first refusal) and one
        // a grace later (an idle connection closed as a frozen client picks it) are different races.
        const failed = run.outcomes.filter((o) => o.error !== undefined && o.error !== 'ECONNREFUSED');
        expect(failed.map((o) => describeFailure(o, run))).toEqual([]);
        const unexpected = run.outcomes.filter((o) => o.status !== undefined && o.status !== (o.kind === 'GET' ? 200 : 201));
        expect(unexpected).toEqual([]);
        // The load went on through the whole shutdown: answered after the signal, refused after the close.
        expect(run.outcomes.filter((o) => o.status !== undefined && o.sentAt >= run.signalledAt).length).toBeGreaterThan(0);
        expect(run.outcomes.filter((o) => o.error === 'ECONNREFUSED').length).toBeGreaterThan(0);
        // Sent once readiness had turned 503, well before the drain's end: every answer tells the
        // client to close. (On a loaded machine readiness may be seen to fail too late for any.)
        const duringDrain = run.outcomes.filter(
          (o) => o.status !== undefined && o.sentAt >= run.notReadyAt && o.sentAt < run.signalledAt + DRAIN_MS / 2,
        );
        expect(duringDrain.filter((o) => o.connection !== 'close')).toEqual([]);
        answeredInDrain += duringDrain.length;
        expect(run.exit.code).toBe(0);
        expect(run.exitedAt - run.signalledAt).toBeLessThan(TIMEOUT_MS);

        const created = run.outcomes.filter((o) => o.kind === 'POST' && o.status === 201).length;
        expect(await storedTasks(databaseName)).toBe(storedBefore + created);
      } finally {
        server.child.kill('SIGKILL');
      }
    },
    90_000,
  );

  it('checked answers sent in the drain in the rounds above (none of them said keep-alive)', () => {
    expect(answeredInDrain).toBeGreaterThan(0);
  });
});

interface Run {
  outcomes: Outcome[];
  signalledAt: number;
  notReadyAt: number;
  exitedAt: number;
  exit: { code: number | null; signal: NodeJS.Signals | null };
  /** The longest the test's own event loop was late during the run (its clients' lag). */
  clientLagMs: number;
}

/** A failed request, its timing against the signal, the listener's close and the exit. */
function describeFailure(outcome: Outcome, run: Run): string {
  const refusals = run.outcomes.filter((o) => o.error === 'ECONNREFUSED').map((o) => o.failedAt!);
  const since = (at: number) => `${at - run.signalledAt} ms`;
  return (
    `${outcome.kind} sent ${since(outcome.sentAt)} after SIGTERM failed with ${outcome.error} at ${since(outcome.failedAt!)}; ` +
    `first refusal (listener closed) at ${refusals.length > 0 ? since(Math.min(...refusals)) : 'none'}, exit at ${since(run.exitedAt)}, ` +
    `client event loop late by up to ${run.clientLagMs} ms`
  );
}

/** Steady GETs and POSTs from WORKERS clients, SIGTERM after a while, until the process exits. */
async function loadThroughShutdown(server: ServerProcess, token: string): Promise<Run> {
  const outcomes: Outcome[] = [];
  let exited = false;
  let signalled = false;
  let notReadyAt = Number.POSITIVE_INFINITY;
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };

  const worker = async (index: number) => {
    for (let i = 0; !exited; i++) {
      const kind = (index + i) % 2 === 0 ? 'GET' : 'POST';
      const outcome: Outcome = { kind, sentAt: Date.now() };
      outcomes.push(outcome);
      try {
        const res = await fetch(`${server.url}/api/v1/tasks${kind === 'GET' ? '?limit=5' : ''}`, {
          method: kind,
          headers,
          body: kind === 'POST' ? JSON.stringify({ title: `task ${index}-${i}` }) : undefined,
        });
        await res.arrayBuffer();
        outcome.status = res.status;
        outcome.connection = res.headers.get('connection');
      } catch (error) {
        outcome.error = failureCode(error);
        outcome.failedAt = Date.now();
        // A refused connection fails at once: a real client backs off a little before trying again.
        if (outcome.error === 'ECONNREFUSED') await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
  };
  // Watches readiness only to know when the drain began; the workers never look at it.
  const watcher = async () => {
    while (!exited && notReadyAt === Number.POSITIVE_INFINITY) {
      const status = await fetch(`${server.url}/health/ready`)
        .then(async (res) => (await res.arrayBuffer(), res.status))
        .catch(() => undefined);
      if (signalled && status === 503) notReadyAt = Date.now();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  };

  let clientLagMs = 0;
  let tickedAt = Date.now();
  const lagMeter = setInterval(() => {
    clientLagMs = Math.max(clientLagMs, Date.now() - tickedAt - LAG_TICK_MS);
    tickedAt = Date.now();
  }, LAG_TICK_MS);
  const load = Promise.all([...Array.from({ length: WORKERS }, (_, i) => worker(i)), watcher()]);
  await new Promise((resolve) => setTimeout(resolve, LOAD_BEFORE_SIGNAL_MS));
  const signalledAt = Date.now();
  signalled = true;
  server.child.kill('SIGTERM');
  const exit = await server.exited;
  const exitedAt = Date.now();
  exited = true;
  await load;
  clearInterval(lagMeter);
  return { outcomes, signalledAt, notReadyAt, exitedAt, exit, clientLagMs };
}

async function storedTasks(databaseName: string): Promise<number> {
  return withDatabase(databaseName, async (client) =>
    Number((await client.query<{ n: string }>('SELECT count(*) AS n FROM tasks')).rows[0]!.n),
  );
}

function failureCode(error: unknown): string {
  const cause = (error as Error).cause as { code?: string; message?: string } | undefined;
  return cause?.code ?? cause?.message ?? (error as Error).message;
}

async function readiness(url: string): Promise<{ postgres?: string }> {
  const body = (await (await fetch(`${url}/health/ready`)).json()) as { details?: { postgres?: { status: string } } };
  return { postgres: body.details?.postgres?.status };
}

async function signUp(url: string, email: string): Promise<string> {
  const credentials = { email, password: 'keep-alive-password-1' };
  const post = (route: string, body: unknown) =>
    fetch(`${url}/api/v1/auth${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  expect((await post('/register', { ...credentials, name: 'Keep Alive' })).status).toBe(201);
  const login = await post('/login', credentials);
  expect(login.status).toBe(200);
  return ((await login.json()) as { accessToken: string }).accessToken;
}

/** A keep-alive HTTP/1.1 connection spoken by hand, to see exactly what the server does with it. */
class RawConnection {
  /** Bytes received and not yet taken as an answer. */
  unread = '';
  isOpen = true;
  readonly closedByServer: Promise<void>;

  private constructor(private readonly socket: net.Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => (this.unread += chunk));
    this.closedByServer = new Promise((resolve, reject) => {
      socket.once('end', () => {
        this.isOpen = false;
        resolve();
      });
      socket.once('error', reject);
    });
  }

  static open(port: number): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('error', reject).once('connect', () => resolve(new RawConnection(socket)));
    });
  }

  /** Sends a GET and reads its answer: the status and the Connection header. */
  async get(target: string): Promise<{ status: number; connection: string | undefined }> {
    this.send(target);
    return this.answer(`GET ${target}`);
  }

  /** Sends a GET without waiting for an answer (a client that pipelines). */
  send(target: string): void {
    this.socket.write(`GET ${target} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
  }

  /** The next answer: its status and Connection header. */
  async answer(what = 'an answer'): Promise<{ status: number; connection: string | undefined }> {
    let answer: { status: number; connection: string | undefined } | undefined;
    await waitUntil(`an answer to ${what}`, () => (answer = this.takeAnswer()) !== undefined, 5_000);
    return answer!;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private takeAnswer(): { status: number; connection: string | undefined } | undefined {
    const end = this.unread.indexOf('\r\n\r\n');
    if (end < 0) return undefined;
    const [statusLine, ...lines] = this.unread.slice(0, end).split('\r\n');
    const headers = new Map(lines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]));
    const length = Number(headers.get('content-length') ?? 0);
    if (this.unread.length < end + 4 + length) return undefined;
    this.unread = this.unread.slice(end + 4 + length);
    return { status: Number(statusLine!.split(' ')[1]), connection: headers.get('connection') };
  }
}

/** The error code of a new connection to `port`, or undefined when it is accepted. */
function connectError(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(undefined);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code));
  });
}

/** The lines a stream writes, one by one. */
function linesOf(stream: NodeJS.ReadableStream): { next(): Promise<string> } {
  const iterator = createInterface({ input: stream })[Symbol.asyncIterator]();
  return {
    async next() {
      const { value, done } = await iterator.next();
      if (done) throw new Error('the stream ended');
      return value as string;
    },
  };
}

/** A connection to `port` the kernel has completed, accepted or not. */
function connected(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => resolve(socket)).once('error', reject);
  });
}
