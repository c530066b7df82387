// Serializer: pure encode functions (bytes out) and a StreamWriter over a Node Writable or an fd.
//
// StreamWriter methods resolve once the bytes were handed to the target (the Writable's write
// callback fired / writev(2) returned), so callers may reuse their buffers (e.g. a staging area or
// a foreign mapping) as soon as the promise resolves; this also gives natural backpressure (one
// record in flight; 'drain' is awaited when the Writable asks for it). Calls must not overlap.
import { writev as fsWritev } from 'node:fs';
import type { Writable } from 'node:stream';
import { MAX_BATCH_SIZE, PAGE_SIZE, PAGE_TYPE_DATA, roundUp8 } from './constants.js';
import { StreamError, StreamErrorCode } from './errors.js';
import {
  encodeDomainHeader,
  encodeImageHeader,
  encodeLibxcBody,
  encodeLibxcRecord,
  encodePageDataHeader,
  libxcRecordType,
  type DomainHeader,
  type ImageHeader,
  type LibxcRecord,
  type PageDataRecord,
} from './libxc.js';
import { encodeLibxlHeader, encodeLibxlRecord, type LibxlHeader, type LibxlRecord } from './libxl.js';
import { encodeXlHeader, type XlHeader, type XlHeaderInput } from './xl.js';
import type { StreamItem } from './reader.js';

const ZERO_PAD = new Uint8Array(8);

/** Encode any layer's record (framed, padded). */
export function encodeRecord(layer: 'libxc', record: LibxcRecord): Uint8Array;
export function encodeRecord(layer: 'libxl', record: LibxlRecord): Uint8Array;
export function encodeRecord(layer: 'libxc' | 'libxl', record: LibxcRecord | LibxlRecord): Uint8Array;
export function encodeRecord(layer: 'libxc' | 'libxl', record: LibxcRecord | LibxlRecord): Uint8Array {
  return layer === 'libxc'
    ? encodeLibxcRecord(record as LibxcRecord)
    : encodeLibxlRecord(record as LibxlRecord);
}

/**
 * Re-encode a reader item to its exact bytes (for records: zero padding). A lazy PAGE_DATA item
 * needs its payload passed as `payload`.
 */
export function encodeItem(item: StreamItem, payload?: Uint8Array): Uint8Array {
  switch (item.kind) {
    case 'xl-header':
      return encodeXlHeader(item.header);
    case 'libxl-header':
      return encodeLibxlHeader(item.header);
    case 'image-header':
      return encodeImageHeader(item.header);
    case 'domain-header':
      return encodeDomainHeader(item.header);
    case 'record':
      if (item.layer === 'libxc') {
        const r = item.record;
        if (r.name === 'PAGE_DATA' && r.data === null)
          return encodeLibxcRecord({ ...r, data: payload ?? null });
        // keep the numeric type of the item (UNKNOWN records carry theirs)
        return encodeLibxcRecord(r);
      }
      return encodeLibxlRecord(item.record);
  }
}

/**
 * Split a page set into PAGE_DATA batches of at most `batch` (≤1024) entries. `data` holds the
 * pages of the data-bearing entries back to back, in pfn order. Yields [headerBytes, dataSlice].
 */
export function* pageDataBatches(
  pfns: ArrayLike<number>,
  types: ArrayLike<number>,
  data: Uint8Array,
  batch = MAX_BATCH_SIZE,
): Generator<[Uint8Array, Uint8Array]> {
  if (pfns.length !== types.length)
    throw new StreamError(StreamErrorCode.ERR_USAGE, 'pfns and types differ in length');
  const n = Math.max(1, Math.min(batch, MAX_BATCH_SIZE));
  let dataOff = 0;
  for (let i = 0; i < pfns.length; i += n) {
    const end = Math.min(pfns.length, i + n);
    const p = Array.prototype.slice.call(pfns, i, end) as number[];
    const t = Array.prototype.slice.call(types, i, end) as number[];
    const { bytes, dataPages } = encodePageDataHeader({ pfns: p, types: t });
    const len = dataPages * PAGE_SIZE;
    if (dataOff + len > data.length)
      throw new StreamError(
        StreamErrorCode.ERR_USAGE,
        `page data too short: need ${dataOff + len} bytes, have ${data.length}`,
      );
    yield [bytes, data.subarray(dataOff, dataOff + len)];
    dataOff += len;
  }
  if (dataOff !== data.length)
    throw new StreamError(
      StreamErrorCode.ERR_USAGE,
      `page data has ${data.length - dataOff} bytes more than the types call for`,
    );
}

/** Number of data-bearing entries in a type array. */
export function countDataPages(types: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < types.length; i++) if (PAGE_TYPE_DATA[types[i]! & 0xf] === 1) n++;
  return n;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function writevFd(fd: number, bufs: Uint8Array[]): Promise<number> {
  return new Promise((resolve, reject) =>
    fsWritev(fd, bufs as NodeJS.ArrayBufferView[], null, (err, n) => (err ? reject(err) : resolve(n))),
  );
}

export class StreamWriter {
  private written = 0;
  private readonly fd: number | null;
  private readonly ws: Writable | null;

  constructor(target: Writable | number) {
    if (typeof target === 'number') {
      this.fd = target;
      this.ws = null;
    } else {
      this.fd = null;
      this.ws = target;
    }
  }

  /** Bytes written so far (= absolute offset of the next byte). */
  get bytesWritten(): number {
    return this.written;
  }

