// The libxc-layer save engine: one core, per-domain-type operations (hvm.ts, pv.ts), callbacks as
// the seam to the toolstack layer. Follows tools/libs/guest/xg_sr_save.c's algorithm:
//   headers, static data, STATIC_DATA_END, start of stream, then per checkpoint:
//   memory (live rounds | suspend + dirty), end-of-checkpoint records, [CHECKPOINT + callbacks],
//   and END for a plain stream.
// Page payloads never pass through JavaScript one copy per page: a batch of up to 1024 pages is
// mapped as one region and written with one vectored write (record header + pfn words + pages).
import {
  DOMAIN_TYPE_X86_HVM,
  encodeDomainHeader,
  encodeImageHeader,
  encodeLibxcRecord,
  encodePageDataHeader,
  MAX_BATCH_SIZE,
  PAGE_SIZE,
  PageType,
  pageTypeHasData,
  pageTypeValid,
  type LibxcRecord,
  type StreamWriter,
} from '../../stream/index.js';
import type { Hypervisor, Mapping } from '../../xen/types.js';
import { PfnBitmap } from '../bitmap.js';
import { abortError, MigrationError, MigrationErrorCode, throwIfAborted } from '../errors.js';
import { defaultPrecopyPolicy, expectedDowntimeMs, Pacer, type PrecopyStats } from '../policy.js';
import { hex } from '../pv/layout.js';
import { hvmSaveOps } from './hvm.js';
import type {
  RoundStats,
  SaveCallbacks,
  SaveContext,
  SaveOps,
  SaveProgress,
  SaveStats,
  StreamType,
} from './types.js';
import { SHUTDOWN_SUSPEND } from '../../xen/constants.js';
import { frameRange, HOST_LITTLE_ENDIAN, setFrame } from '../frames.js';

export { SHUTDOWN_SUSPEND };

export interface LibxcSaveOptions {
  xen: Hypervisor;
  domid: number;
  out: StreamWriter;
  /** live: precopy rounds with log-dirty before the suspend (required for remus/colo) */
  live: boolean;
  streamType?: StreamType;
  callbacks: SaveCallbacks;
  signal?: AbortSignal;
  /** bandwidth cap for the live rounds, bytes per second */
  bandwidth?: number;
  /** per-domain-type ops; default chosen from the domain's type */
  ops?: SaveOps;
  /**
   * Checkpoints: copy the dirty pages into a staging area while the guest is suspended, resume
   * it (postcopy), then transmit. The wire stream is identical; the pause costs a memory copy.
   */
  staging?: boolean;
  /** Debug: PEEK-only verification pass (VERIFY record + all pages again), plain live streams. */
  verify?: boolean;
  /**
   * Hand views of the foreign mapping straight to `out` (no copy). Only safe when `out` is done
   * with the bytes once a write resolves: an fd, a socket, a file stream. A Writable that keeps
   * chunks (a PassThrough, a pipe into another stream) must get copies: default false.
   */
  zeroCopy?: boolean;
  /**
   * Checkpoints with staging, HVM: keep foreign mappings (1024-page chunks) across checkpoints
   * instead of mapping and unmapping every batch while the guest is suspended (a shorter pause).
   * Only for guests whose memory map does not change (no ballooning): a gfn re-populated with a new
   * frame would still be read through the old mapping. Default false.
   */
  persistentMappings?: boolean;
}

/** Pick the ops table for a domain. PV is loaded lazily (it maps guest structures). */
export async function saveOpsFor(xen: Hypervisor, domid: number): Promise<SaveOps> {
  const info = xen.domainInfo(domid);
  if (info.type === 'hvm') return hvmSaveOps();
  const { pvSaveOps } = await import('./pv.js');
  return pvSaveOps();
}

/** A batch ready to be written: its mapping (if any) stays until release(). */
interface PreparedBatch {
  header: Uint8Array;
  chunks: Uint8Array[];
  /** header + payload bytes */
  bytes: number;
  /** pfns in the record */
  count: number;
  release(): void;
}

interface StagedBatch {
  header: Uint8Array;
  data: Uint8Array;
}

class SaveEngine implements SaveContext {
  readonly xen: Hypervisor;
  readonly domid: number;
  readonly info;
  readonly live: boolean;
  readonly streamType: StreamType;
  suspended = false;

