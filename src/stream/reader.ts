// Streaming reader: an async iterator of typed stream items (headers and records of every layer).
//
// Layering followed (xl/libxl formats):
//   [xl header] → libxl header → libxl records … LIBXC_CONTEXT → libxc image+domain headers →
//   libxc records … libxc END → libxl records … libxl END.
// Checkpointed (Remus/COLO) streams ping-pong: after a libxc CHECKPOINT the records are libxl
// ones up to CHECKPOINT_END, optionally followed by one CHECKPOINT_STATE (recognised as libxl type 5
// with body_length 4 — a libxc X86_PV_VCPU_EXTENDED, also type 5, is always ≥ 8 bytes), then libxc
// records again (no new headers, no END: such streams end by EOF).
//
// The reader enforces framing only (headers' marker/id/version/endianness, truncation, the record
// length cap, decodability of each record body, unknown mandatory records, trailing bytes after the
// final END). Order, duplicates, reserved fields, padding and context-dependent sizes are the
// validator's job (validator.ts). EOF exactly at a record boundary ends the iteration normally and
// is reported in `summary.endedBy = 'EOF'`; EOF anywhere else is ERR_TRUNCATED.
import {
  DHDR_SIZE,
  IHDR_SIZE,
  LIBXL_HDR_SIZE,
  LIBXL_IDENT,
  LibxcType,
  LibxlType,
  PAGE_SIZE,
  REC_LENGTH_MAX,
  XL_HDR_SIZE,
  XL_MAGIC,
  roundUp8,
  type Layer,
} from './constants.js';
import { firstNonZero, u32le } from './bytes.js';
import { StreamError, StreamErrorCode } from './errors.js';
import {
  decodeDomainHeader,
  decodeImageHeader,
  decodeLibxcBody,
  decodePfnWords,
  isOptionalType,
  libxcTypeLabel,
  pageDataCount,
  type DomainHeader,
  type ImageHeader,
  type LibxcRecord,
  type Loc,
  type PageDataRecord,
} from './libxc.js';
import { decodeLibxlBody, decodeLibxlHeader, libxlTypeLabel, type LibxlHeader, type LibxlRecord } from './libxl.js';
import { decodeXlFixedHeader, decodeXlOptionalData, type XlHeader } from './xl.js';
import { toByteSource, type ByteSource, type StreamInput } from './source.js';

/** 'colo-back' = the COLO back channel: bare CHECKPOINT_STATE and CHECKPOINT_DIRTY_PFN_LIST records. */
export type StreamFormat = 'auto' | 'xl' | 'libxl' | 'libxc' | 'colo-back';

export interface ReaderOptions {
  /** Default 'auto': detected from the first bytes (xl magic, "LibxlFmt", or the libxc marker). */
  format?: StreamFormat;
  /**
   * PAGE_DATA records carry readPayloadInto(target) / skipPayload() instead of `data`; the payload
   * must be consumed before the next item is requested (if it was not, it is skipped then).
   */
  lazyPageData?: boolean;
  /** Unknown optional records (bit 31): yield them as UNKNOWN records (default) or skip them. */
  unknownOptional?: 'yield' | 'skip';
  /**
   * After the final END: 'check' (default) fails with ERR_TRAILING_DATA if any byte follows;
   * 'stop' reads nothing more (for sockets carrying more data after the stream, e.g. the xl
   * migration handshake — continue reading from `reader.source`).
   */
  afterEnd?: 'check' | 'stop';
  /** Read-ahead size for fd/path inputs (default 1 MiB; 128 KiB with blockingReads). */
  chunkSize?: number;
  /**
   * fd/path inputs: blocking reads (readSync). Much faster on pipes, but blocks the event loop
   * while waiting for input; for command-line tools (e.g. `verify -`), not for servers.
   */
  blockingReads?: boolean;
  /** Largest accepted body_length (default and maximum: 128 MiB, REC_LENGTH_MAX). */
  maxRecordLength?: number;
}

