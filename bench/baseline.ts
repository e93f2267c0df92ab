/**
 * The bench's baseline: bare Fastify + pg + JWT verification serving the same list query and
 * insert as the service, with nothing else (no Nest, no validation, no logging, no metrics).
 * Run by bench/run.ts as a child process: DATABASE_URL, JWT_SECRET, PORT.
 */
import { createSecretKey } from 'node:crypto';
import Fastify from 'fastify';
import jwt from 'jsonwebtoken';
import pg from 'pg';
import { v7 as uuidv7 } from 'uuid';

const PRIORITY = ['', 'low', 'medium', 'high'];
const COLUMNS = 'id, title, description, status, priority, due_at, created_at, updated_at, version';
// A KeyObject, as the service uses: given a string, jsonwebtoken parses it on every call.
const secret = createSecretKey(Buffer.from(process.env.JWT_SECRET!, 'utf8'));
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 10 });
const app = Fastify({ logger: false });

interface Row {
  id: string;
  title: string;
  description: string | null;
  status: string;
  priority: number;
  due_at: Date | null;
  created_at: Date;
  updated_at: Date;
  version: number;
}

function userOf(authorization: string | undefined): string | undefined {
  if (!authorization?.startsWith('Bearer ')) return undefined;
  try {
    const claims = jwt.verify(authorization.slice(7), secret, { algorithms: ['HS256'], issuer: 'taskd', audience: 'taskd-api' });
    return typeof claims === 'object' ? claims.sub : undefined;
  } catch {
    return undefined;
  }
}

const toTask = (r: Row) => ({
  id: r.id,
  title: r.title,
  description: r.description,
  status: r.status,
  priority: PRIORITY[r.priority],
  dueAt: r.due_at?.toISOString() ?? null,
  createdAt: r.created_at.toISOString(),
  updatedAt: r.updated_at.toISOString(),
  version: r.version,
});

app.get('/live', async () => ({ status: 'ok' }));

app.get('/tasks', async (request, reply) => {
  const userId = userOf(request.headers.authorization);
  if (!userId) return reply.code(401).send({ code: 'UNAUTHENTICATED' });
  const { rows } = await pool.query<Row>(
    `SELECT ${COLUMNS} FROM tasks WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT 21`,
    [userId],
  );
  return { items: rows.slice(0, 20).map(toTask), nextCursor: null };
});

app.post('/tasks', async (request, reply) => {
  const userId = userOf(request.headers.authorization);
  if (!userId) return reply.code(401).send({ code: 'UNAUTHENTICATED' });
  const body = request.body as { title: string; description?: string | null; priority?: string };
  const now = new Date();
  const { rows } = await pool.query<Row>(
    `INSERT INTO tasks (id, user_id, title, description, status, priority, due_at, created_at, updated_at, version)
     VALUES ($1, $2, $3, $4, 'todo', $5, NULL, $6, $6, 1) RETURNING ${COLUMNS}`,
    [uuidv7(), userId, body.title, body.description ?? null, PRIORITY.indexOf(body.priority ?? 'medium'), now],
  );
  return reply.code(201).send(toTask(rows[0]!));
});

await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' });
process.on('SIGTERM', () => void app.close().then(() => pool.end()).then(() => process.exit(0)));
