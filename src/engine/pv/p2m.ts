// The guest's own p2m (pfn -> mfn) on the save side, found the way xg_sr_save_x86_pv.c does:
// the virtually mapped linear list when the guest publishes arch.p2m_cr3 (Linux does), else the
// 3-level frame-list tree (arch.pfn_to_mfn_frame_list_list). The leaves stay mapped for the whole
// save: pfn_to_mfn reads the guest's current p2m, as libxc does.
import type { Hypervisor, Mapping } from '../../xen/types.js';
import { MigrationError, MigrationErrorCode } from '../errors.js';
import {
  dataView,
  FrameTable,
  hex,
  INVALID,
  M2p,
  PAGE_SIZE,
  readU64,
  readU64Big,
  SHINFO64,
} from './layout.js';

/** entries per p2m page for a 64-bit guest */
const FPP = PAGE_SIZE / 8;
const HYPERVISOR_VIRT_START = 0xffff800000000000n;
const HYPERVISOR_VIRT_END = 0xffff880000000000n;
const VA_MASK = 0x0000ffffffffffffn;

export interface GuestP2mSnapshot {
  mode: 'list' | 'tree';
  generation: bigint;
  frameListList: number;
  leafMfns: number[];
  maxPfn: number;
}

export class GuestP2m {
  /** pfns 0..maxPfn */
  maxPfn = 0;
  /** the p2m leaf frames, as mfns, and as pfns (X86_PV_P2M_FRAMES) */
  leafMfns: number[] = [];
  leafPfns: number[] = [];
  mode: 'list' | 'tree' = 'tree';
  generation = 0n;
  frameListList = 0;
  private leaves: Mapping | null = null;
  private table: FrameTable | null = null;

  constructor(
    private readonly xen: Hypervisor,
    private readonly domid: number,
    private readonly m2p: M2p,
    /** the guest's shared-info page (mapped read-only by the caller) */
    private readonly shinfo: Uint8Array,
  ) {}

  private fail(msg: string): never {
    throw new MigrationError(MigrationErrorCode.ERR_PV_STATE, msg, { domid: this.domid });
  }

  private arch(off: number): number {
    return readU64(dataView(this.shinfo), SHINFO64.arch + off);
  }
  private archBig(off: number): bigint {
    return readU64Big(dataView(this.shinfo), SHINFO64.arch + off);
  }

  /** The guest's p2m generation counter (changes whenever the guest edits its p2m). */
  currentGeneration(): bigint {
    return this.archBig(SHINFO64.p2mGeneration);
  }

  private validMfn(mfn: number): boolean {
    return mfn > 0 && mfn <= this.m2p.maxMfn;
  }

  private mapFrames(mfns: number[], what: string): Mapping {
    const m = this.xen.map(
      this.domid,
      BigUint64Array.from(mfns, (x) => BigInt(x)),
      'r',
    );
    for (let i = 0; i < m.errors.length; i++) {
      if (m.errors[i] !== 0) {
        m.unmap();
        this.fail(`cannot map ${what} (mfn ${hex(mfns[i]!)}, errno ${m.errors[i]})`);
      }
    }
    return m;
  }

  setup(): void {
    const maxPfnField = this.arch(SHINFO64.maxPfn);
    if (maxPfnField <= 0 || maxPfnField > 2 ** 32)
      this.fail(`shared info max_pfn ${hex(maxPfnField)} is not usable`);
    this.maxPfn = maxPfnField - 1;
    const p2mCr3 = this.archBig(SHINFO64.p2mCr3);
    if (p2mCr3 !== 0n) this.mapList(p2mCr3);
    else this.mapTree();
  }

