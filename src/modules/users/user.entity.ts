/**
 * The stored user. The migrations are the source of truth (a test checks that this entity
 * describes exactly the table they build). `namePos` is the position of the last rename, by
 * which replicated renames merge (docs/design/replicas.md).
 */
import { Check, Column, Entity, Index, PrimaryColumn } from 'typeorm';

@Entity({ name: 'users' })
@Index('users_email_key', ['email'], { unique: true })
@Check('users_email_normalised', 'email = lower(btrim(email))')
export class UserEntity {
  @PrimaryColumn('uuid')
  id!: string;

  @Column({ type: 'varchar', length: 254 })
  email!: string;

  @Column({ type: 'varchar', length: 100 })
  name!: string;

  @Column({ name: 'password_hash', type: 'text' })
  passwordHash!: string;

  @Column({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @Column({ name: 'updated_at', type: 'timestamptz' })
  updatedAt!: Date;

  @Column({ type: 'integer', default: 1 })
  version!: number;

  @Column({ name: 'name_pos', type: 'bigint', nullable: true })
  namePos!: string | null;
}
