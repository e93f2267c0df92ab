/**
 * Work that no request asked for (replay, reconnection, pruning) runs in a context of its own:
 * its log lines carry a `jobId` (`buffer-replay-…`), never the `requestId` of whichever request
 * happened to set it off (a request whose failed statement opened the breaker would otherwise
 * lend its id to the reconnection and the replay that follow), and no other request-scoped
 * store (the pg driver's deadline) reaches into it either.
 *
 * The logging context is nestjs-pino's (`PinoLogger.runInContext`), installed by `createApp`;
 * without it (unit tests) the work still runs outside every request's context, unlabelled.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { PinoLogger } from 'nestjs-pino';
import { newId } from '../util/ids.js';

/** The asynchronous context as it is when this module loads: outside every request. */
const outsideRequests = AsyncLocalStorage.snapshot();
let loggingContexts: PinoLogger | undefined;

/** Called once the application's logger exists (bootstrap). */
export function installJobLogging(contexts: PinoLogger): void {
  loggingContexts = contexts;
}

/** Runs `work` as the job `name`, under a `jobId` of its own; returns what `work` returns. */
export function runAsJob<T>(name: string, work: () => T): T {
  return outsideRequests(() =>
    loggingContexts ? loggingContexts.runInContext(work, { bindings: { jobId: `${name}-${newId()}` } }) : work(),
  );
}
