/**
 * `/api/v1/tasks`: parses the request (DTOs, headers), calls one use case, shapes the answer
 * (status, `Location`, `ETag`, body). Business rules live in `TasksService`.
 */
import {
  Body,
  Controller,
  Delete,
  Get,
  Headers,
  HttpCode,
  Param,
  Patch,
  Post,
  Query,
  Res,
} from '@nestjs/common';
import {
  ApiAcceptedResponse,
  ApiBearerAuth,
  ApiBody,
  ApiCreatedResponse,
  ApiHeader,
  ApiNoContentResponse,
  ApiNotModifiedResponse,
  ApiOkResponse,
  ApiOperation,
  ApiTags,
} from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { Ctx } from '../../common/context/ctx.decorator.js';
import type { RequestContext } from '../../common/context/request-context.js';
import { ApiProblems } from '../../common/http/problem-responses.js';
import {
  BUFFERED_DESCRIPTION,
  markBuffered,
  WRITE_STATUS_HEADER_DOC,
} from '../../common/http/write-status.js';
import { BEARER } from '../../swagger.js';
import { BufferedTaskChangeDto, toBufferedTaskChangeDto } from './dto/buffered-task-change.dto.js';
import { CreateTaskDto } from './dto/create-task.dto.js';
import { ListTasksQueryDto } from './dto/list-tasks.query.js';
import { TaskIdParams } from './dto/task-id.params.js';
import { TaskDto, TaskPageDto, toTaskDto } from './dto/task.dto.js';
import { UpdateTaskDto } from './dto/update-task.dto.js';
import {
  etagOf,
  IDEMPOTENCY_KEY_HEADER,
  IDEMPOTENT_REPLAYED_HEADER,
  ifNoneMatchHits,
  parseIdempotencyKey,
  HEADER_PATTERNS,
  parseIfMatch,
} from './task-headers.js';
import { TasksService } from './tasks.service.js';

export const TASKS_PATH = '/api/v1/tasks';

const ETAG_HEADER = {
  ETag: {
    description: 'The task\'s version, quoted: `"3"`',
    schema: { type: 'string', example: '"1"' },
  },
};
const IF_MATCH = {
  name: 'If-Match',
  required: false,
  description:
    'Apply only if the task still has one of these versions (its ETag, e.g. `"3"`; a list `"3", "4"`; weak tags never match), or `*` for any version; otherwise 412 PRECONDITION_FAILED. Needs PostgreSQL: while it is unavailable, 503 with `Retry-After` (never buffered). A malformed value is 400.',
  schema: { type: 'string', pattern: HEADER_PATTERNS.ifMatch, example: '"3"' },
};
const LOCATION_HEADER = {
  Location: {
    description: "The new task's URL",
    schema: { type: 'string', example: `${TASKS_PATH}/01936f3e-8b1c-7def-8a12-3456789abcde` },
  },
};
const IDEMPOTENT_REPLAYED_HEADER_DOC = {
  'Idempotent-Replayed': {
    description: '`true` when this answer replays an earlier request with the same Idempotency-Key',
    schema: { type: 'string', enum: ['true'] },
  },
};

@ApiTags('tasks')
@ApiBearerAuth(BEARER)
@Controller(TASKS_PATH)
export class TasksController {
  constructor(private readonly tasks: TasksService) {}

