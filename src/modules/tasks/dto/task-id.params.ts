import { CanonicalUuid } from '../../../common/http/canonical-id.js';

/** The `{id}` of a task route: a malformed id is a 400, a well-formed unknown one a 404. */
export class TaskIdParams {
  @CanonicalUuid()
  id!: string;
}
