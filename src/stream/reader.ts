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
import {
  decodeLibxlBody,
  decodeLibxlHeader,
  libxlTypeLabel,
  type LibxlHeader,
  type LibxlRecord,
} from './libxl.js';
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

  constructor(
    private readonly input: StreamInput,
    opts: ReaderOptions = {},
  ) {
    this.opts = opts;
  }

  /** The byte source (available once iteration started); after afterEnd:'stop' it is positioned just past END. */
  get source(): ByteSource | null {
    return this.src;
  }

  [Symbol.asyncIterator](): AsyncGenerator<StreamItem, void, undefined> {
    if (this.started)
      throw new StreamError(StreamErrorCode.ERR_USAGE, 'a StreamReader can be iterated only once');
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

  private parse(src: ByteSource): AsyncGenerator<StreamItem, void, undefined> {
    return new Parser(src, this.opts, this.summary).items();
  }
}

function truncated(
  what: string,
  at: number,
  got: number,
  need: number,
  layer?: Layer,
  name?: string,
  idx?: number,
): StreamError {
  return new StreamError(
    StreamErrorCode.ERR_TRUNCATED,
    `input ended inside ${what}: got ${got} of ${need} bytes`,
    {
      offset: at,
      ...(idx !== undefined ? { recordIndex: idx } : {}),
      ...(name !== undefined ? { recordType: name } : {}),
      ...(layer !== undefined ? { layer } : {}),
    },
  );
}

/** A record's framing, read before its body. */
interface RecordHead {
  at: number;
  type: number;
  len: number;
  padded: number;
  layer: 'libxl' | 'libxc';
  name: string;
  idx: number;
  loc: Loc;
}

/** A lazy PAGE_DATA payload not consumed yet. */
interface PendingPayload {
  remaining: number;
  busy: Promise<void> | null;
  at: number;
  idx: number;
  done: number;
  total: number;
}

/**
 * One pass over a stream, one method per state: format detection, the xl / libxl / libxc headers,
 * then records (framing, PAGE_DATA, other bodies) and the layer transitions between them.
 */
class Parser {
  private readonly maxLen: number;
  private index = 0;
  private format: StreamFormat;
  private wrapped = false;
  private coloBack = false;
  private layer: 'libxl' | 'libxc' = 'libxc';
  /** true = the libxc image and domain headers are not needed or already read */
  private libxcHeaders = false;
  private afterCheckpointEnd = false;
  private pending: PendingPayload | null = null;

  constructor(
    private readonly src: ByteSource,
    private readonly o: ReaderOptions,
    private readonly sum: ReaderSummary,
  ) {
    this.maxLen = Math.min(o.maxRecordLength ?? REC_LENGTH_MAX, REC_LENGTH_MAX);
    this.format = o.format ?? 'auto';
  }

  async *items(): AsyncGenerator<StreamItem, void, undefined> {
    await this.detect();
    if (this.format === 'xl') {
      yield await this.xlHeader();
      this.format = 'libxl';
    }
    this.wrapped = this.format === 'libxl';
    this.coloBack = this.format === 'colo-back';
    if (this.wrapped) yield await this.libxlHeader();
    this.layer = this.wrapped ? 'libxl' : 'libxc';
    this.libxcHeaders = this.coloBack;
    for (;;) {
      await this.settlePending();
      if (this.layer === 'libxc' && !this.libxcHeaders) {
        yield await this.imageHeader();
        yield await this.domainHeader();
        this.libxcHeaders = true;
        continue;
      }
      const h = await this.recordHead();
      if (!h) {
        this.sum.endedBy = 'EOF';
        return;
      }
      this.index++;
      if (this.o.unknownOptional === 'skip' && isOptionalType(h.type)) {
        await this.skipRecord(h);
        continue;
      }
      const pageData = h.layer === 'libxc' && h.type === LibxcType.PAGE_DATA;
      const item = pageData ? await this.pageData(h) : await this.recordBody(h);
      this.sum.items = this.index;
      this.sum.bytes = h.at + 8 + h.padded;
      yield item;
      if (await this.transition(h)) return;
    }
  }

