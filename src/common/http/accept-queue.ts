/**
 * How many connections wait in a listener's accept queue: completed by the kernel, not yet
 * accepted by the process. Closing a listener resets (RST) each of them, so the server closes
 * its listener only when none waits (ConnectionDrain). Linux only: the `rx_queue` of a
 * listening socket in /proc/net/tcp is its accept queue; elsewhere the count is unknown.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import type { Server } from 'node:net';

const LISTEN_STATE = '0A';
/** One page: the kernel fills that much per read, listening sockets first. */
const READ_BYTES = 4096;

/** The number of connections waiting to be accepted by `server`, or undefined if unknown. */
export function waitingToBeAccepted(server: Server): number | undefined {
  const address = server.address();
  if (address === null || typeof address === 'string') return undefined;
  // Only the table of the listener's family: reading a table without sockets makes the kernel
  // walk its whole connection hash table, which takes milliseconds.
  const table = address.family === 'IPv6' ? '/proc/net/tcp6' : '/proc/net/tcp';
  const port = `:${address.port.toString(16).toUpperCase().padStart(4, '0')}`;
  const listener = listeningSockets(table).find(({ local }) => local.endsWith(port));
  return listener?.acceptQueue;
}

interface ListeningSocket {
  /** `address:port`, both in hex. */
  local: string;
  acceptQueue: number;
}

/** The listening sockets of a /proc/net/tcp table, which lists them before any other. */
function listeningSockets(table: string): ListeningSocket[] {
  const sockets: ListeningSocket[] = [];
  let fd: number | undefined;
  try {
    fd = openSync(table, 'r');
    const buffer = Buffer.alloc(READ_BYTES);
    let partial = '';
    for (let read = readSync(fd, buffer); read > 0; read = readSync(fd, buffer)) {
      const lines = (partial + buffer.toString('latin1', 0, read)).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        // sl, local_address, rem_address, st, tx_queue:rx_queue, …; the first line is a header.
        const [slot, local, , state, queues] = line.trim().split(/\s+/);
        if (slot === 'sl') continue;
        if (state !== LISTEN_STATE || !local || !queues) return sockets;
        sockets.push({ local, acceptQueue: Number.parseInt(queues.slice(queues.indexOf(':') + 1), 16) });
      }
    }
    return sockets;
  } catch {
    return sockets;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
