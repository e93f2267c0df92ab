/**
 * `.env.example` is the operator's list of every variable: it must name exactly the keys of
 * the config schema, each with a comment, and its values must be the defaults, so that it
 * cannot drift from `src/config/env.schema.ts`.
 */
import { readFileSync } from 'node:fs';
import { loadConfig } from '../../src/config/app-config.js';
import { envSchema } from '../../src/config/env.schema.js';

const ENTRY = /^([A-Z][A-Z0-9_]*)=(.*)$/;

interface Entry {
  key: string;
  value: string;
  comment: string | undefined;
}

function readExample(): Entry[] {
  const lines = readFileSync(new URL('../../.env.example', import.meta.url), 'utf8').split('\n');
  const entries: Entry[] = [];
  lines.forEach((line, i) => {
    if (line === '' || line.startsWith('#')) return;
    const match = ENTRY.exec(line);
    if (!match)
      throw new Error(`.env.example line ${i + 1} is neither a comment nor KEY=value: ${line}`);
    const previous = lines[i - 1];
    entries.push({
      key: match[1]!,
      value: match[2]!,
      comment: previous?.startsWith('# ') ? previous : undefined,
    });
  });
  return entries;
}

describe('.env.example', () => {
  const entries = readExample();

  it('lists exactly the variables of the config schema, once each', () => {
    const keys = entries.map((e) => e.key);
    expect(new Set(keys).size).toBe(keys.length);
    expect([...keys].sort()).toEqual(Object.keys(envSchema).sort());
  });

  it('puts a comment line before every variable', () => {
    expect(entries.filter((e) => !e.comment).map((e) => e.key)).toEqual([]);
  });

  it('shows the defaults: loading it gives the same configuration as an empty environment', () => {
    const fromExample = loadConfig(Object.fromEntries(entries.map((e) => [e.key, e.value])));
    const fromNothing = loadConfig({});
    // Left out: what is drawn at random when unset (the JWT secret; the replica tag off a StatefulSet).
    const withoutRandom = ({
      auth: { jwtSecret: _secret, ...auth },
      replication: { replicaTag: _tag, ...replication },
      ...rest
    }: ReturnType<typeof loadConfig>) => ({ ...rest, auth, replication });
    expect(withoutRandom(fromExample)).toEqual(withoutRandom(fromNothing));
    for (const config of [fromExample, fromNothing]) {
      expect(config.replication.replicaTag).toBeGreaterThanOrEqual(1);
      expect(config.replication.replicaTag).toBeLessThanOrEqual(1023);
    }
  });

  it('holds no secret', () => {
    expect(entries.find((e) => e.key === 'JWT_SECRET')?.value).toBe('');
    expect(entries.find((e) => e.key === 'DATABASE_URL')?.value).not.toMatch(/:\/\/[^/@]*:[^/@]*@/);
  });
});