  /** An item of `size` bytes at `at` is complete: count it; returns its index. */
  private done(at: number, size: number): number {
    this.sum.items = ++this.index;
    this.sum.bytes = at + size;
    return this.index - 1;
  }

  private async detect(): Promise<void> {
    if (this.format === 'auto') {
      const first = await this.src.peek(XL_MAGIC.length);
      const offset = this.src.position;
      if (first.length === 0) throw new StreamError(StreamErrorCode.ERR_TRUNCATED, 'empty input', { offset });
      const f = detectFormat(first);
      if (!f)
        throw new StreamError(
          StreamErrorCode.ERR_BAD_MARKER,
          'input does not start like an xl, libxl or libxc stream',
          { offset },
        );
      this.format = f;
    }
    this.sum.format = this.format;
  }

  private async xlHeader(): Promise<XlHeaderItem> {
    const src = this.src;
    const index = this.index;
    const at = src.position;
    const b = await src.readExact(XL_HDR_SIZE);
    if (b.length < XL_HDR_SIZE)
      throw truncated('the xl header', at, b.length, XL_HDR_SIZE, 'xl', 'XL_HEADER', index);
    const fixed = decodeXlFixedHeader(b, at, index);
    const d = await src.readExact(fixed.optionalDataLength);
    if (d.length < fixed.optionalDataLength)
      throw truncated(
        'the xl optional data',
        at,
        XL_HDR_SIZE + d.length,
        XL_HDR_SIZE + fixed.optionalDataLength,
        'xl',
        'XL_HEADER',
        index,
      );
    const header = decodeXlOptionalData(fixed, d, at, index);
    const size = XL_HDR_SIZE + fixed.optionalDataLength;
    return {
      kind: 'xl-header',
      layer: 'xl',
      name: 'XL_HEADER',
      index: this.done(at, size),
      offset: at,
      size,
      header,
    };
  }

  /** `size` bytes of a fixed-size header, or ERR_TRUNCATED naming it. */
  private async fixed(
    size: number,
    what: string,
    layer: Layer,
    name: string,
  ): Promise<{ at: number; b: Uint8Array }> {
    const at = this.src.position;
    const b = await this.src.readExact(size);
    if (b.length < size) throw truncated(what, at, b.length, size, layer, name, this.index);
    return { at, b };
  }

  private async libxlHeader(): Promise<LibxlHeaderItem> {
    const size = LIBXL_HDR_SIZE;
    const { at, b } = await this.fixed(size, 'the libxl header', 'libxl', 'LIBXL_HEADER');
    const header = decodeLibxlHeader(b, at, this.index);
    return {
      kind: 'libxl-header',
      layer: 'libxl',
      name: 'LIBXL_HEADER',
      index: this.done(at, size),
      offset: at,
      size,
      header,
    };
  }

  private async imageHeader(): Promise<ImageHeaderItem> {
    const size = IHDR_SIZE;
    const { at, b } = await this.fixed(size, 'the libxc image header', 'libxc', 'IMAGE_HEADER');
    const header = decodeImageHeader(b, at, this.index);
    return {
      kind: 'image-header',
      layer: 'libxc',
      name: 'IMAGE_HEADER',
      index: this.done(at, size),
      offset: at,
      size,
      header,
    };
  }

  private async domainHeader(): Promise<DomainHeaderItem> {
    const size = DHDR_SIZE;
    const { at, b } = await this.fixed(size, 'the libxc domain header', 'libxc', 'DOMAIN_HEADER');
    const header = decodeDomainHeader(b);
    return {
      kind: 'domain-header',
      layer: 'libxc',
      name: 'DOMAIN_HEADER',
      index: this.done(at, size),
      offset: at,
      size,
      header,
    };
  }

