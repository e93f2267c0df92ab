import { Injectable } from '@nestjs/common';

/** The current time, injected so that use-case tests can fix it. */
@Injectable()
export class Clock {
  now(): Date {
    return new Date();
  }
}
