/**
 * The built operator command (`dist/src/cli.js`, built by `npm run test:e2e`), run as an
 * operator runs it: a child process with the server's environment. Stdout carries one JSON
 * object per line; anything else there is a defect of the command.
 */
import { spawn } from 'node:child_process';
import { SERVER_ENTRY } from './server-process.js';

export const OPERATOR_COMMAND = SERVER_ENTRY.replace(/main\.js$/, 'cli.js');

export interface CommandRun {
  code: number | null;
  lines: Array<Record<string, unknown>>;
}

/** Runs `node dist/src/cli.js buffer …args` with `env` (and PATH); resolves with its exit code and JSON lines. */
export function runOperatorCommand(args: string[], env: Record<string, string>): Promise<CommandRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [OPERATOR_COMMAND, ...args], {
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.once('error', reject);
    child.once('exit', (code) => {
      try {
        resolve({ code, lines: out.split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>) });
      } catch {
        reject(new Error(`unexpected output: ${out} ${err}`));
      }
    });
  });
}
