/**
 * Entry point. Turns on Node's on-disk compile cache before anything else is loaded (most of
 * start-up is spent compiling the framework's modules; a restarted process reuses the cache),
 * then starts the server. The cache lives in NODE_COMPILE_CACHE, or the OS temp directory.
 */
import { enableCompileCache } from 'node:module';

enableCompileCache(process.env.NODE_COMPILE_CACHE);
await import('./server.js');
