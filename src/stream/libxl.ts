// libxl layer: the 16-byte libxl header and records END, LIBXC_CONTEXT, EMULATOR_XENSTORE_DATA,
// EMULATOR_CONTEXT, CHECKPOINT_END, CHECKPOINT_STATE (same 8-byte framing as libxc, own numbers).
import { LIBXL_HDR_SIZE, LIBXL_IDENT, LIBXL_TYPE_NAMES, LibxlType, type LibxlTypeName } from './constants.js';
import { copyBytes, putU32be, putU32le, u32be, u32le } from './bytes.js';
import { StreamError, StreamErrorCode } from './errors.js';
import { frameRecord, isOptionalType, type Loc } from './libxc.js';

export interface LibxlHeader {
  /** Must be 2. */
  version: number;
  /** bit 0 big-endian (refused), bit 1 LEGACY (converted stream), other bits reserved. */
  options: number;
}

export interface EmptyLibxlRecord {
  name: 'END' | 'LIBXC_CONTEXT' | 'CHECKPOINT_END';
}
export interface EmulatorXenstoreRecord {
  name: 'EMULATOR_XENSTORE_DATA';
  /** 0 unknown, 1 qemu-traditional, 2 qemu-upstream. */
  emulatorId: number;
  index: number;
  /** Key/value pairs, keys relative to the device-model xenstore directory. */
  entries: [key: string, value: string][];
}
export interface EmulatorContextRecord {
  name: 'EMULATOR_CONTEXT';
  emulatorId: number;
  index: number;
  data: Uint8Array;
}
export interface CheckpointStateRecord {
  name: 'CHECKPOINT_STATE';
  /** 0 NEW, 1 SVM_SUSPENDED, 2 SVM_READY, 3 SVM_RESUMED. */
  controlId: number;
}
export interface UnknownLibxlRecord {
  name: 'UNKNOWN';
  type: number;
  body: Uint8Array;
}
export type LibxlRecord =
  | EmptyLibxlRecord
  | EmulatorXenstoreRecord
  | EmulatorContextRecord
  | CheckpointStateRecord
  | UnknownLibxlRecord;

export function libxlTypeName(type: number): LibxlTypeName | undefined {
  return type < LIBXL_TYPE_NAMES.length ? LIBXL_TYPE_NAMES[type] : undefined;
}
export function libxlTypeLabel(type: number): string {
  return libxlTypeName(type) ?? `UNKNOWN(0x${type.toString(16)})`;
}

const IDENT = new TextEncoder().encode(LIBXL_IDENT);

export function encodeLibxlHeader(h: Partial<LibxlHeader> = {}): Uint8Array {
  const b = new Uint8Array(LIBXL_HDR_SIZE);
  b.set(IDENT, 0);
  putU32be(b, 8, h.version ?? 2);
  putU32be(b, 12, h.options ?? 0);
  return b;
}

