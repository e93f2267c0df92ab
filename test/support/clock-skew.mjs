/**
 * Preloaded into a server process (`node --import`) to shift its wall clock by
 * TEST_CLOCK_SKEW_MS milliseconds, so that a test can run replicas whose clocks disagree without
 * the production code knowing anything of it. `Date.now()` and `new Date()` are shifted;
 * timers and monotonic clocks are not.
 */
const offset = Number(process.env.TEST_CLOCK_SKEW_MS ?? 0);
if (Number.isFinite(offset) && offset !== 0) {
  const RealDate = globalThis.Date;
  const realNow = RealDate.now.bind(RealDate);
  class SkewedDate extends RealDate {
    constructor(...args) {
      if (args.length === 0) super(realNow() + offset);
      else super(...args);
    }
    static now() {
      return realNow() + offset;
    }
  }
  globalThis.Date = SkewedDate;
}
