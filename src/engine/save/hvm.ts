// x86 HVM (and PVH) save operations: xg_sr_save_x86_hvm.c's role. Guest frames are gfns; the
// end of each checkpoint carries TSC info, the HVM context blob and the non-zero HVM params.
import type { LibxcRecord } from '../../stream/index.js';
import { HVM_SAVE_PARAMS } from '../../xen/constants.js';
import { cpuPolicyRecords, tscRecord } from '../x86.js';
import type { SaveOps } from './types.js';

export function hvmSaveOps(): SaveOps {
  let p2mSize = 0;
  return {
    domainHeaderType: 2,
    get p2mSize() {
      return p2mSize;
    },
    setup(ctx) {
      p2mSize = ctx.xen.nrGpfns(ctx.domid);
    },
    staticData: cpuPolicyRecords,
    startOfStream: () => [],
    checkVmState: () => {},
    pfnToFrame: (pfn) => pfn,
    // an HVM guest's pages go as they are
    normalisePage(_ctx, _type, src, dst) {
      dst.set(src);
      return 'ok';
    },
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
