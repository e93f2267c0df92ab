/**
 * Every migration, in order. Listed as classes (not a glob) so that the same list serves the
 * compiled server, the tests running from source and the TypeORM CLI.
 */
import { CreateUsers1764000000000 } from './1764000000000-create-users.js';

export const MIGRATIONS = [CreateUsers1764000000000];
