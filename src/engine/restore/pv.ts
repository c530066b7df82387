// x86 PV restore operations: xg_sr_restore_x86_pv.c's role, for 64-bit guests.
// The stream's pfns get machine frames from populate (kept in a local p2m); page tables are
// localised (pfn -> mfn) in guest memory; vCPU state and the shared info are stashed and applied
// at stream completion together with the page-table pins and the guest's own p2m.
import type { LibxcRecord } from '../../stream/index.js';
import { MigrationError, MigrationErrorCode } from '../errors.js';
import {
  dataView,
  FrameTable,
  hex,
  INVALID,
  isPinned,
  M2p,
  PAGE_SIZE,
  readU64,
  SHINFO64,
  START_INFO64,
  tableLevel,
  VCPU32_SIZE,
  VCPU64,
  writeU64,
} from '../pv/layout.js';
import { localisePageTable, presentPfns } from '../pv/pagetable.js';
import { localiseVcpu } from '../pv/vcpu.js';
import { applyTsc, PolicyStash } from '../x86.js';
import type { RestoreContext, RestoreOps } from './types.js';
import { isXenError } from '../../xen/hypervisor.js';
import type { Mapping } from '../../xen/types.js';

/** entries per p2m page (64-bit guest) */
const FPP = 512;
/** libxc's MAX_PIN_BATCH */
const PIN_BATCH = 1024;
const NOTAB = 0;

export interface PvRestoreOptions {
  /** event channels written into the start info (libxl passes the new domain's); default: keep the stream's */
  storeEvtchn?: number;
  consoleEvtchn?: number;
  /**
   * Largest guest p2m (max_pfn + 1) a stream may ask for. Default: 4 x the domain's max pages, at
   * least 2^20 (4 GiB): the local p2m costs 9 bytes per pfn.
   */
  maxP2mSize?: number;
}

/** A vCPU's records, stashed until the stream completes. */
interface VcpuStash {
  basic?: Uint8Array;
  extended?: Uint8Array;
  xsave?: Uint8Array;
  msrs?: Uint8Array;
}

/** Results a toolstack wants after the restore (xc_domain_restore's store_mfn / console_mfn). */
export interface PvRestoreResults {
  storeMfn: number;
  consoleMfn: number;
}

type VcpuRecord = Extract<
  LibxcRecord,
  { name: 'X86_PV_VCPU_BASIC' | 'X86_PV_VCPU_EXTENDED' | 'X86_PV_VCPU_XSAVE' | 'X86_PV_VCPU_MSRS' }
>;

/** The restore's PV state (Xen's ctx->x86.pv.restore): what the records gave, until completion. */
class PvRestoreState {
  m2p: M2p | null = null;
  seenPvInfo = false;
  seenP2m = false;
  width = 8;
  readonly levels = 4;
  /** pfns 0..maxPfn, -1 before X86_PV_P2M_FRAMES */
  maxPfn = -1;
  /** pfn -> new mfn, -1 = not populated */
  p2m = new Float64Array(0);
  /** the stream's page type of each pfn */
  types = new Uint8Array(0);
  /** the guest's p2m leaf frames, as pfns */
  p2mPfns: number[] = [];
  /** largest p2m the stream may ask for */
  limit = 0;
  nrVcpus = 0;
  vcpus: VcpuStash[] = [];
  shinfo: Uint8Array | null = null;
  readonly policy = new PolicyStash();
  results: PvRestoreResults | null = null;
  /** pfns pinned by an earlier completion (pinning twice is an error in Xen) */
  readonly pinned = new Set<number>();

  /** the new mfn of pfn when it is in the new pseudo-physical map (local p2m and M2P agree), else -1 */
  mfnOf = (pfn: number): number => {
    if (!(pfn >= 0 && pfn <= this.maxPfn)) return INVALID;
    const mfn = this.p2m[pfn]!;
    if (mfn < 0 || !this.m2p) return INVALID;
    return this.m2p.pfn(mfn) === pfn ? mfn : INVALID;
  };
}

const pvError = (
  ctx: RestoreContext,
  msg: string,
  code: MigrationErrorCode = MigrationErrorCode.ERR_PV_STATE,
  pfn?: number,
) => new MigrationError(code, msg, { domid: ctx.domid, ...(pfn !== undefined ? { pfn } : {}) });

