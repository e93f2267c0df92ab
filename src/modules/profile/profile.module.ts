/**
 * Profile: `ProfileController` → `ProfileService` → `UsersRepository`. Renames go through the
 * buffer's `WritePath`; `ProfileOperations` registers how the buffer applies `profile.rename`.
 */
import { Module } from '@nestjs/common';
import { Clock } from '../../common/time/clock.js';
import { AuthModule } from '../auth/auth.module.js';
import { BufferModule } from '../buffer/buffer.module.js';
import { UsersModule } from '../users/users.module.js';
import { ProfileOperations } from './profile-operations.js';
import { ProfileController } from './profile.controller.js';
import { ProfileService } from './profile.service.js';

@Module({
  imports: [UsersModule, AuthModule, BufferModule],
  controllers: [ProfileController],
  providers: [ProfileService, ProfileOperations, Clock],
})
export class ProfileModule {}
