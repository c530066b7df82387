// The libxc-layer restore engine (xg_sr_restore.c's role): headers, then records until END, with
// checkpoint buffering for Remus/COLO. Page payloads are read straight into mapped guest memory:
// the data-bearing pages of a PAGE_DATA batch are mapped as one region and the payload is read into
// it in one go (PV page tables are then localised in place).
import {
  pageTypeHasData,
  PageType,
  StreamError,
  StreamErrorCode,
  type LibxcRecord,
  type LibxcRecordItem,
  type PageDataRecord,
  type StreamItem,
} from '../../stream/index.js';
import type { Hypervisor, Mapping } from '../../xen/types.js';
import { SparsePfnSet } from '../bitmap.js';
import type { StreamCursor } from '../cursor.js';
import { abortable, MigrationError, MigrationErrorCode, throwIfAborted } from '../errors.js';
import { hvmRestoreOps } from './hvm.js';
import { hex, tableLevel } from '../pv/layout.js';
import type {
  RestoreCallbacks,
  RestoreContext,
  RestoreOps,
  RestoreStats,
  RestoreStreamType,
} from './types.js';
import { PAGE_SIZE } from '../../xen/constants.js';
import { setFrame } from '../frames.js';

/** Bytes of bookkeeping counted per buffered checkpoint record on top of its stream size. */
const BUFFERED_RECORD_OVERHEAD = 256;

export interface LibxcRestoreOptions {
  xen: Hypervisor;
  domid: number;
  /** positioned at the libxc image header (after LIBXC_CONTEXT for wrapped streams) */
  cursor: StreamCursor;
  streamType?: RestoreStreamType;
  callbacks?: RestoreCallbacks;
  signal?: AbortSignal;
  ops?: RestoreOps;
  /** Largest checkpoint buffered before it is applied (default: twice the domain's memory span). */
  maxCheckpointBytes?: number;
  /** Remus, HVM: load the register state at every applied checkpoint (not only at failover). */
  completeEachCheckpoint?: boolean;
}

interface Buffered {
  item: LibxcRecordItem;
  payload: Uint8Array | null;
}

export async function restoreOpsFor(xen: Hypervisor, domid: number): Promise<RestoreOps> {
  const info = xen.domainInfo(domid);
  if (info.type === 'hvm') return hvmRestoreOps();
  const { pvRestoreOps } = await import('./pv.js');
  return pvRestoreOps();
}

class RestoreEngine implements RestoreContext {
  readonly xen: Hypervisor;
  readonly domid: number;
  readonly info;
  readonly streamType: RestoreStreamType;
  private ops!: RestoreOps;
  private readonly cursor: StreamCursor;
  private readonly cb: RestoreCallbacks;
  private readonly populated = new SparsePfnSet();
  private populatedCount = 0;
  private maxPfn = 0;
  private buffering = false;
  private buffer: Buffered[] = [];
  private bufferedBytes = 0;
  private maxBuffered = 0;
  private staticDone = false;
  private verify = false;
  private lastItem: StreamItem | null = null;
  private readonly t0 = performance.now();
  private readonly stats: RestoreStats;

  constructor(private readonly opts: LibxcRestoreOptions) {
    this.xen = opts.xen;
    this.domid = opts.domid;
    this.cursor = opts.cursor;
    this.streamType = opts.streamType ?? 'plain';
    this.cb = opts.callbacks ?? {};
    this.info = this.xen.domainInfo(this.domid);
    this.stats = {
      domid: this.domid,
      domainType: this.info.type,
      streamType: this.streamType,
      records: 0,
      pages: 0,
      holes: 0,
      checkpoints: 0,
      endedBy: 'END',
      verifyMismatches: 0,
      totalMs: 0,
    };
    if (this.streamType !== 'plain' && !this.cb.checkpoint)
      throw new MigrationError(
        MigrationErrorCode.ERR_CALLBACK,
        `${this.streamType} restore needs the checkpoint callback`,
      );
  }

  private mismatch(msg: string, item?: StreamItem, pfn?: number): MigrationError {
    const where = item ? ` at offset ${item.offset} (record ${item.index}, ${item.name})` : '';
    return new MigrationError(MigrationErrorCode.ERR_DOMAIN_MISMATCH, `${msg}${where}`, {
      domid: this.domid,
      ...(pfn !== undefined ? { pfn } : {}),
    });
  }

