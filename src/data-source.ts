/**
 * The data source of the TypeORM CLI (`npm run migration:run|revert|generate`), from the same
 * validated environment and driver settings as the server. Entities are found by file name:
 * every feature module keeps its own (`*.entity.ts`), as the server registers them per module.
 */
import 'reflect-metadata';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DataSource } from 'typeorm';
import { loadConfig } from './config/app-config.js';
import { MIGRATIONS } from '../migrations/index.js';

const config = loadConfig();
const here = path.dirname(fileURLToPath(import.meta.url));

export default new DataSource({
  type: 'postgres',
  url: config.database.url,
  migrations: MIGRATIONS,
  migrationsTableName: 'migrations',
  entities: [path.join(here, 'modules/**/*.entity.js')],
});
