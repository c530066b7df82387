// Hand-made broken streams: each must fail with the expected StreamError code AND offset, the
// same way whether read from one buffer, in 7-byte chunks, or lazily (validateStream).
import { describe, it, expect } from 'vitest';
import {
  concatBytes,
  encodeLibxcRecord,
  encodeLibxlRecord,
  encodeXlHeader,
  encodeImageHeader,
  StreamError,
  StreamReader,
  StreamValidator,
  validateStream,
  type LibxcRecord,
  type ReaderOptions,
  type StreamInput,
  type ValidatorOptions,
} from '../../src/stream/index.js';
import {
  build,
  chunked,
  CKPT,
  CPUID,
  DHDR_HVM,
  DHDR_PV,
  EMU,
  END,
  HVMCTX,
  HVMPAR,
  hvmParts,
  IHDR2,
  IHDR3,
  LIBXL_HDR,
  LX_CKEND,
  LX_CTX,
  LX_END,
  MSRP,
  P2M,
  pageData,
  PV_INFO,
  pvParts,
  SDE,
  SHINFO,
  TSC,
  VCPU,
  XL_HDR,
  xlHvmParts,
  type Part,
} from './helpers.js';

/** Byte offset of parts[i] in build(parts). */
function off(parts: Part[], i: number): number {
  return build(parts.slice(0, i)).length;
}
function patch(b: Uint8Array, at: number, bytes: number[]): Uint8Array {
  const c = new Uint8Array(b);
  c.set(bytes, at);
  return c;
}
const le32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
const raw = (type: number, body: number[] | Uint8Array, pad = 0) => {
  const b = Uint8Array.from(body);
  const padLen = (8 - (b.length % 8)) % 8;
  return concatBytes([
    Uint8Array.from([...le32(type), ...le32(b.length)]),
    b,
    new Uint8Array(padLen).fill(pad),
  ]);
};

interface Case {
  name: string;
  bytes: Uint8Array;
  code: string;
  offset: number;
  ropts?: ReaderOptions;
  vopts?: ValidatorOptions;
}

const PV = pvParts();
const HVM = hvmParts();
const PVB = build(PV);
const HVMB = build(HVM);
const XLH = xlHvmParts();
const XLB = build(XLH);
const iPD = PV.findIndex((p) => !(p instanceof Uint8Array) && 'xc' in p && p.xc.name === 'PAGE_DATA');
const pdOff = off(PV, iPD);
const iTSC = PV.findIndex((p) => !(p instanceof Uint8Array) && 'xc' in p && p.xc.name === 'X86_TSC_INFO');
const xlLen = XL_HDR.length;

const with_ = (parts: Part[], i: number, ...repl: Part[]) => [
  ...parts.slice(0, i),
  ...repl,
  ...parts.slice(i + 1),
];
const ins = (parts: Part[], i: number, ...add: Part[]) => [...parts.slice(0, i), ...add, ...parts.slice(i)];
const pvInsCase = (name: string, i: number, add: Part, code: string): Case => ({
  name,
  bytes: build(ins(PV, i, add)),
  code,
  offset: off(PV, i),
});