  /** A lazy PAGE_DATA payload the consumer did not take is skipped now. */
  private async settlePending(): Promise<void> {
    const p = this.pending;
    if (!p) return;
    if (p.busy) await p.busy;
    if (p.remaining > 0) {
      const k = await this.src.skip(p.remaining);
      if (k < p.remaining)
        throw truncated('a record body', p.at, p.done + k, p.total, 'libxc', 'PAGE_DATA', p.idx);
      p.remaining = 0;
    }
    this.pending = null;
  }

  /** The 8-byte record header and the layer it belongs to; null at a clean end of input. */
  private async recordHead(): Promise<RecordHead | null> {
    const at = this.src.position;
    const h = await this.src.readExact(8);
    if (h.length === 0) return null;
    if (h.length < 8) throw truncated('a record header', at, h.length, 8, this.layer, undefined, this.index);
    const type = u32le(h, 0);
    const len = u32le(h, 4);
    let layer = this.layer;
    if (this.coloBack) layer = type === LibxlType.CHECKPOINT_STATE && len === 4 ? 'libxl' : 'libxc';
    else if (this.afterCheckpointEnd) {
      this.afterCheckpointEnd = false;
      if (!(type === LibxlType.CHECKPOINT_STATE && len === 4)) this.layer = layer = 'libxc';
    }
    const name = layer === 'libxc' ? libxcTypeLabel(type) : libxlTypeLabel(type);
    const idx = this.index;
    if (len > this.maxLen)
      throw new StreamError(
        StreamErrorCode.ERR_RECORD_TOO_LONG,
        `body_length ${len} exceeds ${this.maxLen}`,
        {
          offset: at + 4,
          recordIndex: idx,
          recordType: name,
          layer,
        },
      );
    return { at, type, len, padded: roundUp8(len), layer, name, idx, loc: { offset: at, index: idx, layer } };
  }

  private async skipRecord(h: RecordHead): Promise<void> {
    const k = await this.src.skip(h.padded);
    if (k < h.padded) throw truncated('a record body', h.at, 8 + k, 8 + h.padded, h.layer, h.name, h.idx);
    this.sum.items = this.index;
    this.sum.bytes = h.at + 8 + h.padded;
  }

  /** PAGE_DATA: count/reserved, then pfn words, then (eager) the payload: never one big body copy. */
  private async pageData(h: RecordHead): Promise<LibxcRecordItem> {
    const { at, len, padded, name, idx, loc } = h;
    const src = this.src;
    if (len < 8) pageDataCount(new Uint8Array(8), len, loc); // throws ERR_BAD_LENGTH
    const head = await src.readExact(8);
    if (head.length < 8)
      throw truncated('a record body', at, 8 + head.length, 8 + padded, 'libxc', name, idx);
    const { count, reserved } = pageDataCount(head, len, loc);
    const words = await src.readExact(8 * count);
    if (words.length < 8 * count)
      throw truncated('a record body', at, 16 + words.length, 8 + padded, 'libxc', name, idx);
    const ph = decodePfnWords(words, count, reserved, len, loc);
    const payloadLen = ph.dataPages * PAGE_SIZE;
    const rec: PageDataRecord = { name: 'PAGE_DATA', ...ph, data: null };
    if (this.o.lazyPageData !== true) {
      const data = await src.readExact(payloadLen);
      if (data.length < payloadLen)
        throw truncated('a record body', at, 16 + 8 * count + data.length, 8 + padded, 'libxc', name, idx);
      rec.data = data;
    } else {
      this.lazyPayload(h, rec, 16 + 8 * count, payloadLen);
    }
    const base = {
      kind: 'record',
      type: h.type,
      name,
      index: idx,
      offset: at,
      size: 8 + padded,
      bodyLength: len,
    } as const;
    return { ...base, layer: 'libxc', badPaddingAt: -1, record: rec };
  }

