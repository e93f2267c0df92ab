/**
 * Replays the buffer into PostgreSQL, on a schedule (BUFFER_REPLAY_INTERVAL_MS), at once when
 * the database comes back, and one last time on shutdown. One run at a time.
 *
 * A run: batches of BUFFER_REPLAY_BATCH in queue order, each applied in one transaction that also claims the
 * operations' ids in the exactly-once ledger, then removed from LMDB. Removal after the commit
 * means a crash in between replays operations that are already applied, and the ledger makes
 * those no-ops. Within a batch, a run of consecutive operations of a kind that registered a
 * batch handler is applied in one statement (a multi-row INSERT for a queue of creates): the
 * round trip per operation, not PostgreSQL, is what bounds replay otherwise. Order holds: runs
 * and single operations are applied one after the other in queue order.
 *
 * Before a batch is applied it is sorted out, a few statements for the whole batch: an
 * operation older than WRITE_RETENTION is set aside (what made its replay harmless may be pruned);
 * a kind that registered a triage says of each of its operations whether to apply it, park it
 * (its task's create is still in another replica's buffer: it is retried on later runs) or set
 * it aside (its task does not exist). Parked and set-aside operations leave the queue in one
 * LMDB transaction each, with one disk flush: impossible writes cost little.
 *
 * When an operation fails the batch is rolled back and the failing operation isolated: what
 * precedes it is applied without it (a failing run is halved until the culprit stands alone),
 * then it is set aside (dead letter) when it can never apply, and the run carries on behind it.
 * PostgreSQL going away stops the run and leaves the queue untouched.
 */
import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
  type OnModuleDestroy,
} from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import type { EntityManager } from 'typeorm';
import { runAsJob } from '../../common/context/background-job.js';
import { RequestContext } from '../../common/context/request-context.js';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { Database } from '../../infrastructure/database/database.js';
import { PostgresAvailability } from '../../infrastructure/database/postgres-availability.js';
import { LmdbService } from '../../infrastructure/lmdb/lmdb.service.js';
import { AppliedOperations } from './applied-operations.js';
import { BufferCounters } from './buffer-counters.js';
import { BufferHandoff } from './buffer-handoff.js';
import {
  classifyReplayFailure,
  PermanentOperationError,
  summariseError,
  type FailureClass,
} from './buffer.errors.js';
import { LmdbBuffer, type BufferEntry, type DeadLetter } from './lmdb-buffer.js';
import type { BufferedOperation } from './operation.js';
import { OperationRegistry, type Triage } from './operation-registry.js';
import { WriteOrder } from './write-order.js';
import { lockForWrite } from '../../infrastructure/database/write-locks.js';

const REPLAY_INTERVAL = 'buffer-replay';
const PRUNE_INTERVAL = 'buffer-ledger-prune';
/** Upper bound of one replay transaction's statements. */
const REPLAY_TRANSACTION_TIMEOUT_MS = 30_000;
/** Runs in which a retryable failure of the same operation is tolerated before it is set aside. */
export const MAX_RETRYABLE_ATTEMPTS = 5;
const PRUNE_EVERY_MS = 3_600_000;
/** The end of SHUTDOWN_TIMEOUT_MS left to closing the connections after the last replay. */
const closingReserveMs = (timeoutMs: number) => Math.min(2_000, Math.floor(timeoutMs / 4));

export interface ReplayReport {
  /** Operations applied by this run. */
  applied: number;
  /** Operations found applied already and only removed. */
  alreadyApplied: number;
  deadLettered: number;
  /** Operations parked by this run (net of those taken back from the parked store). */
  parked?: number;
  /** Why the run ended with operations still queued, if it did. */
  stoppedBy?: 'database-unreachable' | 'retryable-failure' | 'deadline' | 'error';
}

/** The buffer as readiness and metrics see it (a superset of the metrics module's BufferStats). */
export interface BufferStatsSnapshot {
  depth: number;
  /** Age of the oldest waiting entry; null when none waits. */
  oldestAgeMs: number | null;
  bytes: number;
  /** False when full, or when LMDB is closed. */
  accepting: boolean;
  bufferedTotal: number;
  replayedTotal: number;
  alreadyAppliedTotal: number;
  deadLetteredTotal: number;
  /** Dead letters kept on disk (all time, not only this process). */
  deadLetters: number;
  /** Operations parked, waiting for their task's create. */
  parked: number;
  parkedTotal: number;
  setAsideDroppedTotal: number;
  shareRefusedTotal: number;
  clockOffsetMs: number | null;
  /** Writes this process handed off to the Redis stream, and took from it. */
  handedOffTotal: number;
  takenTotal: number;
  maxEntries: number;
  maxBytes: number;
}