/** Xen refusing what the stream gives it (page tables: type conflicts, cycles, writable mappings). */
function refused(ctx: RestoreContext, f: () => void, what: string): void {
  try {
    f();
  } catch (e) {
    // the wrapper's argument checks (sizes this hypervisor does not take) are the stream's fault too
    if (e instanceof RangeError)
      throw new MigrationError(
        MigrationErrorCode.ERR_PV_STATE,
        `the stream's ${what} cannot be loaded: ${e.message}`,
        { domid: ctx.domid, cause: e },
      );
    if (!isXenError(e)) throw e;
    const why =
      what.includes('page-table') || what.startsWith('pin') ? " (the stream's page tables are invalid)" : '';
    throw new MigrationError(MigrationErrorCode.ERR_PV_STATE, `Xen refused the ${what}: ${e.code}${why}`, {
      domid: ctx.domid,
      cause: e,
    });
  }
}

function mapOne(ctx: RestoreContext, mfn: number, what: string): Mapping {
  const m = ctx.xen.map(ctx.domid, new BigUint64Array([BigInt(mfn)]), 'rw');
  if (m.errors[0] !== 0) {
    m.unmap();
    throw pvError(
      ctx,
      `cannot map ${what} (mfn ${hex(mfn)}, errno ${m.errors[0]})`,
      MigrationErrorCode.ERR_MAP_FAILED,
    );
  }
  return m;
}

/** The local p2m grows to newMax (X86_PV_P2M_FRAMES), within the domain's limit. */
function expand(st: PvRestoreState, ctx: RestoreContext, newMax: number): void {
  if (newMax + 1 > st.limit) {
    const msg = `X86_PV_P2M_FRAMES asks for ${newMax + 1} pfns, more than this domain allows (${st.limit})`;
    throw pvError(ctx, msg, MigrationErrorCode.ERR_DOMAIN_MISMATCH);
  }
  const np = new Float64Array(newMax + 1).fill(INVALID);
  np.set(st.p2m);
  const nt = new Uint8Array(newMax + 1);
  nt.set(st.types);
  st.p2m = np;
  st.types = nt;
  st.maxPfn = newMax;
}

/** Back pfns with new frames (only those not populated yet), recorded in the local p2m. */
function populate(st: PvRestoreState, ctx: RestoreContext, pfns: number[]): void {
  if (!st.seenP2m) throw pvError(ctx, 'PAGE_DATA before X86_PV_P2M_FRAMES');
  const want = new Set<number>();
  for (const pfn of pfns) {
    if (!(pfn >= 0 && pfn <= st.maxPfn))
      throw pvError(
        ctx,
        `pfn ${hex(pfn)} beyond the guest's max pfn ${hex(st.maxPfn)}`,
        MigrationErrorCode.ERR_DOMAIN_MISMATCH,
        pfn,
      );
    if (st.p2m[pfn]! < 0) want.add(pfn);
  }
  const need = [...want];
  for (let i = 0; i < need.length; i += 1024) {
    const chunk = need.slice(i, i + 1024);
    const a = BigUint64Array.from(chunk, (x) => BigInt(x));
    ctx.xen.populatePhysmap(ctx.domid, a);
    for (let j = 0; j < chunk.length; j++) {
      const mfn = a[j]! >= 2n ** 40n ? INVALID : Number(a[j]!);
      if (mfn < 0)
        throw pvError(
          ctx,
          `populating pfn ${hex(chunk[j]!)} gave no frame`,
          MigrationErrorCode.ERR_MAP_FAILED,
          chunk[j],
        );
      st.p2m[chunk[j]!] = mfn;
    }
  }
}

/** x86_pv_localise_page: a page table's pfns become the new mfns (frames it names are populated first). */
function localisePage(
  st: PvRestoreState,
  ctx: RestoreContext,
  type: number,
  page: Uint8Array,
  pfn: number,
): void {
  const level = tableLevel(type);
  if (level === 0) return;
  // as libxc: frames a table names before their PAGE_DATA arrived are populated now
  const named = presentPfns(level, page);
  for (const p of named)
    if (!(p >= 0 && p <= st.maxPfn)) {
      const msg = `the L${level} table at pfn ${hex(pfn)} names pfn ${hex(p)}, beyond the guest's max pfn ${hex(st.maxPfn)}`;
      throw pvError(ctx, msg, undefined, pfn);
    }
  const missing = named.filter((p) => st.p2m[p]! < 0);
  if (missing.length) populate(st, ctx, missing);
  localisePageTable({ mfnOfPfn: st.mfnOf, domid: ctx.domid }, level, page, pfn);
}

