/**
 * The task DTOs through the application's own validation pipe (whitelist, forbid unknown
 * fields, transform), as a request body or query would meet them. No I/O.
 */
import { describe, expect, it } from '@jest/globals';
import type { ArgumentMetadata } from '@nestjs/common';
import { ValidationFailedError } from '../../../common/errors/domain-errors.js';
import { createValidationPipe } from '../../../common/http/validation.js';
import { CreateTaskDto } from './create-task.dto.js';
import { ListTasksQueryDto } from './list-tasks.query.js';
import { TaskIdParams } from './task-id.params.js';
import { UpdateTaskDto } from './update-task.dto.js';

const pipe = createValidationPipe();

function run(
  metatype: ArgumentMetadata['metatype'],
  value: unknown,
  type: ArgumentMetadata['type'] = 'body',
) {
  return pipe.transform(value, { type, metatype });
}

async function failure(
  metatype: ArgumentMetadata['metatype'],
  value: unknown,
  type: ArgumentMetadata['type'] = 'body',
) {
  const error = await run(metatype, value, type).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(ValidationFailedError);
  return error as ValidationFailedError;
}

describe('task DTOs', () => {
  describe('CreateTaskDto', () => {
    it('accepts a full task and trims the title', async () => {
      const dto = await run(CreateTaskDto, {
        title: '  Write it  ',
        description: '  kept as sent ',
        status: 'done',
        priority: 'low',
        dueAt: '2026-03-01T17:00:00Z',
      });
      expect(dto).toBeInstanceOf(CreateTaskDto);
      expect(dto).toMatchObject({ title: 'Write it', description: '  kept as sent ' });
    });

    it('accepts null description and dueAt', async () => {
      await expect(
        run(CreateTaskDto, { title: 'x', description: null, dueAt: null }),
      ).resolves.toMatchObject({
        description: null,
        dueAt: null,
      });
    });

    it('counts characters as code points: 200 emoji are a valid title, 201 are not', async () => {
      await expect(run(CreateTaskDto, { title: '\u{1F600}'.repeat(200) })).resolves.toBeDefined();
      const error = await failure(CreateTaskDto, { title: '\u{1F600}'.repeat(201) });
      expect(error.errors).toEqual([
        { field: 'title', message: 'must be shorter than or equal to 200 characters' },
      ]);
    });

    it.each([
      [{}, 'title', 'is required'],
      [{ title: ' '.repeat(3) + 'x'.repeat(198) }, 'title', 'must be shorter than or equal to 200 characters'],
      [{ title: 'x', dueAt: '2026-03-01T17:00Z' }, 'dueAt', expect.stringContaining('with seconds')],
      [{ title: '' }, 'title', 'must not be empty'],
      [{ title: '   ' }, 'title', 'must not be empty'],
      [{ title: 'x'.repeat(201) }, 'title', 'must be shorter than or equal to 200 characters'],
      [{ title: 42 }, 'title', 'must be a string'],
      [{ title: 'a\u0000b' }, 'title', 'must not contain NUL characters'],
      [
        { title: 'x', description: 'd'.repeat(10_001) },
        'description',
        'must be shorter than or equal to 10000 characters',
      ],
      [
        { title: 'x', status: 'archived' },
        'status',
        expect.stringContaining('todo, in_progress, done'),
      ],
      [{ title: 'x', status: null }, 'status', expect.stringContaining('one of')],
      [
        { title: 'x', priority: 'urgent' },
        'priority',
        expect.stringContaining('low, medium, high'),
      ],
      [{ title: 'x', dueAt: 'tomorrow' }, 'dueAt', expect.stringContaining('ISO 8601')],
      [{ title: 'x', dueAt: '2026-02-30T00:00:00Z' }, 'dueAt', expect.stringContaining('ISO 8601')],
      [{ title: 'x', dueAt: 1767225600000 }, 'dueAt', expect.stringContaining('ISO 8601')],
      [{ title: 'x', id: '0193a000-0000-7000-8000-0000000000aa' }, 'id', 'is not an allowed field'],
      [
        { title: 'x', userId: '0193a000-0000-7000-8000-000000000001' },
        'userId',
        'is not an allowed field',
      ],
      [{ title: 'x', version: 9 }, 'version', 'is not an allowed field'],
      [{ title: 'x', createdAt: '2026-01-01T00:00:00Z' }, 'createdAt', 'is not an allowed field'],
    ])('refuses %j: %s %s', async (body, field, message) => {
      const error = await failure(CreateTaskDto, body);
      expect(error.errors).toContainEqual({ field, message });
    });
  });

  describe('UpdateTaskDto', () => {
    it('validates a title as sent and trims it afterwards', async () => {
      await expect(run(UpdateTaskDto, { title: `${'x'.repeat(199)} ` })).resolves.toMatchObject({ title: 'x'.repeat(199) });
      const error = await failure(UpdateTaskDto, { title: ` ${'x'.repeat(200)}` });
      expect(error.errors).toEqual([{ field: 'title', message: 'must be shorter than or equal to 200 characters' }]);
    });

    it('accepts a date alone as dueAt', async () => {
      await expect(run(UpdateTaskDto, { dueAt: '2026-04-01' })).resolves.toMatchObject({ dueAt: '2026-04-01' });
    });

    it('accepts any subset of fields, null clearing description and dueAt', async () => {
      await expect(run(UpdateTaskDto, { description: null, dueAt: null })).resolves.toMatchObject({
        description: null,
        dueAt: null,
      });
      await expect(run(UpdateTaskDto, { title: ' New ' })).resolves.toMatchObject({ title: 'New' });
    });

    it.each([
      [{ title: null }, 'title'],
      [{ title: '' }, 'title'],
      [{ status: null }, 'status'],
      [{ priority: null }, 'priority'],
      [{ version: 2 }, 'version'],
      [{ updatedAt: '2026-01-01T00:00:00Z' }, 'updatedAt'],
    ])('refuses %j', async (body, field) => {
      const error = await failure(UpdateTaskDto, body);
      expect(error.errors.map((e) => e.field)).toContain(field);
    });
  });

  describe('ListTasksQueryDto', () => {
    it('reads the limit as an integer and keeps the rest', async () => {
      await expect(
        run(ListTasksQueryDto, { limit: '100', sort: 'dueAt', q: '50%_' }, 'query'),
      ).resolves.toMatchObject({
        limit: 100,
        sort: 'dueAt',
        q: '50%_',
      });
    });

    it('names the rule that failed: an integer first, then its bounds', async () => {
      for (const [limit, message] of [
        ['abc', 'must be an integer'],
        ['2.5', 'must be an integer'],
        ['0', 'must not be less than 1'],
        ['101', 'must not be greater than 100'],
      ]) {
        const error = await failure(ListTasksQueryDto, { limit }, 'query');
        expect({ limit, errors: error.errors }).toEqual({ limit, errors: [{ field: 'limit', message }] });
      }
    });

    it('treats an empty search as none', async () => {
      const dto = (await run(ListTasksQueryDto, { q: '' }, 'query')) as ListTasksQueryDto;
      expect(dto.q).toBeUndefined();
    });

    it.each([
      [{ limit: '0' }, 'limit'],
      [{ limit: '101' }, 'limit'],
      [{ limit: '1000' }, 'limit'],
      [{ limit: '1.5' }, 'limit'],
      [{ limit: '1e1' }, 'limit'],
      [{ limit: 'ten' }, 'limit'],
      [{ cursor: 7 }, 'cursor'],
      [{ sort: 'title' }, 'sort'],
      [{ sort: ['dueAt', 'priority'] }, 'sort'],
      [{ status: 'archived' }, 'status'],
      [{ priority: 'urgent' }, 'priority'],
      [{ q: 'x'.repeat(201) }, 'q'],
      [{ cursor: 'c'.repeat(513) }, 'cursor'],
      [{ page: '2' }, 'page'],
    ])('refuses %j', async (query, field) => {
      const error = await failure(ListTasksQueryDto, query, 'query');
      expect(error.errors.map((e) => e.field)).toContain(field);
    });
  });

  describe('TaskIdParams', () => {
    it('accepts a UUID of any version and refuses anything else', async () => {
      await expect(
        run(TaskIdParams, { id: '0193a000-0000-7000-8000-0000000000aa' }, 'param'),
      ).resolves.toBeDefined();
      await expect(
        run(TaskIdParams, { id: '6f1c2a9e-3b7d-4c1e-9a2f-5d8e7b6a4c3f' }, 'param'),
      ).resolves.toBeDefined();
      for (const id of [
        'not-a-uuid',
        '123',
        '0193a000-0000-7000-8000-0000000000a',
        "1' OR '1'='1",
      ]) {
        const error = await failure(TaskIdParams, { id }, 'param');
        expect(error.errors).toEqual([{ field: 'id', message: 'must be a UUID' }]);
      }
    });
  });
});
