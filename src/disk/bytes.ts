// Exact-length reads from a socket, with bounded buffering: the socket is paused while more than
// `highWater` bytes wait unread, so a client that pipelines requests cannot grow our memory.
import type { Duplex } from 'node:stream';

export class EndOfInput extends Error {
  constructor(readonly at: number) {
    super(`connection closed at byte ${at}`);
    this.name = 'EndOfInput';
  }
}

export class ByteReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended: Error | null = null;
  private waiter: (() => void) | null = null;
  /** bytes consumed so far (offsets in errors) */
  position = 0;

  constructor(
    private readonly sock: Duplex,
    private readonly highWater = 64 << 20,
  ) {
    sock.on('data', (c: Buffer) => {
      this.chunks.push(c);
      this.buffered += c.length;
      if (this.buffered > this.highWater) sock.pause();
      this.wake();
    });
    const end = () => {
      this.ended ??= new EndOfInput(this.position + this.buffered);
      this.wake();
    };
    sock.on('end', end);
    sock.on('close', end);
    sock.on('error', end);
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  /** Exactly n bytes (rejects with EndOfInput when the peer closes first). */
  async read(n: number): Promise<Buffer> {
    if (n === 0) return Buffer.alloc(0);
    while (this.buffered < n) {
      if (this.ended) throw this.ended;
      if (this.sock.isPaused()) this.sock.resume();
      await new Promise<void>((r) => (this.waiter = r));
    }
    let out: Buffer;
    if (this.chunks[0]!.length >= n) {
      const c = this.chunks[0]!;
      out = c.subarray(0, n);
      if (c.length === n) this.chunks.shift();
      else this.chunks[0] = c.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let o = 0;
      while (o < n) {
        const c = this.chunks[0]!;
        const take = Math.min(c.length, n - o);
        c.copy(out, o, 0, take);
        o += take;
        if (take === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(take);
      }
    }
    this.buffered -= n;
    this.position += n;
    if (this.buffered <= this.highWater && this.sock.isPaused()) this.sock.resume();
    return out;
  }

  /** Read and drop n bytes in bounded pieces. */
  async skip(n: number): Promise<void> {
    while (n > 0) {
      const k = Math.min(n, 1 << 20);
      await this.read(k);
      n -= k;
    }
  }
}

/** Write, waiting for the socket to drain when its buffer is full. */
export function writeOut(sock: Duplex, b: Uint8Array): Promise<void> {
  // a destroyed socket never drains nor closes again: fail now instead of waiting forever
  if (sock.destroyed || sock.writableEnded) return Promise.reject(new Error('connection closed'));
  if (sock.write(b)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = () => {
      sock.off('drain', done);
      sock.off('close', closed);
      resolve();
    };
    const closed = () => {
      sock.off('drain', done);
      reject(new Error('connection closed while writing'));
    };
    sock.once('drain', done);
    sock.once('close', closed);
  });
}
