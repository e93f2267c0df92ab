/**
 * Several replicas, one order: a model-based property test (fast-check) against two and three
 * replicas of the built server, real processes, each with its own buffer and its own fault proxy
 * to PostgreSQL, one Redis. Two users send random writes one request at a time, each through any
 * replica (creates with and without idempotency keys, retries of a key through another replica,
 * updates of any fields, deletes), while PostgreSQL is cut and restored per replica at random; at
 * the end every replica gets PostgreSQL back, in a random order. Then every task's existence and
 * fields (title, description, status, priority, dueAt) must equal the model of applying every
 * accepted write once, in the order it was accepted, whichever replica took it; every id a
 * replica answered must find its task. `version` and `updatedAt` need only grow.
 *
 * With one replica's clock 400 ms ahead and another's 400 ms behind (within CLOCK_SKEW_MAX_MS),
 * nothing changes while Redis is up: the last describe runs the same property with skewed clocks.
 *
 * CI budget: 180 s
 */
import { jest } from '@jest/globals';
import fc from 'fast-check';
import { Client, Replica, ReplicaSet } from '../support/replicas.js';
import { withDatabase } from '../support/test-app.js';

jest.setTimeout(600_000);

const TASKS = '/api/v1/tasks';
const FIELDS = ['title', 'description', 'status', 'priority', 'dueAt'] as const;
const RUNS = Number(process.env.REPLICAS_MODEL_RUNS ?? 10);
const MAX_COMMANDS = Number(process.env.REPLICAS_MODEL_COMMANDS ?? 50);
/** Tasks a user keeps at most, so that writes meet on the same tasks and fields. */
const MAX_TASKS = 4;

type Fields = {
  title: string;
  description: string | null;
  status: 'todo' | 'in_progress' | 'done';
  priority: 'low' | 'medium' | 'high';
  dueAt: string | null;
};
type Patch = Partial<Fields>;

interface ModelTask extends Fields {
  id: string;
  owner: number;
  key: string | null;
  deleted: boolean;
}

class Model {
  readonly tasks: ModelTask[] = [];
  /** Accepted writes, for the failure message. */
  readonly log: string[] = [];

  of(user: number): ModelTask[] {
    return this.tasks.filter((task) => task.owner === user);
  }
}

interface Real {
  set: ReplicaSet;
  clients: Client[];
}

const title = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9 ]{0,10}[A-Za-z0-9]$/);
const fieldArbitraries = {
  title,
  description: fc.option(fc.constantFrom('', 'call first', 'see the notes'), { nil: null }),
  status: fc.constantFrom('todo', 'in_progress', 'done'),
  priority: fc.constantFrom('low', 'medium', 'high'),
  dueAt: fc.option(fc.constantFrom('2026-03-01T17:00:00.000Z', '2027-01-15T09:30:00.000Z'), { nil: null }),
} as const;
const patch = fc.record(fieldArbitraries, { requiredKeys: [] }).filter((value) => Object.keys(value).length > 0) as fc.Arbitrary<Patch>;
const createBody = fc.record(fieldArbitraries, { requiredKeys: ['title'] }) as fc.Arbitrary<Patch & { title: string }>;

function defaults(body: Patch & { title: string }): Fields {
  return {
    title: body.title,
    description: body.description ?? null,
    status: body.status ?? 'todo',
    priority: body.priority ?? 'medium',
    dueAt: body.dueAt ?? null,
  };
}

class Create implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly user: number,
    readonly replica: number,
    readonly body: Patch & { title: string },
    readonly keyed: boolean,
  ) {}
  check(model: Model): boolean {
    return model.of(this.user).filter((task) => !task.deleted).length < MAX_TASKS;
  }
  async run(model: Model, real: Real): Promise<void> {
    const key = this.keyed ? `k-${Math.random().toString(36).slice(2)}` : null;
    const res = await real.clients[this.user]!.send(replicaOf(real, this.replica), 'POST', TASKS, this.body, key ? { 'idempotency-key': key } : {});
    expect([201, 202]).toContain(res.status);
    const task = res.body as { id: string } & Fields;
    model.tasks.push({ id: task.id, owner: this.user, key, deleted: false, ...defaults(this.body) });
    model.log.push(`${this}: ${res.status} ${task.id}`);
  }
  toString(): string {
    return `create(user ${this.user} via ${this.replica}${this.keyed ? ', keyed' : ''}, ${JSON.stringify(this.body)})`;
  }
}

class Retry implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly user: number,
    readonly replica: number,
    readonly pick: number,
  ) {}
  check(model: Model): boolean {
    return model.of(this.user).some((task) => task.key !== null && !task.deleted);
  }
  async run(model: Model, real: Real): Promise<void> {
    const keyed = model.of(this.user).filter((task) => task.key !== null && !task.deleted);
    const target = keyed[this.pick % keyed.length]!;
    const res = await real.clients[this.user]!.send(replicaOf(real, this.replica), 'POST', TASKS, { title: 'a retry, ignored' }, {
      'idempotency-key': target.key!,
    });
    // The same task whichever replica answers, never a second one.
    expect([201, 202]).toContain(res.status);
    expect({ id: (res.body as { id: string }).id, replayed: res.headers.get('idempotent-replayed') }).toEqual({
      id: target.id,
      replayed: 'true',
    });
    model.log.push(`${this}: ${res.status}`);
  }
  toString(): string {
    return `retry(user ${this.user} via ${this.replica}, key #${this.pick})`;
  }
}

