import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { JwtModule } from '@nestjs/jwt';
import { PassportModule } from '@nestjs/passport';
import { APP_CONFIG, type AppConfig } from '../../config/app-config.js';
import { UsersModule } from '../users/users.module.js';
import { AccessTokenGuard } from './access-token.guard.js';
import { AuthController } from './auth.controller.js';
import { AuthService } from './auth.service.js';
import { JWT_ALGORITHM, JwtStrategy } from './jwt.strategy.js';
import { LoginThrottle } from './login-throttle.js';
import { PasswordHasher } from './password-hasher.js';
import { RegistrationThrottle } from './registration-throttle.js';
import { RevocationService } from './revocation.service.js';
import { SessionRepository } from './session.repository.js';
import { SessionsService } from './sessions.service.js';

@Module({
  imports: [
    UsersModule,
    PassportModule,
    JwtModule.registerAsync({
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => ({
        secret: config.auth.jwtSecret,
        signOptions: {
          algorithm: JWT_ALGORITHM,
          expiresIn: Math.floor(config.auth.accessTtlMs / 1000),
          issuer: config.auth.issuer,
          audience: config.auth.audience,
        },
        verifyOptions: { algorithms: [JWT_ALGORITHM], issuer: config.auth.issuer, audience: config.auth.audience },
      }),
    }),
  ],
  controllers: [AuthController],
  providers: [
    AuthService,
    SessionsService,
    SessionRepository,
    RevocationService,
    PasswordHasher,
    LoginThrottle,
    RegistrationThrottle,
    JwtStrategy,
    { provide: APP_GUARD, useClass: AccessTokenGuard },
  ],
  exports: [SessionsService, PasswordHasher, LoginThrottle, RevocationService],
})
export class AuthModule {}
