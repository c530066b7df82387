// x86 HVM (and PVH) restore operations: xg_sr_restore_x86_hvm.c's role.
import { HVM_NR_PARAMS, HvmParam } from '../../xen/constants.js';
import { MigrationError, MigrationErrorCode } from '../errors.js';
import type { RestoreContext, RestoreOps } from './types.js';
import { applyTsc, PolicyStash } from '../x86.js';
import { framesOf } from '../frames.js';

/** Largest gfn a restore may populate in an HVM domain: 2^40 bytes of guest-physical space. */
export const HVM_MAX_RESTORE_PFN = 2 ** 28 - 1;

export function hvmRestoreOps(): RestoreOps {
  let context: Uint8Array | null = null;
  const policy = new PolicyStash();
  let maxPfn = HVM_MAX_RESTORE_PFN;

  const clearPage = (ctx: RestoreContext, gfn: bigint) => {
    if (gfn > BigInt(maxPfn)) return;
    // the page must exist to be cleared; populate it if the stream did not send it
    const m = ctx.xen.map(ctx.domid, new BigUint64Array([gfn]), 'rw');
    try {
      if (m.errors[0] === 0) m.bytes.fill(0);
    } finally {
      m.unmap();
    }
  };

  return {
    domainHeaderType: 2,
    setup(ctx) {
      // Real Xen accepts any gfn up to the guest's physical address width (libxc checks nothing);
      // xenmig bounds it at 1 TiB of guest-physical space. The hypervisor refuses what the domain
      // cannot hold (populate fails), so nothing is ever written outside the domain.
      maxPfn = HVM_MAX_RESTORE_PFN;
    },
    maxPfn: () => maxPfn,
    populate(ctx, pfns) {
      ctx.xen.populatePhysmap(ctx.domid, framesOf(pfns));
    },
    pfnToFrame: (pfn) => pfn,
    // an HVM guest's page tables are its own business: types are not kept, pages not rewritten
    setPageType: () => {},
    localisePage: () => {},
    processRecord(ctx, rec) {
      switch (rec.name) {
        case 'X86_TSC_INFO':
          return applyTsc(ctx, rec);
        case 'HVM_CONTEXT':
          if (rec.data.length === 0)
            throw new MigrationError(MigrationErrorCode.ERR_UNSUPPORTED, 'empty HVM_CONTEXT', {
              domid: ctx.domid,
            });
          context = rec.data; // applied at stream completion; the last one wins
          return true;
        case 'HVM_PARAMS':
          applyHvmParams(ctx, rec.params, (gfn) => clearPage(ctx, gfn));
          return true;
        case 'X86_CPUID_POLICY':
        case 'X86_MSR_POLICY':
          return policy.take(rec);
        default:
          return false;
      }
    },
    staticDataComplete: (ctx) => policy.apply(ctx),
    streamComplete(ctx) {
      if (!context)
        throw new MigrationError(MigrationErrorCode.ERR_INCOMPLETE, 'stream completed without HVM_CONTEXT', {
          domid: ctx.domid,
        });
      ctx.xen.hvmContextSet(ctx.domid, context);
    },
    cleanup() {},
  };
}

/** HVM_PARAMS: each parameter set in the domain (PAE_ENABLED dropped, as libxc does); the pages
 * behind the xenstore and ioreq parameters are cleared first. */
function applyHvmParams(
  ctx: RestoreContext,
  params: readonly { index: bigint; value: bigint }[],
  clearPage: (gfn: bigint) => void,
): void {
  for (const [i, p] of params.entries()) {
    // checked as a 64-bit value: Number() would round 2^64-1 to 18446744073709552000
    if (p.index >= BigInt(HVM_NR_PARAMS))
      throw new MigrationError(
        MigrationErrorCode.ERR_DOMAIN_MISMATCH,
        `HVM_PARAMS entry ${i}: index 0x${p.index.toString(16)} is not an HVM parameter (0..${HVM_NR_PARAMS - 1})`,
        { domid: ctx.domid },
      );
    const index = Number(p.index);
    if (index === HvmParam.PAE_ENABLED) continue;
    if (index === HvmParam.STORE_PFN || index === HvmParam.IOREQ_PFN || index === HvmParam.BUFIOREQ_PFN)
      clearPage(p.value);
    ctx.xen.hvmParamSet(ctx.domid, index, p.value);
  }
}