  private readonly out: StreamWriter;
  private readonly cb: SaveCallbacks;
  private readonly signal: AbortSignal | undefined;
  private readonly pacer: Pacer;
  private ops!: SaveOps;
  private dirty!: PfnBitmap;
  private deferred!: PfnBitmap;
  private logDirtyOn = false;
  /** the device model tracks its writes (switchQemuLogdirty(true) was answered) */
  private qemuLogdirty = false;
  private readonly stats: SaveStats;
  /** classifyBatch's buffers, one batch's worth, reused (see there) */
  private readonly scratch = (() => {
    const frames = new BigUint64Array(MAX_BATCH_SIZE);
    const dataFrames = new BigUint64Array(MAX_BATCH_SIZE);
    return {
      frames,
      fw: new Uint32Array(frames.buffer),
      dataFrames,
      dw: new Uint32Array(dataFrames.buffer),
      types: new Uint8Array(MAX_BATCH_SIZE),
      validIdx: new Int32Array(MAX_BATCH_SIZE),
    };
  })();
  /** XENMIG_TRACE_PHASES=1: the time since the previous lap() goes to a phase (stats.phases) */
  private readonly trace = process.env.XENMIG_TRACE_PHASES === '1';
  private lapAt = 0;
  private readonly t0 = performance.now();
  private suspendedAt = 0;
  private liveBytes = 0;
  private liveMs = 0;
  private progressAt = 0;
  private roundPages = 0;
  private roundSent = 0;
  private phase: SaveProgress['phase'] = 'setup';
  private iteration = 0;
  private staging: StagedBatch[] | null = null;
  private stagingBuf: Uint8Array | null = null;
  private stagingUsed = 0;
  /** persistentMappings: chunk index (frame >> 10) -> mapping of that chunk */
  private readonly chunkMaps = new Map<number, Mapping>();
  private readonly retiredMaps: Mapping[] = [];

  constructor(private readonly opts: LibxcSaveOptions) {
    this.xen = opts.xen;
    this.domid = opts.domid;
    this.live = opts.live;
    this.streamType = opts.streamType ?? 'plain';
    this.out = opts.out;
    this.cb = opts.callbacks;
    this.signal = opts.signal;
    this.pacer = new Pacer(opts.bandwidth);
    this.info = this.xen.domainInfo(this.domid);
    this.stats = {
      domid: this.domid,
      domainType: this.info.type,
      streamType: this.streamType,
      live: this.live,
      rounds: [],
      pages: 0,
      dataPages: 0,
      bytes: 0,
      totalMs: 0,
      suspendedMs: 0,
      checkpoints: 0,
    };
    if (this.streamType !== 'plain') {
      if (!this.live)
        throw new MigrationError(
          MigrationErrorCode.ERR_CALLBACK,
          'a checkpointed stream must start live (log-dirty is enabled by the live phase)',
        );
      if (!this.cb.postcopy || !this.cb.checkpoint)
        throw new MigrationError(
          MigrationErrorCode.ERR_CALLBACK,
          `${this.streamType} needs the postcopy and checkpoint callbacks`,
        );
      if (this.streamType === 'colo' && !this.cb.waitCheckpoint)
        throw new MigrationError(MigrationErrorCode.ERR_CALLBACK, 'COLO needs the waitCheckpoint callback');
    }
  }