  async run(): Promise<RestoreStats> {
    try {
      this.ops = this.opts.ops ?? (await restoreOpsFor(this.xen, this.domid));
      await this.readHeaders();
      await this.ops.setup(this);
      this.maxPfn = this.ops.maxPfn(this);
      this.maxBuffered =
        this.opts.maxCheckpointBytes ??
        2 * Math.max(this.info.maxPages, this.info.totPages) * PAGE_SIZE + (64 << 20);

      for (;;) {
        throwIfAborted(this.opts.signal);
        let item: StreamItem | null;
        try {
          item = await this.cursor.next();
        } catch (e) {
          if (this.buffering) return await this.failover(e);
          throw e;
        }
        if (item === null) {
          if (this.buffering)
            return await this.failover(
              new MigrationError(MigrationErrorCode.ERR_INCOMPLETE, 'stream ended inside a checkpoint'),
            );
          throw new MigrationError(MigrationErrorCode.ERR_INCOMPLETE, 'libxc stream ended without END', {
            domid: this.domid,
          });
        }
        this.lastItem = item;
        if (item.kind !== 'record' || item.layer !== 'libxc') {
          throw new StreamError(
            StreamErrorCode.ERR_ORDER,
            `unexpected ${item.name} inside the libxc stream`,
            {
              offset: item.offset,
              recordIndex: item.index,
              recordType: item.name,
              layer: item.layer,
            },
          );
        }
        this.stats.records++;
        const name = item.record.name;
        if (this.buffering && name !== 'END' && name !== 'CHECKPOINT') {
          try {
            await this.bufferRecord(item);
          } catch (e) {
            if (e instanceof BufferReadError) return await this.failover(e.cause);
            throw e;
          }
          continue;
        }
        if (name === 'END') {
          // buffered records of an incomplete checkpoint are discarded (xg_sr_restore.c)
          this.buffer = [];
          break;
        }
        if (name === 'CHECKPOINT') {
          const r = await this.handleCheckpoint();
          if (r === 'failover')
            return await this.failover(
              new MigrationError(MigrationErrorCode.ERR_INCOMPLETE, 'toolstack reported failover'),
            );
          continue;
        }
        await this.processRecord(item, null);
      }
      await this.complete();
      return this.finish('END');
    } finally {
      try {
        this.ops?.cleanup(this);
      } catch {
        /* best effort */
      }
    }
  }

  private finish(endedBy: 'END' | 'failover'): RestoreStats {
    this.stats.endedBy = endedBy;
    this.stats.totalMs = performance.now() - this.t0;
    return this.stats;
  }

  private async readHeaders(): Promise<void> {
    const ih = await this.cursor.next();
    if (!ih || ih.kind !== 'image-header')
      throw new MigrationError(MigrationErrorCode.ERR_INCOMPLETE, 'no libxc image header');
    const dh = await this.cursor.next();
    if (!dh || dh.kind !== 'domain-header')
      throw new MigrationError(MigrationErrorCode.ERR_INCOMPLETE, 'no libxc domain header');
    const want = this.info.type === 'hvm' ? 2 : 1;
    const ops = this.opts.ops ?? this.ops;
    if (dh.header.type !== want || ops.domainHeaderType !== want) {
      const names: Record<number, string> = { 1: 'x86 PV', 2: 'x86 HVM' };
      throw this.mismatch(
        `unable to restore ${names[dh.header.type] ?? `type ${dh.header.type}`} stream into ${names[want]} domain`,
        dh,
      );
    }
    if (dh.header.pageShift !== 12) throw this.mismatch(`invalid page size 2^${dh.header.pageShift}`, dh);
  }

  // ------------------------------------------------------------------------------------------

