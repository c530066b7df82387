// Frame numbers inside a 64-bit PV vcpu_guest_context: the suspend record (vCPU0's rdx, the
// start-info frame), the GDT frames, cr3 (kernel L4) and cr1 (user L4). The stream carries pfns;
// Xen takes and gives machine frames.
import { MigrationError, MigrationErrorCode } from '../errors.js';
import { dataView, FIRST_RESERVED_GDT_ENTRY, hex, readU64, VCPU64, VGCF_ONLINE, writeU64 } from './layout.js';

const CR1 = VCPU64.ctrlreg + 8;
const CR3 = VCPU64.ctrlreg + 24;

function pvError(domid: number, msg: string): MigrationError {
  return new MigrationError(MigrationErrorCode.ERR_PV_STATE, msg, { domid });
}

function gdtFrames(v: DataView, domid: number, vcpu: number): number {
  const ents = readU64(v, VCPU64.gdtEnts);
  if (ents < 0 || ents > FIRST_RESERVED_GDT_ENTRY)
    throw pvError(
      domid,
      `vcpu${vcpu}: GDT entry count ${ents < 0 ? 'huge' : ents} out of range (max ${FIRST_RESERVED_GDT_ENTRY})`,
    );
  return Math.ceil(ents / 512);
}

/** Save: machine frames -> pfns, in place. `pfnOf` answers -1 for a frame that is not the guest's. */
export function normaliseVcpu(
  ctx: Uint8Array,
  vcpu: number,
  domid: number,
  pfnOf: (mfn: number) => number,
): void {
  const v = dataView(ctx);
  const tr = (off: number, what: string): number => {
    const mfn = readU64(v, off);
    const pfn = pfnOf(mfn);
    if (pfn < 0) throw pvError(domid, `bad mfn ${hex(mfn)} for vcpu${vcpu}'s ${what}`);
    return pfn;
  };
  if (vcpu === 0) writeU64(v, VCPU64.rdx, tr(VCPU64.rdx, 'suspend record (start info)'));
  const n = gdtFrames(v, domid, vcpu);
  for (let i = 0; i < n; i++)
    writeU64(v, VCPU64.gdtFrames + 8 * i, tr(VCPU64.gdtFrames + 8 * i, `GDT frame ${i}`));
  const cr3 = v.getBigUint64(CR3, true);
  const cr3Pfn = pfnOf(Number(cr3 >> 12n));
  if (cr3Pfn < 0) throw pvError(domid, `bad mfn ${hex(Number(cr3 >> 12n))} for vcpu${vcpu}'s cr3`);
  v.setBigUint64(CR3, BigInt(cr3Pfn) << 12n, true);
  const cr1 = v.getBigUint64(CR1, true);
  if (cr1 !== 0n) {
    const p = pfnOf(Number(cr1 >> 12n));
    if (p < 0) throw pvError(domid, `bad mfn ${hex(Number(cr1 >> 12n))} for vcpu${vcpu}'s cr1`);
    v.setBigUint64(CR1, 1n | (BigInt(p) << 12n), true);
  }
}

export interface LocaliseVcpuEnv {
  domid: number;
  maxPfn: number;
  /** the stream page type of pfn (0 = NOTAB) */
  type(pfn: number): number;
  /** the new mfn of pfn after checking it against the M2P, else -1 */
  mfnOf(pfn: number): number;
  /** page-table levels of the guest (4) */
  levels: number;
}

/** Restore: pfns -> the new machine frames, in place (process_vcpu_basic without the start info). */
export function localiseVcpu(ctx: Uint8Array, vcpu: number, env: LocaliseVcpuEnv): void {
  const v = dataView(ctx);
  v.setUint32(VCPU64.flags, v.getUint32(VCPU64.flags, true) | VGCF_ONLINE, true);
  const frame = (pfn: number, what: string, wantType: (t: number) => boolean, typeWhat: string): number => {
    if (!(pfn >= 0 && pfn <= env.maxPfn))
      throw pvError(env.domid, `vcpu${vcpu}: ${what} (pfn ${hex(pfn)}) out of range`);
    const t = env.type(pfn);
    if (!wantType(t))
      throw pvError(env.domid, `vcpu${vcpu}: ${what} (pfn ${hex(pfn)}) has type ${t}, expected ${typeWhat}`);
    const mfn = env.mfnOf(pfn);
    if (mfn < 0) throw pvError(env.domid, `vcpu${vcpu}: ${what} (pfn ${hex(pfn)}) has no frame`);
    return mfn;
  };
  const n = gdtFrames(v, env.domid, vcpu);
  for (let i = 0; i < n; i++)
    writeU64(
      v,
      VCPU64.gdtFrames + 8 * i,
      frame(readU64(v, VCPU64.gdtFrames + 8 * i), `GDT frame ${i}`, (t) => t === 0, 'a normal page'),
    );
  const isTop = (t: number) => (t & 7) === env.levels; // L4TAB, pinned or not
  const cr3Pfn = Number(v.getBigUint64(CR3, true) >> 12n);
  v.setBigUint64(CR3, BigInt(frame(cr3Pfn, 'cr3', isTop, `an L${env.levels} table`)) << 12n, true);
  const cr1 = v.getBigUint64(CR1, true);
  if (cr1 & 1n) {
    const mfn = frame(Number(cr1 >> 12n), 'cr1', isTop, `an L${env.levels} table`);
    v.setBigUint64(CR1, BigInt(mfn) << 12n, true);
  }
}
