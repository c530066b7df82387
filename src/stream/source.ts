// Byte sources: a small pull interface the reader consumes, with implementations for an fd (or a
// path), a Node Readable / AsyncIterable<Uint8Array>, and an in-memory Uint8Array.
//
// Memory: a source holds at most its read-ahead (fd: chunkSize, default 1 MiB; iterable: the
// producer's current chunk) plus, for one readExact() larger than that, a scratch buffer that
// grows only as bytes actually arrive (so a bogus 128 MiB length on a short input allocates
// nothing like 128 MiB). Scratch buffers above KEEP_MAX are dropped after use.
import { close as fsClose, open as fsOpen, read as fsRead, readSync as fsReadSync } from 'node:fs';
import { StreamError, StreamErrorCode } from './errors.js';

export interface ByteSource {
  /** Absolute offset of the next unread byte. */
  readonly position: number;
  /**
   * Resolve with exactly n bytes, or fewer only when the input ends first. The result is a view
   * that stays valid only until the next call on this source.
   */
  readExact(n: number): Promise<Uint8Array>;
  /** Fill target completely unless the input ends first; resolves with the byte count placed. */
  readInto(target: Uint8Array): Promise<number>;
  /** Up to n (≤ MIN_CHUNK_SIZE = 64) bytes without consuming them; fewer only at end of input. */
  peek(n: number): Promise<Uint8Array>;
  /** Discard n bytes; resolves with the count discarded (fewer at end of input). */
  skip(n: number): Promise<number>;
  /** Release resources (closes the fd if the source opened it). */
  close(): Promise<void>;
}

export const DEFAULT_CHUNK_SIZE = 1 << 20;
/**
 * Read-ahead of blocking sources (`verify -`). Reading a pipe into a buffer above glibc's mmap
 * threshold (128 KiB) costs 2-2.5x the system time of reading into one at or below it (1 GiB from
 * `cat`: 0.75-0.9 s against 0.34-0.40 s of CPU, bench/RESULTS.md), whatever the size of each read.
 */
export const BLOCKING_CHUNK_SIZE = 128 << 10;
/** Smallest read-ahead (and the largest n peek() supports). */
export const MIN_CHUNK_SIZE = 64;
const KEEP_MAX = 16 << 20;
const MIN_SCRATCH = 64 << 10;

/** Growable scratch buffer used to assemble reads that span chunks. */
class Scratch {
  buf = new Uint8Array(0);
  /** Make room for `need` bytes while preserving the first `keep`; grows geometrically, capped at `cap`. */
  ensure(need: number, keep: number, cap: number): Uint8Array {
    if (this.buf.length >= need) return this.buf;
    const size = Math.min(cap, Math.max(need, this.buf.length * 2, MIN_SCRATCH));
    const nb = new Uint8Array(size);
    if (keep > 0) nb.set(this.buf.subarray(0, keep));
    this.buf = nb;
    return nb;
  }
  /** Start a fresh assembly: drop a huge buffer left over from an earlier big record. */
  reset(n: number): void {
    if (this.buf.length > KEEP_MAX && n <= KEEP_MAX) this.buf = new Uint8Array(0);
  }
}

// ---------------------------------------------------------------------------------------------

