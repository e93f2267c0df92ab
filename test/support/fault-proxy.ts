/**
 * A TCP proxy in the test process, between the app and PostgreSQL (or Redis), that breaks the
 * connection on command, so that tests can take a dependency "down" without stopping the shared
 * server:
 *
 * - `pass()`: forward both ways (the default); connections held by `blackhole()` resume.
 * - `refuse()`: close every new connection at once (the client sees it end before any answer).
 * - `reset()`: destroy every current connection with a TCP RST (ECONNRESET on the client). A
 *   one-off action; combine with `refuse()` for "the server went away": `proxy.cut()`.
 * - `blackhole()`: accept new connections but never forward or answer; current connections
 *   stop moving bytes (paused, not dropped, so TCP delivers them once `pass()` resumes them,
 *   like a healed network partition).
 */
import net from 'node:net';

export type FaultMode = 'pass' | 'refuse' | 'blackhole';

interface Link {
  client: net.Socket;
  upstream: net.Socket | undefined;
  /** Forwarding both ways now: `pass()` leaves it alone (a second pipe would send every byte twice). */
  joined: boolean;
}

export class FaultProxy {
  private mode: FaultMode = 'pass';
  private readonly links = new Set<Link>();
  /** Connections accepted in each mode, to let a test see that the app did try. */
  readonly accepted: Record<FaultMode, number> = { pass: 0, refuse: 0, blackhole: 0 };

  private constructor(
    private readonly server: net.Server,
    private readonly target: { host: string; port: number },
  ) {}

  /** Starts a proxy on 127.0.0.1 (a free port) towards `host:port`. */
  static async start(target: { host: string; port: number }): Promise<FaultProxy> {
    const server = net.createServer({ noDelay: true });
    const proxy = new FaultProxy(server, target);
    server.on('connection', (client) => proxy.accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return proxy;
  }

  /** Starts a proxy towards the server of `url` (`postgres://…` or `redis://…`). */
  static towards(url: string): Promise<FaultProxy> {
    const target = new URL(url);
    const defaultPort = target.protocol.startsWith('redis') ? 6379 : 5432;
    return FaultProxy.start({ host: target.hostname, port: Number(target.port || defaultPort) });
  }

  /** `127.0.0.1:<port>`, for `startTestApp({ databaseHostPort })`. */
  get hostPort(): string {
    const { port } = this.server.address() as net.AddressInfo;
    return `127.0.0.1:${port}`;
  }

  get currentMode(): FaultMode {
    return this.mode;
  }

  /** Connections open through the proxy right now. */
  get openConnections(): number {
    return this.links.size;
  }

  pass(): void {
    this.mode = 'pass';
    for (const link of this.links) {
      if (link.joined) continue;
      if (link.upstream) this.join(link, link.upstream);
      else this.connectUpstream(link);
    }
  }

  refuse(): void {
    this.mode = 'refuse';
  }

  blackhole(): void {
    this.mode = 'blackhole';
    for (const link of this.links) {
      // Unpiped as well as paused: a pipe would resume its source when the other side drains.
      link.joined = false;
      link.client.unpipe();
      link.upstream?.unpipe();
      link.client.pause();
      link.upstream?.pause();
    }
  }

  reset(): void {
    for (const link of [...this.links]) this.drop(link, true);
  }

  /** PostgreSQL gone: refuse new connections and reset the current ones. */
  cut(): void {
    this.refuse();
    this.reset();
  }

  async close(): Promise<void> {
    this.reset();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    this.accepted[this.mode] += 1;
    client.on('error', () => undefined);
    if (this.mode === 'refuse') {
      client.destroy();
      return;
    }
    const link: Link = { client, upstream: undefined, joined: false };
    this.links.add(link);
    client.once('close', () => this.drop(link, false));
    if (this.mode === 'blackhole') {
      // Read nothing: whatever the client sends waits in the socket buffers, unanswered.
      client.pause();
      return;
    }
    this.connectUpstream(link);
  }

  private connectUpstream(link: Link): void {
    const upstream = net.connect({ host: this.target.host, port: this.target.port, noDelay: true });
    link.upstream = upstream;
    upstream.on('error', () => undefined);
    upstream.once('close', () => this.drop(link, false));
    this.join(link, upstream);
  }

  /** Forwards both ways (piping resumes a paused socket, delivering what waited in it). */
  private join(link: Link, upstream: net.Socket): void {
    link.joined = true;
    link.client.pipe(upstream);
    upstream.pipe(link.client);
  }

  private drop(link: Link, withReset: boolean): void {
    if (!this.links.delete(link)) return;
    if (withReset) link.client.resetAndDestroy();
    else link.client.destroy();
    link.upstream?.destroy();
  }
}