  /** Lazy PAGE_DATA: readPayloadInto / skipPayload, valid until the next item is requested. */
  private lazyPayload(h: RecordHead, rec: PageDataRecord, done: number, payloadLen: number): void {
    const { at, padded, name, idx } = h;
    const src = this.src;
    const payloadOffset = src.position;
    const p: PendingPayload = { remaining: payloadLen, busy: null, at, idx, done, total: 8 + padded };
    this.pending = p;
    const where = { offset: payloadOffset, recordIndex: idx, recordType: name, layer: 'libxc' as const };
    const usage = (msg: string) => new StreamError(StreamErrorCode.ERR_USAGE, msg, where);
    const take = async (target: Uint8Array | null): Promise<void> => {
      if (p.remaining !== payloadLen || p.busy) throw usage('PAGE_DATA payload already consumed');
      if (this.pending !== p) throw usage('PAGE_DATA payload requested after the reader moved on');
      const run = async () => {
        const k = target ? await src.readInto(target.subarray(0, payloadLen)) : await src.skip(payloadLen);
        p.remaining = 0;
        if (k < payloadLen) throw truncated('a record body', at, done + k, 8 + padded, 'libxc', name, idx);
      };
      p.busy = run();
      p.busy.catch(() => {});
      return p.busy;
    };
    rec.payloadOffset = payloadOffset;
    rec.readPayloadInto = (target: Uint8Array) => {
      if (!(target instanceof Uint8Array) || target.length < payloadLen)
        return Promise.reject(usage(`readPayloadInto needs a target of at least ${payloadLen} bytes`));
      return take(target);
    };
    rec.skipPayload = () => take(null);
  }

  /** Any record other than PAGE_DATA: the whole padded body, decoded. */
  private async recordBody(h: RecordHead): Promise<RecordItem> {
    const { at, type, len, padded, name, idx, loc } = h;
    const body = await this.src.readExact(padded);
    if (body.length < padded)
      throw truncated('a record body', at, 8 + body.length, 8 + padded, h.layer, name, idx);
    const nz = firstNonZero(body, len, padded);
    const badPaddingAt = nz < 0 ? -1 : at + 8 + nz;
    const b = body.subarray(0, len);
    const base = {
      kind: 'record',
      type,
      name,
      index: idx,
      offset: at,
      size: 8 + padded,
      bodyLength: len,
      badPaddingAt,
    } as const;
    if (h.layer === 'libxc') return { ...base, layer: 'libxc', record: decodeLibxcBody(type, b, loc) };
    return { ...base, layer: 'libxl', record: decodeLibxlBody(type, b, loc) };
  }

  /** Layer changes after a record; true once the final END was read (and nothing follows it). */
  private async transition(h: RecordHead): Promise<boolean> {
    if (this.coloBack) return false;
    const { type } = h;
    let finalEnd = false;
    if (h.layer === 'libxl') {
      if (type === LibxlType.LIBXC_CONTEXT) this.layer = 'libxc';
      else if (type === LibxlType.END) finalEnd = true;
      else if (type === LibxlType.CHECKPOINT_END) this.afterCheckpointEnd = true;
      else if (type === LibxlType.CHECKPOINT_STATE) this.layer = 'libxc';
    } else if (type === LibxcType.END) {
      if (this.wrapped) this.layer = 'libxl';
      else finalEnd = true;
    } else if (type === LibxcType.CHECKPOINT && this.wrapped) this.layer = 'libxl';
    if (!finalEnd) return false;
    this.sum.endedBy = 'END';
    if ((this.o.afterEnd ?? 'check') === 'check') {
      const pos = this.src.position;
      const more = await this.src.peek(1);
      if (more.length > 0)
        throw new StreamError(StreamErrorCode.ERR_TRAILING_DATA, 'bytes follow the final END record', {
          offset: pos,
          layer: h.layer,
        });
    }
    return true;
  }
}

/** Create a reader over a path, fd, bytes, Readable / AsyncIterable, or ByteSource. */
export function readStream(input: StreamInput, opts: ReaderOptions = {}): StreamReader {
  return new StreamReader(input, opts);
}

/** Read everything into an array (eager PAGE_DATA data are copied so they stay valid). Small inputs only. */
export async function readAll(
  input: StreamInput,
  opts: Omit<ReaderOptions, 'lazyPageData'> = {},
): Promise<{ items: StreamItem[]; summary: ReaderSummary }> {
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
