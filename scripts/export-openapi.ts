/**
 * Writes the OpenAPI document to a file (default `dist/openapi.json`) for `npm run openapi:lint`,
 * from the built application (`npm run build` first): Node runs this file as it is, and the
 * decorated sources need the compiler.
 *
 *   node scripts/export-openapi.ts [output.json]
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type * as OpenApi from '../src/openapi.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const output = path.resolve(process.argv[2] ?? path.join(root, 'dist', 'openapi.json'));
const built = path.join(root, 'dist', 'src', 'openapi.js');
if (!existsSync(built)) {
  console.error(`${path.relative(process.cwd(), built)} is missing: run npm run build first`);
  process.exit(1);
}

await import('reflect-metadata');
const { buildOpenApiDocument } = (await import(pathToFileURL(built).href)) as typeof OpenApi;
const document = await buildOpenApiDocument();
mkdirSync(path.dirname(output), { recursive: true });
writeFileSync(output, `${JSON.stringify(document, null, 2)}\n`);
console.log(
  `OpenAPI document: ${path.relative(process.cwd(), output)} (${Object.keys(document.paths).length} paths)`,
);