  async run(): Promise<SaveStats> {
    try {
      this.ops = this.opts.ops ?? (await saveOpsFor(this.xen, this.domid));
      await this.ops.setup(this);
      if (this.ops.domainHeaderType === 2 && this.cb.switchQemuLogdirty) {
        await this.cb.switchQemuLogdirty(true);
        this.qemuLogdirty = true;
      }
      const size = this.ops.p2mSize;
      this.dirty = new PfnBitmap(size);
      this.deferred = new PfnBitmap(size);
      await this.writeHeaders();
      await this.writeRecords(this.ops.staticData(this));
      await this.writeRecords([{ name: 'STATIC_DATA_END' }]);
      await this.writeRecords(this.ops.startOfStream(this));

      let first = true;
      for (;;) {
        this.ops.checkVmState(this);
        if (first && this.live) {
          await this.sendMemoryLive();
          await this.suspendAndSendDirty(false);
        } else if (!first) {
          await this.suspendAndSendDirty(true);
        } else {
          await this.suspendAndSendAll();
        }
        await this.writeRecords(this.ops.endOfCheckpoint(this));

        if (this.streamType === 'plain') {
          if (this.opts.verify && this.live) await this.verifyPass();
          await this.writeRecords([{ name: 'END' }]);
          await this.flushStaging();
          break;
        }
        // checkpointed: CHECKPOINT, then hand over to the toolstack
        await this.writeRecords([{ name: 'CHECKPOINT' }]);
        this.stats.checkpoints++;
        first = false;
        let again: 'again' | 'stop';
        const round = this.stats.rounds[this.stats.rounds.length - 1]!;
        if (this.streamType === 'colo') {
          await this.flushStaging();
          const c = await this.cb.checkpoint!(round);
          if (c !== 'again')
            throw new MigrationError(MigrationErrorCode.ERR_CALLBACK, 'COLO checkpoint callback failed');
          await this.cb.postcopy!();
          this.suspended = false;
          again = await this.cb.waitCheckpoint!(round);
        } else {
          // Remus: resume first (the captured state is in staging or already written)
          await this.cb.postcopy!();
          this.suspended = false;
          await this.flushStaging();
          again = await this.cb.checkpoint!(round);
        }
        if (again !== 'again') break;
        throwIfAborted(this.signal);
      }
      this.phase = 'done';
      this.emitProgress(true);
      return this.finishStats();
    } finally {
      this.cleanup();
      if (this.qemuLogdirty) {
        this.qemuLogdirty = false;
        await this.cb.switchQemuLogdirty!(false).catch(() => undefined); // best effort, as libxc
      }
    }
  }

  /** Stats so far (also valid after a failure). */
  finishStats(): SaveStats {
    this.stats.totalMs = performance.now() - this.t0;
    this.stats.bytes = this.out.bytesWritten;
    if (this.suspendedAt) this.stats.suspendedMs = performance.now() - this.suspendedAt;
    return this.stats;
  }

  private cleanup(): void {
    for (const m of this.chunkMaps.values()) {
      try {
        m.unmap();
      } catch {
        /* best effort */
      }
    }
    this.chunkMaps.clear();
    if (this.logDirtyOn) {
      try {
        this.xen.logDirtyOff(this.domid);
      } catch {
        /* the domain may be gone; nothing to undo */
      }
      this.logDirtyOn = false;
    }
    try {
      this.ops?.cleanup(this);
    } catch {
      /* best effort */
    }
  }

  // ------------------------------------------------------------------------------------------
  // stream pieces

  private async writeHeaders(): Promise<void> {
    const v = this.xen.version();
    await this.out.writeRaw(
      encodeImageHeader({ version: 3 }),
      encodeDomainHeader({
        type: this.ops.domainHeaderType,
        pageShift: 12,
        reserved: 0,
        xenMajor: v.major,
        xenMinor: v.minor,
      }),
    );
  }

  private async writeRecords(records: LibxcRecord[]): Promise<void> {
    if (records.length === 0) return;
    const bufs = records.map((r) => encodeLibxcRecord(r));
    if (this.staging) {
      for (const b of bufs) this.staging.push({ header: b, data: new Uint8Array(0) });
      return;
    }
    await this.out.writeRaw(...bufs);
  }

  // ------------------------------------------------------------------------------------------
  // memory

  private enableLogDirty(): void {
    try {
      this.xen.logDirtyEnable(this.domid);
    } catch (first) {
      // as libxc: it may already be on (e.g. VRAM tracking); switch off and on again. If OFF fails
      // too (a PV guest without shadow paging: EINVAL), the first error is the cause (EOPNOTSUPP).
      try {
        this.xen.logDirtyOff(this.domid);
      } catch {
        throw first;
      }
      this.xen.logDirtyEnable(this.domid);
    }
    this.logDirtyOn = true;
  }

