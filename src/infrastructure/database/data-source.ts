/**
 * The data source for the TypeORM CLI (`npm run migration:run|revert|generate`), from the
 * same validated environment as the server.
 */
import 'reflect-metadata';
import { DataSource } from 'typeorm';
import { loadConfig } from '../../config/app-config.js';
import { MIGRATIONS } from '../../../migrations/index.js';
import { TaskEntity } from '../../modules/tasks/task.entity.js';
import { UserEntity } from '../../modules/users/user.entity.js';

const config = loadConfig();

export default new DataSource({
  type: 'postgres',
  url: config.database.url,
  migrations: MIGRATIONS,
  migrationsTableName: 'migrations',
  entities: [UserEntity, TaskEntity],
});
