/**
 * A reply that no command waits for. ioredis matches replies to commands by order; when a
 * connection receives one more reply than it has commands waiting (a network path that
 * duplicates bytes does it: the e2e suites' fault proxy once forwarded each command twice after a
 * repeated `pass()`), ioredis 6 reports a "command queue state error", and for a nil reply
 * (an XREADGROUP with nothing new, a GET of a missing key) throws a TypeError while building
 * that report, outside any command: an uncaught exception that ends the process. Either way the
 * replies after it may no longer belong to the commands they are given to.
 *
 * So the connection is dropped instead: ioredis reconnects, every command in flight on it fails
 * (callers answer 503 or retry as their operation allows, never with another command's reply),
 * and the event is logged. Installed once, for every ioredis connection of the process.
 */
import { createRequire } from 'node:module';
import type { Redis } from 'ioredis';

interface DataHandlerPrototype {
  shiftCommand(this: { redis: Redis & { commandQueue: { length: number } } }, reply: unknown): unknown;
}

const require = createRequire(import.meta.url);
let installed = false;

export function dropConnectionsOnUnexpectedReplies(): void {
  if (installed) return;
  installed = true;
  const { default: DataHandler } = require('ioredis/built/DataHandler.js') as {
    default: { prototype: DataHandlerPrototype };
  };
  const shiftCommand = DataHandler.prototype.shiftCommand;
  DataHandler.prototype.shiftCommand = function (reply) {
    if (this.redis.commandQueue.length > 0) return shiftCommand.call(this, reply);
    this.redis.emit('error', new UnexpectedReplyError());
    this.redis.disconnect(true);
    return null;
  };
}

export class UnexpectedReplyError extends Error {
  override readonly name = 'UnexpectedReplyError';

  constructor() {
    super('a Redis reply arrived with no command waiting for it: reconnecting');
  }
}
