// The primary's disk image as the disk daemon serves it: every write goes to the image file and
// marks its blocks in the open epoch; rotate(n) (inside the checkpoint's pause) closes epoch n and
// opens n+1; fetch(n) (after the resume) reads epoch n's blocks as they were at rotate(n).
//
// Copy-on-write instead of copy-at-write: an epoch holds block numbers only. A write after rotate(n)
// to a block of epoch n that was not fetched yet first saves the block's old content (the content
// at rotate(n)); fetch(n) reads every other block from the image. So rotate costs O(1) (no data
// moves in the pause), memory is the saved blocks of the epoch being sent (bounded by
// `maxPreservedBytes`: beyond it such writes wait until the fetch has sent those blocks; the guest
// sees latency, never an error) plus the block numbers (bounded by `maxTrackedBlocks`: beyond it the
// epoch is marked "every block", a full resync within that checkpoint).
//
// Node runs the daemon on one thread and every image access here is synchronous, so a write (save
// old content, pwrite, mark) and a rotate never interleave: a write the client saw completed before
// rotate(n) is in an epoch <= n, every later one in n+1 or later.
import {
  closeSync,
  copyFileSync,
  fdatasyncSync,
  fstatSync,
  openSync,
  readSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import type { NbdExport } from './nbd.js';
import { DiskError, DiskErrorCode } from './errors.js';

export interface ImageOptions {
  /** export name (default: the image's path) */
  name?: string;
  /** replication granularity, bytes (default 4096; a power of two from 512 to 1 MiB) */
  blockSize?: number;
  /** bound of the old contents kept for the epoch being sent (default 64 MiB) */
  maxPreservedBytes?: number;
  /** bound of the block numbers one epoch lists before it becomes "every block" (default 4 Mi) */
  maxTrackedBlocks?: number;
  /** debug/tests: copy the image into DIR/epoch-N.img at each rotate(N), keeping the last `snapshotKeep` */
  snapshotDir?: string;
  snapshotKeep?: number;
}

/** The blocks of one epoch: listed, or all of them (after an overflow). */
class BlockSet {
  private set: Set<number> | null = new Set();
  /** "every block" epochs: blocks below this were fetched */
  private allFrom = 0;
  constructor(
    private readonly nblocks: number,
    private readonly max: number,
  ) {}
  add(b: number): void {
    if (!this.set) return;
    this.set.add(b);
    if (this.set.size > this.max) this.set = null;
  }
  has(b: number): boolean {
    return this.set ? this.set.has(b) : b >= this.allFrom && b < this.nblocks;
  }
  /** a block was sent: a later write no longer concerns this epoch */
  sent(b: number): void {
    if (this.set) this.set.delete(b);
    else this.allFrom = Math.max(this.allFrom, b + 1);
  }
  get count(): number {
    return this.set ? this.set.size : this.nblocks - this.allFrom;
  }
  get overflowed(): boolean {
    return this.set === null;
  }
  /** the block numbers, ascending */
  list(): number[] | null {
    return this.set ? [...this.set].sort((a, b) => a - b) : null;
  }
}

interface Frozen {
  n: number;
  blocks: BlockSet;
  preserved: Map<number, Buffer>;
}

export interface EpochChunk {
  blocks: number[];
  /** the blocks' contents, blockSize bytes each (the image's last block may be shorter: zero-padded) */
  data: Buffer;
}

export class ReplicatedImage implements NbdExport {
  readonly name: string;
  readonly size: number;
  readonly blockSize: number;
  readonly nblocks: number;
  private readonly fd: number;
  private readonly maxPreserved: number;
  private readonly maxTracked: number;
  private tracking = false;
  private open = 0;
  private current: BlockSet;
  private frozen: Frozen[] = [];
  private preservedBytes = 0;
  private waiters: (() => void)[] = [];
  /** counters for logs and benchmarks */
  readonly stats = { writes: 0, preserved: 0, waits: 0 };

  constructor(
    readonly path: string,
    private readonly opts: ImageOptions = {},
  ) {
    const bs = opts.blockSize ?? 4096;
    if (!Number.isInteger(bs) || bs < 512 || bs > 1 << 20 || (bs & (bs - 1)) !== 0)
      throw new DiskError(DiskErrorCode.ERR_DISK_SETUP, `block size ${bs}: a power of two from 512 to 1 MiB`);
    this.fd = openSync(path, 'r+');
    const st = fstatSync(this.fd);
    if (!st.isFile()) {
      closeSync(this.fd);
      throw new DiskError(
        DiskErrorCode.ERR_DISK_SETUP,
        `${path} is not a regular file (the daemon serves an image file; put the file on the storage you want)`,
      );
    }
    this.size = st.size;
    if (this.size % 512 !== 0) {
      closeSync(this.fd);
      throw new DiskError(
        DiskErrorCode.ERR_DISK_SETUP,
        `${path}: ${this.size} bytes is not a multiple of 512 (a block device's sector)`,
      );
    }
    this.name = opts.name ?? path;
    this.blockSize = bs;
    this.nblocks = Math.ceil(this.size / bs);
    this.maxPreserved = opts.maxPreservedBytes ?? 64 << 20;
    this.maxTracked = opts.maxTrackedBlocks ?? 4 << 20;
    this.current = new BlockSet(this.nblocks, this.maxTracked);
  }

  close(): void {
    this.stop();
    closeSync(this.fd);
  }

  // ---- NbdExport ----

  read(offset: number, length: number): Buffer {
    const b = Buffer.alloc(length);
    let o = 0;
    while (o < length) {
      const n = readSync(this.fd, b, o, length - o, offset + o);
      if (n === 0) break; // beyond the end: zeroes (cannot happen within size)
      o += n;
    }
    return b;
  }

  async write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    await this.beforeWrite(offset, data.length);
    // from here on synchronous: no rotate between the save of old contents, the write and the mark
    this.pwrite(offset, data);
    this.mark(offset, data.length);
    if (fua) fdatasyncSync(this.fd);
  }

  async writeZeroes(offset: number, length: number, fua: boolean): Promise<void> {
    await this.beforeWrite(offset, length);
    const z = Buffer.alloc(Math.min(length, 1 << 20));
    for (let o = 0; o < length; o += z.length)
      this.pwrite(offset + o, z.subarray(0, Math.min(z.length, length - o)));
    this.mark(offset, length);
    if (fua) fdatasyncSync(this.fd);
  }

  flush(): void {
    fdatasyncSync(this.fd);
  }

  trim(): void {
    // advisory; keeping the data keeps primary and backup equal
  }

  // ---- replication ----

  /** A primary attached: track writes from now on; epoch 1 is open. */
  start(): void {
    this.stop();
    this.tracking = true;
    this.open = 1;
  }

  /** No primary (it ended or died): nothing is tracked, every saved block is dropped. */
  stop(): void {
    this.tracking = false;
    this.open = 0;
    this.current = new BlockSet(this.nblocks, this.maxTracked);
    this.frozen = [];
    this.preservedBytes = 0;
    this.wake();
  }

  get trackingEpoch(): number {
    return this.open;
  }

  /** Close epoch n (it must be the open one) and open n+1: the number of blocks in epoch n. */
  rotate(n: number): number {
    if (!this.tracking)
      throw new DiskError(DiskErrorCode.ERR_DISK_CONTROL, `rotate(${n}): no replication started`);
    if (n !== this.open)
      throw new DiskError(DiskErrorCode.ERR_DISK_CONTROL, `rotate(${n}): the open epoch is ${this.open}`);
    const blocks = this.current;
    this.frozen.push({ n, blocks, preserved: new Map() });
    this.current = new BlockSet(this.nblocks, this.maxTracked);
    this.open = n + 1;
    if (this.opts.snapshotDir) this.snapshot(n);
    return blocks.count;
  }

  /**
   * Epoch n's blocks with their contents at rotate(n), ascending, `maxBlocks` per chunk. The event
   * loop runs between chunks (guest writes go on). Afterwards epoch n is gone.
   */
  async *fetch(n: number, maxBlocks = 256): AsyncGenerator<EpochChunk> {
    const e = this.frozen.find((f) => f.n === n);
    if (!e)
      throw new DiskError(
        DiskErrorCode.ERR_DISK_CONTROL,
        `fetch(${n}): epoch ${n} is not closed or was fetched already`,
      );
    try {
      const list = e.blocks.list();
      const total = list ? list.length : this.nblocks;
      const bs = this.blockSize;
      for (let i = 0; i < total; i += maxBlocks) {
        // the frozen epoch may have been dropped (stop()) while the consumer was busy
        if (!this.frozen.includes(e))
          throw new DiskError(DiskErrorCode.ERR_DISK_CONTROL, `fetch(${n}): replication stopped`);
        const k = Math.min(maxBlocks, total - i);
        const blocks: number[] = [];
        const data = Buffer.alloc(k * bs);
        for (let j = 0; j < k; j++) {
          const b = list ? list[i + j]! : i + j;
          blocks.push(b);
          const kept = e.preserved.get(b);
          if (kept) {
            kept.copy(data, j * bs);
            e.preserved.delete(b);
            this.preservedBytes -= kept.length;
          } else {
            const len = Math.min(bs, this.size - b * bs);
            readSync(this.fd, data, j * bs, len, b * bs);
          }
          e.blocks.sent(b);
        }
        this.wake();
        yield { blocks, data };
        await new Promise<void>((r) => setImmediate(r));
      }
    } finally {
      this.dropFrozen(e);
    }
  }

  private dropFrozen(e: Frozen): void {
    const i = this.frozen.indexOf(e);
    if (i < 0) return;
    this.frozen.splice(i, 1);
    for (const v of e.preserved.values()) this.preservedBytes -= v.length;
    this.wake();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private pwrite(offset: number, data: Buffer): void {
    let o = 0;
    while (o < data.length) o += writeSync(this.fd, data, o, data.length - o, offset + o);
    this.stats.writes++;
  }

  private mark(offset: number, length: number): void {
    if (!this.tracking || length === 0) return;
    const last = Math.floor((offset + length - 1) / this.blockSize);
    for (let b = Math.floor(offset / this.blockSize); b <= last; b++) this.current.add(b);
  }

  /**
   * Save the old content of each block of [offset, offset+length) that an unsent closed epoch
   * holds. Resolves (possibly after waiting for fetches to free memory) with everything saved and
   * no await left before the caller's write.
   */
  private async beforeWrite(offset: number, length: number): Promise<void> {
    for (;;) {
      const wait = this.tryPreserve(offset, length);
      if (!wait) return;
      this.stats.waits++;
      await wait;
    }
  }

  private tryPreserve(offset: number, length: number): Promise<void> | null {
    if (this.frozen.length === 0 || length === 0) return null;
    const bs = this.blockSize;
    const first = Math.floor(offset / bs);
    const last = Math.floor((offset + length - 1) / bs);
    const need: [Frozen, number][] = [];
    for (const e of this.frozen)
      for (let b = first; b <= last; b++) if (e.blocks.has(b) && !e.preserved.has(b)) need.push([e, b]);
    if (need.length === 0) return null;
    // over the bound: wait for the fetch to send blocks (a single write always gets through alone)
    if (this.preservedBytes > 0 && this.preservedBytes + need.length * bs > this.maxPreserved)
      return new Promise<void>((r) => this.waiters.push(r));
    for (const [e, b] of need) {
      const len = Math.min(bs, this.size - b * bs);
      const old = Buffer.alloc(bs);
      readSync(this.fd, old, 0, len, b * bs);
      e.preserved.set(b, old);
      this.preservedBytes += bs;
      this.stats.preserved++;
    }
    return null;
  }

  private snapshot(n: number): void {
    const dir = this.opts.snapshotDir!;
    copyFileSync(this.path, join(dir, `epoch-${n}.img`));
    const keep = this.opts.snapshotKeep ?? 8;
    if (n - keep >= 1) rmSync(join(dir, `epoch-${n - keep}.img`), { force: true });
  }
}