  /** Write pre-encoded bytes as they are. */
  async writeRaw(...chunks: Uint8Array[]): Promise<void> {
    const list = chunks.filter((c) => c.length > 0);
    if (list.length === 0) return;
    if (this.ws) await this.writeStream(this.ws, list);
    else await this.writeFd(this.fd!, list);
    for (const c of list) this.written += c.length;
  }

  private writeStream(ws: Writable, list: Uint8Array[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let needDrain = false;
      let settled = false;
      const onError = (e: Error) => finish(e);
      const onDrain = () => {
        needDrain = false;
        if (flushed) finish();
      };
      let flushed = false;
      const finish = (e?: Error | null) => {
        if (settled) return;
        if (e) {
          settled = true;
          cleanup();
          reject(e);
          return;
        }
        if (needDrain) return;
        settled = true;
        cleanup();
        resolve();
      };
      const cleanup = () => {
        ws.off('error', onError);
        ws.off('drain', onDrain);
      };
      ws.on('error', onError);
      ws.on('drain', onDrain);
      for (let i = 0; i < list.length; i++) {
        const last = i === list.length - 1;
        const ok = ws.write(
          list[i],
          last
            ? (e?: Error | null) => {
                flushed = true;
                finish(e);
              }
            : undefined,
        );
        if (last && !ok) needDrain = true;
      }
    });
  }

  private async writeFd(fd: number, list: Uint8Array[]): Promise<void> {
    let bufs = list;
    let tries = 0;
    while (bufs.length > 0) {
      let n: number;
      try {
        n = await writevFd(fd, bufs);
        tries = 0;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK') {
          await sleep(Math.min(10, tries++));
          continue;
        }
        throw e;
      }
      // drop fully written buffers, trim a partially written one
      const rest: Uint8Array[] = [];
      for (const b of bufs) {
        if (n >= b.length) n -= b.length;
        else {
          rest.push(n > 0 ? b.subarray(n) : b);
          n = 0;
        }
      }
      bufs = rest;
    }
  }

  writeXlHeader(h: XlHeaderInput | XlHeader = {}): Promise<void> {
    return this.writeRaw(encodeXlHeader(h));
  }
  writeLibxlHeader(h: Partial<LibxlHeader> = {}): Promise<void> {
    return this.writeRaw(encodeLibxlHeader(h));
  }
  writeImageHeader(h: Partial<ImageHeader> = {}): Promise<void> {
    return this.writeRaw(encodeImageHeader(h));
  }
  writeDomainHeader(h: DomainHeader): Promise<void> {
    return this.writeRaw(encodeDomainHeader(h));
  }

  /** Write a libxc record. PAGE_DATA is written as header + data without concatenating. */
  writeLibxcRecord(r: LibxcRecord): Promise<void> {
    if (r.name === 'PAGE_DATA') return this.writePageDataRecord(r);
    return this.writeRaw(encodeLibxcRecord(r));
  }

  writeLibxlRecord(r: LibxlRecord): Promise<void> {
    return this.writeRaw(encodeLibxlRecord(r));
  }

  /** Write one record given its type and body (framing and padding done here). */
  writeRecord(type: number, body: Uint8Array): Promise<void> {
    const hdr = new Uint8Array(8);
    new DataView(hdr.buffer).setUint32(0, type >>> 0, true);
    new DataView(hdr.buffer).setUint32(4, body.length, true);
    const pad = roundUp8(body.length) - body.length;
    return this.writeRaw(hdr, body, ZERO_PAD.subarray(0, pad));
  }

  private writePageDataRecord(r: PageDataRecord): Promise<void> {
    const { bytes, dataPages } = encodePageDataHeader(r);
    const data = r.data ?? new Uint8Array(0);
    if (data.length !== dataPages * PAGE_SIZE)
      throw new StreamError(
        StreamErrorCode.ERR_USAGE,
        `PAGE_DATA data is ${data.length} bytes, types call for ${dataPages} pages`,
      );
    return this.writeRaw(bytes, data);
  }

  /**
   * Write pages as PAGE_DATA records of at most 1024 entries (as libxc). `data` = the pages of the
   * data-bearing entries back to back, in pfn order (XTAB/BROKEN/XALLOC entries have none).
   */
  async writePages(
    pfns: ArrayLike<number>,
    types: ArrayLike<number>,
    data: Uint8Array,
    batch = MAX_BATCH_SIZE,
  ): Promise<void> {
    for (const [hdr, d] of pageDataBatches(pfns, types, data, batch)) await this.writeRaw(hdr, d);
  }

  /** Write a reader item back out (exact bytes; lazy PAGE_DATA needs its payload). */
  writeItem(item: StreamItem, payload?: Uint8Array): Promise<void> {
    if (item.kind === 'record' && item.layer === 'libxc' && item.record.name === 'PAGE_DATA') {
      const r = item.record;
      return this.writePageDataRecord(r.data === null && payload ? { ...r, data: payload } : r);
    }
    if (item.kind === 'record' && item.layer === 'libxc')
      return this.writeRecord(libxcRecordType(item.record), encodeLibxcBody(item.record));
    return this.writeRaw(encodeItem(item));
  }

  /** End a Writable target (no-op for fds, which the caller owns). */
  end(): Promise<void> {
    const ws = this.ws;
    if (!ws) return Promise.resolve();
    return new Promise((resolve, reject) => {
      ws.once('error', reject);
      ws.end(() => {
        ws.off('error', reject);
        resolve();
      });
    });
  }
}
