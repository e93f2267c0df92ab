/**
 * Promises a request creates, this checkout against another built one: a count that does not
 * move with the machine's load. Every promise is an allocation and most are a turn of the
 * microtask queue (promise reactions were the largest single difference in CPU profiles of the
 * list, 2026-12-07). Each server runs its production command line with
 * `support/count-promises.mjs` preloaded, on a database of its own (seeded as `bench:ab` seeds
 * it); each route takes 50 requests to warm up, then `--requests` requests one at a time are
 * counted, the server's own periodic work included (a few promises in all).
 *
 *   npm run bench:promises -- --against ../taskd-before [--requests 200]
 */
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { api, killAll, ROUTE_REQUESTS, sleep, startSeeded } from './support/harness.js';

const { values: args } = parseArgs({
  options: {
    against: { type: 'string' },
    requests: { type: 'string', default: '200' },
  },
});
if (!args.against) throw new Error('--against <directory of another built checkout> is required');
const REQUESTS = Number(args.requests);
const WARM_UP = 50;
const PRELOAD = path.resolve('bench/support/count-promises.mjs');
async function count(name: string, index: number, dir: string | undefined): Promise<void> {
  const out = path.join(tmpdir(), `taskd-bench-promises-${index}.txt`);
  rmSync(out, { force: true });
  const seeded = await startSeeded(index, dir, {
    wrapper: ['env', `PROMISES_OUT=${out}`, 'bash', '-c', `n=$1; shift; exec "$n" --import ${PRELOAD} "$@"`, 'node'],
  });
  const { server, token } = seeded;
  const perRequest: string[] = [];
  try {
    for (const route of ['live', 'list', 'create'] as const) {
      const { method, path: target, body } = ROUTE_REQUESTS[route];
      const send = () => api(server.url, method, target, body === undefined ? undefined : JSON.parse(body), token);
      for (let i = 0; i < WARM_UP; i++) await send();
      process.kill(server.pid, 'SIGUSR2');
      await sleep(200);
      for (let i = 0; i < REQUESTS; i++) await send();
      process.kill(server.pid, 'SIGUSR2');
      await sleep(200);
      const counted = Number(readFileSync(out, 'utf8').trim().split('\n').at(-1));
      perRequest.push(`${route} ${(counted / REQUESTS).toFixed(1)}`);
    }
  } finally {
    await server.stop();
    rmSync(out, { force: true });
    rmSync(seeded.bufferPath, { recursive: true, force: true });
  }
  console.log(`${name.padEnd(28)} promises a request: ${perRequest.join(', ')}`);
}

try {
  await count('this checkout', 0, undefined);
  await count(args.against, 1, args.against);
} finally {
  killAll();
}