/** A NOTAB pfn of the guest and its new frame (start info, xenstore/console page, p2m frames, GDT). */
function normalFrame(
  st: PvRestoreState,
  ctx: RestoreContext,
  pfn: number,
  what: string,
  checkType = true,
): number {
  if (!(pfn >= 0 && pfn <= st.maxPfn))
    throw pvError(ctx, `${what} pfn ${hex(pfn)} out of range (max ${hex(st.maxPfn)})`);
  if (checkType && st.types[pfn] !== NOTAB)
    throw pvError(
      ctx,
      `${what} pfn ${hex(pfn)} has page type ${st.types[pfn]}, expected a normal page`,
      undefined,
      pfn,
    );
  const mfn = st.mfnOf(pfn);
  if (mfn < 0) throw pvError(ctx, `${what} pfn ${hex(pfn)} has no frame`, undefined, pfn);
  return mfn;
}

// ---- per-record handlers (xg_sr_restore_x86_pv.c handle_*) -----------------------------------

function handlePvInfo(
  st: PvRestoreState,
  ctx: RestoreContext,
  rec: Extract<LibxcRecord, { name: 'X86_PV_INFO' }>,
): void {
  if (st.seenPvInfo) throw pvError(ctx, 'a second X86_PV_INFO record');
  const ok = (rec.guestWidth === 4 && rec.ptLevels === 3) || (rec.guestWidth === 8 && rec.ptLevels === 4);
  if (!ok)
    throw pvError(ctx, `invalid X86_PV_INFO combination: width ${rec.guestWidth}, pt_levels ${rec.ptLevels}`);
  if (rec.guestWidth === 4)
    throw pvError(ctx, '32-bit PV guests are not supported', MigrationErrorCode.ERR_UNSUPPORTED);
  if (rec.guestWidth !== st.width)
    throw pvError(
      ctx,
      `stream guest width ${rec.guestWidth * 8} bits, domain ${st.width * 8} bits`,
      MigrationErrorCode.ERR_DOMAIN_MISMATCH,
    );
  st.seenPvInfo = true;
}

function handleP2mFrames(
  st: PvRestoreState,
  ctx: RestoreContext,
  rec: Extract<LibxcRecord, { name: 'X86_PV_P2M_FRAMES' }>,
): void {
  if (!st.seenPvInfo) throw pvError(ctx, 'X86_PV_P2M_FRAMES before X86_PV_INFO');
  if (rec.startPfn > rec.endPfn)
    throw pvError(ctx, `X86_PV_P2M_FRAMES end pfn ${hex(rec.endPfn)} below start ${hex(rec.startPfn)}`);
  const start = Math.floor(rec.startPfn / FPP);
  const end = Math.floor(rec.endPfn / FPP) + 1;
  if (rec.frames.length !== end - start) {
    const range = `${hex(rec.startPfn)}..${hex(rec.endPfn)}`;
    throw pvError(
      ctx,
      `X86_PV_P2M_FRAMES for pfns ${range} needs ${end - start} frames, has ${rec.frames.length}`,
    );
  }
  if (rec.endPfn > st.maxPfn) expand(st, ctx, rec.endPfn);
  while (st.p2mPfns.length < end) st.p2mPfns.push(INVALID);
  for (let x = 0; x < end - start; x++)
    st.p2mPfns[start + x] = rec.frames[x]! >= 2n ** 40n ? INVALID : Number(rec.frames[x]!);
  st.seenP2m = true;
}

/** The record's blob as the hypercall takes it (MSRs: xen_domctl_vcpu_msr_t[]). */
function vcpuBlobBytes(rec: VcpuRecord): Uint8Array {
  if (rec.name !== 'X86_PV_VCPU_MSRS') return rec.context;
  const blob = new Uint8Array(16 * rec.msrs.length);
  const v = dataView(blob);
  rec.msrs.forEach((m, i) => {
    v.setUint32(16 * i, m.index, true);
    v.setUint32(16 * i + 4, m.reserved ?? 0, true);
    v.setBigUint64(16 * i + 8, m.value, true);
  });
  return blob;
}