  /** map_p2m_tree(): frame list list -> frame lists -> leaves. */
  private mapTree(): void {
    this.mode = 'tree';
    this.generation = ~0n;
    let fllEntries = Math.floor(this.maxPfn / (FPP * FPP)) + 1;
    if (fllEntries > FPP) this.fail(`max_pfn ${hex(this.maxPfn)} too large for a p2m tree`);
    const fllMfn = this.arch(SHINFO64.frameListList);
    if (!this.validMfn(fllMfn)) this.fail(`bad mfn ${hex(fllMfn)} for the p2m frame list list`);
    this.frameListList = fllMfn;
    const fll: number[] = [];
    const top = this.mapFrames([fllMfn], 'the p2m frame list list');
    try {
      const t = new FrameTable(top.bytes);
      for (let x = 0; x < fllEntries; x++) fll.push(t.get(x));
    } finally {
      top.unmap();
    }
    let savedMfn = 0;
    let savedX = 0;
    for (let x = 0; x < fllEntries; x++) {
      if (!this.validMfn(fll[x]!))
        this.fail(`bad mfn ${hex(fll[x]!)} at index ${x} of the p2m frame list list`);
      if (fll[x] !== savedMfn) {
        savedMfn = fll[x]!;
        savedX = x;
      }
    }
    // trailing identical entries all name the same (empty) part: the real max_pfn is lower
    const trimmed = (savedX + 1) * FPP * FPP - 1;
    if (trimmed < this.maxPfn) {
      this.maxPfn = trimmed;
      fllEntries = Math.floor(this.maxPfn / (FPP * FPP)) + 1;
    }
    const flEntries = Math.floor(this.maxPfn / FPP) + 1;
    const fl: number[] = [];
    const mids = this.mapFrames(fll.slice(0, fllEntries), 'the p2m frame lists');
    try {
      const t = new FrameTable(mids.bytes);
      for (let x = 0; x < flEntries; x++) fl.push(t.get(x));
    } finally {
      mids.unmap();
    }
    for (let x = 0; x < flEntries; x++)
      if (!this.validMfn(fl[x]!)) this.fail(`bad mfn ${hex(fl[x]!)} at index ${x} of the p2m frame list`);
    this.mapLeaves(fl);
  }

  /** map_p2m_list(): walk the guest page tables from p2m_cr3 over [p2m_vaddr, p2m_vaddr + size). */
  private mapList(p2mCr3: bigint): void {
    this.mode = 'list';
    const rootMfn = Number(p2mCr3 >> 12n);
    if (!this.validMfn(rootMfn)) this.fail(`bad p2m_cr3 ${p2mCr3.toString(16)}`);
    this.generation = this.currentGeneration();
    const vaddr = this.archBig(SHINFO64.p2mVaddr);
    let frames = Math.floor(this.maxPfn / FPP) + 1;
    let end = vaddr + BigInt(frames * PAGE_SIZE) - 1n;
    const canonical = (a: bigint) => {
      const s = BigInt.asIntN(64, a);
      return s >> 47n === s >> 63n;
    };
    if (
      !canonical(vaddr) ||
      !canonical(end) ||
      end < vaddr ||
      (vaddr <= HYPERVISOR_VIRT_END && end > HYPERVISOR_VIRT_START)
    )
      this.fail(`bad virtual p2m address range ${vaddr.toString(16)}-${end.toString(16)}`);
    let mfns = [rootMfn];
    let off = 0n;
    let idxStart = 0;
    let idxEnd = 0;
    for (let level = 4; level > 0; level--) {
      const shift = BigInt(level * 9 + 3);
      const m = this.mapFrames(mfns, `page tables of the p2m list (level ${level})`);
      const next: number[] = [];
      try {
        const ptes = dataView(m.bytes);
        idxStart = Number(((vaddr - off) & VA_MASK) >> shift);
        idxEnd = Number(((end - off) & VA_MASK) >> shift);
        if ((idxEnd + 1) * 8 > m.bytes.length) this.fail(`p2m list walk out of range at level ${level}`);
        let savedMfn = 0;
        let savedIdx = 0;
        for (let idx = idxStart; idx <= idxEnd; idx++) {
          const lo = ptes.getUint32(idx * 8, true);
          const hi = ptes.getUint32(idx * 8 + 4, true);
          const mfn = (hi & 0xfffff) * 0x100000 + (lo >>> 12);
          if (!this.validMfn(mfn))
            this.fail(`bad mfn ${hex(mfn)} in the page tables of the p2m list at level ${level}`);
          next.push(mfn);
          if (level === 2 && mfn !== savedMfn) {
            savedMfn = mfn;
            savedIdx = idx - idxStart;
          }
        }
        if (level === 2) {
          // as for the tree: trailing entries naming the same L1 cover no memory
          if (savedIdx === idxEnd) savedIdx++;
          const trimmed = savedIdx * 512 * FPP - 1;
          if (trimmed >= 0 && trimmed < this.maxPfn) {
            this.maxPfn = trimmed;
            frames = Math.floor((this.maxPfn + FPP) / FPP);
            end = vaddr + BigInt(frames * PAGE_SIZE) - 1n;
            idxEnd = idxStart + savedIdx;
            next.length = idxEnd - idxStart + 1;
          }
        }
      } finally {
        m.unmap();
      }
      mfns = next;
      off = vaddr & ((VA_MASK >> shift) << shift);
    }
    this.mapLeaves(mfns);
  }

