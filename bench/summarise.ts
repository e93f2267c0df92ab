/**
 * Medians of several `npm run bench` results, grouped by the server they measured (this
 * checkout, or the `--server` directory each run names):
 *
 *   npm run bench:summarise -- bench/results/*.json
 *
 * For comparing two builds with one runner: alternate runs with and without `--server <dir>`,
 * each written to a file of its own (`--json`), then summarise them all. Prints, for each
 * compared route, req/s, p99, the ratio to the baseline of the same run, the CPU a request cost
 * the server and its PostgreSQL backends (the baseline's too), and the server's CPU a request
 * over the baseline's in the same run ("CPU ×"): the baseline's code is the same for every
 * build, so that quotient does not move with the machine's speed, which on a shared two-core
 * machine changes by a quarter from one minute to the next. Then start-up, peak RSS and the
 * buffered-write figures.
 */
import { readFileSync } from 'node:fs';
import { median } from './support/harness.js';

interface Cpu {
  server: number;
  database: number;
}

interface Row {
  name: string;
  reqPerSec: number;
  p99: number;
  cpu?: Cpu;
  baseline?: { reqPerSec: number; p99: number; cpu?: Cpu };
}

interface Result {
  rows: Row[];
  notes: Record<string, number | string>;
}

const files = process.argv.slice(2);
if (files.length === 0) throw new Error('usage: bench/summarise.ts <result.json> …');
const groups = new Map<string, Result[]>();
for (const file of files) {
  const result = JSON.parse(readFileSync(file, 'utf8')) as Result;
  const server = String(result.notes.server ?? 'this checkout');
  groups.set(server, [...(groups.get(server) ?? []), result]);
}

const pad = (value: string | number, width: number) => String(value).padStart(width);
const mid = (values: (number | undefined)[]) => {
  const known = values.filter((value): value is number => typeof value === 'number');
  return known.length === 0 ? NaN : median(known);
};
const out: string[] = [];
for (const [server, results] of groups) {
  out.push(`${server}: medians of ${results.length} runs`);
  out.push(
    `  ${'route'.padEnd(30)}${pad('req/s', 8)}${pad('p99 ms', 8)}${pad('ratio', 7)}` +
      `${pad('CPU µs', 8)}${pad('its PG', 8)}${pad('base µs', 9)}${pad('its PG', 8)}${pad('CPU ×', 7)}`,
  );
  const names = results[0]!.rows.filter((row) => row.baseline).map((row) => row.name);
  for (const name of names) {
    const rows = results.map((result) => result.rows.find((row) => row.name === name)!);
    out.push(
      `  ${name.padEnd(30)}${pad(Math.round(mid(rows.map((r) => r.reqPerSec))), 8)}` +
        `${pad(mid(rows.map((r) => r.p99)).toFixed(2), 8)}` +
        `${pad(mid(rows.map((r) => r.reqPerSec / r.baseline!.reqPerSec)).toFixed(2), 7)}` +
        `${pad(Math.round(mid(rows.map((r) => r.cpu?.server))), 8)}${pad(Math.round(mid(rows.map((r) => r.cpu?.database))), 8)}` +
        `${pad(Math.round(mid(rows.map((r) => r.baseline!.cpu?.server))), 9)}${pad(Math.round(mid(rows.map((r) => r.baseline!.cpu?.database))), 8)}` +
        `${pad(mid(rows.map((r) => (r.cpu && r.baseline!.cpu ? r.cpu.server / r.baseline!.cpu.server : undefined))).toFixed(2), 7)}`,
    );
  }
  const note = (key: string) => results.map((result) => Number(result.notes[key]));
  for (const key of ['appStartupMs', 'appPeakRssMb', 'bufferedEntries', 'replayOpsPerSec']) {
    const values = note(key);
    out.push(`  ${key.padEnd(30)}${pad(Math.round(mid(values)), 8)}  (${values.join(', ')})`);
  }
  out.push('');
}
process.stdout.write(`${out.join('\n')}\n`);
