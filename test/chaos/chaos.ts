/**
 * A chaos run against replicas as real processes (test/support/replicas.ts), checked against
 * every acknowledgement the clients received.
 *
 * Clients: each user sends one request at a time to a replica picked at random: creates (each
 * with its own Idempotency-Key, retried with that key on another replica when the answer is
 * lost), updates of a random subset of fields, deletes. Meanwhile a conductor cuts replicas'
 * PostgreSQL for a few seconds, kills replicas with SIGKILL or stops them with SIGTERM, and
 * restarts them on the same volume. At the end every replica runs, reaches PostgreSQL and has
 * applied its buffer; then the database must hold exactly what the acknowledgements say:
 *
 * - an acknowledged create exists unless a delete of it was sent; every id answered for it
 *   finds it (GET through any replica);
 * - an acknowledged delete left nothing;
 * - each field holds the value of the last acknowledged write of that field, or of a later write
 *   whose answer was lost (it may or may not have been accepted);
 * - no task exists that no create could have made; no write was set aside.
 *
 * An answer is "lost" when the connection broke after the request was sent (a killed replica):
 * the write may have been accepted. A refused connection, a 429 or a 503 accepted nothing.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { ReplicaSet, type Replica } from '../support/replicas.js';
import { withDatabase } from '../support/test-app.js';

const TASKS = '/api/v1/tasks';
const FIELDS = ['title', 'description', 'status', 'priority', 'dueAt'] as const;
type Field = (typeof FIELDS)[number];
type Fields = Record<Field, string | null>;

export interface ChaosOptions {
  replicas: number;
  users: number;
  durationMs: number;
  seed: number;
  /** Progress lines, when wanted. */
  log?: (line: string) => void;
}

export interface ChaosReport {
  seed: number;
  requests: number;
  acknowledged: number;
  lostAnswers: number;
  refused: number;
  outages: number;
  kills: number;
  stops: number;
  tasksChecked: number;
  anomalies: string[];
}

/** A small seeded generator (mulberry32): a failing run can be replayed by its seed. */
class Random {
  constructor(private state: number) {}

  next(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  }

