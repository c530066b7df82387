// PV page tables in the stream: normalise (save: machine frames -> pfns) and localise (restore:
// pfns -> the new machine frames), as xg_sr_save_x86_pv.c / xg_sr_restore_x86_pv.c do for 64-bit
// guests. PTEs are read as two 32-bit words: bit 0 present, bit 7 PSE, bits 12..51 the frame.
import { MigrationError, MigrationErrorCode } from '../errors.js';
import { hex, PTE_PRESENT, PTE_PSE, XEN_L4_FIRST, XEN_L4_LAST } from './layout.js';

const FRAME_HI_MASK = 0xfffff; // bits 32..51 of a PTE: the high part of the frame number

function words(b: Uint8Array): Uint32Array {
  return new Uint32Array(b.buffer, b.byteOffset, 1024);
}

/** Frame number of the PTE made of words lo, hi. */
function pteFrame(lo: number, hi: number): number {
  return (hi & FRAME_HI_MASK) * 0x100000 + (lo >>> 12);
}

/** Writes frame `f` into the PTE at word index 2i of `w`, keeping every other bit. */
function setPteFrame(w: Uint32Array, i: number, f: number): void {
  const lo = w[2 * i]!;
  const hi = w[2 * i + 1]!;
  w[2 * i] = ((lo & 0xfff) | ((f % 0x100000) << 12)) >>> 0;
  w[2 * i + 1] = ((hi & ~FRAME_HI_MASK) | (Math.floor(f / 0x100000) & FRAME_HI_MASK)) >>> 0;
}

export interface NormaliseEnv {
  /** the pfn of a machine frame that belongs to the guest (in its pseudo-physical map), else -1 */
  pfnOfMfn(mfn: number): number;
  /** errors are fatal (suspended guest); while live an unknown frame defers the page */
  fatal: boolean;
  domid: number;
}

/**
 * Rewrites the 64-bit page table `src` (level 1..4) into `dst` with pfns. Returns false when a
 * PTE names a frame outside the guest while the guest runs (the page is resent after the
 * suspend); throws when that happens with the guest suspended, and for superpage mappings.
 */
export function normalisePageTable(
  env: NormaliseEnv,
  level: number,
  src: Uint8Array,
  dst: Uint8Array,
  pfn?: number,
): boolean {
  const s = words(src);
  const d = words(dst);
  d.set(s);
  const where = pfn !== undefined ? ` in the L${level} table at pfn ${hex(pfn)}` : ` in an L${level} table`;
  for (let i = 0; i < 512; i++) {
    if (level === 4 && i >= XEN_L4_FIRST && i <= XEN_L4_LAST) {
      // Xen's own mappings: the destination's Xen rebuilds them
      d[2 * i] = 0;
      d[2 * i + 1] = 0;
      continue;
    }
    const lo = s[2 * i]!;
    if (!(lo & PTE_PRESENT)) continue;
    const hi = s[2 * i + 1]!;
    if (level > 1 && lo & PTE_PSE)
      throw new MigrationError(
        MigrationErrorCode.ERR_PV_STATE,
        `cannot migrate a superpage mapping: entry ${i}${where}`,
        {
          domid: env.domid,
          ...(pfn !== undefined ? { pfn } : {}),
        },
      );
    const mfn = pteFrame(lo, hi);
    const p = env.pfnOfMfn(mfn);
    if (p < 0) {
      if (!env.fatal) return false;
      throw new MigrationError(
        MigrationErrorCode.ERR_PV_STATE,
        `entry ${i}${where} maps mfn ${hex(mfn)}, which is not one of the guest's frames`,
        {
          domid: env.domid,
          ...(pfn !== undefined ? { pfn } : {}),
        },
      );
    }
    setPteFrame(d, i, p);
  }
  return true;
}

/** The pfns named by present entries of a stream page table (before localisation). */
export function presentPfns(level: number, page: Uint8Array): number[] {
  const w = words(page);
  const out: number[] = [];
  for (let i = 0; i < 512; i++) {
    const lo = w[2 * i]!;
    if (!(lo & PTE_PRESENT)) continue;
    out.push(pteFrame(lo, w[2 * i + 1]!));
  }
  void level;
  return out;
}

export interface LocaliseEnv {
  /** the new machine frame of a pfn, after checking it is in the new pseudo-physical map, else -1 */
  mfnOfPfn(pfn: number): number;
  domid: number;
}

/** Rewrites the pfns of a stream page table (in place, in guest memory) into machine frames. */
export function localisePageTable(env: LocaliseEnv, level: number, page: Uint8Array, pfn: number): void {
  const w = words(page);
  for (let i = 0; i < 512; i++) {
    const lo = w[2 * i]!;
    if (!(lo & PTE_PRESENT)) continue;
    const p = pteFrame(lo, w[2 * i + 1]!);
    const mfn = env.mfnOfPfn(p);
    if (mfn < 0)
      throw new MigrationError(
        MigrationErrorCode.ERR_PV_STATE,
        `entry ${i} of the L${level} table at pfn ${hex(pfn)} names pfn ${hex(p)}, which the guest does not have`,
        {
          domid: env.domid,
          pfn,
        },
      );
    setPteFrame(w, i, mfn);
  }
}