  private async handleCheckpoint(): Promise<'ok' | 'failover'> {
    if (this.streamType === 'plain') {
      const it = this.lastItem!;
      throw new StreamError(StreamErrorCode.ERR_ORDER, 'CHECKPOINT record in a plain stream', {
        offset: it.offset,
        recordIndex: it.index,
        recordType: 'CHECKPOINT',
        layer: 'libxc',
      });
    }
    const r = await this.cb.checkpoint!();
    if (r === 'failover') {
      if (this.buffering) return 'failover';
      throw new MigrationError(
        MigrationErrorCode.ERR_INCOMPLETE,
        'channel broke before the first complete checkpoint',
        { domid: this.domid },
      );
    }
    if (r !== 'success')
      throw new MigrationError(
        MigrationErrorCode.ERR_CALLBACK,
        'toolstack failed to process its checkpoint records',
        { domid: this.domid },
      );
    if (this.buffering) {
      const records = this.buffer;
      this.buffer = [];
      this.bufferedBytes = 0;
      for (const b of records) await this.processRecord(b.item, b.payload);
    } else {
      this.buffering = true;
    }
    this.stats.checkpoints++;
    if (this.streamType === 'colo' || (this.opts.completeEachCheckpoint && this.info.type === 'hvm')) {
      // COLO: the secondary runs between checkpoints, state is loaded at each one. Remus (HVM,
      // optional): loading the register state at each checkpoint is idempotent and keeps the backup
      // resumable as it is, so a failover only unpauses.
      await this.ops.streamComplete(this);
    }
    await this.cb.checkpointApplied?.(this.stats.checkpoints);
    this.cb.progress?.({
      records: this.stats.records,
      pages: this.stats.pages,
      bytes: this.lastItem!.offset,
      checkpoints: this.stats.checkpoints,
    });
    if (this.streamType === 'colo') {
      // xg_sr_restore.c handle_checkpoint (COLO): postcopy, wait_checkpoint, suspend, then the
      // secondary's dirty pfns on the back channel
      for (const step of ['postcopy', 'waitCheckpoint', 'suspend'] as const) {
        const f = this.cb[step];
        if (!f) continue;
        const r = await f.call(this.cb);
        if (r === 'failover') return 'failover';
        if (r !== 'ok')
          throw new MigrationError(MigrationErrorCode.ERR_CALLBACK, `COLO ${step} callback failed`, {
            domid: this.domid,
          });
      }
      if (this.cb.sendDirtyPfns) await this.cb.sendDirtyPfns(this.secondaryDirtyPfns());
    }
    return 'ok';
  }

  /** COLO: CLEAN the secondary's log-dirty bitmap (enabled by the toolstack when it started the SVM). */
  private secondaryDirtyPfns(): Float64Array {
    const pages = this.xen.nrGpfns(this.domid);
    const bitmap = new Uint8Array(Math.ceil(pages / 64) * 8);
    this.xen.logDirtyClean(this.domid, bitmap, pages, false);
    const out: number[] = [];
    for (let i = 0; i < bitmap.length; i++) {
      const b = bitmap[i]!;
      if (b === 0) continue;
      for (let k = 0; k < 8; k++) if (b & (1 << k)) out.push(i * 8 + k);
    }
    return Float64Array.from(out);
  }

  private async bufferRecord(item: LibxcRecordItem): Promise<void> {
    let payload: Uint8Array | null = null;
    // what a buffered record costs: its bytes (payload, pfns) plus the objects that hold them, so
    // that records without data (XTAB entries, small records) count too
    const size = item.size + BUFFERED_RECORD_OVERHEAD;
    const r = item.record;
    if (r.name === 'PAGE_DATA') {
      const len = r.dataPages * PAGE_SIZE;
      if (this.bufferedBytes + len > this.maxBuffered)
        throw new MigrationError(
          MigrationErrorCode.ERR_UNSUPPORTED,
          `checkpoint exceeds ${this.maxBuffered} buffered bytes`,
          { domid: this.domid },
        );
      payload = new Uint8Array(len);
      try {
        if (r.readPayloadInto) await abortable(r.readPayloadInto(payload), this.opts.signal);
        else if (r.data) payload.set(r.data);
      } catch (e) {
        // a read error inside a buffered checkpoint is a broken channel (xg_sr_restore.c: failover)
        throw new BufferReadError(e);
      }
      // keep the header part only; the record's views die with the next item
      item = { ...item, record: { ...r, pfns: r.pfns.slice(), types: r.types.slice(), data: null } };
    } else {
      item = { ...item, record: cloneRecord(r) };
    }
    this.bufferedBytes += size;
    if (this.bufferedBytes > this.maxBuffered)
      throw new MigrationError(
        MigrationErrorCode.ERR_UNSUPPORTED,
        `checkpoint exceeds ${this.maxBuffered} buffered bytes`,
        { domid: this.domid },
      );
    this.buffer.push({ item, payload });
  }