const cases: Case[] = [
  // --- libxc image header
  { name: 'marker has a zero bit', bytes: patch(PVB, 3, [0x7f]), code: 'ERR_BAD_MARKER', offset: 0 },
  {
    name: 'marker wrong (format libxc)',
    bytes: patch(PVB, 0, [0]),
    code: 'ERR_BAD_MARKER',
    offset: 0,
    ropts: { format: 'libxc' },
  },
  { name: 'id wrong', bytes: patch(PVB, 8, [0x59]), code: 'ERR_BAD_ID', offset: 8 },
  { name: 'version 1', bytes: patch(PVB, 15, [1]), code: 'ERR_BAD_VERSION', offset: 12 },
  { name: 'version 4', bytes: patch(PVB, 15, [4]), code: 'ERR_BAD_VERSION', offset: 12 },
  { name: 'big-endian option', bytes: patch(PVB, 17, [1]), code: 'ERR_BAD_ENDIANNESS', offset: 16 },
  { name: 'reserved option bit', bytes: patch(PVB, 17, [2]), code: 'ERR_RESERVED', offset: 16 },
  { name: 'image reserved u16', bytes: patch(PVB, 18, [1]), code: 'ERR_RESERVED', offset: 18 },
  { name: 'image reserved u32', bytes: patch(PVB, 23, [1]), code: 'ERR_RESERVED', offset: 20 },
  // --- domain header
  { name: 'domain type 0', bytes: patch(PVB, 24, [0]), code: 'ERR_BAD_HEADER', offset: 24 },
  { name: 'domain type 3', bytes: patch(PVB, 24, [3]), code: 'ERR_BAD_HEADER', offset: 24 },
  { name: 'page shift 13', bytes: patch(PVB, 28, [13]), code: 'ERR_BAD_HEADER', offset: 28 },
  { name: 'domain reserved', bytes: patch(PVB, 30, [1]), code: 'ERR_RESERVED', offset: 30 },
  // --- libxl header (xl-wrapped: libxl header at xlLen)
  { name: 'libxl ident', bytes: patch(XLB, xlLen + 1, [0x49]), code: 'ERR_BAD_LIBXL_HEADER', offset: xlLen },
  {
    name: 'libxl ident (format libxl)',
    bytes: patch(XLB.subarray(xlLen), 0, [0]),
    code: 'ERR_BAD_LIBXL_HEADER',
    offset: 0,
    ropts: { format: 'libxl' },
  },
  { name: 'libxl version 1', bytes: patch(XLB, xlLen + 11, [1]), code: 'ERR_BAD_VERSION', offset: xlLen + 8 },
  {
    name: 'libxl big-endian',
    bytes: patch(XLB, xlLen + 15, [1]),
    code: 'ERR_BAD_ENDIANNESS',
    offset: xlLen + 12,
  },
  {
    name: 'libxl reserved option',
    bytes: patch(XLB, xlLen + 15, [4]),
    code: 'ERR_RESERVED',
    offset: xlLen + 12,
  },
  // --- xl header
  {
    name: 'xl magic',
    bytes: patch(XLB, 20, [0x41]),
    code: 'ERR_BAD_XL_HEADER',
    offset: 0,
    ropts: { format: 'xl' },
  },
  {
    name: 'xl byte order (big-endian host)',
    bytes: patch(XLB, 32, [1, 2, 3, 4]),
    code: 'ERR_BAD_ENDIANNESS',
    offset: 32,
  },
  { name: 'xl unknown mandatory flag', bytes: patch(XLB, 36, [7]), code: 'ERR_BAD_XL_HEADER', offset: 36 },
  { name: 'xl without STREAMv2', bytes: patch(XLB, 36, [1]), code: 'ERR_BAD_XL_HEADER', offset: 36 },
  {
    name: 'xl optional data too long',
    bytes: patch(XLB, 44, le32(0x40000000)),
    code: 'ERR_BAD_XL_HEADER',
    offset: 44,
  },
  {
    name: 'xl config_len beyond optional data',
    bytes: patch(XLB, 48, le32(1000)),
    code: 'ERR_BAD_XL_HEADER',
    offset: 48,
  },
  {
    name: 'xl optional data of 2 bytes',
    bytes: concatBytes([encodeXlHeader({ optionalData: new Uint8Array(2) }), XLB.subarray(xlLen)]),
    code: 'ERR_BAD_XL_HEADER',
    offset: 48,
  },
  // --- truncation
  { name: 'empty input', bytes: new Uint8Array(0), code: 'ERR_TRUNCATED', offset: 0 },
  { name: 'inside the image header', bytes: PVB.subarray(0, 10), code: 'ERR_TRUNCATED', offset: 0 },
  { name: 'inside the domain header', bytes: PVB.subarray(0, 30), code: 'ERR_TRUNCATED', offset: 24 },
  { name: 'inside a record header', bytes: PVB.subarray(0, 43), code: 'ERR_TRUNCATED', offset: 40 },
  { name: 'inside a record body', bytes: PVB.subarray(0, 50), code: 'ERR_TRUNCATED', offset: 40 },
  {
    name: 'inside record padding',
    bytes: concatBytes([IHDR3, DHDR_HVM, raw(0x10, []), raw(0x9, [1, 2, 3])]).subarray(0, 48 + 12),
    code: 'ERR_TRUNCATED',
    offset: 48,
  },
  {
    name: 'inside PAGE_DATA count',
    bytes: PVB.subarray(0, pdOff + 12),
    code: 'ERR_TRUNCATED',
    offset: pdOff,
  },
  {
    name: 'inside PAGE_DATA pfn array',
    bytes: PVB.subarray(0, pdOff + 20),
    code: 'ERR_TRUNCATED',
    offset: pdOff,
  },
  {
    name: 'inside PAGE_DATA pages',
    bytes: PVB.subarray(0, pdOff + 40 + 5000),
    code: 'ERR_TRUNCATED',
    offset: pdOff,
  },
  { name: 'inside the xl header', bytes: XLB.subarray(0, 20), code: 'ERR_TRUNCATED', offset: 0 },
  { name: 'inside the xl optional data', bytes: XLB.subarray(0, 52), code: 'ERR_TRUNCATED', offset: 0 },
  {
    name: 'inside the libxl header',
    bytes: XLB.subarray(0, xlLen + 9),
    code: 'ERR_TRUNCATED',
    offset: xlLen,
  },
  {
    name: 'right after LIBXC_CONTEXT (image header missing)',
    bytes: XLB.subarray(0, xlLen + 16 + 8 + 1),
    code: 'ERR_TRUNCATED',
    offset: xlLen + 24,
  },
  // --- lengths
  {
    name: 'body_length 128 MiB + 1',
    bytes: patch(PVB, 44, le32(128 * 1024 * 1024 + 1)),
    code: 'ERR_RECORD_TOO_LONG',
    offset: 44,
  },
  {
    name: 'body_length 0xffffffff',
    bytes: patch(PVB, pdOff + 4, le32(0xffffffff)),
    code: 'ERR_RECORD_TOO_LONG',
    offset: pdOff + 4,
  },
  {
    name: 'PAGE_DATA length + 8',
    bytes: build(
      with_(
        PV,
        iPD,
        concatBytes([
          patch(encodeLibxcRecord((PV[iPD] as { xc: LibxcRecord }).xc), 4, le32(8 + 24 + 2 * 4096 + 8)),
          new Uint8Array(8),
        ]),
      ),
    ),
    code: 'ERR_BAD_LENGTH',
    offset: pdOff,
  },
  {
    name: 'PAGE_DATA length short of a page',
    bytes: build(
      with_(PV, iPD, raw(1, [...le32(1), 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, ...new Uint8Array(4088)])),
    ),
    code: 'ERR_BAD_LENGTH',
    offset: pdOff,
  },
  {
    name: 'PAGE_DATA count 0',
    bytes: build(with_(PV, iPD, raw(1, [0, 0, 0, 0, 0, 0, 0, 0]))),
    code: 'ERR_BAD_LENGTH',
    offset: pdOff + 8,
  },
  {
    name: 'PAGE_DATA body shorter than 8',
    bytes: build(with_(PV, iPD, raw(1, [1, 0, 0, 0]))),
    code: 'ERR_BAD_LENGTH',
    offset: pdOff,
  },
  {
    name: 'PAGE_DATA count beyond body',
    bytes: build(with_(PV, iPD, raw(1, [...le32(100), 0, 0, 0, 0, ...new Uint8Array(8)]))),
    code: 'ERR_BAD_LENGTH',
    offset: pdOff,
  },
  {
    name: 'PAGE_DATA page type 5',
    bytes: patch(PVB, pdOff + 16 + 8 + 7, [0x50]),
    code: 'ERR_BAD_PAGE_TYPE',
    offset: pdOff + 24,
  },
  {
    name: 'PAGE_DATA page type 8',
    bytes: patch(PVB, pdOff + 16 + 7, [0x80]),
    code: 'ERR_BAD_PAGE_TYPE',
    offset: pdOff + 16,
  },
  {
    name: 'PAGE_DATA pfn reserved bits',
    bytes: patch(PVB, pdOff + 16 + 8 + 6, [0x10]),
    code: 'ERR_RESERVED',
    offset: pdOff + 24,
  },
  {
    name: 'PAGE_DATA reserved word',
    bytes: patch(PVB, pdOff + 12, [1]),
    code: 'ERR_RESERVED',
    offset: pdOff + 12,
  },
  {
    name: 'TSC_INFO of 16 bytes',
    bytes: build(with_(PV, iTSC, raw(8, new Uint8Array(16)))),
    code: 'ERR_BAD_LENGTH',
    offset: off(PV, iTSC),
  },
  {
    name: 'TSC_INFO reserved word',
    bytes: patch(PVB, off(PV, iTSC) + 28, [9]),
    code: 'ERR_RESERVED',
    offset: off(PV, iTSC) + 28,
  },
  {
    name: 'HVM_PARAMS count mismatch',
    bytes: build(with_(HVM, 8, raw(0xa, [...le32(2), 0, 0, 0, 0, ...new Uint8Array(16)]))),
    code: 'ERR_BAD_LENGTH',
    offset: off(HVM, 8),
  },
  {
    name: 'SHARED_INFO of 4095 bytes',
    bytes: build(with_(PV, iTSC + 1, raw(7, new Uint8Array(4095)))),
    code: 'ERR_BAD_LENGTH',
    offset: off(PV, iTSC + 1),
  },
  {
    name: 'VCPU_BASIC of the 32-bit size in a 64-bit guest',
    bytes: build(with_(PV, iTSC + 2, raw(4, new Uint8Array(8 + 2800)))),
    code: 'ERR_BAD_LENGTH',
    offset: off(PV, iTSC + 2),
  },
  {
    name: 'VCPU_EXTENDED of 136 bytes',
    bytes: build(ins(PV, iTSC + 3, raw(5, new Uint8Array(8 + 136)))),
    code: 'ERR_BAD_LENGTH',
    offset: off(PV, iTSC + 3),
  },
  {
    name: 'VCPU_XSAVE of 8 bytes',
    bytes: build(ins(PV, iTSC + 3, raw(6, new Uint8Array(16)))),
    code: 'ERR_BAD_LENGTH',
    offset: off(PV, iTSC + 3),
  },
  {
    name: 'VCPU_MSRS not 8+16n',
    bytes: build(ins(PV, iTSC + 3, raw(0xc, new Uint8Array(20)))),
    code: 'ERR_BAD_LENGTH',
    offset: off(PV, iTSC + 3),
  },
  {
    name: 'P2M_FRAMES length formula',
    bytes: build(with_(PV, 5, { xc: { ...(P2M as object), frames: new BigUint64Array(2) } as LibxcRecord })),
    code: 'ERR_BAD_LENGTH',
    offset: off(PV, 5),
  },
  {
    name: 'P2M_FRAMES start > end',
    bytes: build(
      with_(PV, 5, {
        xc: { name: 'X86_PV_P2M_FRAMES', startPfn: 9, endPfn: 1, frames: new BigUint64Array(1) },
      }),
    ),
    code: 'ERR_BAD_VALUE',
    offset: off(PV, 5) + 8,
  },
  {
    name: 'PV_INFO width 8 with 3 levels',
    bytes: build(with_(PV, 2, { xc: { ...(PV_INFO as object), ptLevels: 3 } as LibxcRecord })),
    code: 'ERR_BAD_VALUE',
    offset: 48,
  },
  {
    name: 'PV_INFO of 16 bytes',
    bytes: build(with_(PV, 2, raw(2, [8, 4, ...new Uint8Array(14)]))),
    code: 'ERR_BAD_LENGTH',
    offset: 40,
  },
  {
    name: 'CPUID policy of 25 bytes',
    bytes: build(with_(PV, 3, raw(0x11, new Uint8Array(25)))),
    code: 'ERR_BAD_LENGTH',
    offset: 56,
  },
  {
    name: 'empty CPUID policy',
    bytes: build(with_(PV, 3, raw(0x11, []))),
    code: 'ERR_BAD_LENGTH',
    offset: 56,
  },
  {
    name: 'MSR policy of 8 bytes',
    bytes: build(with_(HVM, 3, raw(0x12, new Uint8Array(8)))),
    code: 'ERR_BAD_LENGTH',
    offset: off(HVM, 3),
  },
  {
    name: 'empty HVM_CONTEXT',
    bytes: build(with_(HVM, 7, raw(9, []))),
    code: 'ERR_BAD_LENGTH',
    offset: off(HVM, 7),
  },
  {
    name: 'END with a body',
    bytes: concatBytes([PVB.subarray(0, PVB.length - 8), raw(0, [0, 0, 0, 0, 0, 0, 0, 0])]),
    code: 'ERR_BAD_LENGTH',
    offset: PVB.length - 8,
  },
  {
    name: 'CHECKPOINT_STATE of 8 bytes',
    bytes: build([LIBXL_HDR, raw(5, new Uint8Array(8))]),
    code: 'ERR_BAD_LENGTH',
    offset: 16,
  },
  {
    name: 'xenstore data without final NUL',
    bytes: build([...XLH.slice(0, -2), raw(2, [2, 0, 0, 0, 0, 0, 0, 0, 0x61, 0, 0x62]), { xl: LX_END }]),
    code: 'ERR_BAD_XENSTORE_DATA',
    offset: off(XLH, XLH.length - 2) + 18,
  },
  {
    name: 'xenstore key without value',
    bytes: build([...XLH.slice(0, -2), raw(2, [2, 0, 0, 0, 0, 0, 0, 0, 0x61, 0]), { xl: LX_END }]),
    code: 'ERR_BAD_XENSTORE_DATA',
    offset: off(XLH, XLH.length - 2) + 16,
  },
  {
    name: 'emulator id 3',
    bytes: build([
      ...XLH.slice(0, -2),
      { xl: { name: 'EMULATOR_CONTEXT', emulatorId: 3, index: 0, data: new Uint8Array(3) } },
      { xl: LX_END },
    ]),
    code: 'ERR_BAD_VALUE',
    offset: off(XLH, XLH.length - 2) + 8,
  },
  // --- unknown / obsolete
  pvInsCase(
    'unknown mandatory libxc record 0x13',
    iTSC,
    raw(0x13, [1, 2, 3]),
    'ERR_UNKNOWN_MANDATORY_RECORD',
  ),
  pvInsCase(
    'unknown mandatory libxc record 0x7fffffff',
    iTSC,
    raw(0x7fffffff, []),
    'ERR_UNKNOWN_MANDATORY_RECORD',
  ),
  {
    name: 'unknown mandatory libxl record 6',
    bytes: build([...XLH.slice(0, -1), raw(6, []), { xl: LX_END }]),
    code: 'ERR_UNKNOWN_MANDATORY_RECORD',
    offset: off(XLH, XLH.length - 1),
  },
  pvInsCase('TOOLSTACK', iTSC, raw(0xb, [1]), 'ERR_OBSOLETE_RECORD'),
  // --- order / duplicates
  {
    name: 'PAGE_DATA before STATIC_DATA_END (v3)',
    bytes: build([IHDR3, DHDR_HVM, { xc: pageData([[1, 0]]) }, { xc: SDE }, { xc: END }]),
    code: 'ERR_ORDER',
    offset: 40,
  },
  {
    name: 'P2M_FRAMES before STATIC_DATA_END (v3)',
    bytes: build([IHDR3, DHDR_PV, { xc: PV_INFO }, { xc: P2M }, { xc: SDE }, { xc: END }]),
    code: 'ERR_ORDER',
    offset: 56,
  },
  {
    name: 'TSC_INFO before STATIC_DATA_END (v3)',
    bytes: build([IHDR3, DHDR_HVM, { xc: TSC }, { xc: SDE }, { xc: END }]),
    code: 'ERR_ORDER',
    offset: 40,
  },
  {
    name: 'PV PAGE_DATA before P2M_FRAMES',
    bytes: build([IHDR3, DHDR_PV, { xc: PV_INFO }, { xc: SDE }, { xc: pageData([[1, 0]]) }]),
    code: 'ERR_ORDER',
    offset: 64,
  },
  {
    name: 'PV v2 PAGE_DATA before P2M_FRAMES',
    bytes: build([IHDR2, DHDR_PV, { xc: PV_INFO }, { xc: pageData([[1, 0]]) }]),
    code: 'ERR_ORDER',
    offset: 56,
  },
  {
    name: 'P2M_FRAMES before X86_PV_INFO (v2)',
    bytes: build([IHDR2, DHDR_PV, { xc: P2M }]),
    code: 'ERR_ORDER',
    offset: 40,
  },
  {
    name: 'STATIC_DATA_END before X86_PV_INFO',
    bytes: build([IHDR3, DHDR_PV, { xc: SDE }, { xc: PV_INFO }]),
    code: 'ERR_ORDER',
    offset: 40,
  },
  pvInsCase('duplicate X86_PV_INFO', 3, { xc: PV_INFO }, 'ERR_DUPLICATE'),
  pvInsCase('duplicate X86_PV_INFO after the static data', iTSC, { xc: PV_INFO }, 'ERR_DUPLICATE'),
  pvInsCase('duplicate STATIC_DATA_END', 5, { xc: SDE }, 'ERR_DUPLICATE'),
  pvInsCase('duplicate CPUID policy', 4, { xc: CPUID }, 'ERR_DUPLICATE'),
  pvInsCase('duplicate P2M_FRAMES', iPD, { xc: P2M }, 'ERR_DUPLICATE'),
  pvInsCase('MSR policy after STATIC_DATA_END', 5, { xc: MSRP }, 'ERR_ORDER'),
  {
    name: 'CPUID policy in a v2 stream',
    bytes: build([IHDR2, DHDR_HVM, { xc: CPUID }]),
    code: 'ERR_ORDER',
    offset: 40,
  },
  {
    name: 'explicit STATIC_DATA_END after the implied one (v2)',
    bytes: build([IHDR2, DHDR_HVM, { xc: pageData([[1, 0]]) }, { xc: SDE }]),
    code: 'ERR_DUPLICATE',
    offset: 40 + 8 + 16 + 4096,
  },
  pvInsCase('HVM_CONTEXT in a PV stream', iTSC, { xc: HVMCTX }, 'ERR_DOMAIN_TYPE'),
  {
    name: 'X86_PV_INFO in an HVM stream',
    bytes: build([IHDR3, DHDR_HVM, { xc: PV_INFO }]),
    code: 'ERR_DOMAIN_TYPE',
    offset: 40,
  },
  {
    name: 'SHARED_INFO in an HVM stream',
    bytes: build(ins(HVM, 7, { xc: SHINFO })),
    code: 'ERR_DOMAIN_TYPE',
    offset: off(HVM, 7),
  },
  {
    name: 'VCPU_BASIC in an HVM stream',
    bytes: build(ins(HVM, 7, { xc: VCPU })),
    code: 'ERR_DOMAIN_TYPE',
    offset: off(HVM, 7),
  },
  {
    name: 'emulator record in a PV stream',
    bytes: build([XL_HDR, LIBXL_HDR, { xl: LX_CTX }, ...PV, { xl: EMU }, { xl: LX_END }]),
    code: 'ERR_DOMAIN_TYPE',
    offset: off([XL_HDR, LIBXL_HDR, { xl: LX_CTX }, ...PV], PV.length + 3),
  },
  {
    name: 'emulator record before LIBXC_CONTEXT',
    bytes: build([LIBXL_HDR, { xl: EMU }]),
    code: 'ERR_ORDER',
    offset: 16,
  },
  {
    name: 'libxl END without a libxc stream',
    bytes: build([LIBXL_HDR, { xl: LX_END }]),
    code: 'ERR_ORDER',
    offset: 16,
  },
  pvInsCase('CHECKPOINT in a plain stream', iTSC + 3, { xc: CKPT }, 'ERR_ORDER'),
  pvInsCase(
    'CHECKPOINT_DIRTY_PFN_LIST in the forward stream',
    iTSC,
    { xc: { name: 'CHECKPOINT_DIRTY_PFN_LIST', pfns: new BigUint64Array([1n]) } },
    'ERR_ORDER',
  ),
  {
    name: 'TSC after VERIFY',
    bytes: build(ins(PV, iTSC, { xc: { name: 'VERIFY' } })),
    code: 'ERR_ORDER',
    offset: off(PV, iTSC) + 8,
  },
  {
    name: 'CHECKPOINT_END without CHECKPOINT',
    bytes: build([...XLH.slice(0, -1), { xl: LX_CKEND }, { xl: LX_END }]),
    code: 'ERR_ORDER',
    offset: off(XLH, XLH.length - 1),
  },
  {
    name: 'missing END (bare libxc)',
    bytes: PVB.subarray(0, PVB.length - 8),
    code: 'ERR_MISSING_END',
    offset: PVB.length - 8,
  },
  {
    name: 'missing libxl END',
    bytes: XLB.subarray(0, XLB.length - 8),
    code: 'ERR_MISSING_END',
    offset: XLB.length - 8,
  },
  {
    name: 'missing libxc END inside libxl',
    bytes: build(XLH.slice(0, XLH.length - 3)),
    code: 'ERR_MISSING_END',
    offset: off(XLH, XLH.length - 3),
  },
  {
    name: 'trailing garbage after END',
    bytes: concatBytes([PVB, Uint8Array.from([0])]),
    code: 'ERR_TRAILING_DATA',
    offset: PVB.length,
  },
  {
    name: 'trailing record after libxl END',
    bytes: concatBytes([XLB, encodeLibxlRecord({ name: 'END' })]),
    code: 'ERR_TRAILING_DATA',
    offset: XLB.length,
  },
  {
    name: 'non-zero padding',
    bytes: build(ins(HVM, 7, raw(9, [1, 2, 3], 0xee))),
    code: 'ERR_NONZERO_PADDING',
    offset: off(HVM, 7) + 11,
  },
  // --- checkpointed framing
  ...(() => {
    const base: Part[] = [
      LIBXL_HDR,
      { xl: LX_CTX },
      ...HVM.slice(0, -1),
      { xc: CKPT },
      { xl: EMU },
      { xl: LX_CKEND },
    ];
    const remus = { vopts: { streamType: 'remus' as const } };
    const colo = { vopts: { streamType: 'colo' as const } };
    const next: Part[] = [
      { xc: pageData([[3, 0]]) },
      { xc: TSC },
      { xc: HVMCTX },
      { xc: HVMPAR },
      { xc: CKPT },
    ];
    const state = (id: number): Part => ({ xl: { name: 'CHECKPOINT_STATE', controlId: id } });
    return [
      {
        name: 'COLO: libxc resumes without CHECKPOINT_STATE',
        bytes: build([...base, ...next]),
        code: 'ERR_ORDER',
        offset: off(base, base.length),
        ...colo,
      },
      {
        name: 'Remus: CHECKPOINT_STATE',
        bytes: build([...base, state(0), ...next]),
        code: 'ERR_ORDER',
        offset: off(base, base.length),
        ...remus,
      },
      {
        name: 'COLO: CHECKPOINT_STATE SVM_READY on the forward stream',
        bytes: build([...base, state(2), ...next]),
        code: 'ERR_BAD_VALUE',
        offset: off(base, base.length) + 8,
        ...colo,
      },
      {
        name: 'Remus: second libxc CHECKPOINT before CHECKPOINT_END',
        bytes: build([LIBXL_HDR, { xl: LX_CTX }, ...HVM.slice(0, -1), { xc: CKPT }, { xc: CKPT }]),
        code: 'ERR_UNKNOWN_MANDATORY_RECORD',
        offset: off([LIBXL_HDR, { xl: LX_CTX }, ...HVM.slice(0, -1), { xc: CKPT }], HVM.length + 2),
        ...remus,
      },
      {
        name: 'Remus: ends before the first checkpoint',
        bytes: build([LIBXL_HDR, { xl: LX_CTX }, ...HVM.slice(0, -1)]),
        code: 'ERR_MISSING_END',
        offset: build([LIBXL_HDR, { xl: LX_CTX }, ...HVM.slice(0, -1)]).length,
        ...remus,
      },
      {
        name: 'Remus: VERIFY',
        bytes: build([...HVM.slice(0, -1), { xc: { name: 'VERIFY' } }]),
        code: 'ERR_ORDER',
        offset: off(HVM, HVM.length - 1),
        ...remus,
      },
      {
        name: 'COLO back channel: CHECKPOINT_STATE NEW',
        bytes: build([state(0)]),
        code: 'ERR_BAD_VALUE',
        offset: 8,
        ropts: { format: 'colo-back' as const },
      },
      {
        name: 'COLO back channel: PAGE_DATA',
        bytes: build([state(1), { xc: pageData([[1, 15]]) }]),
        code: 'ERR_ORDER',
        offset: 16,
        ropts: { format: 'colo-back' as const },
      },
    ];
  })(),
];

