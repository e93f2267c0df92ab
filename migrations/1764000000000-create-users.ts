import type { MigrationInterface, QueryRunner } from 'typeorm';

export class CreateUsers1764000000000 implements MigrationInterface {
  name = 'CreateUsers1764000000000';

  async up(runner: QueryRunner): Promise<void> {
    await runner.query(`
      CREATE TABLE users (
        id            uuid PRIMARY KEY,
        email         varchar(254) NOT NULL,
        name          varchar(100) NOT NULL,
        password_hash text NOT NULL,
        created_at    timestamptz NOT NULL,
        updated_at    timestamptz NOT NULL,
        version       integer NOT NULL DEFAULT 1,
        CONSTRAINT users_email_normalised CHECK (email = lower(btrim(email)))
      )`);
    await runner.query(`CREATE UNIQUE INDEX users_email_key ON users (email)`);
  }

  async down(runner: QueryRunner): Promise<void> {
    await runner.query(`DROP TABLE users`);
  }
}
