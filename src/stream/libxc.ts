// libxc layer: Image header, Domain header and every record type 0x00..0x12 — typed shapes,
// decoders (body bytes -> record) and encoders (record -> framed bytes).
//
// Decoders check exactly what is needed to produce a well-formed typed record (structure sizes,
// PAGE_DATA length rule and page types); context-dependent rules (record order, guest-width
// dependent sizes, reserved fields) belong to the validator. Reserved fields are kept in the
// decoded records so that re-encoding is byte-identical.
import {
  CPUID_LEAF_SIZE,
  DHDR_SIZE,
  IHDR_ID,
  IHDR_SIZE,
  LIBXC_TYPE_NAMES,
  LibxcType,
  MSR_ENTRY_SIZE,
  PAGE_SIZE,
  PAGE_TYPE_DATA,
  REC_HDR_SIZE,
  REC_LENGTH_MAX,
  REC_TYPE_OPTIONAL,
  TSC_INFO_SIZE,
  roundUp8,
  type Layer,
  type LibxcTypeName,
} from './constants.js';
import {
  copyBytes,
  putU16be,
  putU16le,
  putU32be,
  putU32le,
  putU64leBig,
  u16be,
  u16le,
  u32be,
  u32le,
  u64leBig,
} from './bytes.js';
import { StreamError, StreamErrorCode } from './errors.js';

// ---------------------------------------------------------------------------------------------
// Shapes

export interface ImageHeader {
  /** 2 or 3. */
  version: number;
  /** Whole options word: bit 0 = big-endian (refused by the reader), bits 1..15 reserved. */
  options: number;
  /** u16 at offset 18. */
  reserved1: number;
  /** u32 at offset 20. */
  reserved2: number;
}

export interface DomainHeader {
  /** 1 = x86 PV, 2 = x86 HVM (PVH included). */
  type: number;
  pageShift: number;
  reserved: number;
  xenMajor: number;
  xenMinor: number;
}

/** Location used for error reporting while decoding. */
export interface Loc {
  /** Absolute offset of the record (its 8-byte header). */
  offset: number;
  index: number;
  layer: Layer;
}

export interface PageDataHeader {
  count: number;
  /** u32 reserved word after count. */
  reserved: number;
  /** pfn (bits 51..0) of each entry; exact (< 2^52). */
  pfns: Float64Array;
  /** type nibble (bits 63..60) of each entry. */
  types: Uint8Array;
  /** bits 59..52 of each entry, present only when one of them is non-zero. */
  pfnReserved?: Uint8Array;
  /** Number of entries whose type carries 4096 bytes of data. */
  dataPages: number;
}

export interface PageDataRecord extends PageDataHeader {
  name: 'PAGE_DATA';
  /**
   * Page contents of the data-bearing entries, in pfn-array order (dataPages * 4096 bytes).
   * From the reader (eager mode) this is a VIEW of its read buffer, valid only until the next
   * item is requested. null in lazy mode: use readPayloadInto / skipPayload.
   */
  data: Uint8Array | null;
  /** Lazy mode only: absolute offset of the first page byte. */
  payloadOffset?: number;
  /** Lazy mode only: read exactly dataPages*4096 bytes into target[0..]. Once. */
  readPayloadInto?: (target: Uint8Array) => Promise<void>;
  /** Lazy mode only: discard the payload. */
  skipPayload?: () => Promise<void>;
}

