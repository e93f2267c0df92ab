import 'reflect-metadata';

// Tests never read the developer's environment for these; each suite sets what it needs.
process.env.NODE_ENV = 'test';
process.env.LOG_LEVEL ??= 'silent';
