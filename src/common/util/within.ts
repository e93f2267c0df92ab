/**
 * `promise`'s outcome, or a rejection once `ms` have passed without it settling. The work goes
 * on regardless (a Redis command cannot be called back); its late outcome is ignored.
 */
export function within<T>(promise: Promise<T>, ms: number, what = 'no answer'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