interface ItemBase {
  /** Ordinal of the item in the stream (headers included), from 0. */
  index: number;
  /** Absolute byte offset of the item. */
  offset: number;
  /** Bytes the item occupies (headers: their size; records: 8 + body + padding). */
  size: number;
}
export interface XlHeaderItem extends ItemBase {
  kind: 'xl-header';
  layer: 'xl';
  name: 'XL_HEADER';
  header: XlHeader;
}
export interface LibxlHeaderItem extends ItemBase {
  kind: 'libxl-header';
  layer: 'libxl';
  name: 'LIBXL_HEADER';
  header: LibxlHeader;
}
export interface ImageHeaderItem extends ItemBase {
  kind: 'image-header';
  layer: 'libxc';
  name: 'IMAGE_HEADER';
  header: ImageHeader;
}
export interface DomainHeaderItem extends ItemBase {
  kind: 'domain-header';
  layer: 'libxc';
  name: 'DOMAIN_HEADER';
  header: DomainHeader;
}
interface RecordItemBase extends ItemBase {
  kind: 'record';
  /** Numeric record type as in the stream. */
  type: number;
  /** Record name ('UNKNOWN(0x…)' for unknown optional records). */
  name: string;
  bodyLength: number;
  /** Absolute offset of the first non-zero padding byte, or -1. */
  badPaddingAt: number;
}
export interface LibxcRecordItem extends RecordItemBase {
  layer: 'libxc';
  record: LibxcRecord;
}
export interface LibxlRecordItem extends RecordItemBase {
  layer: 'libxl';
  record: LibxlRecord;
}
export type RecordItem = LibxcRecordItem | LibxlRecordItem;
export type HeaderItem = XlHeaderItem | LibxlHeaderItem | ImageHeaderItem | DomainHeaderItem;
export type StreamItem = HeaderItem | RecordItem;

export interface ReaderSummary {
  /** Detected / given format (null before the first item). */
  format: Exclude<StreamFormat, 'auto'> | null;
  /** 'END' = final END record read; 'EOF' = input ended at a record boundary; null = not finished. */
  endedBy: 'END' | 'EOF' | null;
  /** Offset just past the last complete item. */
  bytes: number;
  /** Items produced (including skipped unknown records). */
  items: number;
}

const LIBXL_IDENT_BYTES = new TextEncoder().encode(LIBXL_IDENT);
const LIBXC_MARKER = new Uint8Array(8).fill(0xff);

function prefixMatch(b: Uint8Array, magic: Uint8Array): number {
  const n = Math.min(b.length, magic.length);
  let i = 0;
  while (i < n && b[i] === magic[i]) i++;
  return i;
}

/** Detect the format from the first bytes; null if they match no known stream start. */
export function detectFormat(first: Uint8Array): 'xl' | 'libxl' | 'libxc' | null {
  const cands: ['xl' | 'libxl' | 'libxc', Uint8Array][] = [
    ['xl', XL_MAGIC],
    ['libxl', LIBXL_IDENT_BYTES],
    ['libxc', LIBXC_MARKER],
  ];
  let best: 'xl' | 'libxl' | 'libxc' | null = null;
  let bestN = 0;
  for (const [f, m] of cands) {
    const n = prefixMatch(first, m);
    // a candidate must match every byte we have (up to its magic's length)
    if (n > bestN && n === Math.min(first.length, m.length)) {
      best = f;
      bestN = n;
    }
  }
  return best;
}

export class StreamReader implements AsyncIterable<StreamItem> {
  readonly summary: ReaderSummary = { format: null, endedBy: null, bytes: 0, items: 0 };
  private src: ByteSource | null = null;
  private readonly opts: ReaderOptions;
  private started = false;

  constructor(private readonly input: StreamInput, opts: ReaderOptions = {}) {
    this.opts = opts;
  }

  /** The byte source (available once iteration started); after afterEnd:'stop' it is positioned just past END. */
  get source(): ByteSource | null {
    return this.src;
  }

  [Symbol.asyncIterator](): AsyncGenerator<StreamItem, void, undefined> {
    if (this.started) throw new StreamError(StreamErrorCode.ERR_USAGE, 'a StreamReader can be iterated only once');
    this.started = true;
    return this.run();
  }

  private async *run(): AsyncGenerator<StreamItem, void, undefined> {
    const src = await toByteSource(this.input, {
      ...(this.opts.chunkSize ? { chunkSize: this.opts.chunkSize } : {}),
      ...(this.opts.blockingReads ? { blocking: true } : {}),
    });
    this.src = src;
    const ownsSource = typeof this.input === 'string';
    try {
      yield* this.parse(src);
    } finally {
      if (ownsSource) await src.close();
    }
  }