  /** xg_sr_save.c send_memory_live(), with the policy also told the measured rate. */
  private async sendMemoryLive(): Promise<void> {
    this.enableLogDirty();
    const policy = this.cb.precopyPolicy ?? defaultPrecopyPolicy;
    const size = this.ops.p2mSize;
    this.dirty.setAll();
    let dirtyCount = size;
    const ps: PrecopyStats = {
      iteration: 0,
      totalWritten: 0,
      dirtyCount: size,
      bytesPerSecond: 0,
      elapsedMs: 0,
    };
    const tLive = performance.now();
    let x = 0;
    for (;;) {
      let d = policy({ ...ps });
      x++;
      if (dirtyCount > 0 && d !== 'abort') {
        this.phase = 'live';
        this.iteration = x - 1;
        const t = performance.now();
        const b0 = this.out.bytesWritten;
        const sent = await this.sendDirtyPages(this.dirty, dirtyCount, true);
        const ms = performance.now() - t;
        this.liveBytes += this.out.bytesWritten - b0;
        this.liveMs += ms;
        this.stats.rounds.push({
          iteration: x - 1,
          kind: 'live',
          dirtyPages: dirtyCount,
          pages: sent,
          bytes: this.out.bytesWritten - b0,
          ms,
        });
      }
      if (d !== 'continue') {
        if (d === 'abort')
          throw new MigrationError(
            MigrationErrorCode.ERR_PRECOPY_ABORTED,
            'precopy policy aborted the migration',
            { domid: this.domid },
          );
        break;
      }
      ps.iteration = x;
      ps.totalWritten += dirtyCount;
      ps.dirtyCount = -1;
      ps.bytesPerSecond = this.rate();
      ps.elapsedMs = performance.now() - tLive;
      d = policy({ ...ps });
      if (d !== 'continue') {
        if (d === 'abort')
          throw new MigrationError(
            MigrationErrorCode.ERR_PRECOPY_ABORTED,
            'precopy policy aborted the migration',
            { domid: this.domid },
          );
        break;
      }
      const st = this.xen.logDirtyClean(this.domid, this.dirty.bytes, size, false);
      // the count we act on is what the bitmap holds (Xen's stats count the same pages)
      dirtyCount = st.dirtyCount;
      ps.dirtyCount = dirtyCount;
      ps.bytesPerSecond = this.rate();
      ps.elapsedMs = performance.now() - tLive;
    }
  }

  private lap(phase: string): void {
    if (!this.trace) return;
    const t = performance.now();
    const ph = (this.stats.phases ??= {});
    if (this.lapAt > 0) ph[phase] = Math.round(((ph[phase] ?? 0) + t - this.lapAt) * 10) / 10;
    this.lapAt = t;
  }

  private rate(): number {
    return this.liveMs > 0 ? (this.liveBytes / this.liveMs) * 1000 : 0;
  }

  private async doSuspend(): Promise<void> {
    this.phase = 'suspend';
    this.emitProgress(true);
    throwIfAborted(this.signal);
    this.suspendedAt = this.suspendedAt || performance.now();
    await this.cb.suspend();
    this.suspended = true;
    const info = this.xen.domainInfo(this.domid);
    const ok = (info.shutdown && info.shutdownReason === SHUTDOWN_SUSPEND) || info.paused;
    if (!ok)
      throw new MigrationError(MigrationErrorCode.ERR_NOT_SUSPENDED, 'domain has not been suspended', {
        domid: this.domid,
      });
  }

  /** Non-live: suspend, then every page. */
  private async suspendAndSendAll(): Promise<void> {
    await this.doSuspend();
    this.phase = 'final';
    this.dirty.setAll();
    const t = performance.now();
    const b0 = this.out.bytesWritten;
    const sent = await this.sendDirtyPages(this.dirty, this.ops.p2mSize, false);
    const ms = performance.now() - t;
    this.stats.rounds.push({
      iteration: 0,
      kind: 'final',
      dirtyPages: this.ops.p2mSize,
      pages: sent,
      bytes: this.out.bytesWritten - b0,
      ms,
    });
  }

  /** xg_sr_save.c suspend_and_send_dirty(): final CLEAN, deferred pages, (COLO) secondary's pfns. */
  private async suspendAndSendDirty(checkpoint: boolean): Promise<void> {
    await this.doSuspend();
    this.phase = checkpoint ? 'checkpoint' : 'final';
    if (checkpoint) this.iteration = this.stats.checkpoints;
    const size = this.ops.p2mSize;
    const { dirtyCount } = this.xen.logDirtyClean(this.domid, this.dirty.bytes, size, true);
    this.dirty.or(this.deferred);
    if (checkpoint && this.streamType === 'colo' && this.cb.secondaryDirtyPfns) {
      const list = await this.cb.secondaryDirtyPfns();
      for (let i = 0; i < list.length; i++) {
        const p = Number(list[i]!);
        if (!(p >= 0 && p < size))
          throw new MigrationError(
            MigrationErrorCode.ERR_DOMAIN_MISMATCH,
            `secondary reported dirty pfn ${hex(p)} beyond the p2m (${size} pfns)`,
            { domid: this.domid, pfn: p },
          );
        this.dirty.set(p);
      }
    }
    const count = this.dirty.count();
    this.deferred.clearAll();
    if (this.streamType !== 'plain' && this.opts.staging) this.startStaging(count);
    const t = performance.now();
    const b0 = this.out.bytesWritten + this.stagedBytes();
    const sent = await this.sendDirtyPages(this.dirty, count, false);
    const rs: RoundStats = {
      iteration: checkpoint ? this.stats.checkpoints : this.stats.rounds.length,
      kind: checkpoint ? 'checkpoint' : 'final',
      dirtyPages: dirtyCount,
      pages: sent,
      bytes: this.out.bytesWritten + this.stagedBytes() - b0,
      ms: performance.now() - t,
    };
    this.stats.rounds.push(rs);
  }

