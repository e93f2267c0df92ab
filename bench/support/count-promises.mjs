// Preloaded into a server by `bench/promises.ts` (node --import): counts the promises the
// process creates between two SIGUSR2 signals and appends the count to $PROMISES_OUT. Only for
// measuring: an async hook on every promise slows the process down several times.
import { createHook } from 'node:async_hooks';
import { appendFileSync } from 'node:fs';

let counting = false;
let created = 0;
createHook({
  init(_id, type) {
    if (counting && type === 'PROMISE') created += 1;
  },
}).enable();

process.on('SIGUSR2', () => {
  if (!counting) {
    counting = true;
    created = 0;
    return;
  }
  counting = false;
  appendFileSync(process.env.PROMISES_OUT, `${created}\n`);
});
