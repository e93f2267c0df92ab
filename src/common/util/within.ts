/**
 * `promise`'s outcome, or a rejection once `ms` have passed without it settling: an error saying
 * `what` did not come within `ms`, or the one `failure` makes. The work goes on regardless (a
 * Redis command cannot be called back); its late outcome is ignored.
 */
export function within<T>(promise: Promise<T>, ms: number, failure: string | (() => Error) = 'no answer'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(typeof failure === 'string' ? new Error(`${failure} within ${ms} ms`) : failure()), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