  private async verifyPass(): Promise<void> {
    await this.writeRecords([{ name: 'VERIFY' }]);
    this.dirty.setAll();
    await this.sendDirtyPages(this.dirty, this.ops.p2mSize, false);
    this.xen.logDirtyPeek(this.domid, this.dirty.bytes, this.ops.p2mSize);
  }

  /**
   * Walk the bitmap in pfn order, in batches of MAX_BATCH_SIZE; clears what it sends. The next
   * batch is queried and mapped while the previous one is being written (one write in flight, as
   * the writer allows); staged batches are copied at once.
   */
  private async sendDirtyPages(bitmap: PfnBitmap, expected: number, live: boolean): Promise<number> {
    const pfns = new Float64Array(MAX_BATCH_SIZE);
    this.roundPages = expected;
    this.roundSent = 0;
    let from = 0;
    let sent = 0;
    const size = this.ops.p2mSize;
    let prev: { batch: PreparedBatch; written: Promise<void> } | null = null;
    let cur: PreparedBatch | null = null;
    const retire = async (p: { batch: PreparedBatch; written: Promise<void> }): Promise<void> => {
      try {
        await p.written;
      } finally {
        p.batch.release();
      }
      sent += p.batch.count;
      this.roundSent = sent;
      this.stats.pages += p.batch.count;
      if (live) await this.pacer.take(p.batch.bytes, this.signal);
      this.emitProgress(false);
    };
    try {
      this.lapAt = 0;
      this.lap('');
      while (from < size) {
        throwIfAborted(this.signal);
        const [n, next] = bitmap.collect(from, pfns);
        from = next;
        this.lap('collect');
        if (n === 0) break;
        cur = this.prepareBatch(pfns.subarray(0, n), live);
        if (prev) {
          const p = prev;
          prev = null;
          await retire(p);
          this.lap('retire');
        }
        const b = cur;
        cur = null;
        prev = { batch: b, written: this.emitBatch(b) };
        this.lap('emit');
      }
      if (prev) {
        const p = prev;
        prev = null;
        await retire(p);
      }
    } finally {
      // a failure with a write in flight: the mapping it reads from stays until the write settled
      if (prev) {
        const p: { batch: PreparedBatch; written: Promise<void> } = prev;
        await p.written.catch(() => undefined);
        p.batch.release();
      }
      (cur as PreparedBatch | null)?.release();
    }
    bitmap.clearAll();
    return sent;
  }

  /** Write (or stage) a prepared batch; resolves once its bytes were handed over (never throws synchronously). */
  private async emitBatch(b: PreparedBatch): Promise<void> {
    if (b.header.length === 0) return; // every entry was a hole of an HVM guest: nothing to send
    if (this.staging) this.stage(b.header, b.chunks);
    else await this.out.writeRaw(b.header, ...b.chunks);
  }