export interface PvInfoRecord {
  name: 'X86_PV_INFO';
  guestWidth: number;
  ptLevels: number;
  /** The 6 reserved bytes as a 48-bit little-endian integer. */
  reserved: number;
}
export interface P2mFramesRecord {
  name: 'X86_PV_P2M_FRAMES';
  startPfn: number;
  endPfn: number;
  frames: BigUint64Array;
}
export interface VcpuBlobRecord {
  name: 'X86_PV_VCPU_BASIC' | 'X86_PV_VCPU_EXTENDED' | 'X86_PV_VCPU_XSAVE';
  vcpuId: number;
  reserved: number;
  context: Uint8Array;
}
export interface VcpuMsr {
  index: number;
  reserved: number;
  value: bigint;
}
export interface VcpuMsrsRecord {
  name: 'X86_PV_VCPU_MSRS';
  vcpuId: number;
  reserved: number;
  msrs: VcpuMsr[];
}
export interface BlobRecord {
  name: 'SHARED_INFO' | 'HVM_CONTEXT' | 'TOOLSTACK';
  data: Uint8Array;
}
export interface TscInfoRecord {
  name: 'X86_TSC_INFO';
  mode: number;
  khz: number;
  nsec: bigint;
  incarnation: number;
  reserved: number;
}
export interface HvmParam {
  index: bigint;
  value: bigint;
}
export interface HvmParamsRecord {
  name: 'HVM_PARAMS';
  reserved: number;
  params: HvmParam[];
}
export interface EmptyLibxcRecord {
  name: 'END' | 'VERIFY' | 'CHECKPOINT' | 'STATIC_DATA_END';
}
export interface DirtyPfnListRecord {
  name: 'CHECKPOINT_DIRTY_PFN_LIST';
  pfns: BigUint64Array;
}
export interface CpuidLeaf {
  leaf: number;
  subleaf: number;
  a: number;
  b: number;
  c: number;
  d: number;
}
export interface CpuidPolicyRecord {
  name: 'X86_CPUID_POLICY';
  leaves: CpuidLeaf[];
}
export interface MsrPolicyEntry {
  idx: number;
  flags: number;
  val: bigint;
}
export interface MsrPolicyRecord {
  name: 'X86_MSR_POLICY';
  msrs: MsrPolicyEntry[];
}
/** Unknown record (only optional ones reach a consumer; unknown mandatory ones are an error). */
export interface UnknownRecord {
  name: 'UNKNOWN';
  type: number;
  body: Uint8Array;
}

export type LibxcRecord =
  | EmptyLibxcRecord
  | PageDataRecord
  | PvInfoRecord
  | P2mFramesRecord
  | VcpuBlobRecord
  | VcpuMsrsRecord
  | BlobRecord
  | TscInfoRecord
  | HvmParamsRecord
  | DirtyPfnListRecord
  | CpuidPolicyRecord
  | MsrPolicyRecord
  | UnknownRecord;

export function libxcTypeName(type: number): LibxcTypeName | undefined {
  return type < LIBXC_TYPE_NAMES.length ? LIBXC_TYPE_NAMES[type] : undefined;
}

/** Display name of a libxc record type code. */
export function libxcTypeLabel(type: number): string {
  return libxcTypeName(type) ?? `UNKNOWN(0x${type.toString(16)})`;
}

export function isOptionalType(type: number): boolean {
  return (type & REC_TYPE_OPTIONAL) !== 0;
}

// ---------------------------------------------------------------------------------------------
// Headers

export function encodeImageHeader(h: Partial<ImageHeader> = {}): Uint8Array {
  const b = new Uint8Array(IHDR_SIZE);
  b.fill(0xff, 0, 8);
  putU32be(b, 8, IHDR_ID);
  putU32be(b, 12, h.version ?? 3);
  putU16be(b, 16, h.options ?? 0);
  putU16be(b, 18, h.reserved1 ?? 0);
  putU32be(b, 20, h.reserved2 ?? 0);
  return b;
}

/**
 * Decode a 24-byte image header. Framing checks only: marker, id, version (2..3) and the
 * endianness bit (big-endian streams are refused, as libxc does). base = absolute offset.
 */