async function failure(input: StreamInput, c: Case, lazy: boolean): Promise<StreamError | null> {
  try {
    if (lazy) {
      await validateStream(input, { ...c.ropts, ...c.vopts });
      return null;
    }
    const r = new StreamReader(input, c.ropts);
    const v = new StreamValidator({ ...c.vopts, backChannel: c.ropts?.format === 'colo-back' });
    for await (const it of r) v.check(it);
    v.finish(r.summary);
    return null;
  } catch (e) {
    if (e instanceof StreamError) return e;
    throw e;
  }
}

describe('bad input table', () => {
  it('has distinct cases', () => {
    expect(new Set(cases.map((c) => c.name)).size).toBe(cases.length);
    expect(cases.length).toBeGreaterThan(90);
  });
  for (const c of cases) {
    it(`${c.name} -> ${c.code} @${c.offset}`, async () => {
      for (const [mode, input, lazy] of [
        ['buffer', c.bytes, false],
        ['7-byte chunks', chunked(c.bytes, 7), false],
        ['lazy', c.bytes, true],
      ] as const) {
        const e = await failure(input, c, lazy);
        expect(e, `${mode}: no error`).not.toBeNull();
        expect(e!.code, `${mode}: ${e!.message}`).toBe(c.code);
        expect(e!.offset, `${mode}: ${e!.message}`).toBe(c.offset);
        expect(e!.message).toContain(c.code);
      }
    });
  }
  it('the unmodified base streams are valid', async () => {
    await validateStream(PVB);
    await validateStream(HVMB);
    await validateStream(XLB);
    await validateStream(
      build([
        IHDR2,
        DHDR_HVM,
        { xc: pageData([[1, 0]]) },
        { xc: TSC },
        { xc: HVMPAR },
        { xc: HVMCTX },
        { xc: END },
      ]),
    );
  });
  it('reserved/padding can be downgraded to warnings', async () => {
    const bytes = build(ins(HVM, 7, raw(9, [1, 2, 3], 0xee)));
    const rep = await validateStream(patch(bytes, 18, [1]), { padding: 'warn', reserved: 'warn' });
    expect(rep.warnings.map((w) => w.code).sort()).toEqual(['ERR_NONZERO_PADDING', 'ERR_RESERVED']);
  });
  it('errors name code, layer, record, index and offset', async () => {
    const e = await failure(patch(PVB, pdOff + 16 + 7, [0x60]), cases[0]!, false);
    expect(e!.layer).toBe('libxc');
    expect(e!.recordType).toBe('PAGE_DATA');
    expect(e!.recordIndex).toBe(iPD);
    expect(e!.message).toMatch(/ERR_BAD_PAGE_TYPE.*layer libxc.*record PAGE_DATA.*#6.*at offset/);
  });
  it('image header helper is exercised', () => expect(encodeImageHeader().length).toBe(24));
});
