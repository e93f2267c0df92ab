/**
 * AnswerOnceFastifyAdapter on a real Fastify instance: a result that comes after the answer
 * changes nothing the client sees and logs nothing.
 */
import { FastifyAdapter } from '@nestjs/platform-fastify';
import pino from 'pino';
import { AnswerOnceFastifyAdapter } from './answer-once-fastify-adapter.js';

type AdapterOptions = ConstructorParameters<typeof AnswerOnceFastifyAdapter>[0];

async function answerTwice(make: (options: AdapterOptions) => FastifyAdapter) {
  const lines: string[] = [];
  const adapter = make({ loggerInstance: pino({ level: 'info' }, { write: (line: string) => void lines.push(line) }), disableRequestLogging: true });
  const fastify = adapter.getInstance();
  fastify.get('/', (_request, reply) => {
    void reply.code(504).send({ code: 'TIMEOUT' });
    adapter.reply(reply, { late: true }, 200);
  });
  const res = await fastify.inject({ method: 'GET', url: '/' });
  await fastify.close();
  return { res, lines };
}

describe('AnswerOnceFastifyAdapter', () => {
  it('drops a result for a request that was already answered, silently', async () => {
    const { res, lines } = await answerTwice((options) => new AnswerOnceFastifyAdapter(options));
    expect(res.statusCode).toBe(504);
    expect(res.json()).toEqual({ code: 'TIMEOUT' });
    expect(lines).toEqual([]);
  });

  it('is needed: the plain adapter logs a warning for the late result', async () => {
    const { res, lines } = await answerTwice((options) => new FastifyAdapter(options));
    expect(res.statusCode).toBe(504);
    expect(lines.join('')).toContain('FST_ERR_REP_ALREADY_SENT');
  });

  it('answers normally otherwise', async () => {
    const adapter = new AnswerOnceFastifyAdapter({ logger: false });
    const fastify = adapter.getInstance();
    fastify.get('/', (_request, reply) => {
      adapter.reply(reply, { ok: true }, 201);
    });
    const res = await fastify.inject({ method: 'GET', url: '/' });
    await fastify.close();
    expect(res.statusCode).toBe(201);
    expect(res.json()).toEqual({ ok: true });
  });
});
