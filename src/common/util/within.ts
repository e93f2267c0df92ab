/**
 * `promise`'s outcome, or a rejection once `ms` have passed without it settling: an error saying
 * `what` did not come within `ms`, or the one `failure` makes. The work goes on regardless (a
 * Redis command cannot be called back); its late outcome is ignored.
 *
 * When the event loop was stalled past `ms` (a loaded machine), the timer runs before the poll
 * phase reads whatever arrived meanwhile: an answer already on the socket would be taken for a
 * timeout. So the rejection waits for that one poll phase (`setImmediate`), and an answer that
 * had come is taken instead; on a responsive loop this adds microseconds to a real timeout.
 */
export function within<T>(promise: Promise<T>, ms: number, failure: string | (() => Error) = 'no answer'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let afterPoll: NodeJS.Immediate | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      afterPoll = setImmediate(() => reject(typeof failure === 'string' ? new Error(`${failure} within ${ms} ms`) : failure()));
    }, ms);
  });
  return Promise.race([promise, timeout]).finally(() => {
    clearTimeout(timer);
    if (afterPoll) clearImmediate(afterPoll);
  });
}
