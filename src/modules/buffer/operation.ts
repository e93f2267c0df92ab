/**
 * The unit the buffer stores and replays. It knows no feature: a `kind` names what to do
 * (`task.create`, `profile.rename`, …) and the feature that registered that kind knows how to
 * apply the `payload`. The same operation is handed to the handler whether the write goes to
 * PostgreSQL at once or is replayed from the buffer later.
 */
import type { RequestContext } from '../../common/context/request-context.js';
import { newId } from '../../common/util/ids.js';

export interface BufferedOperation<P = unknown> {
  /** UUIDv7; also the key of the operation's exactly-once marker in PostgreSQL. */
  readonly id: string;
  /** `<feature>.<verb>`; selects the handler that applies it. */
  readonly kind: string;
  /** On whose behalf it runs: handlers enforce ownership with it. */
  readonly userId: string;
  /** Everything the handler needs, as plain JSON (timestamps as ISO strings). */
  readonly payload: P;
  /** ISO 8601 UTC: when the request was accepted. */
  readonly acceptedAt: string;
  /** The request that made it, for the logs of its replay. */
  readonly requestId: string;
  /**
   * The version of the payload's shape, stamped when the operation is stored (see
   * `OperationRegistry.register`); absent on entries stored before versions existed, which are
   * version 1. A release that changes a kind's payload bumps its version and says how an older
   * payload becomes the new one, so that entries written by the previous release still replay.
   */
  readonly version?: number;
}

const KIND = /^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)+$/;

export function isValidKind(kind: string): boolean {
  return KIND.test(kind);
}

/**
 * Builds an operation for the authenticated caller of `ctx`. The payload goes through a JSON
 * round trip here, so that it is known to be storable before anything is written, and so that a
 * handler sees exactly the same values when it applies the write directly as when it replays it.
 */
export function createOperation<P>(
  ctx: RequestContext,
  kind: string,
  payload: P,
  now: Date = new Date(),
): BufferedOperation<P> {
  if (!isValidKind(kind)) throw new TypeError(`invalid operation kind: ${kind}`);
  return {
    id: newId(),
    kind,
    userId: ctx.requireUserId(),
    payload: asJson(payload),
    acceptedAt: now.toISOString(),
    requestId: ctx.requestId,
  };
}

function asJson<P>(payload: P): P {
  const text = JSON.stringify(payload) as string | undefined;
  if (text === undefined) throw new TypeError('an operation payload must be JSON-serialisable');
  return JSON.parse(text) as P;
}
