// x86 PV save operations: xg_sr_save_x86_pv.c's role, for 64-bit guests.
// setup maps the M2P, the shared info and the guest's p2m (list or tree); page tables are
// normalised (mfn -> pfn) into private copies; the end of each checkpoint carries TSC info, the
// shared-info page and per online vCPU its basic (frames as pfns), extended, xsave and MSR state.
import type { LibxcRecord } from '../../stream/index.js';
import type { Mapping } from '../../xen/types.js';
import { MigrationError, MigrationErrorCode } from '../errors.js';
import { hex, M2p, PAGE_SIZE, tableLevel, VCPU64 } from '../pv/layout.js';
import { GuestP2m } from '../pv/p2m.js';
import { normalisePageTable } from '../pv/pagetable.js';
import { normaliseVcpu } from '../pv/vcpu.js';
import { cpuPolicyRecords, tscRecord } from '../x86.js';
import type { SaveContext, SaveOps } from './types.js';

const fail = (
  ctx: SaveContext,
  msg: string,
  code: MigrationErrorCode = MigrationErrorCode.ERR_PV_STATE,
): never => {
  throw new MigrationError(code, msg, { domid: ctx.domid });
};

/** The save's PV state (Xen's ctx->x86.pv): the M2P, the shared info and the guest's p2m, mapped at setup. */
class PvSaveState {
  m2p: M2p | null = null;
  shinfo: Mapping | null = null;
  p2m: GuestP2m | null = null;
  width = 8;
  levels = 4;

  /** x86_pv_setup: the guest's width, then the M2P, the shared info and the guest's p2m (list or tree). */
  setup(ctx: SaveContext): void {
    if (ctx.info.type !== 'pv')
      fail(ctx, `domain ${ctx.domid} is not a PV domain`, MigrationErrorCode.ERR_DOMAIN_MISMATCH);
    this.width = ctx.info.guestWidth;
    if (this.width === 4) fail(ctx, '32-bit PV guests are not supported', MigrationErrorCode.ERR_UNSUPPORTED);
    if (this.width !== 8) fail(ctx, `invalid guest width ${this.width * 8} bits (expected 32 or 64)`);
    this.levels = 4;
    try {
      const m2p = (this.m2p = new M2p(ctx.xen.mapM2p()));
      const frame = ctx.info.sharedInfoFrame;
      const shinfo = (this.shinfo = ctx.xen.map(ctx.domid, new BigUint64Array([BigInt(frame)]), 'r'));
      if (shinfo.errors[0] !== 0) {
        const msg = `cannot map the shared info frame ${hex(frame)} (errno ${shinfo.errors[0]})`;
        fail(ctx, msg, MigrationErrorCode.ERR_MAP_FAILED);
      }
      this.p2m = new GuestP2m(ctx.xen, ctx.domid, m2p, shinfo.bytes);
      this.p2m.setup();
    } catch (e) {
      this.cleanup();
      throw e;
    }
  }

  /** A p2m changed under the live rounds makes what was sent meaningless. */
  checkP2m(ctx: SaveContext): void {
    if (!ctx.live || !this.p2m) return;
    const why = this.p2m.changedSince();
    if (why) fail(ctx, `the guest changed its p2m during the live migration (${why}); migration aborted`);
  }

  cleanup(): void {
    this.p2m?.unmap();
    this.p2m = null;
    this.shinfo?.unmap();
    this.shinfo = null;
    this.m2p?.unmap();
    this.m2p = null;
  }
}

/** write_one_vcpu_basic / _extended / _xsave / _msrs: an online vCPU's records, frames as pfns. */
function vcpuRecords(ctx: SaveContext, id: number, pfnOf: (mfn: number) => number): LibxcRecord[] {
  const recs: LibxcRecord[] = [];
  const raw = ctx.xen.vcpuContextGet(ctx.domid, id);
  if (raw.length < VCPU64.size)
    fail(ctx, `vcpu${id}: context of ${raw.length} bytes, expected ${VCPU64.size}`);
  const basic = raw.slice(0, VCPU64.size);
  normaliseVcpu(basic, id, ctx.domid, pfnOf);
  recs.push({ name: 'X86_PV_VCPU_BASIC', vcpuId: id, reserved: 0, context: basic });
  const ext = ctx.xen.vcpuExtendedGet(ctx.domid, id);
  if (ext.length) recs.push({ name: 'X86_PV_VCPU_EXTENDED', vcpuId: id, reserved: 0, context: ext.slice() });
  const xsave = ctx.xen.vcpuXsaveGet(ctx.domid, id);
  if (xsave.length) recs.push({ name: 'X86_PV_VCPU_XSAVE', vcpuId: id, reserved: 0, context: xsave.slice() });
  const msrs = ctx.xen.vcpuMsrsGet(ctx.domid, id);
  if (msrs.length) {
    const v = new DataView(msrs.buffer, msrs.byteOffset, msrs.byteLength);
    const list = [];
    for (let o = 0; o + 16 <= msrs.length; o += 16)
      list.push({
        index: v.getUint32(o, true),
        reserved: v.getUint32(o + 4, true),
        value: v.getBigUint64(o + 8, true),
      });
    recs.push({ name: 'X86_PV_VCPU_MSRS', vcpuId: id, reserved: 0, msrs: list });
  }
  return recs;
}

export function pvSaveOps(): SaveOps {
  const st = new PvSaveState();
  return {
    domainHeaderType: 1,
    get p2mSize() {
      return st.p2m ? st.p2m.maxPfn + 1 : 0;
    },

    setup: (ctx) => st.setup(ctx),

    staticData(ctx) {
      return [
        { name: 'X86_PV_INFO', guestWidth: st.width, ptLevels: st.levels, reserved: 0 },
        ...cpuPolicyRecords(ctx),
      ];
    },

    startOfStream() {
      const g = st.p2m!;
      return [
        {
          name: 'X86_PV_P2M_FRAMES',
          startPfn: 0,
          endPfn: g.maxPfn,
          frames: BigUint64Array.from(g.leafPfns, (x) => BigInt(x)),
        },
      ];
    },

    checkVmState: (ctx) => st.checkP2m(ctx),

    pfnToFrame(pfn) {
      return st.p2m!.mfn(pfn);
    },

    normalisePage(ctx, type, src, dst) {
      const level = tableLevel(type);
      if (level === 0) {
        dst.set(src);
        return 'ok';
      }
      const g = st.p2m!;
      const ok = normalisePageTable(
        { pfnOfMfn: (mfn) => g.pfnOf(mfn), fatal: ctx.suspended || !ctx.live, domid: ctx.domid },
        level,
        src,
        dst,
      );
      return ok ? 'ok' : 'defer';
    },

    endOfCheckpoint(ctx) {
      // a p2m changed under the live rounds makes what was sent meaningless: refuse to finish
      st.checkP2m(ctx);
      const g = st.p2m!;
      const recs: LibxcRecord[] = [
        tscRecord(ctx),
        { name: 'SHARED_INFO', data: st.shinfo!.bytes.slice(0, PAGE_SIZE) },
      ];
      const info = ctx.xen.domainInfo(ctx.domid);
      for (let id = 0; id <= info.maxVcpuId; id++) {
        if (ctx.xen.vcpuOnline(ctx.domid, id)) recs.push(...vcpuRecords(ctx, id, (mfn) => g.pfnOf(mfn)));
      }
      return recs;
    },

    cleanup: () => st.cleanup(),
  };
}
