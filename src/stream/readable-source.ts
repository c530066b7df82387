// A ByteSource over a Node Readable that never consumes more than it is asked for: what a read does
// not need is unshifted back into the Readable. A migration connection carries more than the stream
// (the handshake continues on the same direction after END), so the reader must not swallow those
// bytes in a read-ahead. Payloads are copied once, chunk by chunk, straight into the caller's target
// (for a restore: the mapped guest pages).
import type { Readable } from 'node:stream';
import type { ByteSource } from './source.js';
import { MIN_CHUNK_SIZE } from './source.js';

export class ReadableByteSource implements ByteSource {
  private pos = 0;
  private ended = false;
  private failed: Error | null = null;
  private scratch = new Uint8Array(64 << 10);

  constructor(
    private readonly rs: Readable,
    private readonly base = 0,
  ) {
    rs.on('end', () => {
      this.ended = true;
    });
    rs.on('error', (e) => {
      this.failed = e;
    });
    if (rs.readableEnded) this.ended = true;
  }

  get position(): number {
    return this.base + this.pos;
  }

  private wait(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.rs.off('readable', done);
        this.rs.off('end', done);
        this.rs.off('error', done);
        this.rs.off('close', done);
        resolve();
      };
      this.rs.on('readable', done);
      this.rs.on('end', done);
      this.rs.on('error', done);
      this.rs.on('close', done);
    });
  }

  private throwIfFailed(): void {
    if (this.failed) throw this.failed;
  }

  private async chunk(): Promise<Buffer | null> {
    for (;;) {
      this.throwIfFailed();
      const c = this.rs.read() as Buffer | null;
      if (c !== null) return c;
      if (this.ended || this.rs.readableEnded || this.rs.destroyed) {
        // read() may have emitted 'error' meanwhile
        this.throwIfFailed();
        return null;
      }
      await this.wait();
    }
  }

  async readInto(target: Uint8Array): Promise<number> {
    let filled = 0;
    while (filled < target.length) {
      const c = await this.chunk();
      if (c === null) break;
      const take = Math.min(c.length, target.length - filled);
      target.set(take === c.length ? c : c.subarray(0, take), filled);
      if (take < c.length) this.rs.unshift(c.subarray(take));
      filled += take;
    }
    this.pos += filled;
    return filled;
  }

  async readExact(n: number): Promise<Uint8Array> {
    if (this.scratch.length < n) this.scratch = new Uint8Array(Math.max(n, this.scratch.length * 2));
    const got = await this.readInto(this.scratch.subarray(0, n));
    return this.scratch.subarray(0, got);
  }

  async peek(n: number): Promise<Uint8Array> {
    const want = Math.min(n, MIN_CHUNK_SIZE);
    const b = new Uint8Array(want);
    const got = await this.readInto(b);
    this.pos -= got;
    if (got > 0) this.rs.unshift(Buffer.from(b.subarray(0, got)));
    return b.subarray(0, got);
  }

  async skip(n: number): Promise<number> {
    let left = n;
    while (left > 0) {
      const c = await this.chunk();
      if (c === null) break;
      const take = Math.min(c.length, left);
      if (take < c.length) this.rs.unshift(c.subarray(take));
      left -= take;
    }
    this.pos += n - left;
    return n - left;
  }

  async close(): Promise<void> {
    // the Readable belongs to the caller (a migration channel): leave it open
  }
}
