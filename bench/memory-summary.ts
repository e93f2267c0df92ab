/**
 * Where a running server's resident memory is (Linux), or what a heap snapshot holds: the
 * figures behind docs/performance.md, "Memory".
 *
 *   node_modules/.bin/node bench/memory-summary.ts <pid>
 *     resident memory by kind of mapping, from /proc/<pid>/smaps: the mapped binary and other
 *     files, V8's heap pages (256 KiB anonymous mappings), the main malloc arena ([heap]) and
 *     the other anonymous mappings (the threads' malloc arenas, large allocations)
 *   node_modules/.bin/node bench/memory-summary.ts <file.heapsnapshot>
 *     a snapshot (`--heapsnapshot-signal=SIGUSR2`, then `kill -USR2 <pid>`) by node type, and the
 *     share of strings that are the source text of loaded modules (over 4 KB)
 */
import { readFileSync } from 'node:fs';

const MB = 1024 * 1024;
const format = (bytes: number) => `${(bytes / MB).toFixed(1).padStart(8)} MB`;

/** V8 allocates its heap in pages of this size, each its own anonymous mapping. */
const V8_PAGE_KB = 256;

function summariseProcess(pid: string): void {
  const smaps = readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n');
  const totals = new Map<string, number>();
  let kind = '';
  for (const line of smaps) {
    const mapping = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (mapping) {
      const sizeKb = (parseInt(mapping[2]!, 16) - parseInt(mapping[1]!, 16)) / 1024;
      const name = mapping[3]!;
      if (name === '[heap]') kind = 'main malloc arena ([heap])';
      else if (name.startsWith('[')) kind = `other (${name})`;
      else if (name) kind = name.endsWith('/node') ? 'the node binary (file)' : 'other files (libraries, LMDB map)';
      else kind = sizeKb === V8_PAGE_KB ? "V8's heap pages (256 KiB)" : 'other anonymous (thread arenas, large allocations)';
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss) totals.set(kind, (totals.get(kind) ?? 0) + Number(rss[1]) * 1024);
  }
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024;
  for (const [name, bytes] of [...totals].sort((a, b) => b[1] - a[1])) {
    if (bytes >= MB / 10) console.log(`${format(bytes)}  ${name}`);
  }
  console.log(`${format(field('VmRSS'))}  VmRSS (peak so far ${(field('VmHWM') / MB).toFixed(1)} MB)`);
}

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
  nodes: number[];
  strings: string[];
}

function summariseSnapshot(file: string): void {
  const { snapshot, nodes, strings } = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const fields = snapshot.meta.node_fields;
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const types = snapshot.meta.node_types[0];
  const byType = new Map<string, number>();
  let total = 0;
  let sourceText = 0;
  for (let i = 0; i < nodes.length; i += width) {
    const type = types[nodes[i + typeAt]!]!;
    const size = nodes[i + sizeAt]!;
    total += size;
    // ArrayBuffers' backing stores are "native" nodes: outside V8's heap pages.
    const key = type === 'native' && strings[nodes[i + nameAt]!]!.includes('ArrayBufferData') ? 'ArrayBuffer contents (off-heap)' : type;
    byType.set(key, (byType.get(key) ?? 0) + size);
    if (type === 'string' && size > 4096) sourceText += size;
  }
  for (const [type, bytes] of [...byType].sort((a, b) => b[1] - a[1])) {
    if (bytes >= MB / 10) console.log(`${format(bytes)}  ${type}`);
  }
  console.log(`${format(total)}  in all`);
  console.log(`${format(sourceText)}  of the strings: over 4 KB each (nearly all module source text)`);
}

const target = process.argv[2];
if (!target) {
  console.error('usage: bench/memory-summary.ts <pid> | <file.heapsnapshot>');
  process.exit(64);
}
if (/^\d+$/.test(target)) summariseProcess(target);
else summariseSnapshot(target);