  private async failover(cause: unknown): Promise<RestoreStats> {
    // discard the partial checkpoint; the domain holds the last complete one
    this.buffer = [];
    this.bufferedBytes = 0;
    if (this.streamType !== 'colo') await this.complete();
    const s = this.finish('failover');
    (s as RestoreStats & { failoverCause?: unknown }).failoverCause = cause;
    return s;
  }

  private async complete(): Promise<void> {
    if (!this.staticDone) {
      // v2 streams and degenerate ones: the policy step still happens once
      this.staticDataEnd();
    }
    await this.ops.streamComplete(this);
  }

  private staticDataEnd(): void {
    if (this.staticDone) return;
    this.staticDone = true;
    const missing = this.ops.staticDataComplete(this);
    this.cb.staticDataDone?.(missing);
  }

  // ------------------------------------------------------------------------------------------

  private async processRecord(item: LibxcRecordItem, payload: Uint8Array | null): Promise<void> {
    const r = item.record;
    switch (r.name) {
      case 'PAGE_DATA':
        if (!this.staticDone) this.staticDataEnd(); // v2: implied at the first PAGE_DATA
        await this.processPageData(item, r, payload);
        return;
      case 'STATIC_DATA_END':
        this.staticDataEnd();
        return;
      case 'VERIFY':
        this.verify = true;
        return;
      case 'X86_PV_P2M_FRAMES':
        if (!this.staticDone) this.staticDataEnd(); // v2: implied at the first P2M_FRAMES
        break;
      case 'UNKNOWN':
        // an unknown optional record (the reader refuses unknown mandatory ones): libxc skips it;
        // the stream validator in front of the engine has recorded the warning
        return;
      default:
        break;
    }
    const handled = await this.ops.processRecord(this, r);
    if (!handled) {
      throw new StreamError(
        StreamErrorCode.ERR_DOMAIN_TYPE,
        `${r.name} record not handled for a ${this.info.type.toUpperCase()} domain`,
        {
          offset: item.offset,
          recordIndex: item.index,
          recordType: item.name,
          layer: 'libxc',
        },
      );
    }
  }

  private async processPageData(
    item: LibxcRecordItem,
    r: PageDataRecord,
    payload: Uint8Array | null,
  ): Promise<void> {
    const n = r.count;
    const { pfns, types } = r;
    // a record of holes only (the first round of an xl HVM stream is mostly such records) needs
    // nothing else
    if (this.checkEntries(item, r) === 0) {
      this.stats.holes += n;
      return;
    }
    this.populatePfns(item, r);

    const dataIdx: number[] = [];
    for (let i = 0; i < n; i++) {
      const t = types[i]!;
      if (pageTypeHasData(t)) dataIdx.push(i);
      else this.stats.holes++;
      if (t !== PageType.XTAB && t !== PageType.BROKEN) this.ops.setPageType(pfns[i]!, t);
    }
    if (dataIdx.length === 0) return;
    const frames = new BigUint64Array(dataIdx.length);
    const fw = new Uint32Array(frames.buffer);
    for (let j = 0; j < dataIdx.length; j++) setFrame(frames, fw, j, this.ops.pfnToFrame(pfns[dataIdx[j]!]!));
    let m: Mapping | null = null;
    let pending: Promise<unknown> | null = null;
    try {
      m = this.xen.map(this.domid, frames, 'rw');
      for (let j = 0; j < m.errors.length; j++) {
        if (m.errors[j] !== 0)
          throw new MigrationError(
            MigrationErrorCode.ERR_MAP_FAILED,
            `failed to map pfn ${hex(pfns[dataIdx[j]!]!)} (errno ${m.errors[j]})`,
            { domid: this.domid, pfn: pfns[dataIdx[j]!] },
          );
      }
      const target = m.bytes;
      if (this.verify) {
        const incoming = payload ?? (await abortable(readPayload(r), this.opts.signal));
        this.verifyPages(r, dataIdx, incoming, target);
        return;
      }
      if (payload) target.set(payload);
      else if (r.readPayloadInto) {
        // an abort leaves the read behind: the mapping stays until it settled (it writes into it)
        pending = r.readPayloadInto(target);
        await abortable(pending, this.opts.signal);
        pending = null;
      } else if (r.data) target.set(r.data);
      else throw new MigrationError(MigrationErrorCode.ERR_INCOMPLETE, 'PAGE_DATA without payload');
      for (let j = 0; j < dataIdx.length; j++) {
        const t = types[dataIdx[j]!]!;
        if (tableLevel(t) !== 0)
          this.ops.localisePage(
            this,
            t,
            target.subarray(j * PAGE_SIZE, (j + 1) * PAGE_SIZE),
            pfns[dataIdx[j]!]!,
          );
      }
      this.stats.pages += dataIdx.length;
    } finally {
      const mapping = m;
      if (pending) void pending.catch(() => undefined).finally(() => mapping?.unmap());
      else mapping?.unmap();
    }
  }

