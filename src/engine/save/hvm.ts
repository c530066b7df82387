// x86 HVM (and PVH) save operations: xg_sr_save_x86_hvm.c's role. Guest frames are gfns; the
// end of each checkpoint carries TSC info, the HVM context blob and the non-zero HVM params.
import { decodeLibxcBody, LibxcType, type LibxcRecord } from '../../stream/index.js';
import type { SaveContext, SaveOps } from './types.js';
import { HVM_SAVE_PARAMS } from '../../xen/constants.js';

export { HVM_SAVE_PARAMS };


const LOC = { offset: 0, index: 0, layer: 'libxc' as const };

/** CPU policy records shared by HVM and PV (omitted when empty, as the libxc sender does). */
export function cpuPolicyRecords(ctx: SaveContext): LibxcRecord[] {
  const out: LibxcRecord[] = [];
  let pol: { cpuid: Uint8Array; msrs: Uint8Array };
  try {
    pol = ctx.xen.cpuPolicyGet(ctx.domid);
  } catch (e) {
    // Xen without policy support (pre-4.14 semantics): the stream simply has no policy records
    if ((e as { code?: string }).code === 'EOPNOTSUPP' || (e as { code?: string }).code === 'ENOSYS') return out;
    throw e;
  }
  if (pol.cpuid.length) out.push(decodeLibxcBody(LibxcType.X86_CPUID_POLICY, pol.cpuid, LOC));
  if (pol.msrs.length) out.push(decodeLibxcBody(LibxcType.X86_MSR_POLICY, pol.msrs, LOC));
  return out;
}

export function tscRecord(ctx: SaveContext): LibxcRecord {
  const t = ctx.xen.tscInfoGet(ctx.domid);
  return { name: 'X86_TSC_INFO', mode: t.mode, khz: t.gtscKhz, nsec: t.elapsedNsec, incarnation: t.incarnation, reserved: 0 };
}

export function hvmSaveOps(): SaveOps {
  let p2mSize = 0;
  return {
    domainHeaderType: 2,
    get p2mSize() {
      return p2mSize;
    },
    normalises: false,
    setup(ctx) {
      p2mSize = ctx.xen.nrGpfns(ctx.domid);
    },
    staticData: cpuPolicyRecords,
    startOfStream: () => [],
    checkVmState: () => {},
    pfnToFrame: (pfn) => pfn,
    endOfCheckpoint(ctx) {
      const recs: LibxcRecord[] = [tscRecord(ctx)];
      recs.push({ name: 'HVM_CONTEXT', data: ctx.xen.hvmContextGet(ctx.domid) });
      const params = [];
      for (const index of HVM_SAVE_PARAMS) {
        const value = ctx.xen.hvmParamGet(ctx.domid, index);
        if (value !== 0n) params.push({ index: BigInt(index), value });
      }
      if (params.length) recs.push({ name: 'HVM_PARAMS', reserved: 0, params });
      return recs;
    },
    cleanup() {},
  };
}