export function decodeImageHeader(b: Uint8Array, base: number, index: number): ImageHeader {
  const info = { layer: 'libxc' as const, recordType: 'IMAGE_HEADER', recordIndex: index };
  for (let i = 0; i < 8; i++) {
    if (b[i] !== 0xff)
      throw new StreamError(
        StreamErrorCode.ERR_BAD_MARKER,
        'image header marker is not 0xffffffffffffffff (legacy or not a libxc stream)',
        {
          ...info,
          offset: base,
        },
      );
  }
  const id = u32be(b, 8);
  if (id !== IHDR_ID)
    throw new StreamError(
      StreamErrorCode.ERR_BAD_ID,
      `image header id 0x${id.toString(16)} is not 0x58454e46 ("XENF")`,
      {
        ...info,
        offset: base + 8,
      },
    );
  const version = u32be(b, 12);
  if (version !== 2 && version !== 3)
    throw new StreamError(
      StreamErrorCode.ERR_BAD_VERSION,
      `image header version ${version} (expected 2..3)`,
      {
        ...info,
        offset: base + 12,
      },
    );
  const options = u16be(b, 16);
  if (options & 1)
    throw new StreamError(StreamErrorCode.ERR_BAD_ENDIANNESS, 'big-endian libxc streams are not supported', {
      ...info,
      offset: base + 16,
    });
  return { version, options, reserved1: u16be(b, 18), reserved2: u32be(b, 20) };
}

export function encodeDomainHeader(h: DomainHeader): Uint8Array {
  const b = new Uint8Array(DHDR_SIZE);
  putU32le(b, 0, h.type);
  putU16le(b, 4, h.pageShift);
  putU16le(b, 6, h.reserved ?? 0);
  putU32le(b, 8, h.xenMajor);
  putU32le(b, 12, h.xenMinor);
  return b;
}

export function decodeDomainHeader(b: Uint8Array): DomainHeader {
  return {
    type: u32le(b, 0),
    pageShift: u16le(b, 4),
    reserved: u16le(b, 6),
    xenMajor: u32le(b, 8),
    xenMinor: u32le(b, 12),
  };
}

// ---------------------------------------------------------------------------------------------
// Record framing

/** Frame a body: 8-byte header, body, zero padding to 8. */
export function frameRecord(type: number, body: Uint8Array): Uint8Array {
  if (body.length > REC_LENGTH_MAX)
    throw new StreamError(
      StreamErrorCode.ERR_RECORD_TOO_LONG,
      `cannot encode a ${body.length}-byte body (max ${REC_LENGTH_MAX})`,
    );
  const out = new Uint8Array(REC_HDR_SIZE + roundUp8(body.length));
  putU32le(out, 0, type >>> 0);
  putU32le(out, 4, body.length);
  out.set(body, REC_HDR_SIZE);
  return out;
}

/** Just the 8-byte record header. */
export function encodeRecordHeader(type: number, bodyLength: number): Uint8Array {
  const out = new Uint8Array(REC_HDR_SIZE);
  putU32le(out, 0, type >>> 0);
  putU32le(out, 4, bodyLength);
  return out;
}

function bad(code: StreamErrorCode, detail: string, loc: Loc, name: string, at = loc.offset): StreamError {
  return new StreamError(code, detail, {
    offset: at,
    recordIndex: loc.index,
    recordType: name,
    layer: loc.layer,
  });
}

// ---------------------------------------------------------------------------------------------
// PAGE_DATA

/**
 * Decode the count/reserved word and pfn array of a PAGE_DATA record and enforce the length
 * rule. head8 = the first 8 body bytes; pfnWords = the next 8*count bytes (pass null to only
 * check the first step and get the count back via the return of pageDataCount).
 */
export function pageDataCount(
  head8: Uint8Array,
  bodyLength: number,
  loc: Loc,
): { count: number; reserved: number } {
  if (bodyLength < 8)
    throw bad(StreamErrorCode.ERR_BAD_LENGTH, `PAGE_DATA body_length ${bodyLength} < 8`, loc, 'PAGE_DATA');
  const count = u32le(head8, 0);
  const reserved = u32le(head8, 4);
  if (count === 0)
    throw bad(StreamErrorCode.ERR_BAD_LENGTH, 'PAGE_DATA count is 0', loc, 'PAGE_DATA', loc.offset + 8);
  if (count > (bodyLength - 8) / 8)
    throw bad(
      StreamErrorCode.ERR_BAD_LENGTH,
      `PAGE_DATA count ${count} needs ${8 + 8 * count} bytes of pfn array but body_length is ${bodyLength}`,
      loc,
      'PAGE_DATA',
    );
  return { count, reserved };
}

