// A ByteSource over a Node Readable (a migration connection). A connection carries more than the
// stream (the handshake continues on the same direction after END), so bytes read past what the
// reader asked for are not lost: the source keeps the chunk it is consuming (an offset into it, no
// copies, no unshift per read) and release() hands the unconsumed rest back to the Readable
// (one unshift) for whoever reads the connection next. Payloads are copied once, chunk by chunk,
// straight into the caller's target (for a restore: the mapped guest pages).
import type { Readable } from 'node:stream';
import type { ByteSource } from './source.js';
import { MIN_CHUNK_SIZE } from './source.js';

const EMPTY = new Uint8Array(0);

export class ReadableByteSource implements ByteSource {
  private pos = 0;
  private ended = false;
  private failed: Error | null = null;
  private scratch = new Uint8Array(64 << 10);
  /** the chunk being consumed, from `off` */
  private cur: Uint8Array = EMPTY;
  private off = 0;
  private released = false;

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

  private throwIfFailed(): void {
    if (this.failed) throw this.failed;
  }

  /** Make `cur` non-empty; false at the end of the input. */
  private async fill(): Promise<boolean> {
    while (this.off >= this.cur.length) {
      this.throwIfFailed();
      const c = this.rs.read() as Buffer | null;
      if (c !== null) {
        this.cur = c;
        this.off = 0;
        continue;
      }
      if (this.ended || this.rs.readableEnded || this.rs.destroyed) {
        // read() may have emitted 'error' meanwhile
        this.throwIfFailed();
        return false;
      }
      await this.wait();
    }
    return true;
  }

  /** Until the Readable has data, ends, fails or closes ('readable' is listened to only meanwhile:
   * whoever reads the connection after release() may use 'data'). */
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

  async readInto(target: Uint8Array): Promise<number> {
    let filled = 0;
    while (filled < target.length) {
      if (this.off >= this.cur.length && !(await this.fill())) break;
      const take = Math.min(this.cur.length - this.off, target.length - filled);
      target.set(this.cur.subarray(this.off, this.off + take), filled);
      this.off += take;
      filled += take;
    }
    this.pos += filled;
    return filled;
  }

  async readExact(n: number): Promise<Uint8Array> {
    // within the current chunk: a view, no copy (valid until the next call, as ByteSource says)
    if (this.cur.length - this.off >= n) {
      const v = this.cur.subarray(this.off, this.off + n);
      this.off += n;
      this.pos += n;
      return v;
    }
    if (this.scratch.length < n) this.scratch = new Uint8Array(Math.max(n, this.scratch.length * 2));
    const got = await this.readInto(this.scratch.subarray(0, n));
    return this.scratch.subarray(0, got);
  }

  async peek(n: number): Promise<Uint8Array> {
    const want = Math.min(n, MIN_CHUNK_SIZE);
    while (this.cur.length - this.off < want) {
      // join what is left of this chunk with the next one
      const rest = this.cur.subarray(this.off);
      this.cur = EMPTY;
      this.off = 0;
      if (!(await this.fill())) {
        this.cur = rest;
        break;
      }
      const joined = new Uint8Array(rest.length + this.cur.length - this.off);
      joined.set(rest, 0);
      joined.set(this.cur.subarray(this.off), rest.length);
      this.cur = joined;
      this.off = 0;
    }
    return this.cur.subarray(this.off, this.off + Math.min(want, this.cur.length - this.off));
  }

  async skip(n: number): Promise<number> {
    let left = n;
    while (left > 0) {
      if (this.off >= this.cur.length && !(await this.fill())) break;
      const take = Math.min(this.cur.length - this.off, left);
      this.off += take;
      left -= take;
    }
    this.pos += n - left;
    return n - left;
  }

  /**
   * Hand the bytes read ahead but not consumed back to the Readable (once): the next reader of
   * the connection (the handshake after END) gets them. Reads after this see the Readable afresh.
   */
  release(): void {
    if (this.released) return;
    this.released = true;
    const rest = this.cur.subarray(this.off);
    this.cur = EMPTY;
    this.off = 0;
    if (rest.length && !this.rs.destroyed)
      this.rs.unshift(Buffer.from(rest.buffer, rest.byteOffset, rest.length));
  }

  async close(): Promise<void> {
    // the Readable belongs to the caller (a migration channel): leave it open, give back the rest
    this.release();
  }
}