  @Post()
  @HttpCode(201)
  @ApiOperation({
    operationId: 'createTask',
    summary: 'Create a task',
    description:
      'Only `title` is required; `status` defaults to `todo`, `priority` to `medium`, `description` and `dueAt` to null.\n\nWith an `Idempotency-Key`, the first request with that key creates the task; any later request of the same user with the same key, concurrent or not and whatever its body, creates nothing and answers with that same task as it is now, plus `Idempotent-Replayed: true`: 201 once it is stored, 202 while it waits in a write buffer. Keys are per user. A key is free again once its task is deleted.\n\nWhile PostgreSQL is unavailable the task is accepted into the write buffer: 202 with `X-Write-Status: buffered`, `Location`, and the task as it will be stored (its id final, `version` 1). The 202 is a promise: the task is on disk before the answer and is stored exactly once, in the order accepted, when PostgreSQL returns. During an outage the key is reserved in Redis, so a retry with the same key through another replica answers the same task while the reservation lives: ten minutes for a direct create, the retention period of the replicas for a buffered one. Tell a 202 from a 201 by the status (or `X-Write-Status`): the bodies have the same shape.',
  })
  @ApiHeader({
    name: 'Idempotency-Key',
    required: false,
    description:
      '1–128 printable ASCII characters chosen by the client (a UUID, say), one per intended task; no leading or trailing space. Malformed: 400.',
    schema: {
      type: 'string',
      minLength: 1,
      maxLength: 128,
      pattern: HEADER_PATTERNS.idempotencyKey,
      example: 'c1f9a3c2-5d1e-4a3b-9a6f-0e2d4b7c8a91',
    },
  })
  @ApiBody({ type: CreateTaskDto })
  @ApiCreatedResponse({
    type: TaskDto,
    description: 'Created, or the task an earlier request with the same Idempotency-Key created',
    headers: { ...LOCATION_HEADER, ...ETAG_HEADER, ...IDEMPOTENT_REPLAYED_HEADER_DOC },
  })
  @ApiAcceptedResponse({
    type: TaskDto,
    description: `The task as it will be stored. ${BUFFERED_DESCRIPTION} No ETag: the task has no stored version yet.`,
    headers: { ...LOCATION_HEADER, ...WRITE_STATUS_HEADER_DOC, ...IDEMPOTENT_REPLAYED_HEADER_DOC },
  })
  @ApiProblems(400, 401, 413, 415, 429, 503)
  async create(
    @Ctx() ctx: RequestContext,
    @Body() body: CreateTaskDto,
    @Headers(IDEMPOTENCY_KEY_HEADER) idempotencyKey: string | undefined,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<TaskDto> {
    const { task, replayed, buffered } = await this.tasks.create(
      ctx,
      body,
      parseIdempotencyKey(idempotencyKey),
    );
    void reply.header('location', `${TASKS_PATH}/${task.id}`);
    if (buffered) markBuffered(reply);
    else void reply.header('etag', etagOf(task.version));
    if (replayed) void reply.header(IDEMPOTENT_REPLAYED_HEADER, 'true');
    return toTaskDto(task);
  }

  @Get()
  @ApiOperation({
    operationId: 'listTasks',
    summary: 'List your tasks, a page at a time',
    description:
      'Keyset pagination: follow `nextCursor` (same filters and sort) until it is null. Every task is visited exactly once, in order, however many share a sort key.',
  })
  @ApiOkResponse({ type: TaskPageDto, description: 'One page of your tasks' })
  @ApiProblems(400, 401, 503)
  async list(@Ctx() ctx: RequestContext, @Query() query: ListTasksQueryDto): Promise<TaskPageDto> {
    const page = await this.tasks.list(ctx, query);
    return { items: page.items.map(toTaskDto), nextCursor: page.nextCursor };
  }

  @Get(':id')
  @ApiOperation({
    operationId: 'getTask',
    summary: 'One of your tasks',
    description:
      'Answers 304 Not Modified, with no body, when `If-None-Match` names the version the task has now (send the `ETag` of your copy to revalidate it); otherwise 200 with the task and its `ETag`.',
  })
  @ApiHeader({
    name: 'If-None-Match',
    required: false,
    description:
      'ETags from earlier answers (or `*`): 304 with no body, and the ETag, while the task still has one of those versions (weak comparison: `W/"3"` matches version 3). A malformed value is ignored: the task is answered in full.',
    schema: { type: 'string', example: '"3"' },
  })
  @ApiOkResponse({ type: TaskDto, headers: ETAG_HEADER, description: 'The task' })
  @ApiNotModifiedResponse({
    description: 'The task still has the version named in If-None-Match',
    headers: ETAG_HEADER,
  })
  @ApiProblems(400, 401, 404, 503)
  async get(
    @Ctx() ctx: RequestContext,
    @Param() params: TaskIdParams,
    @Headers('if-none-match') ifNoneMatch: string | undefined,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<TaskDto | undefined> {
    const task = await this.tasks.get(ctx, params.id);
    void reply.header('etag', etagOf(task.version));
    if (ifNoneMatchHits(ifNoneMatch, task.version)) {
      void reply.status(304);
      return undefined;
    }
    return toTaskDto(task);
  }

  @Patch(':id')
  @ApiOperation({
    operationId: 'updateTask',
    summary: 'Change some fields of one of your tasks',
    description:
      'Send only the fields to change, at least one. The version grows by one when a value actually changes; setting fields to the values they have changes nothing.\n\nWhile PostgreSQL is unavailable an update without `If-Match` is accepted into the write buffer: 202 with `X-Write-Status: buffered` and the id, the fields it will set and the time of the change as `updatedAt` (applied, the stored `updatedAt` becomes the later of this time and the one it had). Applied later, it sets the given fields and grows the version by one, unless the task changed at a later time meanwhile. With `If-Match` it needs the stored version, so it answers 503 with `Retry-After` instead.',
  })
  @ApiHeader(IF_MATCH)
  @ApiBody({ type: UpdateTaskDto })
  @ApiOkResponse({ type: TaskDto, headers: ETAG_HEADER, description: 'The task as it is now' })
  @ApiAcceptedResponse({
    type: BufferedTaskChangeDto,
    headers: WRITE_STATUS_HEADER_DOC,
    description: `The id, the fields the update will set and the time of the change (updatedAt). ${BUFFERED_DESCRIPTION}`,
  })
  @ApiProblems(400, 401, 404, 412, 413, 415, 429, 503)
  async update(
    @Ctx() ctx: RequestContext,
    @Param() params: TaskIdParams,
    @Body() body: UpdateTaskDto,
    @Headers('if-match') ifMatch: string | undefined,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<TaskDto | BufferedTaskChangeDto> {
    const outcome = await this.tasks.update(ctx, params.id, body, parseIfMatch(ifMatch));
    if (outcome.buffered) {
      markBuffered(reply);
      return toBufferedTaskChangeDto(outcome.change);
    }
    void reply.header('etag', etagOf(outcome.task.version));
    return toTaskDto(outcome.task);
  }

  @Delete(':id')
  @HttpCode(204)
  @ApiOperation({
    operationId: 'deleteTask',
    summary: 'Delete one of your tasks',
    description:
      'While PostgreSQL is unavailable a delete without `If-Match` is accepted into the write buffer: 202 with `X-Write-Status: buffered` and no body; deleting a task that is gone by then is no error. With `If-Match` it answers 503 with `Retry-After` instead.',
  })
  @ApiHeader(IF_MATCH)
  @ApiNoContentResponse({ description: 'Deleted' })
  @ApiAcceptedResponse({ headers: WRITE_STATUS_HEADER_DOC, description: BUFFERED_DESCRIPTION })
  @ApiProblems(400, 401, 404, 412, 429, 503)
  async delete(
    @Ctx() ctx: RequestContext,
    @Param() params: TaskIdParams,
    @Headers('if-match') ifMatch: string | undefined,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<void> {
    const { buffered } = await this.tasks.delete(ctx, params.id, parseIfMatch(ifMatch));
    if (buffered) markBuffered(reply);
  }
}