  /** Every entry checked before the domain is touched; returns how many need memory behind them. */
  private checkEntries(item: LibxcRecordItem, r: PageDataRecord): number {
    const { count: n, pfns, types } = r;
    const maxPfn = this.maxPfn;
    let backed = 0;
    for (let i = 0; i < n; i++) {
      const pfn = pfns[i]!;
      if (pfn > maxPfn)
        throw this.mismatch(`pfn ${hex(pfn)} beyond the domain's max pfn ${hex(maxPfn)}`, item, pfn);
      const t = types[i]!;
      if (t !== PageType.XTAB && t !== PageType.BROKEN) backed++;
    }
    return backed;
  }

  /** Back with RAM what needs it and is not backed yet, within the domain's configured size. */
  private populatePfns(item: LibxcRecordItem, r: PageDataRecord): void {
    const { count: n, pfns, types } = r;
    const toPopulate: number[] = [];
    for (let i = 0; i < n; i++) {
      const t = types[i]!;
      if (t === PageType.XTAB || t === PageType.BROKEN) continue;
      const pfn = pfns[i]!;
      if (!this.populated.has(pfn)) {
        this.populated.add(pfn);
        toPopulate.push(pfn);
      }
    }
    if (toPopulate.length) {
      // memory is bounded by the domain's size (its config), not by the stream or the gfn space
      const limit = this.info.maxPages;
      if (this.populatedCount + toPopulate.length > limit) {
        const first = toPopulate[Math.max(0, limit - this.populatedCount)]!;
        throw this.mismatch(
          `the stream populates more than the domain's ${limit} pages (${(limit * PAGE_SIZE) / 2 ** 20} MiB, its configured maximum): ` +
            `pfn ${hex(first)} would be page ${this.populatedCount + toPopulate.indexOf(first) + 1}`,
          item,
          first,
        );
      }
      this.populatedCount += toPopulate.length;
      this.ops.populate(this, toPopulate);
    }
  }

  /** Verify mode: the incoming pages must equal guest memory (PV page tables compared localised, as libxc). */
  private verifyPages(r: PageDataRecord, dataIdx: number[], incoming: Uint8Array, target: Uint8Array): void {
    const { pfns, types } = r;
    for (let j = 0; j < dataIdx.length; j++) {
      let a = incoming.subarray(j * PAGE_SIZE, (j + 1) * PAGE_SIZE);
      const t = types[dataIdx[j]!]!;
      if (tableLevel(t) !== 0) {
        a = a.slice();
        this.ops.localisePage(this, t, a, pfns[dataIdx[j]!]!);
      }
      const b = target.subarray(j * PAGE_SIZE, (j + 1) * PAGE_SIZE);
      if (Buffer.compare(a, b) !== 0) this.stats.verifyMismatches++;
    }
  }
}

/** The channel failed while a checkpoint's payload was being buffered. */
class BufferReadError extends Error {
  constructor(override readonly cause: unknown) {
    super('read error while buffering a checkpoint');
  }
}

async function readPayload(r: PageDataRecord): Promise<Uint8Array> {
  if (r.data) return r.data;
  const b = new Uint8Array(r.dataPages * PAGE_SIZE);
  await r.readPayloadInto!(b);
  return b;
}

/** Records other than PAGE_DATA own their bytes (the decoders copy blobs), so they can be kept. */
function cloneRecord(r: LibxcRecord): LibxcRecord {
  return r;
}

export async function libxcRestore(opts: LibxcRestoreOptions): Promise<RestoreStats> {
  return new RestoreEngine(opts).run();
}

export type { Hypervisor };
