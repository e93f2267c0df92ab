/**
 * Lets plain Node run the TypeScript sources (Nest decorators included) for benchmarks:
 * `node --import ./bench/support/register-ts.mjs bench/<name>.bench.ts`.
 */
import { register } from 'node:module';

register('./ts-hooks.mjs', import.meta.url);