  /**
   * One PAGE_DATA record for up to 1024 pfns (xg_sr_save.c write_batch): page types, one mapping
   * of the data-bearing pages, the record header. Synchronous; `pfns` may be reused once it
   * returns. The caller writes `header` + `chunks`, then calls release().
   */
  private prepareBatch(pfns: Float64Array, live: boolean): PreparedBatch {
    const n = pfns.length;
    const { types, dataIdx, dataFrames } = this.classifyBatch(pfns, live);
    this.stats.dataPages += dataIdx.length;
    let mapping: Mapping | null = null;
    const chunks: Uint8Array[] = [];
    try {
      if (dataIdx.length > 0 && this.staging && this.opts.persistentMappings && this.info.type === 'hvm') {
        // checkpoint, suspended: copy out of mappings kept from earlier checkpoints (stage() copies)
        this.pagesFromChunks(pfns, dataIdx, chunks);
      } else if (dataIdx.length > 0) {
        mapping = this.mapDataPages(pfns, dataIdx, dataFrames);
        const bytes = mapping.bytes;
        if (this.info.type === 'pv') this.pvChunks(pfns, types, dataIdx, bytes, live, chunks);
        else chunks.push(bytes);
        if (!this.opts.zeroCopy && !this.staging) {
          // the sink may keep what it is given after the mapping is gone: give it a copy
          for (let c = 0; c < chunks.length; c++)
            if (chunks[c]!.buffer === bytes.buffer) chunks[c] = chunks[c]!.slice();
        }
      }
      this.lap('map');
      const header = this.pageDataHeader(pfns, types);
      this.lap('header');
      let total = header.length;
      for (const c of chunks) total += c.length;
      const m = mapping;
      mapping = null;
      // mappings replaced while this batch was gathered may back its views: they go with it
      const retired = this.retiredMaps.splice(0);
      const release = () => {
        m?.unmap();
        for (const r of retired) r.unmap();
      };
      return { header, chunks, bytes: total, count: n, release };
    } catch (e) {
      mapping?.unmap();
      while (this.retiredMaps.length) this.retiredMaps.pop()!.unmap();
      throw e;
    }
  }

  /**
   * A batch's page types (pfnTypes on the entries that have a frame), the batch indices of the
   * data-bearing entries and their frames, compacted in place (no index arrays, no BigInt per page).
   */
  private classifyBatch(
    pfns: Float64Array,
    live: boolean,
  ): { types: Uint8Array; dataIdx: number[]; dataFrames: BigUint64Array } {
    const n = pfns.length;
    const ops = this.ops;
    // frames of the entries that have one, compacted (validIdx: their batch index); a copy keeps
    // them, since pfnTypes overwrites its argument with the types. Scratch buffers reused from batch
    // to batch (everything here is consumed before prepareBatch returns): no allocation per batch.
    const { frames, fw, validIdx } = this.scratch;
    const types = this.scratch.types.subarray(0, n);
    let nValid = 0;
    for (let i = 0; i < n; i++) {
      const f = ops.pfnToFrame(pfns[i]!);
      if (f < 0) {
        // no frame (ballooned PV page): send as XTAB now, again after the suspend
        types[i] = PageType.XTAB;
        if (live) this.deferred.set(pfns[i]!);
      } else {
        setFrame(frames, fw, nValid, f);
        validIdx[nValid++] = i;
      }
    }
    const dataIdx: number[] = [];
    const mf = this.scratch.dataFrames.subarray(0, nValid);
    const mw = this.scratch.dw;
    if (nValid === 0) return { types, dataIdx, dataFrames: mf };
    const q = frames.subarray(0, nValid);
    mf.set(q);
    this.lap('classify');
    this.xen.pfnTypes(this.domid, q);
    this.lap('pfnTypes');
    for (let j = 0; j < nValid; j++) {
      // XEN_DOMCTL_PFINFO_* type: bits 31-28 of the (64-bit) word
      const t = HOST_LITTLE_ENDIAN ? fw[2 * j]! >>> 28 : Number((q[j]! >> 28n) & 0xfn);
      const i = validIdx[j]!;
      if (!pageTypeValid(t))
        throw new MigrationError(
          MigrationErrorCode.ERR_PAGE_TYPE,
          `unknown page type ${t} for pfn ${hex(pfns[i]!)}`,
          {
            domid: this.domid,
            pfn: pfns[i],
          },
        );
      types[i] = t;
      if (pageTypeHasData(t)) {
        // compact the frame in place: entry dataIdx.length <= j
        const d = dataIdx.length;
        if (d !== j) {
          mw[2 * d] = mw[2 * j]!;
          mw[2 * d + 1] = mw[2 * j + 1]!;
        }
        dataIdx.push(i);
      }
    }
    this.lap('types');
    return { types, dataIdx, dataFrames: mf.subarray(0, dataIdx.length) };
  }