class Update implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly user: number,
    readonly replica: number,
    readonly pick: number,
    readonly patch: Patch,
  ) {}
  check(model: Model): boolean {
    return model.of(this.user).length > 0;
  }
  async run(model: Model, real: Real): Promise<void> {
    const tasks = model.of(this.user);
    const target = tasks[this.pick % tasks.length]!;
    const res = await real.clients[this.user]!.send(replicaOf(real, this.replica), 'PATCH', `${TASKS}/${target.id}`, this.patch);
    if (target.deleted) {
      // Refused (404), or accepted while the delete still waits in another replica's buffer (202,
      // or 200 from the row that delete will remove): either way it changes nothing in the end.
      expect([200, 202, 404]).toContain(res.status);
    } else {
      // Never 404: the task may still be a create in another replica's buffer.
      expect([200, 202]).toContain(res.status);
      Object.assign(target, this.patch);
    }
    model.log.push(`${this}: ${res.status}`);
  }
  toString(): string {
    return `update(user ${this.user} via ${this.replica}, task #${this.pick}, ${JSON.stringify(this.patch)})`;
  }
}

class Delete implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly user: number,
    readonly replica: number,
    readonly pick: number,
  ) {}
  check(model: Model): boolean {
    return model.of(this.user).some((task) => !task.deleted);
  }
  async run(model: Model, real: Real): Promise<void> {
    const live = model.of(this.user).filter((task) => !task.deleted);
    const target = live[this.pick % live.length]!;
    const res = await real.clients[this.user]!.send(replicaOf(real, this.replica), 'DELETE', `${TASKS}/${target.id}`);
    if (process.env.REPLICAS_MODEL_LOG && ![202, 204].includes(res.status)) process.stdout.write(`${JSON.stringify(res.body)}\n`);
    expect([202, 204]).toContain(res.status);
    target.deleted = true;
    model.log.push(`${this}: ${res.status}`);
  }
  toString(): string {
    return `delete(user ${this.user} via ${this.replica}, task #${this.pick})`;
  }
}

class Outage implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly replica: number,
    readonly cut: boolean,
  ) {}
  check(): boolean {
    return true;
  }
  async run(model: Model, real: Real): Promise<void> {
    const replica = replicaOf(real, this.replica);
    if (this.cut) replica.cut();
    else replica.restore();
    model.log.push(`${this}`);
  }
  toString(): string {
    return `${this.cut ? 'cut' : 'restore'}(PostgreSQL of replica ${this.replica})`;
  }
}

function replicaOf(real: Real, index: number): Replica {
  return real.set.replicas[index % real.set.replicas.length]!;
}

function commands(replicas: number): fc.Arbitrary<Iterable<fc.AsyncCommand<Model, Real>>> {
  const user = fc.constantFrom(0, 1);
  const replica = fc.nat({ max: replicas - 1 });
  const pick = fc.nat({ max: 50 });
  // Weighted towards updates of a few tasks and outages: writes of the same fields through
  // replicas that come back in another order than they took them.
  const update = fc.tuple(user, replica, pick, patch).map(([u, r, p, change]) => new Update(u, r, p, change));
  // Cuts twice as likely as restores: outages last a while, and buffers fill on several replicas.
  const outage = fc.tuple(replica, fc.constantFrom(true, true, false)).map(([r, cut]) => new Outage(r, cut));
  return fc.commands(
    [
      fc.tuple(user, replica, createBody, fc.boolean()).map(([u, r, body, keyed]) => new Create(u, r, body, keyed)),
      fc.tuple(user, replica, pick).map(([u, r, p]) => new Retry(u, r, p)),
      update,
      update,
      update,
      update,
      fc.tuple(user, replica, pick).map(([u, r, p]) => new Delete(u, r, p)),
      outage,
      outage,
      outage,
    ],
    { maxCommands: MAX_COMMANDS, size: 'max' },
  );
}

async function storedTasksOf(set: ReplicaSet, userId: string): Promise<Array<{ id: string } & Fields>> {
  return withDatabase(set.databaseName, async (client) => {
    const { rows } = await client.query<{ id: string; title: string; description: string | null; status: Fields['status']; priority: number; due_at: Date | null }>(
      'SELECT id, title, description, status, priority, due_at FROM tasks WHERE user_id = $1 ORDER BY id',
      [userId],
    );
    const priorities = ['low', 'medium', 'high'] as const;
    return rows.map((row) => ({
      id: row.id,
      title: row.title,
      description: row.description,
      status: row.status,
      priority: priorities[row.priority - 1]!,
      dueAt: row.due_at === null ? null : row.due_at.toISOString(),
    }));
  });
}