  private mapLeaves(mfns: number[]): void {
    this.leaves = this.mapFrames(mfns, 'the p2m leaves');
    this.table = new FrameTable(this.leaves.bytes);
    this.leafMfns = mfns.slice();
    this.leafPfns = mfns.map((mfn, x) => {
      if (!this.inPseudophysmap(mfn)) this.fail(`bad mfn ${hex(mfn)} in p2m frame list entry ${x}`);
      return this.m2p.pfn(mfn);
    });
  }

  /** The guest's mfn for pfn, -1 for an invalid entry (ballooned out) or a pfn beyond max_pfn. */
  mfn(pfn: number): number {
    if (pfn > this.maxPfn || !this.table) return INVALID;
    return this.table.get(pfn);
  }

  /** mfn_in_pseudophysmap: a frame of this guest according to both the M2P and its p2m. */
  inPseudophysmap(mfn: number): boolean {
    if (!(mfn >= 0 && mfn <= this.m2p.maxMfn)) return false;
    const pfn = this.m2p.pfn(mfn);
    return pfn >= 0 && pfn <= this.maxPfn && this.mfn(pfn) === mfn;
  }

  /** pfn of a guest frame, or -1. */
  pfnOf(mfn: number): number {
    return this.inPseudophysmap(mfn) ? this.m2p.pfn(mfn) : INVALID;
  }

  snapshot(): GuestP2mSnapshot {
    return {
      mode: this.mode,
      generation: this.generation,
      frameListList: this.frameListList,
      leafMfns: this.leafMfns.slice(),
      maxPfn: this.maxPfn,
    };
  }

  /**
   * Has the guest moved or resized its p2m since setup? list: the generation counter (as libxc);
   * tree: max_pfn, the frame list list and the frame lists (libxc does not check trees at all).
   */
  changedSince(): string | null {
    if (this.mode === 'list') {
      const g = this.currentGeneration();
      return g === this.generation ? null : `p2m generation changed from ${this.generation} to ${g}`;
    }
    const maxPfnField = this.arch(SHINFO64.maxPfn);
    if (maxPfnField - 1 < this.maxPfn)
      return `max_pfn shrank from ${hex(this.maxPfn)} to ${hex(maxPfnField - 1)}`;
    const fll = this.arch(SHINFO64.frameListList);
    if (fll !== this.frameListList)
      return `p2m frame list list moved from mfn ${hex(this.frameListList)} to ${hex(fll)}`;
    const fllEntries = Math.floor(this.maxPfn / (FPP * FPP)) + 1;
    const top = this.xen.map(this.domid, new BigUint64Array([BigInt(fll)]), 'r');
    let mids: number[];
    try {
      if (top.errors[0] !== 0) return 'p2m frame list list no longer mappable';
      const t = new FrameTable(top.bytes);
      mids = Array.from({ length: fllEntries }, (_, x) => t.get(x));
    } finally {
      top.unmap();
    }
    if (mids.some((m) => !this.validMfn(m))) return 'p2m frame list list has invalid entries';
    const fl = this.xen.map(
      this.domid,
      BigUint64Array.from(mids, (x) => BigInt(x)),
      'r',
    );
    try {
      for (let i = 0; i < fl.errors.length; i++)
        if (fl.errors[i] !== 0) return 'p2m frame lists no longer mappable';
      const t = new FrameTable(fl.bytes);
      for (let x = 0; x < this.leafMfns.length; x++)
        if (t.get(x) !== this.leafMfns[x])
          return `p2m leaf ${x} moved from mfn ${hex(this.leafMfns[x]!)} to ${hex(t.get(x))}`;
    } finally {
      fl.unmap();
    }
    return null;
  }

  unmap(): void {
    this.leaves?.unmap();
    this.leaves = null;
    this.table = null;
  }
}
