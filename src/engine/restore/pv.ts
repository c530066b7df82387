// x86 PV restore operations: xg_sr_restore_x86_pv.c's role, for 64-bit guests.
// The stream's pfns get machine frames from populate (kept in a local p2m); page tables are
// localised (pfn -> mfn) in guest memory; vCPU state and the shared info are stashed and applied
// at stream completion together with the page-table pins and the guest's own p2m.
import type { LibxcRecord } from '../../stream/index.js';
import { MigrationError, MigrationErrorCode } from '../errors.js';
import { dataView, FrameTable, hex, INVALID, isPinned, M2p, PAGE_SIZE, readU64, SHINFO64, START_INFO64, tableLevel, VCPU32_SIZE, VCPU64, writeU64 } from '../pv/layout.js';
import { localisePageTable, presentPfns } from '../pv/pagetable.js';
import { localiseVcpu } from '../pv/vcpu.js';
import { applyTsc, PolicyStash } from './hvm.js';
import type { RestoreContext, RestoreOps } from './types.js';
import { isXenError } from '../../xen/hypervisor.js';

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

export function pvRestoreOps(opts: PvRestoreOptions = {}): RestoreOps & { results(): PvRestoreResults | null } {
  let m2p: M2p | null = null;
  let seenPvInfo = false;
  let seenP2m = false;
  let width = 8;
  const levels = 4;
  /** pfns 0..maxPfn, -1 before X86_PV_P2M_FRAMES */
  let maxPfn = -1;
  let p2m = new Float64Array(0); // pfn -> mfn, -1 = not populated
  let types = new Uint8Array(0);
  const p2mPfns: number[] = []; // the guest's p2m leaf frames, as pfns
  let limit = 0;
  let nrVcpus = 0;
  let vcpus: VcpuStash[] = [];
  let shinfo: Uint8Array | null = null;
  const policy = new PolicyStash();
  let results: PvRestoreResults | null = null;
  /** pfns pinned by an earlier completion (pinning twice is an error in Xen) */
  const pinned = new Set<number>();

  /** Xen refusing what the stream gives it (page tables: type conflicts, cycles, writable mappings). */
  const refused = (ctx: RestoreContext, f: () => void, what: string) => {
    try {
      f();
    } catch (e) {
      // the wrapper's argument checks (sizes this hypervisor does not take) are the stream's fault too
      if (e instanceof RangeError) throw new MigrationError(MigrationErrorCode.ERR_PV_STATE, `the stream's ${what} cannot be loaded: ${e.message}`, { domid: ctx.domid, cause: e });
      if (!isXenError(e)) throw e;
      const why = what.includes('page-table') || what.startsWith('pin') ? " (the stream's page tables are invalid)" : '';
      throw new MigrationError(MigrationErrorCode.ERR_PV_STATE, `Xen refused the ${what}: ${e.code}${why}`, { domid: ctx.domid, cause: e });
    }
  };
  const pvError = (ctx: RestoreContext, msg: string, code: MigrationErrorCode = MigrationErrorCode.ERR_PV_STATE, pfn?: number) =>
    new MigrationError(code, msg, { domid: ctx.domid, ...(pfn !== undefined ? { pfn } : {}) });

  /** the new mfn of pfn when it is in the new pseudo-physical map (local p2m and M2P agree), else -1 */
  const mfnOf = (pfn: number): number => {
    if (!(pfn >= 0 && pfn <= maxPfn)) return INVALID;
    const mfn = p2m[pfn]!;
    if (mfn < 0 || !m2p) return INVALID;
    return m2p.pfn(mfn) === pfn ? mfn : INVALID;
  };

  const expand = (ctx: RestoreContext, newMax: number) => {
    if (newMax + 1 > limit)
      throw pvError(ctx, `X86_PV_P2M_FRAMES asks for ${newMax + 1} pfns, more than this domain allows (${limit})`, MigrationErrorCode.ERR_DOMAIN_MISMATCH);
    const np = new Float64Array(newMax + 1).fill(INVALID);
    np.set(p2m);
    const nt = new Uint8Array(newMax + 1);
    nt.set(types);
    p2m = np;
    types = nt;
    maxPfn = newMax;
  };

  const populate = (ctx: RestoreContext, pfns: number[]) => {
    if (!seenP2m) throw pvError(ctx, 'PAGE_DATA before X86_PV_P2M_FRAMES');
    const want = new Set<number>();
    for (const pfn of pfns) {
      if (!(pfn >= 0 && pfn <= maxPfn)) throw pvError(ctx, `pfn ${hex(pfn)} beyond the guest's max pfn ${hex(maxPfn)}`, MigrationErrorCode.ERR_DOMAIN_MISMATCH, pfn);
      if (p2m[pfn]! < 0) want.add(pfn);
    }
    const need = [...want];
    for (let i = 0; i < need.length; i += 1024) {
      const chunk = need.slice(i, i + 1024);
      const a = BigUint64Array.from(chunk, (x) => BigInt(x));
      ctx.xen.populatePhysmap(ctx.domid, a);
      for (let j = 0; j < chunk.length; j++) {
        const mfn = a[j]! >= 2n ** 40n ? INVALID : Number(a[j]!);
        if (mfn < 0) throw pvError(ctx, `populating pfn ${hex(chunk[j]!)} gave no frame`, MigrationErrorCode.ERR_MAP_FAILED, chunk[j]);
        p2m[chunk[j]!] = mfn;
      }
    }
  };

  const mapOne = (ctx: RestoreContext, mfn: number, what: string) => {
    const m = ctx.xen.map(ctx.domid, new BigUint64Array([BigInt(mfn)]), 'rw');
    if (m.errors[0] !== 0) {
      m.unmap();
      throw pvError(ctx, `cannot map ${what} (mfn ${hex(mfn)}, errno ${m.errors[0]})`, MigrationErrorCode.ERR_MAP_FAILED);
    }
    return m;
  };

  /** A NOTAB pfn of the guest and its new frame (start info, xenstore/console page, p2m frames, GDT). */
  const normalFrame = (ctx: RestoreContext, pfn: number, what: string, checkType = true): number => {
    if (!(pfn >= 0 && pfn <= maxPfn)) throw pvError(ctx, `${what} pfn ${hex(pfn)} out of range (max ${hex(maxPfn)})`);
    if (checkType && types[pfn] !== NOTAB) throw pvError(ctx, `${what} pfn ${hex(pfn)} has page type ${types[pfn]}, expected a normal page`, undefined, pfn);
    const mfn = mfnOf(pfn);
    if (mfn < 0) throw pvError(ctx, `${what} pfn ${hex(pfn)} has no frame`, undefined, pfn);
    return mfn;
  };

  /** process_start_info: vCPU0's suspend record names the start-info page by pfn. */
  const startInfo = (ctx: RestoreContext, basic: Uint8Array) => {
    const v = dataView(basic);
    const mfn = normalFrame(ctx, readU64(v, VCPU64.rdx), 'start info');
    writeU64(v, VCPU64.rdx, mfn);
    const m = mapOne(ctx, mfn, 'the start info page');
    try {
      const s = dataView(m.bytes);
      const store = normalFrame(ctx, readU64(s, START_INFO64.storeMfn), 'xenstore', false);
      const console = normalFrame(ctx, readU64(s, START_INFO64.consoleMfn), 'console', false);
      writeU64(s, START_INFO64.storeMfn, store);
      if (opts.storeEvtchn !== undefined) s.setUint32(START_INFO64.storeEvtchn, opts.storeEvtchn, true);
      writeU64(s, START_INFO64.consoleMfn, console);
      if (opts.consoleEvtchn !== undefined) s.setUint32(START_INFO64.consoleEvtchn, opts.consoleEvtchn, true);
      writeU64(s, START_INFO64.nrPages, maxPfn + 1);
      writeU64(s, START_INFO64.sharedInfo, ctx.info.sharedInfoFrame * PAGE_SIZE);
      writeU64(s, START_INFO64.flags, 0);
      results = { storeMfn: store, consoleMfn: console };
    } finally {
      m.unmap();
    }
  };

  const vcpuBlob = (ctx: RestoreContext, rec: Extract<LibxcRecord, { name: 'X86_PV_VCPU_BASIC' | 'X86_PV_VCPU_EXTENDED' | 'X86_PV_VCPU_XSAVE' | 'X86_PV_VCPU_MSRS' }>) => {
    let blob: Uint8Array;
    if (rec.name === 'X86_PV_VCPU_MSRS') {
      blob = new Uint8Array(16 * rec.msrs.length);
      const v = dataView(blob);
      rec.msrs.forEach((m, i) => {
        v.setUint32(16 * i, m.index, true);
        v.setUint32(16 * i + 4, m.reserved ?? 0, true);
        v.setBigUint64(16 * i + 8, m.value, true);
      });
    } else {
      blob = rec.context;
    }
    if (blob.length === 0) return; // tolerated: old senders emitted empty records
    if (rec.vcpuId >= nrVcpus)
      throw pvError(ctx, `${rec.name} for vcpu ${rec.vcpuId}, but the domain has vcpus 0..${nrVcpus - 1}`, MigrationErrorCode.ERR_DOMAIN_MISMATCH);
    const s = vcpus[rec.vcpuId]!;
    switch (rec.name) {
      case 'X86_PV_VCPU_BASIC': {
        const want = width === 8 ? VCPU64.size : VCPU32_SIZE;
        if (blob.length !== want) throw pvError(ctx, `X86_PV_VCPU_BASIC of ${blob.length} bytes, expected ${want}`);
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
  };

  return {
    domainHeaderType: 1,
    localises: true,

    setup(ctx) {
      if (ctx.info.type !== 'pv') throw pvError(ctx, `domain ${ctx.domid} is not a PV domain`, MigrationErrorCode.ERR_DOMAIN_MISMATCH);
      width = ctx.info.guestWidth;
      nrVcpus = ctx.info.maxVcpuId + 1;
      vcpus = Array.from({ length: nrVcpus }, () => ({}));
      limit = opts.maxP2mSize ?? Math.max(4 * Math.max(ctx.info.maxPages, ctx.info.totPages), 1 << 20);
      m2p = new M2p(ctx.xen.mapM2p());
    },

    // The guest's max pfn comes with X86_PV_P2M_FRAMES; until then the engine may only bound the
    // pfn field (32 bits in P2M_FRAMES). populate() enforces the real bound before any write.
    maxPfn: () => 0xffffffff,

    populate,

    pfnToFrame(pfn) {
      return p2m[pfn] ?? INVALID;
    },

    setPageType(pfn, type) {
      if (pfn >= 0 && pfn <= maxPfn) types[pfn] = type;
    },

    localisePage(ctx, type, page, pfn) {
      const level = tableLevel(type);
      if (level === 0) return;
      // as libxc: frames a table names before their PAGE_DATA arrived are populated now
      const named = presentPfns(level, page);
      for (const p of named)
        if (!(p >= 0 && p <= maxPfn))
          throw pvError(ctx, `the L${level} table at pfn ${hex(pfn)} names pfn ${hex(p)}, beyond the guest's max pfn ${hex(maxPfn)}`, undefined, pfn);
      const missing = named.filter((p) => p2m[p]! < 0);
      if (missing.length) populate(ctx, missing);
      localisePageTable({ mfnOfPfn: mfnOf, domid: ctx.domid }, level, page, pfn);
    },

    processRecord(ctx, rec) {
      switch (rec.name) {
        case 'X86_PV_INFO': {
          if (seenPvInfo) throw pvError(ctx, 'a second X86_PV_INFO record');
          const ok = (rec.guestWidth === 4 && rec.ptLevels === 3) || (rec.guestWidth === 8 && rec.ptLevels === 4);
          if (!ok) throw pvError(ctx, `invalid X86_PV_INFO combination: width ${rec.guestWidth}, pt_levels ${rec.ptLevels}`);
          if (rec.guestWidth === 4) throw pvError(ctx, '32-bit PV guests are not supported', MigrationErrorCode.ERR_UNSUPPORTED);
          if (rec.guestWidth !== width)
            throw pvError(ctx, `stream guest width ${rec.guestWidth * 8} bits, domain ${width * 8} bits`, MigrationErrorCode.ERR_DOMAIN_MISMATCH);
          seenPvInfo = true;
          return true;
        }
        case 'X86_PV_P2M_FRAMES': {
          if (!seenPvInfo) throw pvError(ctx, 'X86_PV_P2M_FRAMES before X86_PV_INFO');
          if (rec.startPfn > rec.endPfn) throw pvError(ctx, `X86_PV_P2M_FRAMES end pfn ${hex(rec.endPfn)} below start ${hex(rec.startPfn)}`);
          const start = Math.floor(rec.startPfn / FPP);
          const end = Math.floor(rec.endPfn / FPP) + 1;
          if (rec.frames.length !== end - start)
            throw pvError(ctx, `X86_PV_P2M_FRAMES for pfns ${hex(rec.startPfn)}..${hex(rec.endPfn)} needs ${end - start} frames, has ${rec.frames.length}`);
          if (rec.endPfn > maxPfn) expand(ctx, rec.endPfn);
          while (p2mPfns.length < end) p2mPfns.push(INVALID);
          for (let x = 0; x < end - start; x++) p2mPfns[start + x] = rec.frames[x]! >= 2n ** 40n ? INVALID : Number(rec.frames[x]!);
          seenP2m = true;
          return true;
        }
        case 'X86_PV_VCPU_BASIC':
        case 'X86_PV_VCPU_EXTENDED':
        case 'X86_PV_VCPU_XSAVE':
        case 'X86_PV_VCPU_MSRS':
          if (!seenPvInfo) throw pvError(ctx, `${rec.name} before X86_PV_INFO`);
          vcpuBlob(ctx, rec);
          return true;
        case 'SHARED_INFO':
          if (!seenPvInfo) throw pvError(ctx, 'SHARED_INFO before X86_PV_INFO');
          if (rec.data.length !== PAGE_SIZE) throw pvError(ctx, `SHARED_INFO of ${rec.data.length} bytes, expected 4096`);
          shinfo = rec.data.slice();
          return true;
        case 'X86_TSC_INFO':
          return applyTsc(ctx, rec);
        case 'X86_CPUID_POLICY':
        case 'X86_MSR_POLICY':
          return policy.take(rec);
        default:
          return false;
      }
    },

    staticDataComplete: (ctx) => policy.apply(ctx),

    streamComplete(ctx) {
      if (!seenPvInfo) throw pvError(ctx, 'stream completed without X86_PV_INFO', MigrationErrorCode.ERR_INCOMPLETE);
      if (!seenP2m) throw pvError(ctx, 'stream completed without X86_PV_P2M_FRAMES', MigrationErrorCode.ERR_INCOMPLETE);
      if (!vcpus[0]?.basic) throw pvError(ctx, "the sender did not send vcpu0's basic state", MigrationErrorCode.ERR_INCOMPLETE);
      // every check that can fail on the stream's content comes before the first hypercall
      const p2mMfns = p2mPfns.map((pfn, i) => normalFrame(ctx, pfn, `p2m frame ${i}`));
      const prepared: { id: number; basic?: Uint8Array }[] = [];
      for (let id = 0; id < nrVcpus; id++) {
        const s = vcpus[id]!;
        if (!s.basic) {
          prepared.push({ id });
          continue;
        }
        const basic = s.basic.slice();
        localiseVcpu(basic, id, { domid: ctx.domid, maxPfn, levels, type: (p) => types[p]!, mfnOf });
        prepared.push({ id, basic });
      }

      // 1. vCPUs (vCPU0 first: its start info)
      for (const { id, basic } of prepared) {
        const s = vcpus[id]!;
        if (basic) {
          if (id === 0) startInfo(ctx, basic);
          // loading cr3 makes Xen validate and type the whole page-table tree
          refused(ctx, () => ctx.xen.vcpuContextSet(ctx.domid, id, basic), `vcpu${id}'s context (its cr3 page-table tree)`);
        }
        const { extended, xsave, msrs } = s;
        if (extended) refused(ctx, () => ctx.xen.vcpuExtendedSet(ctx.domid, id, extended), `vcpu${id}'s extended context (${extended.length} bytes)`);
        if (xsave) refused(ctx, () => ctx.xen.vcpuXsaveSet(ctx.domid, id, xsave), `vcpu${id}'s xsave area (${xsave.length} bytes)`);
        if (msrs) refused(ctx, () => ctx.xen.vcpuMsrsSet(ctx.domid, id, msrs), `vcpu${id}'s MSRs`);
      }

      // 2. pin the page tables the sender had pinned
      let mf: number[] = [];
      let lv: number[] = [];
      const flush = () => {
        if (!mf.length) return;
        refused(ctx, () => ctx.xen.pinTables(ctx.domid, BigUint64Array.from(mf, (x) => BigInt(x)), Uint8Array.from(lv)), `pin of ${mf.length} page tables`);
        mf = [];
        lv = [];
      };
      for (let pfn = 0; pfn <= maxPfn; pfn++) {
        const t = types[pfn]!;
        if (!isPinned(t) || pinned.has(pfn)) continue; // COLO completes at every checkpoint
        pinned.add(pfn);
        const mfn = mfnOf(pfn);
        if (mfn < 0) throw pvError(ctx, `pinned table at pfn ${hex(pfn)} has no frame`, undefined, pfn);
        mf.push(mfn);
        lv.push(tableLevel(t));
        if (mf.length === PIN_BATCH) flush();
      }
      flush();

      // 3. the guest's p2m: the new frames, written into its p2m leaves
      const m = ctx.xen.map(ctx.domid, BigUint64Array.from(p2mMfns, (x) => BigInt(x)), 'rw');
      try {
        for (let i = 0; i < m.errors.length; i++)
          if (m.errors[i] !== 0) throw pvError(ctx, `cannot map p2m frame ${i} (errno ${m.errors[i]})`, MigrationErrorCode.ERR_MAP_FAILED);
        const t = new FrameTable(m.bytes);
        for (let pfn = 0; pfn <= maxPfn; pfn++) t.set(pfn, p2m[pfn]!);
      } finally {
        m.unmap();
      }

      // 4. shared info: the vCPU info and arch parts of the sender's; event channels start masked
      if (shinfo) {
        const sm = mapOne(ctx, ctx.info.sharedInfoFrame, 'the shared info');
        try {
          const dst = sm.bytes;
          const A = SHINFO64;
          dst.set(shinfo.subarray(A.vcpuInfo, A.vcpuInfo + A.vcpuInfoSize * A.legacyMaxVcpus), A.vcpuInfo);
          dst.set(shinfo.subarray(A.arch, A.arch + A.archSize), A.arch);
          const v = dataView(dst);
          writeU64(v, A.arch + A.frameListList, 0); // the guest rebuilds its frame list on resume
          dst.fill(0, A.evtchnPending, A.evtchnPending + A.evtchnBytes);
          for (let i = 0; i < A.legacyMaxVcpus; i++) writeU64(v, A.vcpuInfo + i * A.vcpuInfoSize + A.evtchnPendingSel, 0);
          dst.fill(0xff, A.evtchnMask, A.evtchnMask + A.evtchnBytes);
        } finally {
          sm.unmap();
        }
      }
    },

    cleanup() {
      m2p?.unmap();
      m2p = null;
    },

    results: () => results,
  };
}