  /** One mapping of the batch's data-bearing pages; a page that failed to map fails the save. */
  private mapDataPages(pfns: Float64Array, dataIdx: number[], frames: BigUint64Array): Mapping {
    const mapping = this.xen.map(this.domid, frames, 'r');
    const errs = mapping.errors;
    for (let j = 0; j < errs.length; j++) {
      if (errs[j] === 0) continue;
      mapping.unmap();
      throw new MigrationError(
        MigrationErrorCode.ERR_MAP_FAILED,
        `mapping of pfn ${hex(pfns[dataIdx[j]!]!)} failed (errno ${errs[j]})`,
        { domid: this.domid, pfn: pfns[dataIdx[j]!] },
      );
    }
    return mapping;
  }

  /** PV: page tables are rewritten into private copies; everything else goes from the mapping. */
  private pvChunks(
    pfns: Float64Array,
    types: Uint8Array,
    dataIdx: number[],
    bytes: Uint8Array,
    live: boolean,
    chunks: Uint8Array[],
  ): void {
    let runStart = 0;
    for (let j = 0; j < dataIdx.length; j++) {
      const t = types[dataIdx[j]!]!;
      if (!isPageTable(t)) continue;
      const src = bytes.subarray(j * PAGE_SIZE, (j + 1) * PAGE_SIZE);
      const dst = new Uint8Array(PAGE_SIZE);
      const r = this.ops.normalisePage(this, t, src, dst);
      if (j > runStart) chunks.push(bytes.subarray(runStart * PAGE_SIZE, j * PAGE_SIZE));
      if (r === 'ok') {
        chunks.push(dst);
      } else {
        if (!live)
          throw new MigrationError(
            MigrationErrorCode.ERR_PV_STATE,
            `page table at pfn ${hex(pfns[dataIdx[j]!]!)} cannot be normalised`,
            { domid: this.domid, pfn: pfns[dataIdx[j]!] },
          );
        // inconsistent while the guest runs: XTAB now, again after the suspend
        types[dataIdx[j]!] = PageType.XTAB;
        this.stats.dataPages--;
        this.deferred.set(pfns[dataIdx[j]!]!);
      }
      runStart = j + 1;
    }
    if (runStart < dataIdx.length) chunks.push(bytes.subarray(runStart * PAGE_SIZE));
  }

  /**
   * The PAGE_DATA header of a batch. An HVM (or PVH) guest's holes (XTAB: gfns without memory) are
   * left out: a restore does nothing for them (libxc's neither populates nor maps them, nor needs
   * every gfn to be listed), and most of such a guest's gfn space is holes (a 128 MiB PVH guest:
   * 1,011,696 of 1,044,480 gfns), which every receiver would otherwise decode one by one. libxc lists
   * them; PV streams keep them (the p2m is rebuilt from them). Empty when nothing is left to send.
   */
  private pageDataHeader(pfns: Float64Array, types: Uint8Array): Uint8Array {
    if (this.info.type !== 'hvm') return encodePageDataHeader({ pfns, types }).bytes;
    const n = pfns.length;
    let kept = 0;
    for (let i = 0; i < n; i++) if (types[i] !== PageType.XTAB) kept++;
    if (kept === n) return encodePageDataHeader({ pfns, types }).bytes;
    if (kept === 0) return EMPTY_HEADER;
    const kp = new Float64Array(kept);
    const kt = new Uint8Array(kept);
    for (let i = 0, k = 0; i < n; i++) {
      if (types[i] === PageType.XTAB) continue;
      kp[k] = pfns[i]!;
      kt[k++] = types[i]!;
    }
    return encodePageDataHeader({ pfns: kp, types: kt }).bytes;
  }

  /** persistentMappings: views of the data-bearing pages, consecutive pages merged into one view. */
  private pagesFromChunks(pfns: Float64Array, dataIdx: number[], chunks: Uint8Array[]): void {
    const CHUNK = MAX_BATCH_SIZE;
    for (const i of dataIdx) {
      const f = this.ops.pfnToFrame(pfns[i]!);
      const key = Math.floor(f / CHUNK);
      const off = f - key * CHUNK;
      let m = this.chunkMaps.get(key);
      if (!m || m.errors[off] !== 0) {
        // absent, or that page was not mapped then (populated since): map the chunk (again); the
        // old mapping may back views of this batch: unmapped once the batch is staged
        if (m) this.retiredMaps.push(m);
        const first = key * CHUNK;
        const n = Math.min(CHUNK, this.ops.p2mSize - first);
        m = this.xen.map(this.domid, frameRange(first, n), 'r');
        this.chunkMaps.set(key, m);
        if (m.errors[off] !== 0)
          throw new MigrationError(
            MigrationErrorCode.ERR_MAP_FAILED,
            `mapping of pfn ${hex(pfns[i]!)} failed (errno ${m.errors[off]})`,
            { domid: this.domid, pfn: pfns[i] },
          );
      }
      const bytes = m.bytes;
      const page = bytes.subarray(off * PAGE_SIZE, (off + 1) * PAGE_SIZE);
      const last = chunks[chunks.length - 1];
      if (last && last.buffer === page.buffer && last.byteOffset + last.length === page.byteOffset) {
        chunks[chunks.length - 1] = new Uint8Array(last.buffer, last.byteOffset, last.length + PAGE_SIZE);
      } else {
        chunks.push(page);
      }
    }
  }

