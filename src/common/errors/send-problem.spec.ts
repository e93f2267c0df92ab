import { jest } from '@jest/globals';
import { BadRequestException, NotFoundException } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import {
  EmailTakenError,
  RateLimitedError,
  ServiceUnavailableError,
  ValidationFailedError,
} from './domain-errors.js';
import { sendProblem } from './send-problem.js';

function fakeReply() {
  const sent: { status?: number; type?: string; body?: unknown; headers: Record<string, string> } = { headers: {} };
  const reply = {
    sent: false,
    raw: { destroyed: false },
    headers: (h: Record<string, string>) => (Object.assign(sent.headers, h), reply),
    status: (s: number) => ((sent.status = s), reply),
    type: (t: string) => ((sent.type = t), reply),
    send: (b: unknown) => ((sent.body = b), reply),
  };
  return { reply: reply as unknown as FastifyReply, sent };
}

const request = { url: '/api/v1/tasks?limit=5', id: 'req-1' } as FastifyRequest;

function answer(error: unknown) {
  const { reply, sent } = fakeReply();
  const logged = jest.fn();
  sendProblem(error, request, reply, logged);
  return { ...sent, logged };
}

describe('sendProblem (the exception filter’s mapping)', () => {
  it('maps a domain error to its status and code, with the path as instance', () => {
    const res = answer(new EmailTakenError());
    expect(res.status).toBe(409);
    expect(res.type).toBe('application/problem+json');
    expect(res.body).toEqual({
      type: 'https://httpstatuses.io/409',
      title: 'Conflict',
      status: 409,
      code: 'EMAIL_TAKEN',
      detail: 'this email is already in use',
      instance: '/api/v1/tasks',
      requestId: 'req-1',
    });
    expect(res.logged).not.toHaveBeenCalled();
  });

  it('includes field errors for validation failures only', () => {
    const res = answer(new ValidationFailedError('title is empty', [{ field: 'title', message: 'is empty' }]));
    expect(res.body).toMatchObject({ status: 400, code: 'VALIDATION_FAILED', errors: [{ field: 'title', message: 'is empty' }] });
    expect(answer(new EmailTakenError()).body).not.toHaveProperty('errors');
  });

  it('sets Retry-After on 429 and 503', () => {
    expect(answer(new RateLimitedError(12.2)).headers['retry-after']).toBe('13');
    expect(answer(new ServiceUnavailableError('down', 5)).headers['retry-after']).toBe('5');
  });

  it('maps Nest HTTP exceptions by status', () => {
    expect(answer(new NotFoundException('Cannot GET /x')).body).toMatchObject({ status: 404, code: 'NOT_FOUND' });
    expect(answer(new BadRequestException('Validation failed (uuid is expected)')).body).toMatchObject({ status: 400, code: 'VALIDATION_FAILED', detail: 'Validation failed (uuid is expected)' });
  });

  it('maps what Fastify refuses before routing', () => {
    const tooLarge = Object.assign(new Error('Request body is too large'), { statusCode: 413, code: 'FST_ERR_CTP_BODY_TOO_LARGE' });
    expect(answer(tooLarge).body).toMatchObject({ status: 413, code: 'PAYLOAD_TOO_LARGE' });
    const media = Object.assign(new Error('Unsupported Media Type'), { statusCode: 415, code: 'FST_ERR_CTP_INVALID_MEDIA_TYPE' });
    expect(answer(media).body).toMatchObject({ status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' });
  });

  it('hides everything about an unexpected error and logs it', () => {
    const bug = new Error('relation "tasks" does not exist at SELECT * FROM tasks');
    const res = answer(bug);
    expect(res.status).toBe(500);
    expect(res.body).toMatchObject({ code: 'INTERNAL', status: 500 });
    expect(JSON.stringify(res.body)).not.toMatch(/relation|SELECT|stack/);
    expect(res.logged).toHaveBeenCalledWith(bug);
  });

  it('writes nothing when the client is gone', () => {
    const { reply, sent } = fakeReply();
    (reply.raw as { destroyed: boolean }).destroyed = true;
    sendProblem(new EmailTakenError(), request, reply, () => undefined);
    expect(sent.status).toBeUndefined();
  });
});