/** Decode pfn words (8*count bytes at w[0..]) and check page types and the exact length rule. */
const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** count little-endian 64-bit words as 2*count 32-bit halves (low first), whatever the host. */
function wordsLE(w: Uint8Array, count: number): Uint32Array {
  const out = new Uint32Array(count * 2);
  const dv = new DataView(w.buffer, w.byteOffset, count * 8);
  for (let i = 0; i < count * 2; i++) out[i] = dv.getUint32(4 * i, true);
  return out;
}

export function decodePfnWords(
  w: Uint8Array,
  count: number,
  reserved: number,
  bodyLength: number,
  loc: Loc,
): PageDataHeader {
  const pfns = new Float64Array(count);
  const types = new Uint8Array(count);
  let pfnReserved: Uint8Array | undefined;
  let dataPages = 0;
  // the words as 32-bit halves: a view when aligned on a little-endian host, else one copy
  const u32 =
    HOST_LITTLE_ENDIAN && (w.byteOffset & 3) === 0
      ? new Uint32Array(w.buffer, w.byteOffset, count * 2)
      : wordsLE(w, count);
  for (let i = 0; i < count; i++) {
    const lo = u32[2 * i]!;
    const hi = u32[2 * i + 1]!;
    const t = hi >>> 28;
    const has = PAGE_TYPE_DATA[t]!;
    if (has < 0)
      throw bad(
        StreamErrorCode.ERR_BAD_PAGE_TYPE,
        `PAGE_DATA entry ${i} has reserved page type 0x${t.toString(16)}`,
        loc,
        'PAGE_DATA',
        loc.offset + 16 + 8 * i,
      );
    dataPages += has;
    types[i] = t;
    pfns[i] = lo + (hi & 0xfffff) * 0x100000000;
    if ((hi & 0x0ff00000) !== 0) {
      pfnReserved ??= new Uint8Array(count);
      pfnReserved[i] = (hi >>> 20) & 0xff;
    }
  }
  const expect = 8 + 8 * count + PAGE_SIZE * dataPages;
  if (expect !== bodyLength)
    throw bad(
      StreamErrorCode.ERR_BAD_LENGTH,
      `PAGE_DATA body_length ${bodyLength} != 8 + 8*${count} + 4096*${dataPages} = ${expect}`,
      loc,
      'PAGE_DATA',
    );
  const h: PageDataHeader = { count, reserved, pfns, types, dataPages };
  if (pfnReserved) h.pfnReserved = pfnReserved;
  return h;
}

export interface PageDataHeaderInput {
  pfns: ArrayLike<number>;
  types: ArrayLike<number>;
  reserved?: number;
  pfnReserved?: ArrayLike<number>;
}

function countDataPages(types: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < types.length; i++) {
    const h = PAGE_TYPE_DATA[types[i]! & 0xf];
    if (types[i]! > 0xf || h === undefined || h < 0)
      throw new StreamError(StreamErrorCode.ERR_USAGE, `invalid page type ${types[i]} for entry ${i}`);
    n += h;
  }
  return n;
}

/**
 * Build the framed PAGE_DATA record header + count/reserved + pfn words for one batch (no page
 * bytes). The record's body_length accounts for 4096 bytes per data-bearing entry, which the
 * caller writes right after (e.g. writev from a foreign mapping). Returns the bytes and the
 * number of data pages expected to follow.
 */
