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

export function pvSaveOps(): SaveOps {
  let m2p: M2p | null = null;
  let shinfo: Mapping | null = null;
  let p2m: GuestP2m | null = null;
  let width = 8;
  let levels = 4;

  const fail = (ctx: SaveContext, msg: string, code: MigrationErrorCode = MigrationErrorCode.ERR_PV_STATE): never => {
    throw new MigrationError(code, msg, { domid: ctx.domid });
  };

  const checkP2m = (ctx: SaveContext) => {
    if (!ctx.live || !p2m) return;
    const why = p2m.changedSince();
    if (why) fail(ctx, `the guest changed its p2m during the live migration (${why}); migration aborted`);
  };

  const cleanup = () => {
    p2m?.unmap();
    p2m = null;
    shinfo?.unmap();
    shinfo = null;
    m2p?.unmap();
    m2p = null;
  };

  return {
    domainHeaderType: 1,
    get p2mSize() {
      return p2m ? p2m.maxPfn + 1 : 0;
    },
    normalises: true,

    setup(ctx) {
      if (ctx.info.type !== 'pv') fail(ctx, `domain ${ctx.domid} is not a PV domain`, MigrationErrorCode.ERR_DOMAIN_MISMATCH);
      width = ctx.info.guestWidth;
      if (width === 4) fail(ctx, '32-bit PV guests are not supported', MigrationErrorCode.ERR_UNSUPPORTED);
      if (width !== 8) fail(ctx, `invalid guest width ${width * 8} bits (expected 32 or 64)`);
      levels = 4;
      try {
        m2p = new M2p(ctx.xen.mapM2p());
        const frame = ctx.info.sharedInfoFrame;
        shinfo = ctx.xen.map(ctx.domid, new BigUint64Array([BigInt(frame)]), 'r');
        if (shinfo.errors[0] !== 0) fail(ctx, `cannot map the shared info frame ${hex(frame)} (errno ${shinfo.errors[0]})`, MigrationErrorCode.ERR_MAP_FAILED);
        p2m = new GuestP2m(ctx.xen, ctx.domid, m2p, shinfo.bytes);
        p2m.setup();
      } catch (e) {
        cleanup();
        throw e;
      }
    },

    staticData(ctx) {
      return [{ name: 'X86_PV_INFO', guestWidth: width, ptLevels: levels, reserved: 0 }, ...cpuPolicyRecords(ctx)];
    },

    startOfStream() {
      const g = p2m!;
      return [{ name: 'X86_PV_P2M_FRAMES', startPfn: 0, endPfn: g.maxPfn, frames: BigUint64Array.from(g.leafPfns, (x) => BigInt(x)) }];
    },

    checkVmState: checkP2m,

    pfnToFrame(pfn) {
      return p2m!.mfn(pfn);
    },

    normalisePage(ctx, type, src, dst) {
      const level = tableLevel(type);
      if (level === 0) {
        dst.set(src);
        return 'ok';
      }
      const g = p2m!;
      const ok = normalisePageTable({ pfnOfMfn: (mfn) => g.pfnOf(mfn), fatal: ctx.suspended || !ctx.live, domid: ctx.domid }, level, src, dst);
      return ok ? 'ok' : 'defer';
    },

    endOfCheckpoint(ctx) {
      // a p2m changed under the live rounds makes what was sent meaningless: refuse to finish
      checkP2m(ctx);
      const g = p2m!;
      const recs: LibxcRecord[] = [tscRecord(ctx), { name: 'SHARED_INFO', data: shinfo!.bytes.slice(0, PAGE_SIZE) }];
      const info = ctx.xen.domainInfo(ctx.domid);
      for (let id = 0; id <= info.maxVcpuId; id++) {
        if (!ctx.xen.vcpuOnline(ctx.domid, id)) continue;
        const raw = ctx.xen.vcpuContextGet(ctx.domid, id);
        if (raw.length < VCPU64.size) fail(ctx, `vcpu${id}: context of ${raw.length} bytes, expected ${VCPU64.size}`);
        const basic = raw.slice(0, VCPU64.size);
        normaliseVcpu(basic, id, ctx.domid, (mfn) => g.pfnOf(mfn));
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
            list.push({ index: v.getUint32(o, true), reserved: v.getUint32(o + 4, true), value: v.getBigUint64(o + 8, true) });
          recs.push({ name: 'X86_PV_VCPU_MSRS', vcpuId: id, reserved: 0, msrs: list });
        }
      }
      return recs;
    },

    cleanup,
  };
}