function handleVcpu(st: PvRestoreState, ctx: RestoreContext, rec: VcpuRecord): void {
  if (!st.seenPvInfo) throw pvError(ctx, `${rec.name} before X86_PV_INFO`);
  const blob = vcpuBlobBytes(rec);
  if (blob.length === 0) return; // tolerated: old senders emitted empty records
  if (rec.vcpuId >= st.nrVcpus) {
    const msg = `${rec.name} for vcpu ${rec.vcpuId}, but the domain has vcpus 0..${st.nrVcpus - 1}`;
    throw pvError(ctx, msg, MigrationErrorCode.ERR_DOMAIN_MISMATCH);
  }
  const s = st.vcpus[rec.vcpuId]!;
  switch (rec.name) {
    case 'X86_PV_VCPU_BASIC': {
      const want = st.width === 8 ? VCPU64.size : VCPU32_SIZE;
      if (blob.length !== want)
        throw pvError(ctx, `X86_PV_VCPU_BASIC of ${blob.length} bytes, expected ${want}`);
      s.basic = blob.slice();
      break;
    }
    case 'X86_PV_VCPU_EXTENDED':
      if (blob.length > 128) throw pvError(ctx, `X86_PV_VCPU_EXTENDED of ${blob.length} bytes, at most 128`);
      s.extended = blob.slice();
      break;
    case 'X86_PV_VCPU_XSAVE':
      if (blob.length < 16) throw pvError(ctx, `X86_PV_VCPU_XSAVE of ${blob.length} bytes, at least 16`);
      s.xsave = blob.slice();
      break;
    case 'X86_PV_VCPU_MSRS':
      s.msrs = blob;
      break;
  }
}

function handleSharedInfo(st: PvRestoreState, ctx: RestoreContext, rec: { data: Uint8Array }): void {
  if (!st.seenPvInfo) throw pvError(ctx, 'SHARED_INFO before X86_PV_INFO');
  if (rec.data.length !== PAGE_SIZE)
    throw pvError(ctx, `SHARED_INFO of ${rec.data.length} bytes, expected ${PAGE_SIZE}`);
  st.shinfo = rec.data.slice();
}

// ---- stream completion (x86_pv_stream_complete) ----------------------------------------------

/** Every check on the stream's content before the first hypercall: p2m frames, vCPU contexts. */
function prepareCompletion(
  st: PvRestoreState,
  ctx: RestoreContext,
): { p2mMfns: number[]; basics: (Uint8Array | undefined)[] } {
  if (!st.seenPvInfo)
    throw pvError(ctx, 'stream completed without X86_PV_INFO', MigrationErrorCode.ERR_INCOMPLETE);
  if (!st.seenP2m)
    throw pvError(ctx, 'stream completed without X86_PV_P2M_FRAMES', MigrationErrorCode.ERR_INCOMPLETE);
  if (!st.vcpus[0]?.basic)
    throw pvError(ctx, "the sender did not send vcpu0's basic state", MigrationErrorCode.ERR_INCOMPLETE);
  const p2mMfns = st.p2mPfns.map((pfn, i) => normalFrame(st, ctx, pfn, `p2m frame ${i}`));
  const vcpuInfo = {
    domid: ctx.domid,
    maxPfn: st.maxPfn,
    levels: st.levels,
    type: (p: number) => st.types[p]!,
    mfnOf: st.mfnOf,
  };
  const basics = st.vcpus.map((s, id) => {
    if (!s.basic) return undefined;
    const basic = s.basic.slice();
    localiseVcpu(basic, id, vcpuInfo);
    return basic;
  });
  return { p2mMfns, basics };
}

