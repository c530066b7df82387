// Wire constants of the Xen migration stream (libxc rev 3, libxl rev 2, xl save-file prefix).
// Numbers are from the Xen stream specifications; see docs/specs/libxc-migration-stream.pandoc and
// libxl-migration-stream.pandoc in the Xen tree.

/** Layer a stream item belongs to. */
export type Layer = 'xl' | 'libxl' | 'libxc';

// ---------------------------------------------------------------------------------------------
// libxc

export const IHDR_MARKER_BYTE = 0xff; // 8 bytes of 0xff
export const IHDR_ID = 0x58454e46; // "XENF"
export const IHDR_VERSION_2 = 2;
export const IHDR_VERSION_3 = 3;
export const IHDR_OPT_BIG_ENDIAN = 0x0001;
export const IHDR_SIZE = 24;
export const DHDR_SIZE = 16;

export const DOMAIN_TYPE_X86_PV = 1;
export const DOMAIN_TYPE_X86_HVM = 2;
import { PAGE_SHIFT, PAGE_SIZE } from '../xen/constants.js';

export { PAGE_SHIFT, PAGE_SIZE };

export const REC_HDR_SIZE = 8;
export const REC_ALIGN = 8;
/** REC_LENGTH_MAX: largest accepted body_length (128 MiB). */
export const REC_LENGTH_MAX = 128 * 1024 * 1024;
/** MAX_BATCH_SIZE: pages per PAGE_DATA record written by libxc (and by StreamWriter). */
export const MAX_BATCH_SIZE = 1024;
/** Bit 31 of a record type marks it optional. */
export const REC_TYPE_OPTIONAL = 0x80000000;

export const LibxcType = {
  END: 0x00,
  PAGE_DATA: 0x01,
  X86_PV_INFO: 0x02,
  X86_PV_P2M_FRAMES: 0x03,
  X86_PV_VCPU_BASIC: 0x04,
  X86_PV_VCPU_EXTENDED: 0x05,
  X86_PV_VCPU_XSAVE: 0x06,
  SHARED_INFO: 0x07,
  X86_TSC_INFO: 0x08,
  HVM_CONTEXT: 0x09,
  HVM_PARAMS: 0x0a,
  TOOLSTACK: 0x0b,
  X86_PV_VCPU_MSRS: 0x0c,
  VERIFY: 0x0d,
  CHECKPOINT: 0x0e,
  CHECKPOINT_DIRTY_PFN_LIST: 0x0f,
  STATIC_DATA_END: 0x10,
  X86_CPUID_POLICY: 0x11,
  X86_MSR_POLICY: 0x12,
} as const;
export type LibxcTypeName = keyof typeof LibxcType;

export const LIBXC_TYPE_NAMES: readonly LibxcTypeName[] = (() => {
  const out: LibxcTypeName[] = [];
  for (const [k, v] of Object.entries(LibxcType)) out[v] = k as LibxcTypeName;
  return out;
})();

// PAGE_DATA pfn word: type nibble in bits 63..60, reserved 59..52, pfn 51..0.
export const PFN_BITS = 52;
export const PFN_MASK_HI = 0x000fffff; // high 32-bit word part of the pfn
export const PageType = {
  NOTAB: 0x0,
  L1TAB: 0x1,
  L2TAB: 0x2,
  L3TAB: 0x3,
  L4TAB: 0x4,
  L1TAB_PIN: 0x9,
  L2TAB_PIN: 0xa,
  L3TAB_PIN: 0xb,
  L4TAB_PIN: 0xc,
  BROKEN: 0xd,
  XALLOC: 0xe,
  XTAB: 0xf,
} as const;

/** 1 where the page type nibble carries 4096 bytes of data, 0 where it carries none, -1 = invalid. */
export const PAGE_TYPE_DATA: readonly number[] = [1, 1, 1, 1, 1, -1, -1, -1, -1, 1, 1, 1, 1, 0, 0, 0];
export function pageTypeHasData(t: number): boolean {
  return PAGE_TYPE_DATA[t & 0xf] === 1;
}
export function pageTypeValid(t: number): boolean {
  return PAGE_TYPE_DATA[t & 0xf] !== -1;
}

/** vcpu_guest_context size per guest width (bytes). */
export const VCPU_BASIC_SIZE_64 = 5168;
export const VCPU_BASIC_SIZE_32 = 2800;
export const VCPU_EXTENDED_MAX = 128;
export const VCPU_XSAVE_MIN = 16;
export const SHARED_INFO_SIZE = 4096;
export const TSC_INFO_SIZE = 24;
export const CPUID_LEAF_SIZE = 24;
export const MSR_ENTRY_SIZE = 16;

// ---------------------------------------------------------------------------------------------
// libxl

export const LIBXL_IDENT = 'LibxlFmt'; // 0x4C6962786C466D74, big-endian
export const LIBXL_VERSION = 2;
export const LIBXL_HDR_SIZE = 16;
export const LIBXL_OPT_BIG_ENDIAN = 0x1;
export const LIBXL_OPT_LEGACY = 0x2;

export const LibxlType = {
  END: 0,
  LIBXC_CONTEXT: 1,
  EMULATOR_XENSTORE_DATA: 2,
  EMULATOR_CONTEXT: 3,
  CHECKPOINT_END: 4,
  CHECKPOINT_STATE: 5,
} as const;
export type LibxlTypeName = keyof typeof LibxlType;
export const LIBXL_TYPE_NAMES: readonly LibxlTypeName[] = (() => {
  const out: LibxlTypeName[] = [];
  for (const [k, v] of Object.entries(LibxlType)) out[v] = k as LibxlTypeName;
  return out;
})();

export const EmulatorId = { UNKNOWN: 0, QEMU_TRADITIONAL: 1, QEMU_UPSTREAM: 2 } as const;
export const CheckpointState = { NEW: 0, SVM_SUSPENDED: 1, SVM_READY: 2, SVM_RESUMED: 3 } as const;

// ---------------------------------------------------------------------------------------------
// xl save-file / migration prefix

/** 32 bytes: "Xen saved domain, xl format\n \0 \r" (embedded NUL, no terminator). */
export const XL_MAGIC: Uint8Array = new TextEncoder().encode('Xen saved domain, xl format\n \0 \r');
export const XL_HDR_SIZE = 48;
export const XL_BYTEORDER = 0x01020304;
export const XL_MANDATORY_FLAG_JSON = 1 << 0;
export const XL_MANDATORY_FLAG_STREAMV2 = 1 << 1;
export const XL_MANDATORY_KNOWN = XL_MANDATORY_FLAG_JSON | XL_MANDATORY_FLAG_STREAMV2;
/** Cap on xl optional data (the domain config); a real one is a few KiB. */
export const XL_OPTIONAL_DATA_MAX = 16 * 1024 * 1024;

/** Round up to the 8-byte record alignment. */
export function roundUp8(n: number): number {
  return n + ((8 - (n % 8)) % 8);
}
