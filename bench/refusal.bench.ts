/**
 * What refusing a body of unknown keys costs: 10,000 of them (about 97 KB, under the body
 * limit) sent to `POST /api/v1/auth/register`.
 *   1. the validation pipe alone, given the parsed body: the service's pipe (keys checked against
 *      the DTO before anything else) beside a plain Nest ValidationPipe with the same options
 *      (class-validator's whitelist, one error object per unknown key), and JSON.parse of the
 *      body for scale;
 *   2. the whole request through the real app (`app.inject`: JSON parsing, hooks, the pipe, the
 *      problem-details answer), CPU time per request and the size of the answer; the same keys
 *      nested under a known field as well (refused by the bound on values in all). Needs
 *      PostgreSQL and Redis, as the e2e suites do (the request never reaches them).
 *
 *   node_modules/.bin/node --import ./bench/support/register-ts.mjs bench/refusal.bench.ts
 */
import 'reflect-metadata';
import { ValidationPipe, type ArgumentMetadata } from '@nestjs/common';
import { createValidationPipe } from '../src/common/http/validation.js';
import { RegisterDto } from '../src/modules/auth/dto/auth.dto.js';
import { startTestApp } from '../test/support/test-app.js';

const UNKNOWN_KEYS = 10_000;
const metadata: ArgumentMetadata = { type: 'body', metatype: RegisterDto };

function floodBody(): string {
  const body: Record<string, unknown> = { email: 'flood@example.com', password: 'password-1', name: 'Flood' };
  for (let i = 0; i < UNKNOWN_KEYS; i += 1) body[`k${i}`] = 1;
  return JSON.stringify(body);
}

interface Timing {
  medianMs: number;
  p99Ms: number;
  cpuMsPerCall: number;
}

/** Runs `call` `times` times after a warm-up; wall time per call, and CPU time per call. */
async function time(times: number, call: () => Promise<unknown>): Promise<Timing> {
  for (let i = 0; i < Math.min(10, times); i += 1) await call();
  const durations: number[] = [];
  const cpuBefore = process.cpuUsage();
  for (let i = 0; i < times; i += 1) {
    const started = performance.now();
    await call();
    durations.push(performance.now() - started);
  }
  const cpu = process.cpuUsage(cpuBefore);
  durations.sort((a, b) => a - b);
  return {
    medianMs: durations[Math.floor(times / 2)]!,
    p99Ms: durations[Math.min(times - 1, Math.floor(times * 0.99))]!,
    cpuMsPerCall: (cpu.user + cpu.system) / 1000 / times,
  };
}

const refused = (promise: Promise<unknown>) =>
  promise.then(
    () => {
      throw new Error('the flood was accepted');
    },
    () => undefined,
  );

function print(label: string, timing: Timing, extra = ''): void {
  const ms = (value: number) => value.toFixed(3).padStart(9);
  console.log(`${label.padEnd(46)} median ${ms(timing.medianMs)} ms  p99 ${ms(timing.p99Ms)} ms  CPU ${ms(timing.cpuMsPerCall)} ms/call${extra}`);
}

const json = floodBody();
console.log(`body: ${UNKNOWN_KEYS} unknown keys, ${json.length} bytes`);

const parsed: unknown = JSON.parse(json);
print('JSON.parse of the body (for scale)', await time(500, async () => JSON.parse(json)));
const screening = createValidationPipe();
print('pipe: keys checked first (the service)', await time(500, () => refused(screening.transform(parsed, metadata))));
const whitelistOnly = new ValidationPipe({
  whitelist: true,
  forbidNonWhitelisted: true,
  forbidUnknownValues: true,
  transform: true,
  stopAtFirstError: true,
  validationError: { target: false, value: false },
});
print('pipe: class-validator whitelist alone', await time(20, () => refused(whitelistOnly.transform(parsed, metadata))));

const t = await startTestApp();
try {
  let answerBytes = 0;
  const inject = async (payload: string) => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/v1/auth/register',
      headers: { 'content-type': 'application/json' },
      payload,
    });
    if (res.statusCode !== 400) throw new Error(`expected 400, got ${res.statusCode}`);
    answerBytes = res.body.length;
  };
  print('request: POST /auth/register through the app', await time(300, () => inject(json)), `  answer ${answerBytes} bytes`);
  const nested = JSON.stringify({ email: JSON.parse(json) as unknown, password: 'password-1', name: 'Nested' });
  print('request: the same keys nested under `email`', await time(300, () => inject(nested)), `  answer ${answerBytes} bytes`);
} finally {
  await t.close();
}