  int(below: number): number {
    return Math.floor(this.next() * below);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  chance(p: number): boolean {
    return this.next() < p;
  }
}

/** What the clients know of one task. */
interface KnownTask {
  /** Every id a create of it was answered with. */
  ids: Set<string>;
  key: string;
  /** Per field: the value acknowledged last, and values sent later whose answers were lost. */
  fields: Record<Field, { acknowledged: string | null; maybe: Array<string | null> }>;
  /** A delete was acknowledged. */
  deleted: boolean;
  /** A delete was sent whose answer was lost: the task may or may not exist. */
  maybeDeleted: boolean;
  /** What was sent and answered, for the report of an anomaly. */
  history: string[];
}

type Outcome =
  | { kind: 'answered'; status: number; body: unknown; headers: Headers }
  | { kind: 'refused' } // nothing reached the replica
  | { kind: 'lost' }; // sent; the answer never came

interface User {
  index: number;
  userId: string;
  accessToken: string;
  tasks: KnownTask[];
  /** Keys of creates none of whose answers came back: the task may exist. */
  unanswered: Set<string>;
}

export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const random = new Random(options.seed);
  const log =
    options.log === undefined
      ? () => undefined
      : (line: string) => options.log!(`${stamp()} ${line}`);
  const report: ChaosReport = {
    seed: options.seed,
    requests: 0,
    acknowledged: 0,
    lostAnswers: 0,
    refused: 0,
    outages: 0,
    kills: 0,
    stops: 0,
    tasksChecked: 0,
    anomalies: [],
  };
  const set = await ReplicaSet.start({ count: options.replicas });
  try {
    const users: User[] = [];
    for (let index = 0; index < options.users; index += 1)
      users.push(await signUp(set.get(index % options.replicas), index));

    const send = async (
      user: User,
      replica: Replica,
      method: string,
      url: string,
      body?: unknown,
      headers: Record<string, string> = {},
    ) => {
      report.requests += 1;
      const outcome = await request(replica, user.accessToken, method, url, body, headers);
      if (outcome.kind === 'lost') report.lostAnswers += 1;
      if (outcome.kind === 'refused') report.refused += 1;
      return outcome;
    };
    const running = () => set.replicas.filter((replica) => replica.process !== undefined);
    const anomaly = (line: string) => {
      report.anomalies.push(line);
      log(`ANOMALY ${line}`);
    };

    const endAt = Date.now() + options.durationMs;
    // Every run has at least these, in a seeded order; then random ones until the end.
    const mandatory: Array<'cut' | 'SIGKILL' | 'SIGTERM'> = shuffle(random, ['cut', 'cut', 'SIGKILL', 'SIGTERM']);
    let conducting = true;
    const conductor = (async () => {
      while (conducting) {
        await sleep(700 + random.int(1_500));
        if (!conducting) break;
        const replica = random.pick(set.replicas);
        const roll = random.next();
        const action = mandatory.shift() ?? (roll < 0.5 ? 'cut' : roll < 0.8 ? 'SIGKILL' : 'SIGTERM');
        if (action === 'cut') {
          report.outages += 1;
          log(`cut replica ${replica.index}`);
          replica.cut();
          await sleep(1_000 + random.int(4_000));
          replica.restore();
          log(`restored replica ${replica.index}`);
        } else {
          if (action === 'SIGKILL') report.kills += 1;
          else report.stops += 1;
          log(`${action} replica ${replica.index}`);
          await replica.stop(action);
          await sleep(300 + random.int(1_500));
          await replica.start();
          log(`restarted replica ${replica.index}`);
        }
      }
    })();
    const done = () => Date.now() >= endAt && mandatory.length === 0;

    const client = async (user: User) => {
      while (!done()) {
        const live = user.tasks.filter((task) => !task.deleted && !task.maybeDeleted);
        const roll = random.next();
        if (live.length === 0 || roll < 0.35) await create(user);
        else if (roll < 0.85) await update(user, random.pick(live));
        else await remove(user, random.pick(live));
      }
    };

    const pickReplica = (): Replica | undefined => {
      const candidates = running();
      return candidates.length === 0 ? undefined : random.pick(candidates);
    };

    const create = async (user: User) => {
      const key = `chaos-${randomBytes(6).toString('hex')}`;
      const fields = randomFields(random, FIELDS);
      const task: KnownTask = {
        ids: new Set(),
        key,
        fields: knownFields(fields),
        deleted: false,
        maybeDeleted: false,
        history: [],
      };
      // Retried with the same key until answered (on another replica when possible).
      for (let attempt = 0; attempt < 20; attempt += 1) {
        const replica = pickReplica();
        if (!replica) {
          await sleep(100);
          continue;
        }
        const outcome = await send(user, replica, 'POST', TASKS, fields, {
          'idempotency-key': key,
        });
        task.history.push(`${stamp()} POST via ${replica.index}: ${describe(outcome)}`);
        if (outcome.kind === 'lost') user.unanswered.add(key);
        if (outcome.kind !== 'answered') continue;
        if (outcome.status === 201 || outcome.status === 202) {
          report.acknowledged += 1;
          const answered = outcome.body as Record<string, unknown>;
          task.ids.add(answered.id as string);
          for (const field of FIELDS) {
            if (answered[field] !== (fields[field] ?? defaultOf(field))) {
              anomaly(
                `user ${user.index}: create ${key} answered ${field}=${JSON.stringify(answered[field])}, sent ${JSON.stringify(fields[field])}`,
              );
            }
          }
          user.unanswered.delete(key);
          user.tasks.push(task);
          return;
        }
        if (outcome.status === 429 || outcome.status === 503) {
          await sleep(200);
          continue;
        }
        anomaly(
          `user ${user.index}: create ${key} answered ${outcome.status} ${JSON.stringify(outcome.body)}`,
        );
        return;
      }
    };

    const update = async (user: User, task: KnownTask) => {
      const replica = pickReplica();
      if (!replica) return sleep(100);
      const patch = randomFields(
        random,
        FIELDS.filter(() => random.chance(0.5)),
      );
      if (Object.keys(patch).length === 0)
        patch.status = random.pick(['todo', 'in_progress', 'done']);
      const id = random.pick([...task.ids]);
      const outcome = await send(user, replica, 'PATCH', `${TASKS}/${id}`, patch);
      task.history.push(
        `${stamp()} PATCH ${JSON.stringify(patch)} via ${replica.index}: ${describe(outcome)}`,
      );
      const changed = Object.keys(patch) as Field[];
      if (outcome.kind === 'lost') {
        for (const field of changed) task.fields[field].maybe.push(patch[field] ?? null);
        return;
      }
      if (outcome.kind === 'refused') return;
      if (outcome.status === 200 || outcome.status === 202) {
        report.acknowledged += 1;
        for (const field of changed)
          task.fields[field] = { acknowledged: patch[field] ?? null, maybe: [] };
        return;
      }
      if (outcome.status === 429 || outcome.status === 503) return sleep(200);
      anomaly(
        `user ${user.index}: PATCH ${id} (${task.key}) answered ${outcome.status} ${JSON.stringify(outcome.body)}`,
      );
    };

    const remove = async (user: User, task: KnownTask) => {
      const replica = pickReplica();
      if (!replica) return sleep(100);
      const id = random.pick([...task.ids]);
      const outcome = await send(user, replica, 'DELETE', `${TASKS}/${id}`);
      task.history.push(`${stamp()} DELETE via ${replica.index}: ${describe(outcome)}`);
      if (outcome.kind === 'lost') {
        task.maybeDeleted = true;
        return;
      }
      if (outcome.kind === 'refused') return;
      if (outcome.status === 204 || outcome.status === 202) {
        report.acknowledged += 1;
        task.deleted = true;
        return;
      }
      if (outcome.status === 429 || outcome.status === 503) return sleep(200);
      anomaly(
        `user ${user.index}: DELETE ${id} (${task.key}) answered ${outcome.status} ${JSON.stringify(outcome.body)}`,
      );
    };

    await Promise.all(users.map(client));
    conducting = false;
    await conductor;

    log('settling: every replica up, every buffer applied');
    for (const replica of set.replicas) {
      replica.restore();
      if (replica.process === undefined) await replica.start();
    }
    await set.drained(120_000);
    for (const replica of set.replicas) {
      const state = await replica.buffer();
      if (state.setAside !== 0)
        anomaly(`replica ${replica.index} set aside ${state.setAside} writes`);
    }

    for (const user of users) await check(set, user, report, anomaly);
    return report;
  } finally {
    await set.close();
  }
}

