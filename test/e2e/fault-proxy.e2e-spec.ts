/**
 * The fault proxy the other suites take dependencies down with: however often `pass()` is called
 * (a test that restores in a callback and again after), every byte is forwarded once. A second
 * pipe on a connection already forwarding sent each byte twice: PostgreSQL read the copies as
 * garbage ("invalid frontend message type 0", a FATAL no one listened for), Redis answered each
 * command twice.
 *
 * CI budget: 5 s
 */
import net from 'node:net';
import { FaultProxy } from '../support/fault-proxy.js';
import { waitUntil } from '../support/wait.js';

describe('the fault proxy (e2e)', () => {
  let echo: net.Server;
  let proxy: FaultProxy;

  beforeAll(async () => {
    echo = net.createServer((socket) => socket.pipe(socket));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    proxy = await FaultProxy.start({ host: '127.0.0.1', port: (echo.address() as net.AddressInfo).port });
  });

  afterAll(async () => {
    await proxy.close();
    await new Promise<void>((resolve) => echo.close(() => resolve()));
  });

  it('forwards each byte once after repeated pass(), and after a blackhole healed by pass()', async () => {
    const [host, port] = proxy.hostPort.split(':') as [string, string];
    const client = net.connect(Number(port), host);
    let received = '';
    client.setEncoding('utf8').on('data', (chunk: string) => (received += chunk));
    await new Promise<void>((resolve) => client.once('connect', resolve));
    try {
      await waitUntil('the proxy holds the connection', () => proxy.openConnections === 1);
      proxy.pass();
      proxy.pass();
      client.write('one;');
      await waitUntil('the echo of one', () => received.length >= 4);

      proxy.blackhole();
      client.write('two;');
      proxy.pass();
      proxy.pass();
      await waitUntil('the echo of two', () => received.length >= 8);
      // Any copy would have arrived with the rest.
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(received).toBe('one;two;');
    } finally {
      client.destroy();
    }
  });
});
