// A valid stream of any format (xl, libxl, libxc) cut into its items — headers and records of each
// layer — so that tests can edit, insert, drop, repeat or truncate them and put the stream back
// together. Records are kept as (type, body); join() re-frames them (8-byte header, zero padding).
import { StreamReader } from '../../src/stream/index.js';

export interface Segment {
  kind: 'xl-header' | 'libxl-header' | 'image-header' | 'domain-header' | 'record';
  layer: 'xl' | 'libxl' | 'libxc';
  /** record type (records only) */
  type: number;
  name: string;
  /** headers: their bytes; records: the body without padding */
  bytes: Buffer;
  /** offset in the original stream */
  offset: number;
}

export async function split(stream: Uint8Array): Promise<Segment[]> {
  const buf = Buffer.from(stream.buffer, stream.byteOffset, stream.length);
  const out: Segment[] = [];
  for await (const item of new StreamReader(buf, { lazyPageData: true })) {
    if (item.kind === 'record') {
      const body = Buffer.from(buf.subarray(item.offset + 8, item.offset + 8 + item.bodyLength));
      out.push({
        kind: 'record',
        layer: item.layer,
        type: item.type,
        name: item.name,
        bytes: body,
        offset: item.offset,
      });
    } else {
      out.push({
        kind: item.kind,
        layer: item.layer,
        type: -1,
        name: item.name,
        bytes: Buffer.from(buf.subarray(item.offset, item.offset + item.size)),
        offset: item.offset,
      });
    }
  }
  return out;
}

export function frameRecord(type: number, body: Uint8Array): Buffer {
  const pad = (8 - (body.length % 8)) % 8;
  const b = Buffer.alloc(8 + body.length + pad);
  b.writeUInt32LE(type >>> 0, 0);
  b.writeUInt32LE(body.length, 4);
  b.set(body, 8);
  return b;
}

export function encodeSegment(s: Segment): Buffer {
  return s.kind === 'record' ? frameRecord(s.type, s.bytes) : s.bytes;
}

export function join(segs: Segment[]): Buffer {
  return Buffer.concat(segs.map(encodeSegment));
}

export function clone(segs: Segment[]): Segment[] {
  return segs.map((s) => ({ ...s, bytes: Buffer.from(s.bytes) }));
}

/** A record segment (for insertion). */
export function rec(layer: 'libxl' | 'libxc', type: number, body: Uint8Array): Segment {
  return {
    kind: 'record',
    layer,
    type,
    name: `0x${type.toString(16)}`,
    bytes: Buffer.from(body),
    offset: -1,
  };
}

/** Index of the libxc END record (the last record of the libxc layer). */
export function libxcEnd(segs: Segment[]): number {
  return segs.findIndex((s) => s.kind === 'record' && s.layer === 'libxc' && s.type === 0);
}