export function encodePageDataHeader(input: PageDataHeaderInput): { bytes: Uint8Array; dataPages: number } {
  const { pfns, types } = input;
  const count = pfns.length;
  if (types.length !== count)
    throw new StreamError(StreamErrorCode.ERR_USAGE, 'pfns and types differ in length');
  if (count === 0) throw new StreamError(StreamErrorCode.ERR_USAGE, 'PAGE_DATA needs at least one pfn');
  const dataPages = countDataPages(types);
  const bodyLength = 8 + 8 * count + PAGE_SIZE * dataPages;
  if (bodyLength > REC_LENGTH_MAX)
    throw new StreamError(
      StreamErrorCode.ERR_RECORD_TOO_LONG,
      `PAGE_DATA body of ${bodyLength} bytes exceeds the 128 MiB limit`,
    );
  const b = new Uint8Array(16 + 8 * count);
  putU32le(b, 0, LibxcType.PAGE_DATA);
  putU32le(b, 4, bodyLength);
  putU32le(b, 8, count);
  putU32le(b, 12, input.reserved ?? 0);
  const pr = input.pfnReserved;
  // the words through a 32-bit view (b is fresh, so aligned) on little-endian hosts
  const u32 = HOST_LITTLE_ENDIAN ? new Uint32Array(b.buffer, 16, count * 2) : null;
  for (let i = 0, o = 16; i < count; i++, o += 8) {
    const pfn = pfns[i]!;
    if (!(pfn >= 0 && pfn < 2 ** 52 && Number.isInteger(pfn)))
      throw new StreamError(StreamErrorCode.ERR_USAGE, `pfn ${pfn} (entry ${i}) is not a 52-bit integer`);
    const small = pfn < 0x100000000;
    const lo = small ? pfn : pfn % 0x100000000;
    const hi = small ? 0 : (pfn - lo) / 0x100000000;
    const top = (hi | ((pr ? pr[i]! & 0xff : 0) << 20) | (types[i]! << 28)) >>> 0;
    if (u32) {
      u32[2 * i] = lo;
      u32[2 * i + 1] = top;
    } else {
      putU32le(b, o, lo);
      putU32le(b, o + 4, top);
    }
  }
  return { bytes: b, dataPages };
}

// ---------------------------------------------------------------------------------------------
// Body decoders

function needLen(ok: boolean, name: string, what: string, len: number, loc: Loc): void {
  if (!ok) throw bad(StreamErrorCode.ERR_BAD_LENGTH, `${name} body_length ${len}: ${what}`, loc, name);
}

function readU64Array(b: Uint8Array, from: number, n: number): BigUint64Array {
  const out = new BigUint64Array(n);
  for (let i = 0; i < n; i++) out[i] = u64leBig(b, from + 8 * i);
  return out;
}

/** A per-type body decoder: `name` is the type's name, `len` the body length. */
type BodyDecoder = (body: Uint8Array, len: number, loc: Loc, name: string) => LibxcRecord;

const decodeEmpty: BodyDecoder = (body, len, loc, name) => {
  needLen(len === 0, name, 'must be 0', len, loc);
  return { name: name as EmptyLibxcRecord['name'] };
};

const decodePageData: BodyDecoder = (body, len, loc) => {
  const { count, reserved } = pageDataCount(body, len, loc);
  const h = decodePfnWords(body.subarray(8), count, reserved, len, loc);
  const start = 8 + 8 * count;
  return { name: 'PAGE_DATA', ...h, data: body.subarray(start, start + h.dataPages * PAGE_SIZE) };
};

const decodePvInfo: BodyDecoder = (body, len, loc) => {
  needLen(len === 8, 'X86_PV_INFO', 'must be 8', len, loc);
  return {
    name: 'X86_PV_INFO',
    guestWidth: body[0]!,
    ptLevels: body[1]!,
    reserved: u16le(body, 2) + u32le(body, 4) * 0x10000,
  };
};

const decodeP2mFrames: BodyDecoder = (body, len, loc) => {
  needLen(len >= 8 && len % 8 === 0, 'X86_PV_P2M_FRAMES', 'must be 8 + 8*n', len, loc);
  return {
    name: 'X86_PV_P2M_FRAMES',
    startPfn: u32le(body, 0),
    endPfn: u32le(body, 4),
    frames: readU64Array(body, 8, (len - 8) / 8),
  };
};

