// The migration channel: one connection between a sender and a receiver.
//
//   forward  (sender → receiver): the migration stream, plus the few control messages that must
//                                 follow it (xenmig DONE / CLEARED_TO_UNPAUSE, xl's "cleared to unpause").
//   reverse  (receiver → sender): handshake messages, Remus acknowledgements, COLO back-channel records.
//
// Each side holds a Channel with one Readable (bytes from the peer) and one Writable (bytes to the
// peer). On the sender, `writable` is the forward direction and `readable` the reverse; on the
// receiver, `readable` is the forward direction and `writable` the reverse.
//
// Raw file descriptors (`readFd` / `writeFd`; the forward direction is writeFd on the sender, readFd on the receiver):
//   - available for kinds 'file', 'fd', 'stdio', 'ssh' (the pipes to the ssh child) and plain 'tcp';
//     NEVER for 'tls' (bytes are encrypted in user space) — there `readFd`/`writeFd` are undefined and
//     the engine must use the Node streams.
//   - The Node stream over an fd is created lazily, on first access of `readable` / `writable`. Until
//     then nothing reads from or writes to the fd, so native code may readv/writev it freely.
//   - Once the Node stream exists, it owns the fd: it may read ahead (up to its highWaterMark) and, for
//     pipes and sockets, libuv has switched the fd to O_NONBLOCK. Native code that wants the fd after
//     that must first call `pauseReading()` (which stops Node from reading and returns the bytes already
//     read ahead, which precede anything still in the fd) and must cope with EAGAIN (poll for
//     readiness). Do not interleave raw writes with writes still queued in the Writable: wait for its
//     write callbacks first (see io.writeAll).
//   - For plain TCP the socket is created by Node before any byte of the migration stream can arrive
//     (the transport hello exchange, see tcp.ts), so `pauseReading()` is needed there too.
//
// Lifetime: `close()` finishes the writable (flushing queued bytes), drains the peer's side briefly so
// that no unread data turns into a TCP RST, and releases everything (for ssh: waits for the child).
// `destroy(err)` aborts at once. An error on either stream destroys the whole channel with that error,
// so a pending read or write on the other direction fails too; a peer that vanishes therefore always
// surfaces as an error (EOF → PeerClosedError in io.readExactly, EPIPE/ECONNRESET on writes), never a
// hang. Silent peers (host gone, no FIN) are caught by TCP keepalive (tcp.ts) and by the optional idle
// timeout (`idleTimeoutMs`, for socket/pipe-backed channels), and by the per-step timeouts of the
// handshakes.

import { EventEmitter } from 'node:events';
import { Readable, Writable } from 'node:stream';
import { TransportTimeoutError } from './errors.js';
import { endWritable } from './io.js';

export type ChannelKind = 'file' | 'fd' | 'stdio' | 'ssh' | 'tcp' | 'tls';
export type ChannelRole = 'sender' | 'receiver';

export interface StreamSource<T> {
  /** an existing stream, or a factory called on first access (lazy: see the fd notes above) */
  stream: T | (() => T);
  /** called at close/destroy when the lazy stream was never created (e.g. to close the fd) */
  disposeUnused?: () => void;
}

export interface ChannelInit {
  kind: ChannelKind;
  role: ChannelRole;
  description: string;
  readable: StreamSource<Readable>;
  writable: StreamSource<Writable>;
  readFd?: number;
  writeFd?: number;
  /** destroy the channel with TransportTimeoutError when no byte is received for this long (0 = off) */
  idleTimeoutMs?: number;
  /** on close(): after finishing the writable, wait this long for the peer's EOF before destroying */
  drainOnCloseMs?: number;
  /** extra release work, once, after the streams are closed (e.g. wait for / kill a child) */
  onClose?: (err: Error | undefined) => Promise<void> | void;
}

export interface CloseOptions {
  /** bound on the whole graceful close (default 10 s); then the channel is destroyed */
  timeoutMs?: number;
}

type Lazy<T> = { value?: T; src: StreamSource<T> };

export class Channel extends EventEmitter {
  readonly kind: ChannelKind;
  readonly role: ChannelRole;
  readonly description: string;
  readonly readFd: number | undefined;
  readonly writeFd: number | undefined;
  /** first error that hit the channel (undefined while healthy or after a clean close) */
  error: Error | undefined;
  /** resolves when the channel has been fully released (never rejects; see `error`) */
  readonly closed: Promise<void>;

  #r: Lazy<Readable>;
  #w: Lazy<Writable>;
  #idleTimeoutMs: number;
  #drainOnCloseMs: number;
  #onClose: ChannelInit['onClose'];
  #state: 'open' | 'closing' | 'closed' = 'open';
  #resolveClosed!: () => void;
  #closePromise: Promise<void> | undefined;