/** process_start_info: vCPU0's suspend record names the start-info page by pfn. */
function processStartInfo(
  st: PvRestoreState,
  ctx: RestoreContext,
  opts: PvRestoreOptions,
  basic: Uint8Array,
): void {
  const v = dataView(basic);
  const mfn = normalFrame(st, ctx, readU64(v, VCPU64.rdx), 'start info');
  writeU64(v, VCPU64.rdx, mfn);
  const m = mapOne(ctx, mfn, 'the start info page');
  try {
    const s = dataView(m.bytes);
    const store = normalFrame(st, ctx, readU64(s, START_INFO64.storeMfn), 'xenstore', false);
    const console = normalFrame(st, ctx, readU64(s, START_INFO64.consoleMfn), 'console', false);
    writeU64(s, START_INFO64.storeMfn, store);
    if (opts.storeEvtchn !== undefined) s.setUint32(START_INFO64.storeEvtchn, opts.storeEvtchn, true);
    writeU64(s, START_INFO64.consoleMfn, console);
    if (opts.consoleEvtchn !== undefined) s.setUint32(START_INFO64.consoleEvtchn, opts.consoleEvtchn, true);
    writeU64(s, START_INFO64.nrPages, st.maxPfn + 1);
    writeU64(s, START_INFO64.sharedInfo, ctx.info.sharedInfoFrame * PAGE_SIZE);
    writeU64(s, START_INFO64.flags, 0);
    st.results = { storeMfn: store, consoleMfn: console };
  } finally {
    m.unmap();
  }
}

/** update_vcpu_context: vCPU0 first (its start info); loading cr3 makes Xen type the page tables. */
function loadVcpus(
  st: PvRestoreState,
  ctx: RestoreContext,
  opts: PvRestoreOptions,
  basics: (Uint8Array | undefined)[],
): void {
  for (let id = 0; id < st.nrVcpus; id++) {
    const basic = basics[id];
    if (basic) {
      if (id === 0) processStartInfo(st, ctx, opts, basic);
      refused(
        ctx,
        () => ctx.xen.vcpuContextSet(ctx.domid, id, basic),
        `vcpu${id}'s context (its cr3 page-table tree)`,
      );
    }
    const { extended, xsave, msrs } = st.vcpus[id]!;
    if (extended) {
      const what = `vcpu${id}'s extended context (${extended.length} bytes)`;
      refused(ctx, () => ctx.xen.vcpuExtendedSet(ctx.domid, id, extended), what);
    }
    if (xsave)
      refused(
        ctx,
        () => ctx.xen.vcpuXsaveSet(ctx.domid, id, xsave),
        `vcpu${id}'s xsave area (${xsave.length} bytes)`,
      );
    if (msrs) refused(ctx, () => ctx.xen.vcpuMsrsSet(ctx.domid, id, msrs), `vcpu${id}'s MSRs`);
  }
}

/** pin_pagetables: the tables the sender had pinned, in batches (not twice: COLO completes often). */
function pinPagetables(st: PvRestoreState, ctx: RestoreContext): void {
  let mf: number[] = [];
  let lv: number[] = [];
  const flush = () => {
    if (!mf.length) return;
    const mfns = BigUint64Array.from(mf, (x) => BigInt(x));
    refused(
      ctx,
      () => ctx.xen.pinTables(ctx.domid, mfns, Uint8Array.from(lv)),
      `pin of ${mf.length} page tables`,
    );
    mf = [];
    lv = [];
  };
  for (let pfn = 0; pfn <= st.maxPfn; pfn++) {
    const t = st.types[pfn]!;
    if (!isPinned(t) || st.pinned.has(pfn)) continue;
    st.pinned.add(pfn);
    const mfn = st.mfnOf(pfn);
    if (mfn < 0) throw pvError(ctx, `pinned table at pfn ${hex(pfn)} has no frame`, undefined, pfn);
    mf.push(mfn);
    lv.push(tableLevel(t));
    if (mf.length === PIN_BATCH) flush();
  }
  flush();
}

/** update_guest_p2m: the new frames, written into the guest's p2m leaves. */
function updateGuestP2m(st: PvRestoreState, ctx: RestoreContext, p2mMfns: number[]): void {
  const m = ctx.xen.map(
    ctx.domid,
    BigUint64Array.from(p2mMfns, (x) => BigInt(x)),
    'rw',
  );
  try {
    for (let i = 0; i < m.errors.length; i++)
      if (m.errors[i] !== 0)
        throw pvError(
          ctx,
          `cannot map p2m frame ${i} (errno ${m.errors[i]})`,
          MigrationErrorCode.ERR_MAP_FAILED,
        );
    const t = new FrameTable(m.bytes);
    for (let pfn = 0; pfn <= st.maxPfn; pfn++) t.set(pfn, st.p2m[pfn]!);
  } finally {
    m.unmap();
  }
}