async function check(
  set: ReplicaSet,
  user: User,
  report: ChaosReport,
  anomaly: (line: string) => void,
): Promise<void> {
  const rows = await withDatabase(set.databaseName, async (client) => {
    const { rows } = await client.query<Record<string, unknown>>(
      `SELECT id, idempotency_key, title, description, status,
              (ARRAY['low', 'medium', 'high'])[priority] AS priority,
              to_char(due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS due_at
         FROM tasks WHERE user_id = $1`,
      [user.userId],
    );
    return rows;
  });
  const byKey = new Map(rows.map((row) => [row.idempotency_key as string, row]));
  const known = new Set(user.tasks.map((task) => task.key));
  for (const row of rows) {
    const key = row.idempotency_key as string;
    if (!known.has(key) && !user.unanswered.has(key))
      anomaly(`user ${user.index}: task ${String(row.id)} (${key}) no create made`);
  }
  for (const task of user.tasks) {
    report.tasksChecked += 1;
    const row = byKey.get(task.key);
    if (task.deleted) {
      if (row)
        anomaly(
          `user ${user.index}: ${task.key} deleted (acknowledged) but present; ${task.history.join('; ')}`,
        );
      continue;
    }
    if (!row) {
      if (!task.maybeDeleted)
        anomaly(
          `user ${user.index}: ${task.key} created (acknowledged) but missing; ${task.history.join('; ')}`,
        );
      continue;
    }
    for (const field of FIELDS) {
      const stored = (field === 'dueAt' ? row.due_at : row[field]) as string | null;
      const { acknowledged, maybe } = task.fields[field];
      if (stored !== acknowledged && !maybe.includes(stored)) {
        anomaly(
          `user ${user.index}: ${task.key}.${field} is ${JSON.stringify(stored)}, acknowledged ${JSON.stringify(acknowledged)}` +
            (maybe.length ? ` (or one of ${JSON.stringify(maybe)})` : '') +
            `; ${task.history.join('; ')}`,
        );
      }
    }
    for (const id of task.ids) {
      const replica = set.replicas[Math.abs(hash(id)) % set.replicas.length]!;
      const found = await request(replica, user.accessToken, 'GET', `${TASKS}/${id}`);
      if (
        found.kind !== 'answered' ||
        found.status !== 200 ||
        (found.body as { id: string }).id !== row.id
      ) {
        anomaly(
          `user ${user.index}: GET ${id} (${task.key}) through replica ${replica.index} did not find task ${String(row.id)}`,
        );
      }
    }
  }
}