  // ------------------------------------------------------------------------------------------
  // staging (checkpoints): copies taken while suspended, written after the resume

  private startStaging(pages: number): void {
    const need = pages * PAGE_SIZE;
    if (!this.stagingBuf || this.stagingBuf.length < need)
      this.stagingBuf = new Uint8Array(Math.max(need, PAGE_SIZE));
    this.stagingUsed = 0;
    this.staging = [];
  }

  private stage(header: Uint8Array, chunks: Uint8Array[]): void {
    let len = 0;
    for (const c of chunks) len += c.length;
    if (this.stagingUsed + len > this.stagingBuf!.length) {
      // more than counted (deferred pages); grow, keeping what is staged
      const bigger = new Uint8Array((this.stagingUsed + len) * 2);
      bigger.set(this.stagingBuf!.subarray(0, this.stagingUsed));
      const old = this.stagingBuf!;
      this.stagingBuf = bigger;
      for (const s of this.staging!) {
        if (s.data.length && s.data.buffer === old.buffer)
          s.data = bigger.subarray(s.data.byteOffset, s.data.byteOffset + s.data.length);
      }
    }
    const data = this.stagingBuf!.subarray(this.stagingUsed, this.stagingUsed + len);
    let o = 0;
    for (const c of chunks) {
      data.set(c, o);
      o += c.length;
    }
    this.stagingUsed += len;
    this.staging!.push({ header, data });
  }

  private stagedBytes(): number {
    if (!this.staging) return 0;
    let n = 0;
    for (const s of this.staging) n += s.header.length + s.data.length;
    return n;
  }

  private async flushStaging(): Promise<void> {
    const st = this.staging;
    if (!st) return;
    this.staging = null;
    // write in groups to keep the number of syscalls low
    let group: Uint8Array[] = [];
    let groupBytes = 0;
    for (const s of st) {
      group.push(s.header);
      if (s.data.length) group.push(s.data);
      groupBytes += s.header.length + s.data.length;
      if (group.length >= 64 || groupBytes >= 8 << 20) {
        await this.out.writeRaw(...group);
        group = [];
        groupBytes = 0;
      }
    }
    if (group.length) await this.out.writeRaw(...group);
  }

  // ------------------------------------------------------------------------------------------

  private emitProgress(force: boolean): void {
    const p = this.cb.progress;
    if (!p) return;
    const now = performance.now();
    if (!force && now - this.progressAt < 100) return;
    this.progressAt = now;
    const rate = this.rate();
    p({
      phase: this.phase,
      iteration: this.iteration,
      roundPages: this.roundPages,
      roundSent: this.roundSent,
      bytes: this.out.bytesWritten,
      bytesPerSecond: rate,
      expectedDowntimeMs: expectedDowntimeMs(this.roundPages - this.roundSent, rate),
    });
  }
}

// Frame numbers are moved into and between BigUint64Arrays through 32-bit word views on
// little-endian hosts: no BigInt allocation per page in the batch loop.
const EMPTY_HEADER = new Uint8Array(0);

function isPageTable(t: number): boolean {
  return (t >= PageType.L1TAB && t <= PageType.L4TAB) || (t >= PageType.L1TAB_PIN && t <= PageType.L4TAB_PIN);
}

/**
 * Save a domain's libxc stream to `out`. Does not resume the guest on failure: the toolstack
 * layer (src/toolstack) owns that decision, as libxl does in Xen.
 */
export async function libxcSave(opts: LibxcSaveOptions): Promise<SaveStats> {
  if (opts.signal?.aborted) throw abortError(opts.signal);
  const engine = new SaveEngine(opts);
  return engine.run();
}

export { DOMAIN_TYPE_X86_HVM };
