// x86 helpers shared by the PV and HVM ops of both engines (Xen's xg_sr_common_x86.c): the TSC
// record and the CPU policy records, written at save and applied at restore.
import { decodeLibxcBody, encodeLibxcBody, LibxcType, type LibxcRecord } from '../stream/index.js';
import type { RestoreContext } from './restore/types.js';
import type { SaveContext } from './save/types.js';

const LOC = { offset: 0, index: 0, layer: 'libxc' as const };

/** CPU policy records shared by HVM and PV (omitted when empty, as the libxc sender does). */
export function cpuPolicyRecords(ctx: SaveContext): LibxcRecord[] {
  const out: LibxcRecord[] = [];
  let pol: { cpuid: Uint8Array; msrs: Uint8Array };
  try {
    pol = ctx.xen.cpuPolicyGet(ctx.domid);
  } catch (e) {
    // Xen without policy support (pre-4.14 semantics): the stream simply has no policy records
    if ((e as { code?: string }).code === 'EOPNOTSUPP' || (e as { code?: string }).code === 'ENOSYS')
      return out;
    throw e;
  }
  if (pol.cpuid.length) out.push(decodeLibxcBody(LibxcType.X86_CPUID_POLICY, pol.cpuid, LOC));
  if (pol.msrs.length) out.push(decodeLibxcBody(LibxcType.X86_MSR_POLICY, pol.msrs, LOC));
  return out;
}

/** X86_TSC_INFO of the domain, at the end of each checkpoint. */
export function tscRecord(ctx: SaveContext): LibxcRecord {
  const t = ctx.xen.tscInfoGet(ctx.domid);
  return {
    name: 'X86_TSC_INFO',
    mode: t.mode,
    khz: t.gtscKhz,
    nsec: t.elapsedNsec,
    incarnation: t.incarnation,
    reserved: 0,
  };
}

/** CPU policy records are stashed and applied once, at STATIC_DATA_END. */
export class PolicyStash {
  cpuid: Uint8Array | null = null;
  msrs: Uint8Array | null = null;

  take(rec: LibxcRecord): boolean {
    if (rec.name === 'X86_CPUID_POLICY') {
      this.cpuid = encodeLibxcBody(rec);
      return true;
    }
    if (rec.name === 'X86_MSR_POLICY') {
      this.msrs = encodeLibxcBody(rec);
      return true;
    }
    return false;
  }

  apply(ctx: RestoreContext): { cpuid: boolean; msr: boolean } {
    const missing = { cpuid: this.cpuid === null, msr: this.msrs === null };
    if (this.cpuid || this.msrs)
      ctx.xen.cpuPolicySet(ctx.domid, this.cpuid ?? new Uint8Array(0), this.msrs ?? new Uint8Array(0));
    return missing;
  }
}

/** X86_TSC_INFO at restore: applied as it comes. */
export function applyTsc(ctx: RestoreContext, rec: LibxcRecord): boolean {
  if (rec.name !== 'X86_TSC_INFO') return false;
  ctx.xen.tscInfoSet(ctx.domid, {
    mode: rec.mode,
    elapsedNsec: rec.nsec,
    gtscKhz: rec.khz,
    incarnation: rec.incarnation,
  });
  return true;
}
