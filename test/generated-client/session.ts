/**
 * A whole session as a client author writes it with types generated from the OpenAPI document
 * (`openapi-typescript`, into `./openapi.ts` beside this file) and `openapi-fetch`: no cast,
 * no `any`, type-checked under `strict`, `exactOptionalPropertyTypes` and
 * `noUncheckedIndexedAccess` by the suite that runs it (test/e2e/openapi-client.e2e-spec.ts).
 *
 * A buffered write (202) is told apart from a direct one by its status at run time
 * (`response.status`); where the two bodies differ (an update), TypeScript narrows the body by
 * the field only a stored task has (`'version' in data`).
 */
import createClient from 'openapi-fetch';
import type { paths } from './openapi.js';

export interface SessionHooks {
  /** PostgreSQL becomes unreachable for the service (it still takes buffered writes). */
  cutDatabase(): Promise<void>;
  /** PostgreSQL is back and every buffered write applied. */
  restoreDatabase(): Promise<void>;
}

export interface SessionOutcome {
  steps: string[];
}

function fail(step: string, status: number, detail?: unknown): never {
  throw new Error(`${step}: unexpected ${status} ${JSON.stringify(detail ?? null)}`);
}

export async function runSession(baseUrl: string, hooks: SessionHooks): Promise<SessionOutcome> {
  const steps: string[] = [];
  const anonymous = createClient<paths>({ baseUrl });
  const email = `generated-${Date.now()}-${Math.floor(Math.random() * 1e6)}@example.com`;
  const password = 'a passphrase for the generated client';

  const registered = await anonymous.POST('/api/v1/auth/register', { body: { email, password, name: 'Generated Client' } });
  if (!registered.data) fail('register', registered.response.status, registered.error);
  steps.push(`register ${registered.response.status} ${registered.data.email}`);

  const login = await anonymous.POST('/api/v1/auth/login', { body: { email, password } });
  if (!login.data) fail('login', login.response.status, login.error);
  steps.push(`login ${login.response.status} ${login.data.tokenType}`);
  let tokens = login.data;
  const client = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${tokens.accessToken}` } });

  // Only a title: status and priority take their defaults.
  const created: string[] = [];
  for (const title of ['first', 'second', 'third']) {
    const create = await client.POST('/api/v1/tasks', { body: { title } });
    if (!create.data) fail('create', create.response.status, create.error);
    created.push(create.data.id);
    steps.push(`create ${create.response.status} ${create.data.status} ${create.data.priority}`);
  }

  const firstPage = await client.GET('/api/v1/tasks', { params: { query: { limit: 2, sort: 'createdAt' } } });
  if (!firstPage.data) fail('list', firstPage.response.status, firstPage.error);
  const cursor = firstPage.data.nextCursor;
  if (cursor === null) fail('list: no next cursor', firstPage.response.status);
  const secondPage = await client.GET('/api/v1/tasks', { params: { query: { limit: 2, sort: 'createdAt', cursor } } });
  if (!secondPage.data) fail('list next', secondPage.response.status, secondPage.error);
  steps.push(`list ${firstPage.data.items.length}+${secondPage.data.items.length} last=${String(secondPage.data.nextCursor)}`);

  const id = created[0];
  if (id === undefined) fail('no task', 0);
  const read = await client.GET('/api/v1/tasks/{id}', { params: { path: { id } } });
  if (!read.data) fail('get', read.response.status, read.error);
  const etag = read.response.headers.get('etag');
  if (etag === null) fail('get: no ETag', read.response.status);
  const unchanged = await client.GET('/api/v1/tasks/{id}', { params: { path: { id }, header: { 'If-None-Match': etag } } });
  steps.push(`get ${read.response.status} ${etag}; again ${unchanged.response.status}`);

  const updated = await client.PATCH('/api/v1/tasks/{id}', {
    params: { path: { id }, header: { 'If-Match': etag } },
    body: { status: 'in_progress', dueAt: '2026-04-01' },
  });
  if (!updated.data) fail('update', updated.response.status, updated.error);
  if (!('version' in updated.data)) fail('update: buffered with If-Match', updated.response.status);
  steps.push(`update ${updated.response.status} version ${updated.data.version} dueAt ${String(updated.data.dueAt)}`);

  await hooks.cutDatabase();
  const buffered = await client.PATCH('/api/v1/tasks/{id}', { params: { path: { id } }, body: { status: 'done' } });
  if (!buffered.data) fail('buffered update', buffered.response.status, buffered.error);
  // The body narrows on what only a stored task has: a buffered change shows no version.
  const change = 'version' in buffered.data ? fail('update: not buffered', buffered.response.status) : buffered.data;
  const offline = await client.POST('/api/v1/tasks', { body: { title: 'written offline' } });
  if (!offline.data) fail('buffered create', offline.response.status, offline.error);
  steps.push(
    `buffered update ${buffered.response.status} ${buffered.response.headers.get('x-write-status') ?? ''} ${change.status ?? ''}; ` +
      `buffered create ${offline.response.status === 202 ? 'buffered' : 'direct'} ${offline.response.status}`,
  );
  await hooks.restoreDatabase();

  const after = await client.GET('/api/v1/tasks/{id}', { params: { path: { id } } });
  if (!after.data) fail('get after replay', after.response.status, after.error);
  steps.push(`replayed ${after.data.status} version ${after.data.version}`);

  const deleted = await client.DELETE('/api/v1/tasks/{id}', { params: { path: { id } } });
  steps.push(`delete ${deleted.response.status}`);

  const refreshed = await anonymous.POST('/api/v1/auth/refresh', { body: { refreshToken: tokens.refreshToken } });
  if (!refreshed.data) fail('refresh', refreshed.response.status, refreshed.error);
  tokens = refreshed.data;
  steps.push(`refresh ${refreshed.response.status}`);

  const current = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${tokens.accessToken}` } });
  const logout = await current.POST('/api/v1/auth/logout', { headers: { 'Content-Type': 'application/json' } });
  steps.push(`logout ${logout.response.status}`);
  const afterLogout = await current.GET('/api/v1/profile');
  if (afterLogout.error === undefined) fail('profile after logout', afterLogout.response.status, afterLogout.data);
  steps.push(`after logout ${afterLogout.response.status} ${afterLogout.error.code} ${afterLogout.response.headers.get('www-authenticate') ?? ''}`);
  return { steps };
}
