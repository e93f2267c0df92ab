/**
 * Ends a request at its deadline: whatever the handler is still doing, the client gets 504
 * `TIMEOUT` once the context's signal fires, and the handler's late result is discarded.
 * The work itself stops where it honours the signal (repositories bound their queries by it).
 */
import {
  Injectable,
  type CallHandler,
  type ExecutionContext,
  type NestInterceptor,
} from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { Observable } from 'rxjs';
import { RequestTimeoutError } from '../errors/domain-errors.js';

@Injectable()
export class DeadlineInterceptor implements NestInterceptor {
  intercept(host: ExecutionContext, next: CallHandler): Observable<unknown> {
    const ctx = host.switchToHttp().getRequest<FastifyRequest>().ctx;
    if (!ctx) return next.handle();
    return new Observable((subscriber) => {
      const onAbort = () => subscriber.error(new RequestTimeoutError());
      if (ctx.aborted) {
        onAbort();
        return;
      }
      const stopListening = ctx.onAbort(onAbort);
      const inner = next.handle().subscribe(subscriber);
      return () => {
        stopListening();
        inner.unsubscribe();
      };
    });
  }
}
