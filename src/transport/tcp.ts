// TCP transports: TLS with mutual certificate authentication (default and required), or plain TCP
// only when both ends explicitly choose `insecure: true`.
//
// TLS: the listener sets requestCert + rejectUnauthorized, so a client without a certificate, or with
// one not signed by `ca`, fails the TLS handshake; Node never emits 'secureConnection' for it, no
// Channel is created and no application byte of it is ever decrypted or read. The client presents
// cert/key and verifies the server's certificate against `ca` (and the host name/IP, unless
// `servername` overrides it). TLS ≥ 1.2.
//
// Transport hello: right after the (TLS) connection is up, each side writes a 16-byte hello and reads
// the peer's — "xenmig-tls-1.0\r\n" inside TLS, "xenmig-tcp-1.0\r\n" in plain TCP. connectTcp()
// resolves only after the server's hello arrived, i.e. after the server accepted our certificate
// (with TLS 1.3 the client otherwise learns of a rejection only on its next read). The hello also
// enforces "insecure only when both sides choose it": a plain client's hello is not a TLS record
// (the TLS server aborts), and a TLS ClientHello is not the plain hello (the plain server drops it);
// in both cases the client's connect fails.
//
// Keepalive: SO_KEEPALIVE with `keepAliveMs` initial delay (default 15 s; Linux then probes every
// 75 s, 9 times) so a vanished host eventually errors; set `idleTimeoutMs` (and heartbeats) for a
// bounded detection time. `fd`: plain TCP exposes the socket fd (see channel.ts about pauseReading);
// TLS never does.

import { EventEmitter } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import { Channel, type ChannelRole } from './channel.js';
import { ConnectionRefusedError, TransportConfigError, TransportTimeoutError, asError } from './errors.js';
import { readExactly, writeAll } from './io.js';

export const TLS_HELLO = Buffer.from('xenmig-tls-1.0\r\n', 'latin1');
export const PLAIN_HELLO = Buffer.from('xenmig-tcp-1.0\r\n', 'latin1');

export interface TlsMaterial {
  /** PEM certificate (chain) presented to the peer */
  cert: string | Buffer;
  /** PEM private key of cert */
  key: string | Buffer;
  /** PEM CA certificate(s) the peer's certificate must chain to */
  ca: string | Buffer | Array<string | Buffer>;
}

export interface TcpSecurityOptions {
  /** TLS with mutual authentication (required unless insecure: true) */
  tls?: TlsMaterial;
  /** plain, unauthenticated, unencrypted TCP: must be set on both ends */
  insecure?: boolean;
}

export interface TcpCommonOptions extends TcpSecurityOptions {
  /** TCP keepalive initial delay in ms (default 15000; 0 disables keepalive) */
  keepAliveMs?: number;
  /** destroy the channel when nothing is received for this long (default 0 = off) */
  idleTimeoutMs?: number;
  /** bound on TLS handshake + transport hello (default 10000 ms) */
  helloTimeoutMs?: number;
}

export interface ConnectOptions extends TcpCommonOptions {
  host: string;
  port: number;
  /** bound on the TCP connect (default 30000 ms) */
  connectTimeoutMs?: number;
  /** TLS server name to verify (default: host) */
  servername?: string;
  /** role of this end (default 'sender') */
  role?: ChannelRole;
}

export interface ListenOptions extends TcpCommonOptions {
  /** address to bind (default: all) */
  host?: string;
  /** port (default 0: an ephemeral port, see address()) */
  port?: number;
  /** role of accepted channels (default 'receiver') */
  role?: ChannelRole;
  backlog?: number;
}

function checkSecurity(o: TcpSecurityOptions): 'tls' | 'plain' {
  if (o.tls && o.insecure) throw new TransportConfigError('choose either tls or insecure: true, not both');
  if (o.tls) {
    if (!o.tls.cert || !o.tls.key || !o.tls.ca)
      throw new TransportConfigError('tls needs cert, key and ca (mutual authentication)');
    return 'tls';
  }
  if (o.insecure === true) return 'plain';
  throw new TransportConfigError(
    'TCP needs tls: {cert, key, ca} (mutual TLS), or insecure: true on both ends',
  );
}

