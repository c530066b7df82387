// x86 PV structure layouts (64-bit guests, Xen's public headers: arch-x86/xen-x86_64.h, xen.h),
// frame-number helpers and the M2P view shared by PV save and restore.
// Offsets are checked against /usr/include/xen (and docker/mock/include) by test/engine/pv-layout.test.ts.

import { PAGE_SHIFT, PAGE_SIZE } from '../../xen/constants.js';

export { PAGE_SHIFT, PAGE_SIZE };
/** INVALID_MFN / INVALID_PFN as a number: any entry that is not a frame reads as -1 here. */
export const INVALID = -1;

/** sizeof(vcpu_guest_context_x86_64_t) and the fields the stream translates. */
export const VCPU64 = {
  size: 5168,
  flags: 512,
  userRegs: 520,
  rax: 600,
  rdx: 616,
  gdtFrames: 4832,
  gdtEnts: 4960,
  ctrlreg: 4984,
} as const;
/** sizeof(vcpu_guest_context_x86_32_t): the BASIC blob size of a 32-bit guest. */
export const VCPU32_SIZE = 2800;
/** VGCF_online */
export const VGCF_ONLINE = 1 << 5;
/** FIRST_RESERVED_GDT_ENTRY = 14 pages of 512 descriptors: the most a guest GDT may have. */
export const FIRST_RESERVED_GDT_ENTRY = 14 * 512;

/** shared_info (x86_64): vcpu_info[32] of 64 bytes, evtchn_pending/mask, wallclock, arch. */
export const SHINFO64 = {
  vcpuInfo: 0,
  vcpuInfoSize: 64,
  legacyMaxVcpus: 32,
  evtchnPendingSel: 8, // within vcpu_info
  evtchnPending: 2048,
  evtchnMask: 2560,
  evtchnBytes: 512,
  arch: 3088,
  archSize: 48,
  // within arch_shared_info
  maxPfn: 0,
  frameListList: 8,
  p2mCr3: 24,
  p2mVaddr: 32,
  p2mGeneration: 40,
} as const;

/** start_info (x86_64) fields restore rewrites (xg_sr_restore_x86_pv.c process_start_info). */
export const START_INFO64 = {
  nrPages: 32,
  sharedInfo: 40,
  flags: 48,
  storeMfn: 56,
  storeEvtchn: 64,
  consoleMfn: 72,
  consoleEvtchn: 80,
} as const;

/** 64-bit guests: L4 slots of Xen's own mappings, HYPERVISOR_VIRT_START..END >> 39 (libxc zaps 256..272). */
export const XEN_L4_FIRST = 256;
export const XEN_L4_LAST = 272;

export const PTE_PRESENT = 0x1;
export const PTE_PSE = 0x80;

// ---- 64-bit little-endian words as numbers -------------------------------------------------

/** A u64 at byte offset `off` as a number; values that are not frame-sized (>= 2^52) read as -1. */
export function readU64(v: DataView, off: number): number {
  const lo = v.getUint32(off, true);
  const hi = v.getUint32(off + 4, true);
  if (hi >= 0x100000) return INVALID;
  return hi * 0x100000000 + lo;
}

export function writeU64(v: DataView, off: number, n: number): void {
  if (n < 0) {
    v.setUint32(off, 0xffffffff, true);
    v.setUint32(off + 4, 0xffffffff, true);
    return;
  }
  v.setUint32(off, n % 0x100000000, true);
  v.setUint32(off + 4, Math.floor(n / 0x100000000), true);
}

/** A u64 as a bigint (for fields that are not frame numbers). */
export function readU64Big(v: DataView, off: number): bigint {
  return v.getBigUint64(off, true);
}

export function dataView(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * A table of 64-bit frame numbers (the M2P, a p2m) read without BigInt: entry i = words 2i, 2i+1.
 * Entries >= 2^52 (INVALID_MFN and friends) read as -1.
 */
export class FrameTable {
  private readonly w: Uint32Array;
  readonly length: number;

  constructor(bytes: { buffer: ArrayBufferLike; byteOffset: number; byteLength: number }) {
    this.length = Math.floor(bytes.byteLength / 8);
    this.w = new Uint32Array(bytes.buffer, bytes.byteOffset, this.length * 2);
  }

  get(i: number): number {
    if (!(i >= 0 && i < this.length)) return INVALID;
    const hi = this.w[2 * i + 1]!;
    if (hi >= 0x100000) return INVALID;
    return hi * 0x100000000 + this.w[2 * i]!;
  }

  set(i: number, n: number): void {
    if (n < 0) {
      this.w[2 * i] = 0xffffffff;
      this.w[2 * i + 1] = 0xffffffff;
    } else {
      this.w[2 * i] = n % 0x100000000;
      this.w[2 * i + 1] = Math.floor(n / 0x100000000);
    }
  }
}

/** The host's machine-to-phys table. */
export class M2p {
  readonly table: FrameTable;
  readonly maxMfn: number;
  private readonly release: () => void;

  constructor(m: { table: BigUint64Array; maxMfn: number; unmap(): void }) {
    this.table = new FrameTable(m.table);
    this.maxMfn = m.maxMfn;
    this.release = () => m.unmap();
  }

  /** pfn of mfn, or -1 (beyond the table, or an invalid entry). */
  pfn(mfn: number): number {
    if (mfn < 0) return INVALID;
    return this.table.get(mfn);
  }

  unmap(): void {
    this.release();
  }
}

/** Page-table level of a stream page type (L1TAB..L4TAB, pinned or not), 0 for other types. */
export function tableLevel(type: number): number {
  if (type >= 1 && type <= 4) return type;
  if (type >= 9 && type <= 12) return type - 8;
  return 0;
}

export function isPinned(type: number): boolean {
  return type >= 9 && type <= 12;
}

export function hex(n: number): string {
  return n < 0 ? 'INVALID' : `0x${n.toString(16)}`;
}