async function signUp(replica: Replica, index: number): Promise<User> {
  const email = `chaos-${index}-${randomUUID()}@example.test`;
  const password = `pw-${randomBytes(8).toString('hex')}`;
  const registered = await request(replica, '', 'POST', '/api/v1/auth/register', {
    email,
    password,
    name: `chaos ${index}`,
  });
  const login = await request(replica, '', 'POST', '/api/v1/auth/login', { email, password });
  if (registered.kind !== 'answered' || login.kind !== 'answered' || login.status !== 200)
    throw new Error('could not sign up');
  return {
    index,
    userId: (registered.body as { id: string }).id,
    accessToken: (login.body as { accessToken: string }).accessToken,
    tasks: [],
    unanswered: new Set(),
  };
}

async function request(
  replica: Replica,
  accessToken: string,
  method: string,
  url: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Outcome> {
  try {
    const response = await fetch(`${replica.url}${url}`, {
      method,
      headers: {
        ...(accessToken ? { authorization: `Bearer ${accessToken}` } : {}),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(15_000),
    });
    const text = await response.text();
    return {
      kind: 'answered',
      status: response.status,
      headers: response.headers,
      body: text ? (JSON.parse(text) as unknown) : undefined,
    };
  } catch (error) {
    const code = ((error as Error).cause as { code?: string } | undefined)?.code;
    return code === 'ECONNREFUSED' ? { kind: 'refused' } : { kind: 'lost' };
  }
}

function randomFields(random: Random, fields: readonly Field[]): Partial<Fields> {
  const out: Partial<Fields> = {};
  for (const field of fields) {
    if (field === 'title') out.title = `t-${random.int(1e6)}`;
    if (field === 'description')
      out.description = random.chance(0.3) ? null : `d-${random.int(1e6)}`;
    if (field === 'status') out.status = random.pick(['todo', 'in_progress', 'done']);
    if (field === 'priority') out.priority = random.pick(['low', 'medium', 'high']);
    if (field === 'dueAt')
      out.dueAt = random.chance(0.3)
        ? null
        : new Date(Date.UTC(2030, 0, 1) + random.int(1e9) * 1000).toISOString();
  }
  return out;
}

function knownFields(created: Partial<Fields>): KnownTask['fields'] {
  const known = {} as KnownTask['fields'];
  for (const field of FIELDS)
    known[field] = { acknowledged: created[field] ?? defaultOf(field), maybe: [] };
  return known;
}

function defaultOf(field: Field): string | null {
  if (field === 'status') return 'todo';
  if (field === 'priority') return 'medium';
  return null;
}

function shuffle<T>(random: Random, items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i -= 1) {
    const j = random.int(i + 1);
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

function describe(outcome: Outcome): string {
  if (outcome.kind !== 'answered') return outcome.kind;
  const id = (outcome.body as { id?: string } | undefined)?.id;
  return `${outcome.status}${id ? ` ${id}` : ''}${outcome.headers.get('idempotent-replayed') ? ' replayed' : ''}`;
}

function stamp(): string {
  return new Date().toISOString().slice(11, 23);
}

function hash(text: string): number {
  let h = 0;
  for (const char of text) h = (Math.imul(h, 31) + char.charCodeAt(0)) | 0;
  return h;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