  constructor(init: ChannelInit) {
    super();
    this.kind = init.kind;
    this.role = init.role;
    this.description = init.description;
    this.readFd = init.readFd;
    this.writeFd = init.writeFd;
    this.#r = { src: init.readable };
    this.#w = { src: init.writable };
    this.#idleTimeoutMs = init.idleTimeoutMs ?? 0;
    this.#drainOnCloseMs = init.drainOnCloseMs ?? 0;
    this.#onClose = init.onClose;
    this.closed = new Promise<void>((res) => (this.#resolveClosed = res));
    if (typeof init.readable.stream !== 'function') this.#adopt(this.#r, init.readable.stream);
    if (typeof init.writable.stream !== 'function') this.#adopt(this.#w, init.writable.stream);
    // (a duplex socket is adopted twice: one error listener per role, idle timer on the read role only)
  }

  /** bytes from the peer: reverse direction on the sender, forward (the stream) on the receiver */
  get readable(): Readable {
    return this.#materialize(this.#r);
  }

  /** bytes to the peer: forward (the stream) on the sender, reverse direction on the receiver */
  get writable(): Writable {
    return this.#materialize(this.#w);
  }

  get isOpen(): boolean {
    return this.#state === 'open';
  }

  /**
   * Stop Node from reading the read side (so native code can read the fd) and return the bytes Node
   * had already read ahead — they come before anything still in the fd. Reading via `readable` again
   * later restarts Node's reading. Only meaningful when `readFd` is defined.
   */
  pauseReading(): Buffer {
    const r = this.#r.value;
    if (!r) return Buffer.alloc(0);
    r.pause();
    const handle = (r as unknown as { _handle?: { readStop?: () => number; reading?: boolean } })._handle;
    if (handle?.readStop) {
      handle.reading = false;
      handle.readStop();
    }
    const parts: Buffer[] = [];
    let b: Buffer | null;
    while ((b = r.read() as Buffer | null) !== null) parts.push(b);
    return Buffer.concat(parts);
  }

  #materialize<T extends Readable | Writable>(l: Lazy<T>): T {
    if (l.value) return l.value;
    if (this.#state === 'closed') throw new Error(`channel ${this.description} is closed`);
    const s = l.src.stream;
    const v = typeof s === 'function' ? (s as () => T)() : s;
    this.#adopt(l, v);
    return v;
  }

  #adopt<T extends Readable | Writable>(l: Lazy<T>, v: T): void {
    l.value = v;
    // Record the first error and tear the whole channel down with it. Listening here also keeps an
    // unobserved stream error from crashing the process; consumers still see the error themselves.
    v.on('error', (e: Error) => this.destroy(e));
    if ((l as unknown) === this.#r && this.#idleTimeoutMs > 0) this.#armIdle(v as unknown as Readable);
  }

  #armIdle(r: Readable): void {
    const ms = this.#idleTimeoutMs;
    const sock = r as Readable & { setTimeout?: (ms: number, cb?: () => void) => unknown };
    if (typeof sock.setTimeout === 'function') {
      sock.setTimeout(ms);
      sock.on('timeout', () =>
        this.destroy(new TransportTimeoutError('data from the peer (idle timeout)', ms)),
      );
    }
  }

  /** Abort now. With an error, pending reads/writes on both directions fail with it. */
  destroy(err?: Error): void {
    if (this.#state === 'closed') return;
    if (err && !this.error) this.error = err;
    this.#state = 'closed';
    for (const l of [this.#r, this.#w] as Lazy<Readable | Writable>[]) {
      if (l.value) {
        if (!l.value.destroyed) l.value.destroy(err);
      } else {
        l.src.disposeUnused?.();
      }
    }
    void this.#finish(err);
  }

  /** Graceful close: flush and end the writable, drain the peer briefly, release. */
  close(opts: CloseOptions = {}): Promise<void> {
    if (this.#closePromise) return this.#closePromise;
    if (this.#state === 'closed') return this.closed;
    this.#state = 'closing';
    const timeoutMs = opts.timeoutMs ?? 10_000;
    this.#closePromise = (async () => {
      const timer = setTimeout(
        () => this.destroy(new TransportTimeoutError('a graceful close', timeoutMs)),
        timeoutMs,
      );
      try {
        const w = this.#w.value;
        if (w && !w.destroyed) await endWritable(w, { what: 'flushing the channel' }).catch(() => undefined);
        // wait (bounded) for the peer's EOF, discarding what it still sends, so that closing a socket
        // with unread data does not turn into a reset that could destroy our last bytes in flight
        const r = this.#r.value;
        if (r && !r.destroyed && !r.readableEnded && this.#drainOnCloseMs > 0)
          await drain(r, this.#drainOnCloseMs);
      } finally {
        clearTimeout(timer);
        this.destroy();
      }
      await this.closed;
    })();
    return this.#closePromise;
  }

  async #finish(err: Error | undefined): Promise<void> {
    try {
      await this.#onClose?.(err);
    } catch (e) {
      // the release step may know the real reason (e.g. the ssh child's exit status behind an EPIPE)
      this.error = e as Error;
    }
    this.emit('close', this.error);
    this.#resolveClosed();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Discard whatever the peer still sends until EOF, at most `ms`. */
function drain(r: Readable, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(t);
      r.off('end', done);
      r.off('close', done);
      r.off('error', done);
      r.off('data', noop);
      resolve();
    };
    const noop = () => undefined;
    const t = setTimeout(done, ms);
    r.on('end', done);
    r.on('close', done);
    r.on('error', done);
    r.on('data', noop);
    r.resume();
  });
}

/** An empty, already-ended Readable (the reverse direction of a file has no bytes). */
export function emptyReadable(): Readable {
  return Readable.from([]);
}

/** A Writable that refuses writes (a file opened for reading has no reverse direction). */
export function refusingWritable(why: string): Writable {
  return new Writable({
    write(_c, _e, cb) {
      cb(new Error(why));
    },
  });
}
