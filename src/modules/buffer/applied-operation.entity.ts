/**
 * The exactly-once ledger's row: the id of an operation applied, and when (for pruning). The
 * migration `1764200000000-create-buffer-applied-operations.ts` builds the table.
 */
import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

@Entity({ name: 'buffer_applied_operations' })
@Index('buffer_applied_operations_applied_at_idx', ['appliedAt'])
export class AppliedOperationEntity {
  @PrimaryColumn('uuid')
  id!: string;

  @Column({ name: 'applied_at', type: 'timestamptz', default: () => 'now()' })
  appliedAt!: Date;
}