/** update_shared_info: the vCPU info and arch parts of the sender's; event channels start masked. */
function updateSharedInfo(st: PvRestoreState, ctx: RestoreContext): void {
  const shinfo = st.shinfo;
  if (!shinfo) return;
  const sm = mapOne(ctx, ctx.info.sharedInfoFrame, 'the shared info');
  try {
    const dst = sm.bytes;
    const A = SHINFO64;
    dst.set(shinfo.subarray(A.vcpuInfo, A.vcpuInfo + A.vcpuInfoSize * A.legacyMaxVcpus), A.vcpuInfo);
    dst.set(shinfo.subarray(A.arch, A.arch + A.archSize), A.arch);
    const v = dataView(dst);
    writeU64(v, A.arch + A.frameListList, 0); // the guest rebuilds its frame list on resume
    dst.fill(0, A.evtchnPending, A.evtchnPending + A.evtchnBytes);
    for (let i = 0; i < A.legacyMaxVcpus; i++)
      writeU64(v, A.vcpuInfo + i * A.vcpuInfoSize + A.evtchnPendingSel, 0);
    dst.fill(0xff, A.evtchnMask, A.evtchnMask + A.evtchnBytes);
  } finally {
    sm.unmap();
  }
}

// ---- the ops table ----------------------------------------------------------------------------

export function pvRestoreOps(
  opts: PvRestoreOptions = {},
): RestoreOps & { results(): PvRestoreResults | null } {
  const st = new PvRestoreState();
  return {
    domainHeaderType: 1,

    setup(ctx) {
      if (ctx.info.type !== 'pv')
        throw pvError(ctx, `domain ${ctx.domid} is not a PV domain`, MigrationErrorCode.ERR_DOMAIN_MISMATCH);
      st.width = ctx.info.guestWidth;
      st.nrVcpus = ctx.info.maxVcpuId + 1;
      st.vcpus = Array.from({ length: st.nrVcpus }, () => ({}));
      st.limit = opts.maxP2mSize ?? Math.max(4 * Math.max(ctx.info.maxPages, ctx.info.totPages), 1 << 20);
      st.m2p = new M2p(ctx.xen.mapM2p());
    },

    // The guest's max pfn comes with X86_PV_P2M_FRAMES; until then the engine may only bound the
    // pfn field (32 bits in P2M_FRAMES). populate() enforces the real bound before any write.
    maxPfn: () => 0xffffffff,
    populate: (ctx, pfns) => populate(st, ctx, pfns),
    pfnToFrame: (pfn) => st.p2m[pfn] ?? INVALID,
    setPageType(pfn, type) {
      if (pfn >= 0 && pfn <= st.maxPfn) st.types[pfn] = type;
    },
    localisePage: (ctx, type, page, pfn) => localisePage(st, ctx, type, page, pfn),

    processRecord(ctx, rec) {
      switch (rec.name) {
        case 'X86_PV_INFO':
          handlePvInfo(st, ctx, rec);
          return true;
        case 'X86_PV_P2M_FRAMES':
          handleP2mFrames(st, ctx, rec);
          return true;
        case 'X86_PV_VCPU_BASIC':
        case 'X86_PV_VCPU_EXTENDED':
        case 'X86_PV_VCPU_XSAVE':
        case 'X86_PV_VCPU_MSRS':
          handleVcpu(st, ctx, rec);
          return true;
        case 'SHARED_INFO':
          handleSharedInfo(st, ctx, rec);
          return true;
        case 'X86_TSC_INFO':
          return applyTsc(ctx, rec);
        case 'X86_CPUID_POLICY':
        case 'X86_MSR_POLICY':
          return st.policy.take(rec);
        default:
          return false;
      }
    },

    staticDataComplete: (ctx) => st.policy.apply(ctx),

    streamComplete(ctx) {
      const { p2mMfns, basics } = prepareCompletion(st, ctx);
      loadVcpus(st, ctx, opts, basics);
      pinPagetables(st, ctx);
      updateGuestP2m(st, ctx, p2mMfns);
      updateSharedInfo(st, ctx);
    },

    cleanup() {
      st.m2p?.unmap();
      st.m2p = null;
    },

    results: () => st.results,
  };
}