const decodeVcpuBlob: BodyDecoder = (body, len, loc, name) => {
  needLen(len >= 8, name, 'shorter than the 8-byte vcpu header', len, loc);
  return {
    name: name as VcpuBlobRecord['name'],
    vcpuId: u32le(body, 0),
    reserved: u32le(body, 4),
    context: copyBytes(body.subarray(8)),
  };
};

const decodeVcpuMsrs: BodyDecoder = (body, len, loc) => {
  needLen(len >= 8 && (len - 8) % MSR_ENTRY_SIZE === 0, 'X86_PV_VCPU_MSRS', 'must be 8 + 16*n', len, loc);
  const msrs: VcpuMsr[] = [];
  for (let o = 8; o < len; o += 16)
    msrs.push({ index: u32le(body, o), reserved: u32le(body, o + 4), value: u64leBig(body, o + 8) });
  return { name: 'X86_PV_VCPU_MSRS', vcpuId: u32le(body, 0), reserved: u32le(body, 4), msrs };
};

const decodeBlob: BodyDecoder = (body, len, loc, name) => ({
  name: name as BlobRecord['name'],
  data: copyBytes(body),
});

const decodeTscInfo: BodyDecoder = (body, len, loc) => {
  needLen(len === TSC_INFO_SIZE, 'X86_TSC_INFO', 'must be 24', len, loc);
  return {
    name: 'X86_TSC_INFO',
    mode: u32le(body, 0),
    khz: u32le(body, 4),
    nsec: u64leBig(body, 8),
    incarnation: u32le(body, 16),
    reserved: u32le(body, 20),
  };
};

const decodeHvmParams: BodyDecoder = (body, len, loc) => {
  needLen(len >= 8, 'HVM_PARAMS', 'shorter than 8', len, loc);
  const count = u32le(body, 0);
  needLen(len === 8 + 16 * count, 'HVM_PARAMS', `count ${count} needs ${8 + 16 * count}`, len, loc);
  const params: HvmParam[] = [];
  for (let o = 8; o < len; o += 16) params.push({ index: u64leBig(body, o), value: u64leBig(body, o + 8) });
  return { name: 'HVM_PARAMS', reserved: u32le(body, 4), params };
};

const decodeDirtyPfnList: BodyDecoder = (body, len, loc) => {
  needLen(len % 8 === 0, 'CHECKPOINT_DIRTY_PFN_LIST', 'must be a multiple of 8', len, loc);
  return { name: 'CHECKPOINT_DIRTY_PFN_LIST', pfns: readU64Array(body, 0, len / 8) };
};

const decodeCpuidPolicy: BodyDecoder = (body, len, loc) => {
  needLen(len % CPUID_LEAF_SIZE === 0, 'X86_CPUID_POLICY', 'must be a multiple of 24', len, loc);
  const leaves: CpuidLeaf[] = [];
  for (let o = 0; o < len; o += 24)
    leaves.push({
      leaf: u32le(body, o),
      subleaf: u32le(body, o + 4),
      a: u32le(body, o + 8),
      b: u32le(body, o + 12),
      c: u32le(body, o + 16),
      d: u32le(body, o + 20),
    });
  return { name: 'X86_CPUID_POLICY', leaves };
};

const decodeMsrPolicy: BodyDecoder = (body, len, loc) => {
  needLen(len % MSR_ENTRY_SIZE === 0, 'X86_MSR_POLICY', 'must be a multiple of 16', len, loc);
  const msrs: MsrPolicyEntry[] = [];
  for (let o = 0; o < len; o += 16)
    msrs.push({ idx: u32le(body, o), flags: u32le(body, o + 4), val: u64leBig(body, o + 8) });
  return { name: 'X86_MSR_POLICY', msrs };
};

