/**
 * Summarises a V8 CPU profile (`node --cpu-prof`) of the server under load: the share of samples
 * per part of the request path (first matching rule along each sample's stack) and the functions
 * with the most self time.
 *
 *   node_modules/.bin/node --cpu-prof --cpu-prof-dir=prof dist/src/main.js   # then load it, stop it
 *   node_modules/.bin/node bench/profile-summary.ts prof/CPU.*.cpuprofile [top]
 */
import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
}

/** In order: a sample counts for the first part one of its frames matches. */
const PARTS: Array<[string, RegExp]> = [
  ['start-up (module loading)', /ModuleWrap|compileSourceTextModule|esm\/loader|modules\/cjs/],
  ['request log line', /requestCompleted/],
  ['metrics hook', /http-metrics|metrics\.service/],
  ['access-token guard (passport, JWT)', /passport|jsonwebtoken|jws|jwa|access-token\.guard|jwt\.strategy/],
  ['validation pipe', /validation\.pipe|class-validator|class-transformer/],
  ['task cursor HMAC', /task-cursor/],
  ['buffer (LMDB)', /lmdb|modules\/buffer/],
  ['tasks code', /dist\/src\/modules\/tasks/],
  ['pg driver (incl. writing queries)', /node_modules\/pg|pg-protocol|pg-pool|pg-types/],
  ['request hook (context, headers)', /dist\/src\/bootstrap\.js/],
  ['middie (log context binding)', /middie|middleware-module|middleware\/utils/],
  ['Nest router, interceptors, rxjs (incl. writing responses)', /@nestjs\/core|rxjs|deadline\.interceptor|@nestjs\/platform-fastify/],
  ['Fastify', /node_modules\/fastify|find-my-way|secure-json-parse/],
  ['Node HTTP', /node:_http|parserOn/],
];

function main(): void {
  const [file, topArg] = process.argv.slice(2);
  if (!file) throw new Error('usage: profile-summary.ts <file.cpuprofile> [top]');
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parentOf = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);

  const parts = new Map<string, number>();
  const selfTime = new Map<string, number>();
  for (const sample of profile.samples) {
    const frame = byId.get(sample)!.callFrame;
    const self = `${frame.functionName || '(anonymous)'} ${shorten(frame.url)}:${frame.lineNumber}`;
    selfTime.set(self, (selfTime.get(self) ?? 0) + 1);
    add(parts, partOf(sample, byId, parentOf));
  }
  const total = profile.samples.length;
  print(`parts of the request path (${total} samples)`, parts, total, Number.POSITIVE_INFINITY);
  print('self time by function', selfTime, total, Number(topArg ?? 25));
}

function partOf(sample: number, byId: Map<number, ProfileNode>, parentOf: Map<number, number>): string {
  const name = byId.get(sample)!.callFrame.functionName;
  if (name === '(garbage collector)') return 'garbage collection';
  if (name === '(idle)') return 'idle';
  const frames: string[] = [];
  for (let id: number | undefined = sample; id !== undefined; id = parentOf.get(id)) {
    const frame = byId.get(id)!.callFrame;
    frames.push(`${frame.functionName} ${frame.url}`);
  }
  for (const [part, pattern] of PARTS) if (frames.some((frame) => pattern.test(frame))) return part;
  return 'other';
}

function shorten(url: string): string {
  return url.replace(/^.*node_modules\//, '').replace(/^.*\/dist\//, 'dist/');
}

function add(counts: Map<string, number>, key: string): void {
  counts.set(key, (counts.get(key) ?? 0) + 1);
}

function print(title: string, counts: Map<string, number>, total: number, top: number): void {
  process.stdout.write(`\n${title}\n`);
  for (const [key, count] of [...counts].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    process.stdout.write(`${((100 * count) / total).toFixed(1).padStart(6)}%  ${key}\n`);
  }
}

main();