function expectedTasksOf(model: Model, user: number): Array<{ id: string } & Fields> {
  return model
    .of(user)
    .filter((task) => !task.deleted)
    .map((task) => ({ id: task.id, ...Object.fromEntries(FIELDS.map((field) => [field, task[field]])) }) as { id: string } & Fields)
    .sort((a, b) => a.id.localeCompare(b.id));
}

function describeReplicas(label: string, count: number, clockSkewMs?: number[]): void {
  describe(`${label} (e2e)`, () => {
    let set: ReplicaSet;

    beforeAll(async () => {
      set = await ReplicaSet.start({ count, ...(clockSkewMs ? { clockSkewMs } : {}) });
    }, 120_000);

    afterAll(async () => {
      await set?.close();
    });

    it('stores what applying every accepted write once, in acceptance order, gives, whatever the outages and the order replicas come back in', async () => {
      await fc.assert(
        fc.asyncProperty(commands(count), fc.shuffledSubarray(set.replicas.map((_, index) => index), { minLength: count }), async (cmds, restoreOrder) => {
          await set.drained();
          const clients = [await Client.signUp(set.get(0), 'alice'), await Client.signUp(set.get(0), 'bob')];
          const model = new Model();
          try {
            await fc.asyncModelRun(() => ({ model, real: { set, clients } }), cmds);
          } finally {
            for (const index of restoreOrder) {
              set.get(index).restore();
              await new Promise((resolve) => setTimeout(resolve, 150));
            }
          }
          await set.drained();
          if (process.env.REPLICAS_MODEL_LOG) process.stdout.write(`${model.log.join('\n')}\n---\n`);
          for (const [user, client] of clients.entries()) {
            expect({ user, tasks: await storedTasksOf(set, client.userId) }).toEqual({ user, tasks: expectedTasksOf(model, user) });
            // Every id a replica answered finds its task (or 404 once deleted), through any replica.
            for (const [n, task] of model.of(user).entries()) {
              const res = await client.send(set.get(n % count), 'GET', `${TASKS}/${task.id}`);
              expect({ id: task.id, status: res.status }).toEqual({ id: task.id, status: task.deleted ? 404 : 200 });
            }
          }
        }),
        { numRuns: RUNS, endOnFailure: true, ...(process.env.FC_SEED ? { seed: Number(process.env.FC_SEED) } : {}) },
      );
    });

    it('merges edits of different fields made through different replicas, and the later edit of a field wins', async () => {
      await set.drained();
      const client = await Client.signUp(set.get(0), 'carol');
      const [a, b] = [set.get(0), set.get(1)];
      const created = await client.send(a, 'POST', TASKS, { title: 'original', priority: 'low' });
      const id = (created.body as { id: string }).id;
      a.cut();
      b.cut();
      try {
        expect((await client.send(a, 'PATCH', `${TASKS}/${id}`, { title: 'from A, earlier' })).status).toBe(202);
        expect((await client.send(b, 'PATCH', `${TASKS}/${id}`, { title: 'from B, later' })).status).toBe(202);
        expect((await client.send(b, 'PATCH', `${TASKS}/${id}`, { status: 'done' })).status).toBe(202);
        expect((await client.send(a, 'PATCH', `${TASKS}/${id}`, { priority: 'high' })).status).toBe(202);
      } finally {
        // B comes back first: its later title must not be undone by A's earlier one.
        b.restore();
        await set.drained(60_000, [1]);
        a.restore();
      }
      await set.drained();
      const stored = await client.send(a, 'GET', `${TASKS}/${id}`);
      expect(stored.body).toMatchObject({ title: 'from B, later', status: 'done', priority: 'high' });
    });

    it('accepts and applies an update and a delete of tasks still being created on another replica; the delete wins', async () => {
      await set.drained();
      const client = await Client.signUp(set.get(0), 'dave');
      const [a, b] = [set.get(0), set.get(1)];
      a.cut();
      let x: string;
      let y: string;
      try {
        x = ((await client.send(a, 'POST', TASKS, { title: 'X' })).body as { id: string }).id;
        y = ((await client.send(a, 'POST', TASKS, { title: 'Y' })).body as { id: string }).id;
        b.cut();
        expect((await client.send(b, 'DELETE', `${TASKS}/${x}`)).status).toBe(202);
        expect((await client.send(b, 'PATCH', `${TASKS}/${y}`, { title: 'Y, renamed on B' })).status).toBe(202);
      } finally {
        // B first: its writes meet tasks that do not exist yet; the update waits, parked.
        b.restore();
        await set.until('replay B', 60_000, (state) => state.postgres === 'up' && state.depth === 0 && state.parked === 1, [1]);
        a.restore();
      }
      await set.drained();
      expect((await client.send(b, 'GET', `${TASKS}/${x}`)).status).toBe(404);
      expect((await client.send(b, 'GET', `${TASKS}/${y}`)).body).toMatchObject({ id: y, title: 'Y, renamed on B' });
    });
  });
}

describeReplicas('two replicas', 2);
describeReplicas('three replicas', 3);
describeReplicas('two replicas whose clocks disagree by 800 ms, Redis up', 2, [400, -400]);
