// StreamError: the only exception the stream layer raises for bad input.
import type { Layer } from './constants.js';

export const StreamErrorCode = {
  /** libxc image header marker is not 8 x 0xff (or the stream start is not recognised at all). */
  ERR_BAD_MARKER: 'ERR_BAD_MARKER',
  /** libxc image header id is not "XENF". */
  ERR_BAD_ID: 'ERR_BAD_ID',
  /** libxc version not 2..3, or libxl version not 2. */
  ERR_BAD_VERSION: 'ERR_BAD_VERSION',
  /** big-endian stream (refused, as by libxc and libxl) or xl byte-order word mismatch. */
  ERR_BAD_ENDIANNESS: 'ERR_BAD_ENDIANNESS',
  /** Domain header field invalid (domain type, page shift). */
  ERR_BAD_HEADER: 'ERR_BAD_HEADER',
  /** Input ended inside a header, record header or record body. */
  ERR_TRUNCATED: 'ERR_TRUNCATED',
  /** body_length above 128 MiB (raised from the record header, before any allocation). */
  ERR_RECORD_TOO_LONG: 'ERR_RECORD_TOO_LONG',
  /** body_length wrong for the record type. */
  ERR_BAD_LENGTH: 'ERR_BAD_LENGTH',
  /** PAGE_DATA pfn word with a reserved page type (0x5..0x8). */
  ERR_BAD_PAGE_TYPE: 'ERR_BAD_PAGE_TYPE',
  /** A field holds a value outside its defined range (guest width, emulator id, control id, ...). */
  ERR_BAD_VALUE: 'ERR_BAD_VALUE',
  /** Unknown record type without the optional bit. */
  ERR_UNKNOWN_MANDATORY_RECORD: 'ERR_UNKNOWN_MANDATORY_RECORD',
  /** Warning only: an unknown record with the optional bit (31), skipped (as libxc restore does). */
  WARN_UNKNOWN_OPTIONAL_RECORD: 'WARN_UNKNOWN_OPTIONAL_RECORD',
  /** TOOLSTACK (0x0b): obsolete, never sent by any release, rejected by libxc restore. */
  ERR_OBSOLETE_RECORD: 'ERR_OBSOLETE_RECORD',
  /** Record not valid for the stream's domain type (PV record in HVM stream or vice versa). */
  ERR_DOMAIN_TYPE: 'ERR_DOMAIN_TYPE',
  /** Record in a place the stream order forbids. */
  ERR_ORDER: 'ERR_ORDER',
  /** Second copy of a once-only record. */
  ERR_DUPLICATE: 'ERR_DUPLICATE',
  /** Plain stream ended (EOF at a record boundary) without its END record. */
  ERR_MISSING_END: 'ERR_MISSING_END',
  /** Bytes after the final END. */
  ERR_TRAILING_DATA: 'ERR_TRAILING_DATA',
  /** Record padding bytes not zero. */
  ERR_NONZERO_PADDING: 'ERR_NONZERO_PADDING',
  /** Reserved field not zero. */
  ERR_RESERVED: 'ERR_RESERVED',
  /** xl save-file header wrong (magic, unknown mandatory flags, optional data layout, no STREAMv2). */
  ERR_BAD_XL_HEADER: 'ERR_BAD_XL_HEADER',
  /** libxl header ident is not "LibxlFmt". */
  ERR_BAD_LIBXL_HEADER: 'ERR_BAD_LIBXL_HEADER',
  /** EMULATOR_XENSTORE_DATA body is not a sequence of NUL-terminated UTF-8 key/value pairs. */
  ERR_BAD_XENSTORE_DATA: 'ERR_BAD_XENSTORE_DATA',
  /** API misuse (e.g. a lazy PAGE_DATA payload read twice, target too small). Not a stream defect. */
  ERR_USAGE: 'ERR_USAGE',
} as const;
export type StreamErrorCode = (typeof StreamErrorCode)[keyof typeof StreamErrorCode];

export interface StreamErrorInfo {
  /** Absolute byte offset of the offending field, or of the offending record/header. */
  offset?: number;
  /** Index of the stream item (headers count too) the error belongs to. */
  recordIndex?: number;
  /** Name of the record or header (e.g. 'PAGE_DATA', 'IMAGE_HEADER'). */
  recordType?: string;
  layer?: Layer;
}

function hex(n: number): string {
  return '0x' + n.toString(16);
}

export class StreamError extends Error {
  readonly code: StreamErrorCode;
  readonly offset: number | undefined;
  readonly recordIndex: number | undefined;
  readonly recordType: string | undefined;
  readonly layer: Layer | undefined;
  /** The message without the location suffix. */
  readonly detail: string;

  constructor(code: StreamErrorCode, detail: string, info: StreamErrorInfo = {}) {
    const where: string[] = [];
    if (info.layer !== undefined) where.push(`layer ${info.layer}`);
    if (info.recordType !== undefined) where.push(`record ${info.recordType}`);
    if (info.recordIndex !== undefined) where.push(`#${info.recordIndex}`);
    if (info.offset !== undefined) where.push(`at offset ${info.offset} (${hex(info.offset)})`);
    super(`${code}: ${detail}${where.length ? ' [' + where.join(', ') + ']' : ''}`);
    this.name = 'StreamError';
    this.code = code;
    this.detail = detail;
    this.offset = info.offset;
    this.recordIndex = info.recordIndex;
    this.recordType = info.recordType;
    this.layer = info.layer;
  }
}

export function isStreamError(e: unknown): e is StreamError {
  return e instanceof StreamError;
}

/** Non-fatal finding (e.g. non-zero reserved field under reserved: 'warn'). */
export interface StreamWarning {
  code: StreamErrorCode;
  message: string;
  offset?: number;
  recordIndex?: number;
  recordType?: string;
  layer?: Layer;
}
