import { Global, Module } from '@nestjs/common';
import { LmdbService } from './lmdb.service.js';

@Global()
@Module({ providers: [LmdbService], exports: [LmdbService] })
export class LmdbModule {}