export function decodeLibxlHeader(b: Uint8Array, base: number, index: number): LibxlHeader {
  const info = { layer: 'libxl' as const, recordType: 'LIBXL_HEADER', recordIndex: index };
  for (let i = 0; i < 8; i++)
    if (b[i] !== IDENT[i])
      throw new StreamError(StreamErrorCode.ERR_BAD_LIBXL_HEADER, 'libxl header ident is not "LibxlFmt"', {
        ...info,
        offset: base,
      });
  const version = u32be(b, 8);
  if (version !== 2)
    throw new StreamError(StreamErrorCode.ERR_BAD_VERSION, `libxl header version ${version} (expected 2)`, {
      ...info,
      offset: base + 8,
    });
  const options = u32be(b, 12);
  if (options & 1)
    throw new StreamError(StreamErrorCode.ERR_BAD_ENDIANNESS, 'big-endian libxl streams are not supported', {
      ...info,
      offset: base + 12,
    });
  return { version, options };
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const utf8enc = new TextEncoder();

function xsError(detail: string, loc: Loc, at: number): StreamError {
  return new StreamError(StreamErrorCode.ERR_BAD_XENSTORE_DATA, detail, {
    offset: at,
    recordIndex: loc.index,
    recordType: 'EMULATOR_XENSTORE_DATA',
    layer: loc.layer,
  });
}

/** Parse packed NUL-terminated key, value, key, value ... (bodyAt = absolute offset of data). */
export function parseXenstoreData(d: Uint8Array, loc: Loc, dataAt: number): [string, string][] {
  const strs: string[] = [];
  let start = 0;
  for (let i = 0; i < d.length; i++) {
    if (d[i] === 0) {
      try {
        strs.push(utf8.decode(d.subarray(start, i)));
      } catch {
        throw xsError('string is not valid UTF-8', loc, dataAt + start);
      }
      start = i + 1;
    }
  }
  if (start !== d.length) throw xsError('data does not end with a NUL terminator', loc, dataAt + start);
  if (strs.length % 2 !== 0) throw xsError(`key "${strs[strs.length - 1]}" has no value`, loc, dataAt);
  const out: [string, string][] = [];
  for (let i = 0; i < strs.length; i += 2) out.push([strs[i]!, strs[i + 1]!]);
  return out;
}

function badLen(name: string, detail: string, loc: Loc): StreamError {
  return new StreamError(StreamErrorCode.ERR_BAD_LENGTH, `${name} body_length: ${detail}`, {
    offset: loc.offset,
    recordIndex: loc.index,
    recordType: name,
    layer: loc.layer,
  });
}

export function decodeLibxlBody(type: number, body: Uint8Array, loc: Loc): LibxlRecord {
  const len = body.length;
  switch (type) {
    case LibxlType.END:
    case LibxlType.LIBXC_CONTEXT:
    case LibxlType.CHECKPOINT_END: {
      const name = libxlTypeName(type) as EmptyLibxlRecord['name'];
      if (len !== 0) throw badLen(name, `${len}, must be 0`, loc);
      return { name };
    }
    case LibxlType.EMULATOR_XENSTORE_DATA: {
      if (len < 8) throw badLen('EMULATOR_XENSTORE_DATA', `${len} < 8`, loc);
      return {
        name: 'EMULATOR_XENSTORE_DATA',
        emulatorId: u32le(body, 0),
        index: u32le(body, 4),
        entries: parseXenstoreData(body.subarray(8), loc, loc.offset + 16),
      };
    }
    case LibxlType.EMULATOR_CONTEXT:
      if (len < 8) throw badLen('EMULATOR_CONTEXT', `${len} < 8`, loc);
      return {
        name: 'EMULATOR_CONTEXT',
        emulatorId: u32le(body, 0),
        index: u32le(body, 4),
        data: copyBytes(body.subarray(8)),
      };
    case LibxlType.CHECKPOINT_STATE:
      if (len !== 4) throw badLen('CHECKPOINT_STATE', `${len}, must be 4`, loc);
      return { name: 'CHECKPOINT_STATE', controlId: u32le(body, 0) };
    default:
      if (!isOptionalType(type))
        throw new StreamError(
          StreamErrorCode.ERR_UNKNOWN_MANDATORY_RECORD,
          `unknown mandatory libxl record type 0x${type.toString(16)}`,
          {
            offset: loc.offset,
            recordIndex: loc.index,
            recordType: libxlTypeLabel(type),
            layer: loc.layer,
          },
        );
      return { name: 'UNKNOWN', type, body: copyBytes(body) };
  }
}

export function libxlRecordType(r: LibxlRecord): number {
  return r.name === 'UNKNOWN' ? r.type : LibxlType[r.name];
}

export function encodeXenstoreData(entries: readonly (readonly [string, string])[]): Uint8Array {
  const parts: Uint8Array[] = [];
  let n = 0;
  for (const [k, v] of entries) {
    for (const s of [k, v]) {
      if (s.includes('\0'))
        throw new StreamError(StreamErrorCode.ERR_USAGE, 'xenstore key/value contains NUL');
      const e = utf8enc.encode(s);
      parts.push(e);
      n += e.length + 1;
    }
  }
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length + 1;
  }
  return out;
}

export function encodeLibxlBody(r: LibxlRecord): Uint8Array {
  switch (r.name) {
    case 'END':
    case 'LIBXC_CONTEXT':
    case 'CHECKPOINT_END':
      return new Uint8Array(0);
    case 'EMULATOR_XENSTORE_DATA': {
      const d = encodeXenstoreData(r.entries);
      const b = new Uint8Array(8 + d.length);
      putU32le(b, 0, r.emulatorId);
      putU32le(b, 4, r.index);
      b.set(d, 8);
      return b;
    }
    case 'EMULATOR_CONTEXT': {
      const b = new Uint8Array(8 + r.data.length);
      putU32le(b, 0, r.emulatorId);
      putU32le(b, 4, r.index);
      b.set(r.data, 8);
      return b;
    }
    case 'CHECKPOINT_STATE': {
      const b = new Uint8Array(4);
      putU32le(b, 0, r.controlId);
      return b;
    }
    case 'UNKNOWN':
      return r.body;
  }
}

export function encodeLibxlRecord(r: LibxlRecord): Uint8Array {
  return frameRecord(libxlRecordType(r), encodeLibxlBody(r));
}