  private async *parse(src: ByteSource): AsyncGenerator<StreamItem, void, undefined> {
    const o = this.opts;
    const maxLen = Math.min(o.maxRecordLength ?? REC_LENGTH_MAX, REC_LENGTH_MAX);
    const lazy = o.lazyPageData === true;
    const skipUnknown = o.unknownOptional === 'skip';
    const sum = this.summary;
    let index = 0;

    const truncated = (what: string, at: number, got: number, need: number, layer?: Layer, name?: string, idx?: number) =>
      new StreamError(StreamErrorCode.ERR_TRUNCATED, `input ended inside ${what}: got ${got} of ${need} bytes`, {
        offset: at,
        ...(idx !== undefined ? { recordIndex: idx } : {}),
        ...(name !== undefined ? { recordType: name } : {}),
        ...(layer !== undefined ? { layer } : {}),
      });

    let format = o.format ?? 'auto';
    if (format === 'auto') {
      const first = await src.peek(XL_MAGIC.length);
      if (first.length === 0) throw new StreamError(StreamErrorCode.ERR_TRUNCATED, 'empty input', { offset: src.position });
      const f = detectFormat(first);
      if (!f) throw new StreamError(StreamErrorCode.ERR_BAD_MARKER, 'input does not start like an xl, libxl or libxc stream', { offset: src.position });
      format = f;
    }
    sum.format = format;

    // --- xl header
    if (format === 'xl') {
      const at = src.position;
      const b = await src.readExact(XL_HDR_SIZE);
      if (b.length < XL_HDR_SIZE) throw truncated('the xl header', at, b.length, XL_HDR_SIZE, 'xl', 'XL_HEADER', index);
      const fixed = decodeXlFixedHeader(b, at, index);
      const d = await src.readExact(fixed.optionalDataLength);
      if (d.length < fixed.optionalDataLength)
        throw truncated('the xl optional data', at, XL_HDR_SIZE + d.length, XL_HDR_SIZE + fixed.optionalDataLength, 'xl', 'XL_HEADER', index);
      const header = decodeXlOptionalData(fixed, d, at, index);
      const size = XL_HDR_SIZE + fixed.optionalDataLength;
      sum.items = ++index;
      sum.bytes = at + size;
      yield { kind: 'xl-header', layer: 'xl', name: 'XL_HEADER', index: index - 1, offset: at, size, header };
      format = 'libxl';
    }

    const wrapped = format === 'libxl';
    const coloBack = format === 'colo-back';
    // --- libxl header
    if (wrapped) {
      const at = src.position;
      const b = await src.readExact(LIBXL_HDR_SIZE);
      if (b.length < LIBXL_HDR_SIZE) throw truncated('the libxl header', at, b.length, LIBXL_HDR_SIZE, 'libxl', 'LIBXL_HEADER', index);
      const header = decodeLibxlHeader(b, at, index);
      sum.items = ++index;
      sum.bytes = at + LIBXL_HDR_SIZE;
      yield { kind: 'libxl-header', layer: 'libxl', name: 'LIBXL_HEADER', index: index - 1, offset: at, size: LIBXL_HDR_SIZE, header };
    }

    let layer: 'libxl' | 'libxc' = wrapped ? 'libxl' : 'libxc';
    let libxcHeaders = coloBack; // true = not needed or already read
    let afterCheckpointEnd = false;
    let pendingPayload: { remaining: number; busy: Promise<void> | null; at: number; idx: number; done: number; total: number } | null = null;

    for (;;) {
      // A lazy PAGE_DATA payload the consumer did not take is skipped now.
      if (pendingPayload) {
        const p = pendingPayload;
        if (p.busy) await p.busy;
        if (p.remaining > 0) {
          const k = await src.skip(p.remaining);
          if (k < p.remaining) throw truncated('a record body', p.at, p.done + k, p.total, 'libxc', 'PAGE_DATA', p.idx);
          p.remaining = 0;
        }
        pendingPayload = null;
      }

      if (layer === 'libxc' && !libxcHeaders) {
        let at = src.position;
        let b = await src.readExact(IHDR_SIZE);
        if (b.length < IHDR_SIZE) throw truncated('the libxc image header', at, b.length, IHDR_SIZE, 'libxc', 'IMAGE_HEADER', index);
        const ih = decodeImageHeader(b, at, index);
        sum.items = ++index;
        sum.bytes = at + IHDR_SIZE;
        yield { kind: 'image-header', layer: 'libxc', name: 'IMAGE_HEADER', index: index - 1, offset: at, size: IHDR_SIZE, header: ih };
        at = src.position;
        b = await src.readExact(DHDR_SIZE);
        if (b.length < DHDR_SIZE) throw truncated('the libxc domain header', at, b.length, DHDR_SIZE, 'libxc', 'DOMAIN_HEADER', index);
        const dh = decodeDomainHeader(b);
        sum.items = ++index;
        sum.bytes = at + DHDR_SIZE;
        yield { kind: 'domain-header', layer: 'libxc', name: 'DOMAIN_HEADER', index: index - 1, offset: at, size: DHDR_SIZE, header: dh };
        libxcHeaders = true;
        continue;
      }

      // --- record header
      const at = src.position;
      const h = await src.readExact(8);
      if (h.length === 0) {
        sum.endedBy = 'EOF';
        return;
      }
      if (h.length < 8) throw truncated('a record header', at, h.length, 8, layer, undefined, index);
      const type = u32le(h, 0);
      const len = u32le(h, 4);
      let recLayer: 'libxl' | 'libxc' = layer;
      if (coloBack) recLayer = type === LibxlType.CHECKPOINT_STATE && len === 4 ? 'libxl' : 'libxc';
      else if (afterCheckpointEnd) {
        afterCheckpointEnd = false;
        if (!(type === LibxlType.CHECKPOINT_STATE && len === 4)) layer = recLayer = 'libxc';
      }
      const name = recLayer === 'libxc' ? libxcTypeLabel(type) : libxlTypeLabel(type);
      const idx = index;
      if (len > maxLen)
        throw new StreamError(StreamErrorCode.ERR_RECORD_TOO_LONG, `body_length ${len} exceeds ${maxLen}`, {
          offset: at + 4,
          recordIndex: idx,
          recordType: name,
          layer: recLayer,
        });
      const padded = roundUp8(len);
      const loc: Loc = { offset: at, index: idx, layer: recLayer };
      index++;

      if (skipUnknown && isOptionalType(type)) {
        const k = await src.skip(padded);
        if (k < padded) throw truncated('a record body', at, 8 + k, 8 + padded, recLayer, name, idx);
        sum.items = index;
        sum.bytes = at + 8 + padded;
        continue;
      }

      let item: RecordItem;
      if (recLayer === 'libxc' && type === LibxcType.PAGE_DATA) {
        // count/reserved, then pfn words, then (eager) the payload: never one big body copy.
        if (len < 8) pageDataCount(h, len, loc); // throws ERR_BAD_LENGTH
        const head = await src.readExact(8);
        if (head.length < 8) throw truncated('a record body', at, 8 + head.length, 8 + padded, recLayer, name, idx);
        const { count, reserved } = pageDataCount(head, len, loc);
        const words = await src.readExact(8 * count);
        if (words.length < 8 * count) throw truncated('a record body', at, 16 + words.length, 8 + padded, recLayer, name, idx);
        const ph = decodePfnWords(words, count, reserved, len, loc);
        const payloadLen = ph.dataPages * PAGE_SIZE;
        const payloadOffset = src.position;
        const rec: PageDataRecord = { name: 'PAGE_DATA', ...ph, data: null };
        if (!lazy) {
          const data = await src.readExact(payloadLen);
          if (data.length < payloadLen) throw truncated('a record body', at, 16 + 8 * count + data.length, 8 + padded, recLayer, name, idx);
          rec.data = data;
        } else {
          const p = { remaining: payloadLen, busy: null as Promise<void> | null, at, idx, done: 16 + 8 * count, total: 8 + padded };
          pendingPayload = p;
          const take = async (target: Uint8Array | null): Promise<void> => {
            if (p.remaining !== payloadLen || p.busy)
              throw new StreamError(StreamErrorCode.ERR_USAGE, 'PAGE_DATA payload already consumed', { offset: payloadOffset, recordIndex: idx, recordType: name, layer: 'libxc' });
            if (pendingPayload !== p)
              throw new StreamError(StreamErrorCode.ERR_USAGE, 'PAGE_DATA payload requested after the reader moved on', { offset: payloadOffset, recordIndex: idx, recordType: name, layer: 'libxc' });
            const run = async () => {
              const k = target ? await src.readInto(target.subarray(0, payloadLen)) : await src.skip(payloadLen);
              p.remaining = 0;
              if (k < payloadLen) throw truncated('a record body', at, 16 + 8 * count + k, 8 + padded, 'libxc', name, idx);
            };
            p.busy = run();
            p.busy.catch(() => {});
            return p.busy;
          };
          rec.payloadOffset = payloadOffset;
          rec.readPayloadInto = (target: Uint8Array) => {
            if (!(target instanceof Uint8Array) || target.length < payloadLen)
              return Promise.reject(
                new StreamError(StreamErrorCode.ERR_USAGE, `readPayloadInto needs a target of at least ${payloadLen} bytes`, { offset: payloadOffset, recordIndex: idx, recordType: name, layer: 'libxc' }),
              );
            return take(target);
          };
          rec.skipPayload = () => take(null);
        }
        item = { kind: 'record', layer: 'libxc', type, name, index: idx, offset: at, size: 8 + padded, bodyLength: len, badPaddingAt: -1, record: rec };
      } else {
        const body = await src.readExact(padded);
        if (body.length < padded) throw truncated('a record body', at, 8 + body.length, 8 + padded, recLayer, name, idx);
        const nz = firstNonZero(body, len, padded);
        const badPaddingAt = nz < 0 ? -1 : at + 8 + nz;
        const b = body.subarray(0, len);
        if (recLayer === 'libxc') {
          item = { kind: 'record', layer: 'libxc', type, name, index: idx, offset: at, size: 8 + padded, bodyLength: len, badPaddingAt, record: decodeLibxcBody(type, b, loc) };
        } else {
          item = { kind: 'record', layer: 'libxl', type, name, index: idx, offset: at, size: 8 + padded, bodyLength: len, badPaddingAt, record: decodeLibxlBody(type, b, loc) };
        }
      }
      sum.items = index;
      sum.bytes = at + 8 + padded;
      yield item;

      // --- layer transitions
      let finalEnd = false;
      if (coloBack) continue;
      if (recLayer === 'libxl') {
        if (type === LibxlType.LIBXC_CONTEXT) layer = 'libxc';
        else if (type === LibxlType.END) finalEnd = true;
        else if (type === LibxlType.CHECKPOINT_END) afterCheckpointEnd = true;
        else if (type === LibxlType.CHECKPOINT_STATE) layer = 'libxc';
      } else {
        if (type === LibxcType.END) {
          if (wrapped) layer = 'libxl';
          else finalEnd = true;
        } else if (type === LibxcType.CHECKPOINT && wrapped) layer = 'libxl';
      }
      if (finalEnd) {
        sum.endedBy = 'END';
        if ((o.afterEnd ?? 'check') === 'check') {
          const pos = src.position;
          const more = await src.peek(1);
          if (more.length > 0)
            throw new StreamError(StreamErrorCode.ERR_TRAILING_DATA, 'bytes follow the final END record', { offset: pos, layer: recLayer });
        }
        return;
      }
    }
  }
}

/** Create a reader over a path, fd, bytes, Readable / AsyncIterable, or ByteSource. */
export function readStream(input: StreamInput, opts: ReaderOptions = {}): StreamReader {
  return new StreamReader(input, opts);
}

/** Read everything into an array (eager PAGE_DATA data are copied so they stay valid). Small inputs only. */
export async function readAll(input: StreamInput, opts: Omit<ReaderOptions, 'lazyPageData'> = {}): Promise<{ items: StreamItem[]; summary: ReaderSummary }> {
  const r = new StreamReader(input, { ...opts, lazyPageData: false });
  const items: StreamItem[] = [];
  for await (const it of r) {
    if (it.kind === 'record' && it.layer === 'libxc' && it.record.name === 'PAGE_DATA' && it.record.data) {
      it.record.data = new Uint8Array(it.record.data);
    }
    items.push(it);
  }
  return { items, summary: r.summary };
}