function socketFd(s: net.Socket): number | undefined {
  const fd = (s as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

async function exchangeHello(s: net.Socket, hello: Buffer, timeoutMs: number): Promise<void> {
  const [, got] = await Promise.all([
    writeAll(s, hello, { timeoutMs, what: 'sending the transport hello' }),
    readExactly(s, hello.length, { timeoutMs, what: "the peer's transport hello" }),
  ]);
  if (!got.equals(hello))
    throw new ConnectionRefusedError(
      `peer sent an unexpected transport hello ${JSON.stringify(got.toString('latin1'))}`,
    );
}

function makeChannel(
  s: net.Socket,
  mode: 'tls' | 'plain',
  role: ChannelRole,
  o: TcpCommonOptions,
  desc: string,
): Channel {
  const keep = o.keepAliveMs ?? 15_000;
  if (keep > 0) s.setKeepAlive(true, keep);
  s.setNoDelay(true);
  const fd = mode === 'plain' ? socketFd(s) : undefined;
  return new Channel({
    kind: mode === 'tls' ? 'tls' : 'tcp',
    role,
    description: desc,
    readable: { stream: s },
    writable: { stream: s },
    readFd: fd,
    writeFd: fd,
    idleTimeoutMs: o.idleTimeoutMs,
    drainOnCloseMs: 2_000,
  });
}

/** Connect to a listener. Resolves after the TLS handshake and the transport hello (see above). */
export async function connectTcp(o: ConnectOptions): Promise<Channel> {
  const mode = checkSecurity(o);
  const helloMs = o.helloTimeoutMs ?? 10_000;
  const connectMs = o.connectTimeoutMs ?? 30_000;
  const s: net.Socket =
    mode === 'tls'
      ? tls.connect({
          host: o.host,
          port: o.port,
          cert: o.tls!.cert,
          key: o.tls!.key,
          ca: o.tls!.ca,
          servername: o.servername ?? (net.isIP(o.host) ? undefined : o.host),
          rejectUnauthorized: true,
          minVersion: 'TLSv1.2',
        })
      : net.connect({ host: o.host, port: o.port });
  try {
    await new Promise<void>((resolve, reject) => {
      const ev = mode === 'tls' ? 'secureConnect' : 'connect';
      const t = setTimeout(
        () => reject(new TransportTimeoutError(`connecting to ${o.host}:${o.port}`, connectMs)),
        connectMs,
      );
      s.once(ev, () => {
        clearTimeout(t);
        resolve();
      });
      s.once('error', (e) => {
        clearTimeout(t);
        reject(e);
      });
    });
    await exchangeHello(s, mode === 'tls' ? TLS_HELLO : PLAIN_HELLO, helloMs);
  } catch (e) {
    s.destroy();
    const err = asError(e);
    if (err instanceof TransportTimeoutError || (err as { code?: string }).code === 'ECONNREFUSED') throw err;
    throw new ConnectionRefusedError(
      `${o.host}:${o.port} refused the ${mode === 'tls' ? 'TLS' : 'plain TCP'} connection: ${err.message}`,
      { cause: err },
    );
  }
  return makeChannel(
    s,
    mode,
    o.role ?? 'sender',
    o,
    `${mode === 'tls' ? 'tls' : 'tcp'}://${o.host}:${o.port}`,
  );
}

export interface ListenerStats {
  /** connections that became channels */
  accepted: number;
  /** connections refused (TLS authentication failed, bad transport hello, timeout) */
  refused: number;
}

/**
 * A listening endpoint. accept() yields authenticated channels, one per connection, in arrival
 * order; iterate it for a server mode. Emits 'refused' (error, remoteAddress) per refused connection.
 */
export class MigrationListener extends EventEmitter {
  readonly stats: ListenerStats = { accepted: 0, refused: 0 };
  readonly mode: 'tls' | 'plain';
  #server: net.Server;
  #queue: Channel[] = [];
  #waiters: Array<{ resolve: (c: Channel) => void; reject: (e: Error) => void }> = [];
  #closed = false;

  constructor(server: net.Server, mode: 'tls' | 'plain') {
    super();
    this.#server = server;
    this.mode = mode;
  }

  address(): { host: string; port: number } {
    const a = this.#server.address();
    if (!a || typeof a === 'string') throw new Error('listener is not bound');
    return { host: a.address, port: a.port };
  }

  /** @internal */
  _deliver(c: Channel): void {
    this.stats.accepted++;
    const w = this.#waiters.shift();
    if (w) w.resolve(c);
    else if (this.#closed) c.destroy();
    else this.#queue.push(c);
  }

  /** @internal */
  _refuse(err: Error, remote: string): void {
    this.stats.refused++;
    if (this.listenerCount('refused') > 0) this.emit('refused', err, remote);
  }

  /** The next authenticated connection. */
  accept(opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<Channel> {
    const q = this.#queue.shift();
    if (q) return Promise.resolve(q);
    if (this.#closed) return Promise.reject(new ConnectionRefusedError('listener is closed'));
    return new Promise<Channel>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const w = {
        resolve: (c: Channel) => {
          cleanup();
          resolve(c);
        },
        reject: (e: Error) => {
          cleanup();
          reject(e);
        },
      };
      const onAbort = () => {
        this.#waiters = this.#waiters.filter((x) => x !== w);
        w.reject(asError(opts.signal?.reason));
      };
      const cleanup = () => {
        if (timer) clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
      };
      if (opts.timeoutMs && opts.timeoutMs > 0) {
        const ms = opts.timeoutMs;
        timer = setTimeout(() => {
          this.#waiters = this.#waiters.filter((x) => x !== w);
          w.reject(new TransportTimeoutError('an incoming connection', ms));
        }, ms);
      }
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(w);
    });
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Channel> {
    for (;;) {
      try {
        yield await this.accept();
      } catch (e) {
        if (this.#closed) return;
        throw e;
      }
    }
  }

  /** Stop listening. Pending accept() calls reject; queued, unaccepted channels are destroyed. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      for (const w of this.#waiters.splice(0)) w.reject(new ConnectionRefusedError('listener closed'));
      for (const c of this.#queue.splice(0)) c.destroy();
    }
    return new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** Listen for migration connections (receiver side by default). */
export async function listen(o: ListenOptions): Promise<MigrationListener> {
  const mode = checkSecurity(o);
  const helloMs = o.helloTimeoutMs ?? 10_000;
  const role = o.role ?? 'receiver';
  let listener!: MigrationListener;
  const onAuthenticated = (s: net.Socket) => {
    const remote = `${s.remoteAddress}:${s.remotePort}`;
    s.on('error', () => undefined); // until the channel owns it
    exchangeHello(s, mode === 'tls' ? TLS_HELLO : PLAIN_HELLO, helloMs).then(
      () => {
        s.removeAllListeners('error');
        listener._deliver(makeChannel(s, mode, role, o, `${mode === 'tls' ? 'tls' : 'tcp'} from ${remote}`));
      },
      (e: unknown) => {
        s.destroy();
        listener._refuse(asError(e), remote);
      },
    );
  };
  let server: net.Server;
  if (mode === 'tls') {
    server = tls.createServer({
      cert: o.tls!.cert,
      key: o.tls!.key,
      ca: o.tls!.ca,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
      handshakeTimeout: helloMs,
    });
    server.on('secureConnection', (s: tls.TLSSocket) => {
      // rejectUnauthorized already guarantees this; checked again so that no code path can hand out
      // an unauthenticated channel
      if (!s.authorized || !s.getPeerCertificate()?.raw) {
        s.destroy();
        listener._refuse(
          new ConnectionRefusedError(
            `client not authorized: ${String(s.authorizationError ?? 'no certificate')}`,
          ),
          `${s.remoteAddress}:${s.remotePort}`,
        );
        return;
      }
      onAuthenticated(s);
    });
    server.on('tlsClientError', (err: Error, s: tls.TLSSocket) => {
      // a failed or timed-out TLS handshake (e.g. a client that never sends a byte): close it
      s.destroy();
      listener._refuse(
        new ConnectionRefusedError(`TLS handshake failed: ${err.message}`, { cause: err }),
        `${s.remoteAddress}:${s.remotePort}`,
      );
    });
  } else {
    server = net.createServer();
    server.on('connection', onAuthenticated);
  }
  listener = new MigrationListener(server, mode);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: o.host, port: o.port ?? 0, backlog: o.backlog }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return listener;
}