/** The body decoder of every known libxc record type. */
const bodyDecoders: Partial<Record<number, BodyDecoder>> = {
  [LibxcType.END]: decodeEmpty,
  [LibxcType.VERIFY]: decodeEmpty,
  [LibxcType.CHECKPOINT]: decodeEmpty,
  [LibxcType.STATIC_DATA_END]: decodeEmpty,
  [LibxcType.PAGE_DATA]: decodePageData,
  [LibxcType.X86_PV_INFO]: decodePvInfo,
  [LibxcType.X86_PV_P2M_FRAMES]: decodeP2mFrames,
  [LibxcType.X86_PV_VCPU_BASIC]: decodeVcpuBlob,
  [LibxcType.X86_PV_VCPU_EXTENDED]: decodeVcpuBlob,
  [LibxcType.X86_PV_VCPU_XSAVE]: decodeVcpuBlob,
  [LibxcType.X86_PV_VCPU_MSRS]: decodeVcpuMsrs,
  [LibxcType.SHARED_INFO]: decodeBlob,
  [LibxcType.HVM_CONTEXT]: decodeBlob,
  [LibxcType.TOOLSTACK]: decodeBlob,
  [LibxcType.X86_TSC_INFO]: decodeTscInfo,
  [LibxcType.HVM_PARAMS]: decodeHvmParams,
  [LibxcType.CHECKPOINT_DIRTY_PFN_LIST]: decodeDirtyPfnList,
  [LibxcType.X86_CPUID_POLICY]: decodeCpuidPolicy,
  [LibxcType.X86_MSR_POLICY]: decodeMsrPolicy,
};

/**
 * Decode a non-PAGE_DATA libxc record body (body = exactly body_length bytes; may be a view:
 * blobs are copied). Unknown types yield an UnknownRecord if optional, an error if mandatory.
 */
export function decodeLibxcBody(type: number, body: Uint8Array, loc: Loc): LibxcRecord {
  const decode = bodyDecoders[type];
  if (decode) return decode(body, body.length, loc, libxcTypeName(type)!);
  if (!isOptionalType(type))
    throw bad(
      StreamErrorCode.ERR_UNKNOWN_MANDATORY_RECORD,
      `unknown mandatory libxc record type 0x${type.toString(16)}`,
      loc,
      libxcTypeLabel(type),
    );
  return { name: 'UNKNOWN', type, body: copyBytes(body) };
}

// ---------------------------------------------------------------------------------------------
// Encoders

function u64ArrayBytes(into: Uint8Array, at: number, a: ArrayLike<bigint>): void {
  for (let i = 0; i < a.length; i++) putU64leBig(into, at + 8 * i, a[i]!);
}

/** Type code of a libxc record. */
export function libxcRecordType(r: LibxcRecord): number {
  return r.name === 'UNKNOWN' ? r.type : LibxcType[r.name];
}

/** Body bytes of a libxc record (PAGE_DATA: count/reserved, pfn words and data). */
export function encodeLibxcBody(r: LibxcRecord): Uint8Array {
  switch (r.name) {
    case 'END':
    case 'VERIFY':
    case 'CHECKPOINT':
    case 'STATIC_DATA_END':
      return new Uint8Array(0);
    case 'PAGE_DATA':
      return encodePageDataBody(r);
    case 'X86_PV_INFO': {
      const b = new Uint8Array(8);
      b[0] = r.guestWidth;
      b[1] = r.ptLevels;
      const res = r.reserved ?? 0;
      putU16le(b, 2, res % 0x10000);
      putU32le(b, 4, Math.floor(res / 0x10000));
      return b;
    }
    case 'X86_PV_P2M_FRAMES': {
      const b = new Uint8Array(8 + 8 * r.frames.length);
      putU32le(b, 0, r.startPfn);
      putU32le(b, 4, r.endPfn);
      u64ArrayBytes(b, 8, r.frames);
      return b;
    }
    case 'X86_PV_VCPU_BASIC':
    case 'X86_PV_VCPU_EXTENDED':
    case 'X86_PV_VCPU_XSAVE': {
      const b = new Uint8Array(8 + r.context.length);
      putU32le(b, 0, r.vcpuId);
      putU32le(b, 4, r.reserved ?? 0);
      b.set(r.context, 8);
      return b;
    }
    case 'X86_PV_VCPU_MSRS':
      return encodeVcpuMsrsBody(r);
    case 'SHARED_INFO':
    case 'HVM_CONTEXT':
    case 'TOOLSTACK':
      return r.data;
    case 'X86_TSC_INFO': {
      const b = new Uint8Array(24);
      putU32le(b, 0, r.mode);
      putU32le(b, 4, r.khz);
      putU64leBig(b, 8, r.nsec);
      putU32le(b, 16, r.incarnation);
      putU32le(b, 20, r.reserved ?? 0);
      return b;
    }
    case 'HVM_PARAMS': {
      const b = new Uint8Array(8 + 16 * r.params.length);
      putU32le(b, 0, r.params.length);
      putU32le(b, 4, r.reserved ?? 0);
      r.params.forEach((p, i) => {
        putU64leBig(b, 8 + 16 * i, p.index);
        putU64leBig(b, 16 + 16 * i, p.value);
      });
      return b;
    }
    case 'CHECKPOINT_DIRTY_PFN_LIST': {
      const b = new Uint8Array(8 * r.pfns.length);
      u64ArrayBytes(b, 0, r.pfns);
      return b;
    }
    case 'X86_CPUID_POLICY':
      return encodeCpuidPolicyBody(r);
    case 'X86_MSR_POLICY':
      return encodeMsrPolicyBody(r);
    case 'UNKNOWN':
      return r.body;
  }
}