type BatchOutcome =
  | { ok: true; applied: number; alreadyApplied: number; fresh: BufferedOperation[] }
  /**
   * `failedAt`: index in the slice of the first operation of the handler call that threw (one
   * operation, or a run of `span` slice positions applied together); undefined at commit.
   */
  | {
      ok: false;
      failedAt: number | undefined;
      span: number;
      failure: Exclude<FailureClass, 'transient'>;
      error: unknown;
    };

/** One handler call of a replay transaction: a single operation, or a run of one kind. */
interface Step {
  /** Index in the slice of its first operation. */
  first: number;
  /** Slice positions from its first operation to its last, inclusive. */
  span: number;
  entries: BufferEntry[];
}

/** A transient failure: PostgreSQL cannot be reached; ends the run. */
class DatabaseUnreachable extends Error {}

@Injectable()
export class BufferService
  implements OnApplicationBootstrap, OnModuleDestroy, OnApplicationShutdown
{
  private readonly logger = new Logger(BufferService.name);
  private running: Promise<ReplayReport> | undefined;
  private finishing: Promise<void> | undefined;
  private stopping = false;
  /** Set on shutdown: no run goes on past it. */
  private stopBy = Number.POSITIVE_INFINITY;
  private unsubscribe: (() => void) | undefined;
  /** Failed runs per queue key, for retryable failures; in memory: a restart grants a fresh start. */
  private readonly attempts = new Map<number, number>();

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly database: Database,
    private readonly availability: PostgresAvailability,
    private readonly lmdb: LmdbService,
    private readonly buffer: LmdbBuffer,
    private readonly registry: OperationRegistry,
    private readonly applied: AppliedOperations,
    private readonly counters: BufferCounters,
    private readonly scheduler: SchedulerRegistry,
    private readonly order: WriteOrder,
    private readonly handoff: BufferHandoff,
  ) {}

  onApplicationBootstrap(): void {
    // Intervals from the configuration, hence the registry rather than decorators.
    this.scheduler.addInterval(
      REPLAY_INTERVAL,
      setInterval(() => void this.replay(), this.config.buffer.replayIntervalMs),
    );
    this.scheduler.addInterval(
      PRUNE_INTERVAL,
      setInterval(() => void runAsJob('buffer-prune', () => this.prune()), PRUNE_EVERY_MS),
    );
    this.unsubscribe = this.availability.onStateChange((state) => {
      if (state === 'up') void this.replay();
    });
    if (this.buffer.depth > 0) {
      this.logger.log(
        { depth: this.buffer.depth },
        'buffered operations found on disk; replaying once PostgreSQL answers',
      );
    }
    void this.replay();
  }

  /**
   * Shutdown begins (Nest calls this first, before the drain): from now on no replay, scheduled
   * or final, goes on past the shutdown bound less what closing the connections needs. The
   * drain and the HTTP server's close come before the last replay and may take most of it.
   */
  onModuleDestroy(): void {
    const { timeoutMs } = this.config.shutdown;
    this.stopBy = Date.now() + timeoutMs - closingReserveMs(timeoutMs);
  }

  /**
   * The last replay, after the HTTP server has drained. Nest 12 calls `onApplicationShutdown`
   * from the root module outwards and global modules last, so PostgreSQL and LMDB (global
   * modules) are still open here; the e2e suite checks that order.
   */
  onApplicationShutdown(): Promise<void> {
    return this.finish();
  }

  /**
   * Starts a run unless one is going; resolves with the report of the run in progress. The run
   * is a job of its own (its log lines under a `jobId`), whoever asked for it.
   */
  replay(): Promise<ReplayReport> {
    if (this.stopping) return Promise.resolve(emptyReport());
    this.running ??= runAsJob('buffer-replay', () => this.run(Number.POSITIVE_INFINITY)).finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /** Whether the buffer is open and one more entry of `bytes` fits in it. */
  hasRoomFor(bytes: number): boolean {
    return this.lmdb.isOpen() && this.buffer.hasRoomFor(bytes);
  }

  /** Nothing of this replica's waits for PostgreSQL (queued or parked). */
  holdsNothing(): boolean {
    return !this.lmdb.isOpen() || this.buffer.holdsNothing();
  }

  stats(): BufferStatsSnapshot {
    const open = this.lmdb.isOpen();
    const oldest = open ? this.buffer.oldestEnqueuedAt() : null;
    const { maxEntries, maxBytes } = this.buffer.limits;
    return {
      depth: this.buffer.depth,
      oldestAgeMs: oldest === null ? null : Math.max(0, Date.now() - oldest),
      bytes: this.buffer.bytes,
      accepting: open && !this.buffer.isFull(),
      bufferedTotal: this.counters.buffered,
      replayedTotal: this.counters.replayed,
      alreadyAppliedTotal: this.counters.alreadyApplied,
      deadLetteredTotal: this.counters.deadLettered,
      deadLetters: this.buffer.deadLetterCount,
      parked: this.buffer.parkedCount,
      parkedTotal: this.counters.parked,
      setAsideDroppedTotal: this.counters.setAsideDropped,
      shareRefusedTotal: this.counters.shareRefused,
      clockOffsetMs: this.order.clockOffsetMs() ?? null,
      handedOffTotal: this.handoff.handedOff,
      takenTotal: this.handoff.taken,
      maxEntries,
      maxBytes,
    };
  }

  /** Stops scheduling and runs the last replay, once however often it is asked for. */
  finish(): Promise<void> {
    this.finishing ??= runAsJob('buffer-final-replay', () => this.finalReplay());
    return this.finishing;
  }

  private async finalReplay(): Promise<void> {
    this.stopping = true;
    // Within SHUTDOWN_TIMEOUT_MS, leaving the rest of it to closing the connections.
    const { timeoutMs, drainMs } = this.config.shutdown;
    this.stopBy = Math.min(
      this.stopBy,
      Date.now() + Math.max(1_000, Math.floor((timeoutMs - drainMs) / 2)),
    );
    for (const name of [REPLAY_INTERVAL, PRUNE_INTERVAL]) {
      if (this.scheduler.doesExist('interval', name)) this.scheduler.deleteInterval(name);
    }
    this.unsubscribe?.();
    await this.running;
    if (this.buffer.depth > 0 && this.database.isUp()) await this.run(this.stopBy);
    if (!this.buffer.holdsNothing()) {
      // Writes this replica could not apply go where the others apply them, if Redis keeps them.
      const handedOff = await this.handoff.handOff(this.stopBy).catch((error: unknown) => {
        this.logger.warn({ err: summariseError(error) }, 'hand-off failed');
        return 0;
      });
      if (handedOff > 0)
        this.logger.log({ handedOff }, 'unapplied writes handed off to the other replicas');
    }
    if (!this.buffer.holdsNothing()) {
      this.logger.warn(
        { depth: this.buffer.depth, parked: this.buffer.parkedCount },
        'shutting down with buffered operations on disk; the next start (or the drain command) replays them',
      );
    }
  }

  private async run(deadline: number): Promise<ReplayReport> {
    const report = emptyReport();
    if (!this.database.isUp()) return report;
    try {
      if (!this.stopping) await this.takeHandedOff();
      if (this.buffer.parkedCount > 0) await this.recheckParked(report);
      if (this.buffer.depth > 0) await this.drain(report, deadline);
    } catch (error) {
      if (error instanceof DatabaseUnreachable || classifyReplayFailure(error) === 'transient') {
        report.stoppedBy = 'database-unreachable';
        this.logger.warn({ depth: this.buffer.depth }, 'replay paused: PostgreSQL is unreachable');
      } else {
        report.stoppedBy = 'error';
        this.logger.error(
          { err: summariseError(error), depth: this.buffer.depth },
          'replay failed',
        );
      }
    }
    if (report.applied + report.alreadyApplied + report.deadLettered + (report.parked ?? 0) > 0) {
      this.logger.log({ ...report, depth: this.buffer.depth }, 'buffer replayed');
    }
    return report;
  }

  private async drain(report: ReplayReport, deadline: number): Promise<void> {
    for (;;) {
      const until = Math.min(deadline, this.stopBy);
      if (Date.now() >= until) {
        report.stoppedBy = 'deadline';
        return;
      }
      const batch = this.buffer.getBatch(this.config.buffer.replayBatch);
      if (batch.length === 0) return;
      const live = await this.sortOut(batch, report, 'queued');
      if (live.length === 0) continue;
      if (!(await this.replayBatch(live, report, until))) return;
    }
  }

  /**
   * Applies `batch` in order. On a failure it narrows down: the operations before the failing
   * one are applied in a transaction of their own, then the failing one alone decides its fate.
   * Resolves false when the run must stop (a retryable failure); throws DatabaseUnreachable.
   */
  private async replayBatch(
    batch: BufferEntry[],
    report: ReplayReport,
    deadline: number,
  ): Promise<boolean> {
    let start = 0;
    let end = batch.length;
    while (start < batch.length) {
      const slice = batch.slice(start, end);
      const outcome = await this.applyInOneTransaction(slice, deadline);
      if (outcome.ok) {
        this.counters.replayed += outcome.applied;
        this.counters.alreadyApplied += outcome.alreadyApplied;
        report.applied += outcome.applied;
        report.alreadyApplied += outcome.alreadyApplied;
        await this.afterApply(outcome.fresh);
        await this.buffer.remove(slice.map((entry) => entry.key));
        for (const entry of slice) this.attempts.delete(entry.key);
        start = end;
        end = batch.length;
        continue;
      }
      if (outcome.failedAt === undefined && slice.length > 1) {
        // Failed at commit: nothing says which operation is at fault; peel them off one by one.
        end = start + 1;
        continue;
      }
      if (outcome.failedAt !== undefined && outcome.failedAt > 0) {
        end = start + outcome.failedAt;
        continue;
      }
      if (outcome.span > 1) {
        // A run failed as a whole: try its first half on its own; halving finds the culprit.
        end = start + Math.ceil(outcome.span / 2);
        continue;
      }
      const culprit = slice[0]!;
      if (!this.givesUp(culprit, outcome.failure)) {
        report.stoppedBy = 'retryable-failure';
        this.logger.warn(
          {
            ...describe(culprit),
            err: summariseError(outcome.error),
            attempt: this.attempts.get(culprit.key),
          },
          'buffered operation failed; it will be retried',
        );
        return false;
      }
      await this.setAside(culprit, outcome.error);
      report.deadLettered += 1;
      start += 1;
      end = batch.length;
    }
    return true;
  }

  private async applyInOneTransaction(
    slice: BufferEntry[],
    deadline: number,
  ): Promise<BatchOutcome> {
    let current: Step | undefined;
    const timeoutMs = Math.max(1, Math.min(REPLAY_TRANSACTION_TIMEOUT_MS, deadline - Date.now()));
    const ctx = RequestContext.background('buffer-replay', timeoutMs);
    try {
      return await this.database.transaction(ctx, async (manager) => {
        await lockForWrite(manager, this.lockKeysOf(slice));
        const fresh = await this.applied.claim(
          manager,
          slice.map((entry) => entry.op.id),
        );
        let applied = 0;
        const appliedOps: BufferedOperation[] = [];
        for (const step of this.stepsOf(slice, fresh)) {
          current = step;
          await this.applyStep(manager, step);
          applied += step.entries.length;
          appliedOps.push(...step.entries.map((entry) => entry.op));
        }
        current = undefined;
        return {
          ok: true as const,
          applied,
          alreadyApplied: slice.length - applied,
          fresh: appliedOps,
        };
      });
    } catch (error) {
      const failure = classifyReplayFailure(error);
      if (failure === 'transient')
        throw new DatabaseUnreachable('PostgreSQL is unreachable', { cause: error });
      return { ok: false, failedAt: current?.first, span: current?.span ?? 1, failure, error };
    } finally {
      ctx.release();
    }
  }

  private lockKeysOf(slice: BufferEntry[]): string[] {
    const keys: string[] = [];
    for (const entry of slice) {
      const key = this.registry.lockKeyOf(entry.op);
      if (key !== undefined) keys.push(key);
    }
    return keys;
  }

  /**
   * The handler calls that apply the `fresh` operations of `slice`, in order: consecutive
   * operations of a kind with a batch handler go together (operations already applied in
   * between do nothing, so they do not break a run); all others go one by one.
   */
  private stepsOf(slice: BufferEntry[], fresh: Set<string>): Step[] {
    const steps: Step[] = [];
    let run: Step | undefined;
    for (const [index, entry] of slice.entries()) {
      if (!fresh.has(entry.op.id.toLowerCase())) continue;
      const batchable = this.registry.batchHandlerFor(entry.op.kind) !== undefined;
      if (batchable && run && run.entries[0]!.op.kind === entry.op.kind) {
        run.entries.push(entry);
        run.span = index - run.first + 1;
        continue;
      }
      const step: Step = { first: index, span: 1, entries: [entry] };
      steps.push(step);
      run = batchable ? step : undefined;
    }
    return steps;
  }

  private async applyStep(manager: EntityManager, step: Step): Promise<void> {
    const { kind } = step.entries[0]!.op;
    const batchHandler = this.registry.batchHandlerFor(kind);
    if (batchHandler && step.entries.length > 1) {
      await batchHandler(
        manager,
        step.entries.map((entry) => this.registry.upgrade(entry.op)),
      );
      return;
    }
    const handler = this.registry.handlerFor(kind);
    if (!handler)
      throw new PermanentOperationError(`no handler is registered for operation kind ${kind}`);
    await handler(manager, this.registry.upgrade(step.entries[0]!.op));
  }

  /** True when `entry` is to be set aside now: at once if permanent, after repeated retryable failures. */
  private givesUp(entry: BufferEntry, failure: Exclude<FailureClass, 'transient'>): boolean {
    if (failure === 'permanent') return true;
    const attempts = (this.attempts.get(entry.key) ?? 0) + 1;
    this.attempts.set(entry.key, attempts);
    return attempts >= MAX_RETRYABLE_ATTEMPTS;
  }

  private async setAside(entry: BufferEntry, error: unknown): Promise<void> {
    await this.setAsideAll([{ entry, error }]);
  }

  /** Sets entries aside in one LMDB transaction, with a log line each and one for those dropped. */
  private async setAsideAll(
    items: ReadonlyArray<{ entry: BufferEntry; error: unknown }>,
  ): Promise<number> {
    if (items.length === 0) return 0;
    const { moved, dropped } = await this.buffer.setAside(
      items.map(({ entry, error }) => ({ key: entry.key, error })),
    );
    for (const { entry, error } of items) {
      this.attempts.delete(entry.key);
      this.logger.error(
        { ...describe(entry), err: summariseError(error) },
        'buffered operation set aside: it can never apply',
      );
    }
    this.counters.deadLettered += moved;
    this.reportDropped(dropped);
    return moved;
  }

  private reportDropped(dropped: DeadLetter[]): void {
    if (dropped.length === 0) return;
    this.counters.setAsideDropped += dropped.length;
    for (const letter of dropped) {
      this.logger.warn(
        {
          key: letter.key,
          opId: letter.op.id,
          kind: letter.op.kind,
          userId: letter.op.userId,
          acceptedAt: letter.op.acceptedAt,
        },
        'set-aside operation dropped: the set-aside store is at its bounds',
      );
    }
  }

  /**
   * The entries of `batch` to apply now. Those older than the retention period are set aside, and
   * the verdicts of their kinds' triage park or set aside others (see the header).
   */
  private async sortOut(
    batch: BufferEntry[],
    report: ReplayReport,
    from: 'queued' | 'parked',
  ): Promise<BufferEntry[]> {
    const verdicts = await this.triage(batch);
    const apply: BufferEntry[] = [];
    const park: Array<{ key: number; reason: string }> = [];
    const setAside: Array<{ entry: BufferEntry; error: unknown }> = [];
    batch.forEach((entry, index) => {
      const verdict = verdicts[index]!;
      if (verdict.verdict === 'apply') apply.push(entry);
      else if (verdict.verdict === 'park') park.push({ key: entry.key, reason: verdict.reason });
      else setAside.push({ entry, error: new PermanentOperationError(verdict.reason) });
    });
    if (from === 'queued' && park.length > 0) {
      const parked = await this.buffer.park(park);
      this.counters.parked += parked;
      report.parked = (report.parked ?? 0) + parked;
    }
    report.deadLettered += await this.setAsideAll(setAside);
    return apply;
  }

  /** One verdict per entry: the retention check, then each kind's triage for its own entries. */
  private async triage(batch: BufferEntry[]): Promise<Triage[]> {
    const verdicts: Triage[] = batch.map(() => ({ verdict: 'apply' }));
    const retentionMs = this.config.replication.retentionMs;
    const byKind = new Map<string, Array<{ index: number; op: BufferedOperation; key: number }>>();
    const now = Date.now();
    batch.forEach((entry, index) => {
      const acceptedAt = Date.parse(entry.op.acceptedAt);
      if (!(now - acceptedAt <= retentionMs)) {
        verdicts[index] = {
          verdict: 'set-aside',
          reason: `accepted at ${entry.op.acceptedAt}, longer ago than WRITE_RETENTION`,
        };
        return;
      }
      if (!this.registry.triageFor(entry.op.kind)) return;
      let op: BufferedOperation;
      try {
        op = this.registry.upgrade(entry.op);
      } catch (error) {
        verdicts[index] = { verdict: 'set-aside', reason: (error as Error).message };
        return;
      }
      const group = byKind.get(op.kind) ?? [];
      group.push({ index, op, key: entry.key });
      byKind.set(op.kind, group);
    });
    if (byKind.size === 0) return verdicts;
    const ctx = RequestContext.background('buffer-triage', REPLAY_TRANSACTION_TIMEOUT_MS);
    try {
      for (const [kind, group] of byKind) {
        const triage = this.registry.triageFor(kind)!;
        const sorted = await this.database.run(ctx, () =>
          triage(
            this.database.manager,
            group.map(({ op, key }) => ({ op, key })),
          ),
        );
        group.forEach(({ index }, n) => (verdicts[index] = sorted[n] ?? { verdict: 'apply' }));
      }
    } catch (error) {
      if (classifyReplayFailure(error) === 'transient')
        throw new DatabaseUnreachable('PostgreSQL is unreachable', { cause: error });
      throw error;
    } finally {
      ctx.release();
    }
    return verdicts;
  }

  /**
   * Parked entries whose wait is over go back to the queue; those that can no longer apply (or
   * have waited past the retention period) are set aside; the rest stay parked.
   */
  private async recheckParked(report: ReplayReport): Promise<void> {
    const parked = this.buffer.listParked(this.config.buffer.replayBatch);
    const verdicts = await this.triage(parked);
    const ready: number[] = [];
    const setAside: Array<{ entry: BufferEntry; error: unknown }> = [];
    parked.forEach((entry, index) => {
      const verdict = verdicts[index]!;
      if (verdict.verdict === 'apply') ready.push(entry.key);
      else if (verdict.verdict === 'set-aside')
        setAside.push({ entry, error: new PermanentOperationError(verdict.reason) });
    });
    await this.buffer.unpark(ready);
    report.parked = (report.parked ?? 0) - ready.length;
    report.deadLettered += await this.setAsideAll(setAside);
  }

  /** Writes other replicas handed off, taken into this buffer (a failure is logged, and retried next run). */
  private async takeHandedOff(): Promise<void> {
    try {
      await this.handoff.take();
    } catch (error) {
      this.logger.warn(
        { err: summariseError(error) },
        'could not take handed-off writes; will retry',
      );
    }
  }

  /** Tells each kind which of its operations were committed (best effort: a failure is logged). */
  private async afterApply(ops: BufferedOperation[]): Promise<void> {
    const byKind = new Map<string, BufferedOperation[]>();
    for (const op of ops) byKind.set(op.kind, [...(byKind.get(op.kind) ?? []), op]);
    for (const [kind, group] of byKind) {
      const handler = this.registry.afterApplyFor(kind);
      if (!handler) continue;
      try {
        await handler(group.map((op) => this.registry.upgrade(op)));
      } catch (error) {
        this.logger.warn({ kind, err: summariseError(error) }, 'after-apply step failed');
      }
    }
  }

  /**
   * Drops set-aside writes past their age bound, and deletes ledger records older than any
   * operation can wait in a buffer.
   */
  private async prune(): Promise<void> {
    if (this.stopping) return;
    this.reportDropped(await this.buffer.expireSetAside());
    if (!this.database.isUp()) return;
    const ctx = RequestContext.background('buffer-prune', REPLAY_TRANSACTION_TIMEOUT_MS);
    try {
      const pruned = await this.applied.prune(ctx, this.config.replication.retentionMs);
      if (pruned > 0) this.logger.log({ pruned }, 'old exactly-once records pruned');
    } catch (error) {
      this.logger.warn(
        { err: summariseError(error) },
        'pruning exactly-once records failed; will retry later',
      );
    } finally {
      ctx.release();
    }
  }
}

function emptyReport(): ReplayReport {
  return { applied: 0, alreadyApplied: 0, deadLettered: 0 };
}

function describe(entry: BufferEntry): Record<string, unknown> {
  const { op } = entry;
  return {
    key: entry.key,
    opId: op.id,
    kind: op.kind,
    userId: op.userId,
    // Not `requestId`: the line is not written by that request, which answered long ago.
    acceptedByRequest: op.requestId,
    acceptedAt: op.acceptedAt,
  };
}