/** In-memory source: views into the given bytes, no copies. */
export class BytesSource implements ByteSource {
  private pos = 0;
  constructor(
    private readonly bytes: Uint8Array,
    private readonly base = 0,
  ) {}
  get position(): number {
    return this.base + this.pos;
  }
  readExact(n: number): Promise<Uint8Array> {
    const end = Math.min(this.bytes.length, this.pos + n);
    const v = this.bytes.subarray(this.pos, end);
    this.pos = end;
    return Promise.resolve(v);
  }
  readInto(target: Uint8Array): Promise<number> {
    const n = Math.min(target.length, this.bytes.length - this.pos);
    target.set(this.bytes.subarray(this.pos, this.pos + n));
    this.pos += n;
    return Promise.resolve(n);
  }
  peek(n: number): Promise<Uint8Array> {
    return Promise.resolve(this.bytes.subarray(this.pos, Math.min(this.bytes.length, this.pos + n)));
  }
  skip(n: number): Promise<number> {
    const k = Math.min(n, this.bytes.length - this.pos);
    this.pos += k;
    return Promise.resolve(k);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

// ---------------------------------------------------------------------------------------------

const EMPTY = new Uint8Array(0);

/** Source over a Node Readable or any AsyncIterable of byte chunks (chunks are never modified). */
export class ChunkSource implements ByteSource {
  private it: AsyncIterator<unknown>;
  private cur: Uint8Array = EMPTY;
  private done = false;
  private pos = 0;
  private readonly scratch = new Scratch();

  constructor(
    iterable: AsyncIterable<unknown>,
    private readonly onClose?: () => void,
  ) {
    this.it = iterable[Symbol.asyncIterator]();
  }
  get position(): number {
    return this.pos;
  }

  /** Next non-empty chunk, or null at end. */
  private async pull(): Promise<Uint8Array | null> {
    while (!this.done) {
      const r = await this.it.next();
      if (r.done) {
        this.done = true;
        return null;
      }
      const c = r.value;
      if (!(c instanceof Uint8Array))
        throw new StreamError(
          StreamErrorCode.ERR_USAGE,
          'stream source produced a non-binary chunk (do not set an encoding)',
        );
      if (c.length > 0) return c;
    }
    return null;
  }

  async readExact(n: number): Promise<Uint8Array> {
    const cur = this.cur;
    if (cur.length >= n) {
      this.cur = cur.subarray(n);
      this.pos += n;
      return cur.subarray(0, n);
    }
    this.scratch.reset(n);
    let buf = this.scratch.ensure(Math.min(n, Math.max(cur.length, MIN_SCRATCH)), 0, n);
    buf.set(cur);
    let filled = cur.length;
    this.cur = EMPTY;
    while (filled < n) {
      const c = await this.pull();
      if (!c) break;
      const take = Math.min(c.length, n - filled);
      buf = this.scratch.ensure(filled + take, filled, n);
      buf.set(take === c.length ? c : c.subarray(0, take), filled);
      filled += take;
      this.cur = c.subarray(take);
    }
    this.pos += filled;
    return buf.subarray(0, filled);
  }

  async readInto(target: Uint8Array): Promise<number> {
    const n = target.length;
    const cur = this.cur;
    let filled = Math.min(n, cur.length);
    target.set(cur.subarray(0, filled));
    this.cur = cur.subarray(filled);
    while (filled < n) {
      const c = await this.pull();
      if (!c) break;
      const take = Math.min(c.length, n - filled);
      target.set(take === c.length ? c : c.subarray(0, take), filled);
      filled += take;
      this.cur = c.subarray(take);
    }
    this.pos += filled;
    return filled;
  }

  async peek(n: number): Promise<Uint8Array> {
    if (this.cur.length >= n) return this.cur.subarray(0, n);
    // Join the few bytes needed into a fresh small buffer followed by the rest of the last chunk.
    const parts: Uint8Array[] = [this.cur];
    let have = this.cur.length;
    while (have < n) {
      const c = await this.pull();
      if (!c) break;
      parts.push(c);
      have += c.length;
    }
    if (parts.length > 1) {
      const joined = new Uint8Array(have);
      let o = 0;
      for (const p of parts) {
        joined.set(p, o);
        o += p.length;
      }
      this.cur = joined;
    }
    return this.cur.subarray(0, Math.min(n, this.cur.length));
  }

  async skip(n: number): Promise<number> {
    let left = n;
    while (left > 0) {
      if (this.cur.length === 0) {
        const c = await this.pull();
        if (!c) break;
        this.cur = c;
      }
      const k = Math.min(left, this.cur.length);
      this.cur = this.cur.subarray(k);
      left -= k;
    }
    this.pos += n - left;
    return n - left;
  }

  async close(): Promise<void> {
    this.cur = EMPTY;
    if (!this.done) {
      this.done = true;
      try {
        await this.it.return?.();
      } catch {
        /* ignore */
      }
    }
    this.onClose?.();
  }
}

// ---------------------------------------------------------------------------------------------

function readFd(fd: number, buf: Uint8Array, off: number, len: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fsRead(fd, buf, off, len, null, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface FdSourceOptions {
  /** Read-ahead size (default 1 MiB). */
  chunkSize?: number;
  /** Close the fd on close(). */
  ownsFd?: boolean;
  /** Use blocking readSync (see the constructor). */
  blocking?: boolean;
}

/** Source over a file descriptor (regular file, pipe, socket), reading in large chunks. */
export class FdSource implements ByteSource {
  private readonly buf: Uint8Array;
  private start = 0;
  private end = 0;
  private eof = false;
  private pos = 0;
  private readonly scratch = new Scratch();
  private closed = false;

  /**
   * opts.blocking: read with readSync (no thread-pool round trip per read: about twice the
   * throughput on pipes) at the price of blocking the event loop while waiting for data. Meant
   * for CLI tools such as `verify -`; EAGAIN (non-blocking fds) falls back to waiting.
   */
  constructor(
    private readonly fd: number,
    private readonly opts: FdSourceOptions = {},
  ) {
    const size = opts.chunkSize ?? (opts.blocking ? BLOCKING_CHUNK_SIZE : DEFAULT_CHUNK_SIZE);
    this.buf = new Uint8Array(Math.max(MIN_CHUNK_SIZE, size));
  }
  get position(): number {
    return this.pos;
  }

  /** One read(2) into dst[off, off+len); 0 = EOF. Retries EAGAIN (non-blocking pipes). */
  private async rawRead(dst: Uint8Array, off: number, len: number): Promise<number> {
    if (this.eof || len === 0) return 0;
    for (let tries = 0; ; tries++) {
      try {
        const n = this.opts.blocking
          ? fsReadSync(this.fd, dst, off, len, null)
          : await readFd(this.fd, dst, off, len);
        if (n === 0) this.eof = true;
        return n;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK') {
          await sleep(Math.min(10, tries));
          continue;
        }
        if (code === 'EOF') {
          this.eof = true;
          return 0;
        }
        throw e;
      }
    }
  }

  /** Ensure at least n buffered bytes (n ≤ buf.length) unless EOF. */
  private async fill(n: number): Promise<void> {
    if (this.start === this.end) this.start = this.end = 0; // reads land in the same (cache-warm) bytes
    if (this.start + n > this.buf.length) {
      this.buf.copyWithin(0, this.start, this.end);
      this.end -= this.start;
      this.start = 0;
    }
    while (this.end - this.start < n) {
      const k = await this.rawRead(this.buf, this.end, this.buf.length - this.end);
      if (k === 0) break;
      this.end += k;
    }
  }

  async readExact(n: number): Promise<Uint8Array> {
    if (this.end - this.start < n && n <= this.buf.length) await this.fill(n);
    const avail = this.end - this.start;
    if (avail >= n || n <= this.buf.length) {
      const k = Math.min(n, avail);
      const v = this.buf.subarray(this.start, this.start + k);
      this.start += k;
      this.pos += k;
      return v;
    }
    // Larger than the read-ahead: assemble in scratch, reading straight into it.
    this.scratch.reset(n);
    let s = this.scratch.ensure(Math.min(n, Math.max(avail, this.buf.length * 2)), 0, n);
    s.set(this.buf.subarray(this.start, this.end));
    let filled = avail;
    this.start = this.end = 0;
    while (filled < n) {
      if (filled === s.length) s = this.scratch.ensure(filled + 1, filled, n);
      const k = await this.rawRead(s, filled, Math.min(s.length, n) - filled);
      if (k === 0) break;
      filled += k;
    }
    this.pos += filled;
    return s.subarray(0, filled);
  }

  async readInto(target: Uint8Array): Promise<number> {
    const n = target.length;
    let filled = Math.min(n, this.end - this.start);
    target.set(this.buf.subarray(this.start, this.start + filled));
    this.start += filled;
    if (filled < n && n - filled < this.buf.length / 4) {
      // Small remainder: go through the read-ahead to keep reads large.
      await this.fill(n - filled);
      const k = Math.min(n - filled, this.end - this.start);
      target.set(this.buf.subarray(this.start, this.start + k), filled);
      this.start += k;
      filled += k;
    }
    while (filled < n) {
      const k = await this.rawRead(target, filled, n - filled);
      if (k === 0) break;
      filled += k;
    }
    this.pos += filled;
    return filled;
  }

  async peek(n: number): Promise<Uint8Array> {
    if (this.end - this.start < n) await this.fill(Math.min(n, this.buf.length));
    return this.buf.subarray(this.start, Math.min(this.end, this.start + n));
  }

  async skip(n: number): Promise<number> {
    let left = n;
    while (left > 0) {
      if (this.end === this.start) {
        this.start = this.end = 0;
        const k = await this.rawRead(this.buf, 0, this.buf.length);
        if (k === 0) break;
        this.end = k;
      }
      const k = Math.min(left, this.end - this.start);
      this.start += k;
      left -= k;
    }
    this.pos += n - left;
    return n - left;
  }

  close(): Promise<void> {
    if (this.closed || !this.opts.ownsFd) return Promise.resolve();
    this.closed = true;
    return new Promise((resolve) => fsClose(this.fd, () => resolve()));
  }
}

/** Open a path read-only and wrap it in an FdSource that closes it. */
export function openFileSource(path: string, opts: Omit<FdSourceOptions, 'ownsFd'> = {}): Promise<FdSource> {
  return new Promise((resolve, reject) => {
    fsOpen(path, 'r', (err, fd) =>
      err ? reject(err) : resolve(new FdSource(fd, { ...opts, ownsFd: true })),
    );
  });
}

/** Anything the reader accepts. */
export type StreamInput = string | number | Uint8Array | AsyncIterable<unknown> | ByteSource;

function isByteSource(x: unknown): x is ByteSource {
  return (
    typeof x === 'object' &&
    x !== null &&
    typeof (x as ByteSource).readExact === 'function' &&
    typeof (x as ByteSource).peek === 'function'
  );
}

/** Wrap any supported input: path, fd, bytes, Readable / AsyncIterable, or an existing ByteSource. */
export async function toByteSource(
  input: StreamInput,
  opts: Omit<FdSourceOptions, 'ownsFd'> = {},
): Promise<ByteSource> {
  if (isByteSource(input)) return input;
  if (typeof input === 'string') return openFileSource(input, opts);
  if (typeof input === 'number') return new FdSource(input, opts);
  if (input instanceof Uint8Array) return new BytesSource(input);
  if (input && typeof (input as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function')
    return new ChunkSource(input);
  throw new StreamError(StreamErrorCode.ERR_USAGE, 'unsupported stream input');
}