function encodePageDataBody(r: PageDataRecord): Uint8Array {
  const { bytes, dataPages } = encodePageDataHeader(r);
  const data = r.data ?? new Uint8Array(0);
  if (data.length !== dataPages * PAGE_SIZE)
    throw new StreamError(
      StreamErrorCode.ERR_USAGE,
      `PAGE_DATA data is ${data.length} bytes, types call for ${dataPages} pages`,
    );
  const out = new Uint8Array(bytes.length - 8 + data.length);
  out.set(bytes.subarray(8));
  out.set(data, bytes.length - 8);
  return out;
}

function encodeVcpuMsrsBody(r: VcpuMsrsRecord): Uint8Array {
  const b = new Uint8Array(8 + 16 * r.msrs.length);
  putU32le(b, 0, r.vcpuId);
  putU32le(b, 4, r.reserved ?? 0);
  r.msrs.forEach((m, i) => {
    putU32le(b, 8 + 16 * i, m.index);
    putU32le(b, 12 + 16 * i, m.reserved ?? 0);
    putU64leBig(b, 16 + 16 * i, m.value);
  });
  return b;
}

function encodeCpuidPolicyBody(r: CpuidPolicyRecord): Uint8Array {
  const b = new Uint8Array(24 * r.leaves.length);
  r.leaves.forEach((l, i) => {
    const o = 24 * i;
    putU32le(b, o, l.leaf);
    putU32le(b, o + 4, l.subleaf);
    putU32le(b, o + 8, l.a);
    putU32le(b, o + 12, l.b);
    putU32le(b, o + 16, l.c);
    putU32le(b, o + 20, l.d);
  });
  return b;
}

function encodeMsrPolicyBody(r: MsrPolicyRecord): Uint8Array {
  const b = new Uint8Array(16 * r.msrs.length);
  r.msrs.forEach((m, i) => {
    putU32le(b, 16 * i, m.idx);
    putU32le(b, 16 * i + 4, m.flags);
    putU64leBig(b, 16 * i + 8, m.val);
  });
  return b;
}

/** Framed libxc record: header + body + zero padding. */
export function encodeLibxcRecord(r: LibxcRecord): Uint8Array {
  return frameRecord(libxcRecordType(r), encodeLibxcBody(r));
}

/** PAGE_DATA record for a batch held in memory (pfns, types and the data pages concatenated). */
export function encodePageData(
  pfns: ArrayLike<number>,
  types: ArrayLike<number>,
  data: Uint8Array,
): Uint8Array {
  return encodeLibxcRecord({
    name: 'PAGE_DATA',
    count: pfns.length,
    reserved: 0,
    pfns: Float64Array.from(pfns),
    types: Uint8Array.from(types),
    dataPages: data.length / PAGE_SIZE,
    data,
  });
}
