// The `xl` save-file / migration prefix: 32-byte magic, byte-order word, mandatory and optional
// flags, optional data (u32 config_len + config bytes; xl writes JSON with a trailing NUL).
// Integers are in host byte order; only little-endian hosts are supported (x86/ARM).
import {
  XL_BYTEORDER,
  XL_HDR_SIZE,
  XL_MAGIC,
  XL_MANDATORY_FLAG_JSON,
  XL_MANDATORY_FLAG_STREAMV2,
  XL_MANDATORY_KNOWN,
  XL_OPTIONAL_DATA_MAX,
} from './constants.js';
import { putU32le, u32le } from './bytes.js';
import { StreamError, StreamErrorCode } from './errors.js';

export interface XlHeader {
  mandatoryFlags: number;
  optionalFlags: number;
  /** Optional data exactly as in the stream (re-encoding is byte-identical). */
  optionalData: Uint8Array;
  /** Config bytes inside optionalData (a view), when optional data is present. */
  config?: Uint8Array;
  /** Config as text, with a trailing NUL removed (JSON when the JSON mandatory flag is set). */
  configText?: string;
}

/** The fixed 48-byte part as decoded before the optional data is read. */
export interface XlFixedHeader {
  mandatoryFlags: number;
  optionalFlags: number;
  optionalDataLength: number;
}

function err(code: StreamErrorCode, detail: string, offset: number, index: number): StreamError {
  return new StreamError(code, detail, { offset, recordIndex: index, recordType: 'XL_HEADER', layer: 'xl' });
}

export function decodeXlFixedHeader(b: Uint8Array, base: number, index: number): XlFixedHeader {
  for (let i = 0; i < XL_MAGIC.length; i++)
    if (b[i] !== XL_MAGIC[i])
      throw err(StreamErrorCode.ERR_BAD_XL_HEADER, 'xl save-file magic mismatch', base, index);
  const bo = u32le(b, 32);
  if (bo !== XL_BYTEORDER)
    throw err(
      StreamErrorCode.ERR_BAD_ENDIANNESS,
      bo === 0x04030201
        ? 'xl header written by a big-endian host'
        : `xl byte-order word 0x${bo.toString(16)} is not 0x01020304`,
      base + 32,
      index,
    );
  const mandatoryFlags = u32le(b, 36);
  if (mandatoryFlags & ~XL_MANDATORY_KNOWN)
    throw err(
      StreamErrorCode.ERR_BAD_XL_HEADER,
      `unknown xl mandatory flags 0x${(mandatoryFlags & ~XL_MANDATORY_KNOWN).toString(16)}`,
      base + 36,
      index,
    );
  if (!(mandatoryFlags & XL_MANDATORY_FLAG_STREAMV2))
    throw err(
      StreamErrorCode.ERR_BAD_XL_HEADER,
      'xl header lacks STREAMv2: legacy (pre-4.6) streams are not supported',
      base + 36,
      index,
    );
  const optionalFlags = u32le(b, 40);
  const optionalDataLength = u32le(b, 44);
  if (optionalDataLength > XL_OPTIONAL_DATA_MAX)
    throw err(
      StreamErrorCode.ERR_BAD_XL_HEADER,
      `xl optional data length ${optionalDataLength} exceeds ${XL_OPTIONAL_DATA_MAX}`,
      base + 44,
      index,
    );
  return { mandatoryFlags, optionalFlags, optionalDataLength };
}

const textDecoder = new TextDecoder('utf-8');

/** Complete the xl header from its optional data (a view; copied here). */
export function decodeXlOptionalData(
  fixed: XlFixedHeader,
  data: Uint8Array,
  base: number,
  index: number,
): XlHeader {
  const optionalData = new Uint8Array(data);
  const h: XlHeader = {
    mandatoryFlags: fixed.mandatoryFlags,
    optionalFlags: fixed.optionalFlags,
    optionalData,
  };
  if (optionalData.length === 0) return h;
  if (optionalData.length < 4)
    throw err(
      StreamErrorCode.ERR_BAD_XL_HEADER,
      `xl optional data of ${optionalData.length} bytes cannot hold config_len`,
      base + XL_HDR_SIZE,
      index,
    );
  const len = u32le(optionalData, 0);
  if (len > optionalData.length - 4)
    throw err(
      StreamErrorCode.ERR_BAD_XL_HEADER,
      `xl config_len ${len} exceeds the optional data (${optionalData.length - 4} bytes)`,
      base + XL_HDR_SIZE,
      index,
    );
  h.config = optionalData.subarray(4, 4 + len);
  const end = len > 0 && h.config[len - 1] === 0 ? len - 1 : len;
  h.configText = textDecoder.decode(h.config.subarray(0, end));
  return h;
}

/** xl optional data for a config string: u32 length + bytes + NUL (what `xl save` writes). */
export function xlOptionalDataForConfig(config: string): Uint8Array {
  const c = new TextEncoder().encode(config);
  const b = new Uint8Array(4 + c.length + 1);
  putU32le(b, 0, c.length + 1);
  b.set(c, 4);
  return b;
}

export interface XlHeaderInput {
  mandatoryFlags?: number;
  optionalFlags?: number;
  /** Exact optional data; wins over `configText`. */
  optionalData?: Uint8Array;
  /** Build optional data from this config text (JSON flag set by default when given). */
  configText?: string;
}

export function encodeXlHeader(h: XlHeaderInput = {}): Uint8Array {
  const opt =
    h.optionalData ??
    (h.configText !== undefined ? xlOptionalDataForConfig(h.configText) : new Uint8Array(0));
  const mand =
    h.mandatoryFlags ??
    XL_MANDATORY_FLAG_STREAMV2 | (h.configText !== undefined || opt.length > 0 ? XL_MANDATORY_FLAG_JSON : 0);
  const b = new Uint8Array(XL_HDR_SIZE + opt.length);
  b.set(XL_MAGIC, 0);
  putU32le(b, 32, XL_BYTEORDER);
  putU32le(b, 36, mand);
  putU32le(b, 40, h.optionalFlags ?? 0);
  putU32le(b, 44, opt.length);
  b.set(opt, XL_HDR_SIZE);
  return b;
}
