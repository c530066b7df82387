// Validator: enforces the stream rules on the reader's items (separate from parsing).
//
// Strictness choices (documented in the README too):
// - Non-zero reserved fields and non-zero record padding are ERRORS by default (ERR_RESERVED /
//   ERR_NONZERO_PADDING), as in Xen's Python stream verifier; libxc restore ignores both, so
//   `reserved: 'warn'` / `padding: 'warn'` downgrade them to warnings for interoperability.
// - The stream type defaults to 'plain': a CHECKPOINT then is ERR_ORDER (as libxc restore).
//   'remus' / 'colo' expect checkpoints and accept EOF at a record boundary as the end; 'auto'
//   accepts both shapes.
// - HVM_PARAMS may come before or after HVM_CONTEXT (the spec says before; the sender does after).
// - v2 streams: STATIC_DATA_END is implied at the first X86_PV_P2M_FRAMES (PV) / PAGE_DATA (HVM);
//   CPU policy records are v3-only. v3: PAGE_DATA, P2M_FRAMES and every end-of-checkpoint record
//   before STATIC_DATA_END is ERR_ORDER.
// - Unknown optional records are accepted with a warning (libxl's own reader would reject them).
// - A Domain header with xen_major 0 (legacy-converted stream) is accepted with a warning.
import {
  DOMAIN_TYPE_X86_HVM,
  DOMAIN_TYPE_X86_PV,
  PAGE_SHIFT,
  PAGE_SIZE,
  SHARED_INFO_SIZE,
  VCPU_BASIC_SIZE_32,
  VCPU_BASIC_SIZE_64,
  VCPU_EXTENDED_MAX,
  VCPU_XSAVE_MIN,
  type Layer,
} from './constants.js';
import { StreamError, StreamErrorCode, type StreamWarning } from './errors.js';
import type { LibxcRecord } from './libxc.js';
import type { LibxlRecord } from './libxl.js';
import {
  StreamReader,
  type ReaderOptions,
  type ReaderSummary,
  type RecordItem,
  type StreamItem,
} from './reader.js';
import type { StreamInput } from './source.js';

export type StreamType = 'plain' | 'remus' | 'colo' | 'auto';

export interface ValidatorOptions {
  /** Default 'plain'. */
  streamType?: StreamType;
  /** Non-zero reserved fields: 'error' (default) or 'warn'. */
  reserved?: 'error' | 'warn';
  /** Non-zero padding bytes: 'error' (default) or 'warn'. */
  padding?: 'error' | 'warn';
  /** The items are a COLO back channel (CHECKPOINT_STATE / CHECKPOINT_DIRTY_PFN_LIST only). */
  backChannel?: boolean;
}

export interface ValidationFacts {
  /** libxc format version (2 or 3). */
  version: number | null;
  /** Domain header type: 1 PV, 2 HVM. */
  domainType: number | null;
  xenVersion: [number, number] | null;
  guestWidth: number | null;
  ptLevels: number | null;
  /** Name of the first libxc record after the headers. */
  firstLibxcRecord: string | null;
  /** Record counts by "layer:NAME". */
  counts: Record<string, number>;
  pageEntries: number;
  dataPages: number;
  checkpoints: number;
  /** Stream ended (EOF) inside a checkpoint that was not completed (Remus/COLO failover point). */
  partialCheckpoint: boolean;
  /** Final END seen. */
  ended: boolean;
  bytes: number;
}

type Segment = 'pre' | 'libxc' | 'post' | 'ckpt' | 'ckptEnd' | 'done';

/** Warnings kept per code; later ones are only counted (`suppressedWarnings`), so memory stays flat. */
export const MAX_WARNINGS_PER_CODE = 20;
/** Distinct unknown record types counted by name in `facts.counts`; the rest share one key per layer. */
const MAX_UNKNOWN_COUNT_KEYS = 32;

export class StreamValidator {
  readonly warnings: StreamWarning[] = [];
  /** Warnings not kept in `warnings` (over MAX_WARNINGS_PER_CODE), by code. */
  readonly suppressedWarnings: Partial<Record<StreamErrorCode, number>> = {};
  private readonly warningsByCode = new Map<StreamErrorCode, number>();
  private unknownKeys = 0;
  readonly facts: ValidationFacts = {
    version: null,
    domainType: null,
    xenVersion: null,
    guestWidth: null,
    ptLevels: null,
    firstLibxcRecord: null,
    counts: {},
    pageEntries: 0,
    dataPages: 0,
    checkpoints: 0,
    partialCheckpoint: false,
    ended: false,
    bytes: 0,
  };
  private readonly type: StreamType;
  private readonly opts: ValidatorOptions;

  private wrapped = false;
  private seg: Segment = 'pre';
  private libxcContext = false;
  private headers = false; // image + domain header seen
  private sde = false;
  private sdeExplicit = false;
  private p2m = false;
  private cpuid = false;
  private msr = false;
  private pvInfo = false;
  private verify = false;
  private inCheckpoint = false; // libxc records since the last CHECKPOINT (or start)
  private finalEnd = false;
  private libxcEnd = false;

  constructor(opts: ValidatorOptions = {}) {
    this.opts = opts;
    this.type = opts.streamType ?? 'plain';
  }

  private err(code: StreamErrorCode, detail: string, item: StreamItem, offset = item.offset): StreamError {
    return new StreamError(code, detail, {
      offset,
      recordIndex: item.index,
      recordType: item.name,
      layer: item.layer,
    });
  }

  private soft(
    kind: 'reserved' | 'padding',
    code: StreamErrorCode,
    detail: string,
    item: StreamItem,
    offset: number,
  ): void {
    if ((this.opts[kind] ?? 'error') === 'error') throw this.err(code, detail, item, offset);
    if (this.tooMany(code)) return;
    this.warnings.push({
      code,
      message: detail,
      offset,
      recordIndex: item.index,
      recordType: item.name,
      layer: item.layer,
    });
  }

  private tooMany(code: StreamErrorCode): boolean {
    const n = (this.warningsByCode.get(code) ?? 0) + 1;
    this.warningsByCode.set(code, n);
    if (n <= MAX_WARNINGS_PER_CODE) return false;
    this.suppressedWarnings[code] = (this.suppressedWarnings[code] ?? 0) + 1;
    return true;
  }

  private warn(code: StreamErrorCode, detail: string, item: StreamItem): void {
    if (this.tooMany(code)) return;
    this.warnings.push({
      code,
      message: detail,
      offset: item.offset,
      recordIndex: item.index,
      recordType: item.name,
      layer: item.layer,
    });
  }

  private reserved(value: number | bigint, item: StreamItem, offset: number, what: string): void {
    if (value !== 0 && value !== 0n)
      this.soft('reserved', StreamErrorCode.ERR_RESERVED, `${what} is not zero`, item, offset);
  }

  private get checkpointed(): boolean {
    return (
      this.type === 'remus' || this.type === 'colo' || (this.type === 'auto' && this.facts.checkpoints > 0)
    );
  }

  /** Check one item; throws StreamError on the first violation. */
  check(item: StreamItem): void {
    this.facts.bytes = item.offset + item.size;
    if (item.kind !== 'record') return this.checkHeader(item);
    let key = `${item.layer}:${item.name}`;
    if (
      !(key in this.facts.counts) &&
      item.name.startsWith('UNKNOWN(') &&
      ++this.unknownKeys > MAX_UNKNOWN_COUNT_KEYS
    )
      key = `${item.layer}:UNKNOWN(other types)`;
    this.facts.counts[key] = (this.facts.counts[key] ?? 0) + 1;
    if (item.badPaddingAt >= 0)
      this.soft(
        'padding',
        StreamErrorCode.ERR_NONZERO_PADDING,
        'record padding is not zero',
        item,
        item.badPaddingAt,
      );
    if (this.finalEnd) throw this.err(StreamErrorCode.ERR_ORDER, 'record after the final END', item);
    if (this.opts.backChannel) return this.checkBackChannel(item);
    if (item.layer === 'libxl') this.checkLibxl(item, item.record);
    else this.checkLibxc(item, item.record);
  }

  private checkHeader(item: Exclude<StreamItem, RecordItem>): void {
    switch (item.kind) {
      case 'xl-header':
        return;
      case 'libxl-header':
        this.wrapped = true;
        this.reserved(item.header.options & ~0x3, item, item.offset + 12, 'libxl header options bits 2..31');
        return;
      case 'image-header': {
        const h = item.header;
        if (this.wrapped && !this.libxcContext)
          throw this.err(StreamErrorCode.ERR_ORDER, 'libxc stream without LIBXC_CONTEXT', item);
        this.facts.version = h.version;
        this.reserved(h.options & ~1, item, item.offset + 16, 'image header options bits 1..15');
        this.reserved(h.reserved1, item, item.offset + 18, 'image header reserved u16');
        this.reserved(h.reserved2, item, item.offset + 20, 'image header reserved u32');
        return;
      }
      case 'domain-header': {
        const h = item.header;
        if (h.type !== DOMAIN_TYPE_X86_PV && h.type !== DOMAIN_TYPE_X86_HVM)
          throw this.err(
            StreamErrorCode.ERR_BAD_HEADER,
            `domain type ${h.type} (expected 1 x86 PV or 2 x86 HVM)`,
            item,
            item.offset,
          );
        if (h.pageShift !== PAGE_SHIFT)
          throw this.err(
            StreamErrorCode.ERR_BAD_HEADER,
            `page_shift ${h.pageShift} (expected 12)`,
            item,
            item.offset + 4,
          );
        this.reserved(h.reserved, item, item.offset + 6, 'domain header reserved u16');
        if (h.xenMajor === 0)
          this.warn(
            StreamErrorCode.ERR_BAD_HEADER,
            'xen_major 0: stream produced by the legacy converter',
            item,
          );
        this.facts.domainType = h.type;
        this.facts.xenVersion = [h.xenMajor, h.xenMinor];
        this.headers = true;
        this.seg = 'libxc';
        return;
      }
    }
  }

  private checkBackChannel(item: RecordItem): void {
    const r = item.record;
    if (r.name === 'CHECKPOINT_STATE') {
      if (r.controlId < 1 || r.controlId > 3)
        throw this.err(
          StreamErrorCode.ERR_BAD_VALUE,
          `CHECKPOINT_STATE control_id ${r.controlId} is not valid on the back channel (1..3)`,
          item,
          item.offset + 8,
        );
      return;
    }
    if (r.name === 'CHECKPOINT_DIRTY_PFN_LIST') return;
    throw this.err(StreamErrorCode.ERR_ORDER, `${item.name} is not valid on the COLO back channel`, item);
  }

  private checkLibxl(item: RecordItem, r: LibxlRecord): void {
    const seg = this.seg;
    switch (r.name) {
      case 'LIBXC_CONTEXT':
        if (this.libxcContext) throw this.err(StreamErrorCode.ERR_DUPLICATE, 'second LIBXC_CONTEXT', item);
        this.libxcContext = true;
        return;
      case 'END':
        if (seg !== 'post')
          throw this.err(
            StreamErrorCode.ERR_ORDER,
            this.libxcContext ? 'libxl END before the libxc END' : 'libxl END without a libxc stream',
            item,
          );
        this.finalEnd = true;
        this.facts.ended = true;
        this.seg = 'done';
        return;
      case 'EMULATOR_XENSTORE_DATA':
      case 'EMULATOR_CONTEXT':
        if (seg !== 'post' && seg !== 'ckpt')
          throw this.err(
            StreamErrorCode.ERR_ORDER,
            `${r.name} outside the libxl part after the libxc stream or a checkpoint`,
            item,
          );
        if (this.facts.domainType !== DOMAIN_TYPE_X86_HVM)
          throw this.err(StreamErrorCode.ERR_DOMAIN_TYPE, `${r.name} in a non-HVM stream`, item);
        if (r.emulatorId > 2)
          throw this.err(
            StreamErrorCode.ERR_BAD_VALUE,
            `emulator id ${r.emulatorId} (expected 0..2)`,
            item,
            item.offset + 8,
          );
        return;
      case 'CHECKPOINT_END':
        if (seg !== 'ckpt')
          throw this.err(
            StreamErrorCode.ERR_ORDER,
            'CHECKPOINT_END without a preceding libxc CHECKPOINT',
            item,
          );
        this.seg = 'ckptEnd';
        return;
      case 'CHECKPOINT_STATE':
        if (seg !== 'ckptEnd')
          throw this.err(StreamErrorCode.ERR_ORDER, 'CHECKPOINT_STATE not right after CHECKPOINT_END', item);
        if (this.type === 'remus')
          throw this.err(StreamErrorCode.ERR_ORDER, 'CHECKPOINT_STATE in a Remus stream (COLO only)', item);
        if (r.controlId !== 0)
          throw this.err(
            StreamErrorCode.ERR_BAD_VALUE,
            `CHECKPOINT_STATE control_id ${r.controlId} in the forward stream (expected 0 NEW)`,
            item,
            item.offset + 8,
          );
        this.seg = 'libxc';
        return;
      case 'UNKNOWN':
        this.warn(
          StreamErrorCode.WARN_UNKNOWN_OPTIONAL_RECORD,
          `unknown optional libxl record 0x${r.type.toString(16)} (libxl itself rejects unknown records)`,
          item,
        );
        return;
    }
  }

  private needSde(item: RecordItem): void {
    if (!this.sde && this.facts.version !== 2)
      throw this.err(StreamErrorCode.ERR_ORDER, `${item.name} before STATIC_DATA_END`, item);
  }
  private needDomain(item: RecordItem, type: number): void {
    if (this.facts.domainType !== type)
      throw this.err(
        StreamErrorCode.ERR_DOMAIN_TYPE,
        `${item.name} is only valid in ${type === DOMAIN_TYPE_X86_PV ? 'x86 PV' : 'x86 HVM'} streams`,
        item,
      );
  }
  private needPvInfo(item: RecordItem): void {
    if (!this.pvInfo) throw this.err(StreamErrorCode.ERR_ORDER, `${item.name} before X86_PV_INFO`, item);
  }
  private needP2m(item: RecordItem): void {
    if (!this.p2m) throw this.err(StreamErrorCode.ERR_ORDER, `${item.name} before X86_PV_P2M_FRAMES`, item);
  }
  private once(seen: boolean, item: RecordItem): void {
    if (seen) throw this.err(StreamErrorCode.ERR_DUPLICATE, `second ${item.name}`, item);
  }

  private checkLibxc(item: RecordItem, r: LibxcRecord): void {
    this.checkLibxcPlace(item, r);
    switch (r.name) {
      case 'X86_PV_INFO':
        return this.checkPvInfo(item, r);
      case 'X86_CPUID_POLICY':
      case 'X86_MSR_POLICY':
        return this.checkPolicy(item, r.name);
      case 'STATIC_DATA_END':
        return this.checkStaticDataEnd(item);
      case 'X86_PV_P2M_FRAMES':
        return this.checkP2mFrames(item, r);
      case 'PAGE_DATA':
        return this.checkPageData(item, r);
      case 'X86_PV_VCPU_BASIC':
      case 'X86_PV_VCPU_EXTENDED':
      case 'X86_PV_VCPU_XSAVE':
      case 'X86_PV_VCPU_MSRS':
        return this.checkPvVcpu(item, r);
      case 'SHARED_INFO':
        return this.checkSharedInfo(item);
      case 'X86_TSC_INFO':
        this.needSde(item);
        return this.reserved(r.reserved, item, item.offset + 28, 'X86_TSC_INFO reserved word');
      case 'HVM_CONTEXT':
      case 'HVM_PARAMS':
        return this.checkHvmRecord(item, r);
      case 'TOOLSTACK':
        throw this.err(
          StreamErrorCode.ERR_OBSOLETE_RECORD,
          'TOOLSTACK records are obsolete (never sent by a release; libxc restore rejects them)',
          item,
        );
      case 'VERIFY':
        return this.checkVerify(item);
      case 'CHECKPOINT':
        return this.checkCheckpoint(item);
      case 'CHECKPOINT_DIRTY_PFN_LIST':
        throw this.err(
          StreamErrorCode.ERR_ORDER,
          'CHECKPOINT_DIRTY_PFN_LIST in the forward stream (COLO back channel only)',
          item,
        );
      case 'END':
        return this.checkLibxcEnd();
      case 'UNKNOWN':
        this.warn(
          StreamErrorCode.WARN_UNKNOWN_OPTIONAL_RECORD,
          `unknown optional libxc record 0x${r.type.toString(16)} skipped`,
          item,
        );
        return;
    }
  }

  private checkStaticDataEnd(item: RecordItem): void {
    if (this.sdeExplicit || this.sde)
      throw this.err(StreamErrorCode.ERR_DUPLICATE, 'second STATIC_DATA_END', item);
    if (this.facts.domainType === DOMAIN_TYPE_X86_PV && !this.pvInfo)
      throw this.err(StreamErrorCode.ERR_ORDER, 'STATIC_DATA_END before X86_PV_INFO', item);
    this.sde = this.sdeExplicit = true;
  }

  private checkSharedInfo(item: RecordItem): void {
    this.needDomain(item, DOMAIN_TYPE_X86_PV);
    this.needPvInfo(item);
    this.needSde(item);
    if (item.bodyLength !== SHARED_INFO_SIZE)
      throw this.err(
        StreamErrorCode.ERR_BAD_LENGTH,
        `SHARED_INFO body_length ${item.bodyLength} (expected 4096)`,
        item,
      );
  }

  private checkHvmRecord(item: RecordItem, r: LibxcRecord): void {
    this.needDomain(item, DOMAIN_TYPE_X86_HVM);
    this.needSde(item);
    if (r.name === 'HVM_PARAMS')
      this.reserved(r.reserved, item, item.offset + 12, 'HVM_PARAMS reserved word');
    else if (item.bodyLength === 0) throw this.err(StreamErrorCode.ERR_BAD_LENGTH, 'empty HVM_CONTEXT', item);
  }

  private checkVerify(item: RecordItem): void {
    this.once(this.verify, item);
    if (this.checkpointed || this.type !== 'plain')
      throw this.err(StreamErrorCode.ERR_ORDER, 'VERIFY in a checkpointed stream', item);
    this.needSde(item);
    this.verify = true;
  }

  /** libxc's END: the stream's end, or in an xl stream the start of what follows the libxc part. */
  private checkLibxcEnd(): void {
    this.libxcEnd = true;
    if (this.wrapped) this.seg = 'post';
    else {
      this.finalEnd = true;
      this.facts.ended = true;
      this.seg = 'done';
    }
  }

  /** Where any libxc record may stand: after the headers, before END, only PAGE_DATA after VERIFY. */
  private checkLibxcPlace(item: RecordItem, r: LibxcRecord): void {
    if (this.wrapped) {
      if (this.seg === 'ckptEnd') {
        if (this.type === 'colo')
          throw this.err(
            StreamErrorCode.ERR_ORDER,
            'libxc records resume without a CHECKPOINT_STATE (COLO)',
            item,
          );
        this.seg = 'libxc';
      }
    }
    if (!this.headers)
      throw this.err(StreamErrorCode.ERR_ORDER, 'libxc record before the libxc headers', item);
    this.facts.firstLibxcRecord ??= item.name;
    if (this.verify && r.name !== 'PAGE_DATA' && r.name !== 'END')
      throw this.err(
        StreamErrorCode.ERR_ORDER,
        `${item.name} after VERIFY (only PAGE_DATA and END may follow)`,
        item,
      );
    if (this.libxcEnd) throw this.err(StreamErrorCode.ERR_ORDER, 'libxc record after the libxc END', item);
    if (r.name !== 'CHECKPOINT' && r.name !== 'END') this.inCheckpoint = true;
  }

  private checkPvInfo(item: RecordItem, r: Extract<LibxcRecord, { name: 'X86_PV_INFO' }>): void {
    const off = item.offset;
    this.needDomain(item, DOMAIN_TYPE_X86_PV);
    this.once(this.pvInfo, item);
    if (this.sde) throw this.err(StreamErrorCode.ERR_ORDER, 'X86_PV_INFO after the static data', item);
    if (!((r.guestWidth === 4 && r.ptLevels === 3) || (r.guestWidth === 8 && r.ptLevels === 4))) {
      const msg = `X86_PV_INFO guest_width ${r.guestWidth} / pt_levels ${r.ptLevels} (valid: 4/3, 8/4)`;
      throw this.err(StreamErrorCode.ERR_BAD_VALUE, msg, item, off + 8);
    }
    this.reserved(r.reserved, item, off + 10, 'X86_PV_INFO reserved bytes');
    this.pvInfo = true;
    this.facts.guestWidth = r.guestWidth;
    this.facts.ptLevels = r.ptLevels;
  }

  private checkPolicy(item: RecordItem, name: 'X86_CPUID_POLICY' | 'X86_MSR_POLICY'): void {
    const cpuid = name === 'X86_CPUID_POLICY';
    this.once(cpuid ? this.cpuid : this.msr, item);
    if (this.facts.version === 2)
      throw this.err(StreamErrorCode.ERR_ORDER, `${name} in a v2 stream (v3 only)`, item);
    if (this.sde) throw this.err(StreamErrorCode.ERR_ORDER, `${name} after STATIC_DATA_END`, item);
    if (item.bodyLength === 0) throw this.err(StreamErrorCode.ERR_BAD_LENGTH, `empty ${name}`, item);
    if (cpuid) this.cpuid = true;
    else this.msr = true;
  }

  private checkP2mFrames(item: RecordItem, r: Extract<LibxcRecord, { name: 'X86_PV_P2M_FRAMES' }>): void {
    this.needDomain(item, DOMAIN_TYPE_X86_PV);
    this.needPvInfo(item);
    this.once(this.p2m, item);
    if (!this.sde) {
      if (this.facts.version !== 2)
        throw this.err(StreamErrorCode.ERR_ORDER, 'X86_PV_P2M_FRAMES before STATIC_DATA_END', item);
      this.sde = true;
    }
    const range = `0x${r.startPfn.toString(16)}..0x${r.endPfn.toString(16)}`;
    if (r.startPfn > r.endPfn) {
      const msg = `p2m_start_pfn 0x${r.startPfn.toString(16)} > p2m_end_pfn 0x${r.endPfn.toString(16)}`;
      throw this.err(StreamErrorCode.ERR_BAD_VALUE, msg, item, item.offset + 8);
    }
    const fpp = PAGE_SIZE / this.facts.guestWidth!;
    const want = 8 + 8 * (Math.floor(r.endPfn / fpp) + 1 - Math.floor(r.startPfn / fpp));
    if (item.bodyLength !== want) {
      const msg = `X86_PV_P2M_FRAMES body_length ${item.bodyLength} (expected ${want} for pfns ${range})`;
      throw this.err(StreamErrorCode.ERR_BAD_LENGTH, msg, item);
    }
    this.p2m = true;
  }

  private checkPageData(item: RecordItem, r: Extract<LibxcRecord, { name: 'PAGE_DATA' }>): void {
    const pv = this.facts.domainType === DOMAIN_TYPE_X86_PV;
    if (!this.sde) {
      if (this.facts.version !== 2)
        throw this.err(StreamErrorCode.ERR_ORDER, 'PAGE_DATA before STATIC_DATA_END', item);
      if (!pv) this.sde = true;
    }
    if (pv) {
      this.needPvInfo(item);
      this.needP2m(item);
    }
    this.reserved(r.reserved, item, item.offset + 12, 'PAGE_DATA reserved word');
    if (r.pfnReserved) {
      const i = r.pfnReserved.findIndex((x) => x !== 0);
      this.reserved(
        r.pfnReserved[i]!,
        item,
        item.offset + 16 + 8 * i,
        `PAGE_DATA pfn[${i}] reserved bits 59..52`,
      );
    }
    this.facts.pageEntries += r.count;
    this.facts.dataPages += r.dataPages;
  }

  private checkPvVcpu(item: RecordItem, r: Extract<LibxcRecord, { vcpuId: number }>): void {
    const off = item.offset;
    this.needDomain(item, DOMAIN_TYPE_X86_PV);
    this.needPvInfo(item);
    this.needSde(item);
    this.needP2m(item);
    this.reserved(r.reserved, item, off + 12, `${r.name} reserved word`);
    const blob = item.bodyLength - 8;
    if (blob <= 0) return;
    const bad = (msg: string) => this.err(StreamErrorCode.ERR_BAD_LENGTH, msg, item);
    if (r.name === 'X86_PV_VCPU_BASIC') {
      const want = this.facts.guestWidth === 8 ? VCPU_BASIC_SIZE_64 : VCPU_BASIC_SIZE_32;
      if (blob !== want) throw bad(`X86_PV_VCPU_BASIC context of ${blob} bytes (expected ${want})`);
    } else if (r.name === 'X86_PV_VCPU_EXTENDED') {
      if (blob > VCPU_EXTENDED_MAX) throw bad(`X86_PV_VCPU_EXTENDED context of ${blob} bytes (max 128)`);
    } else if (r.name === 'X86_PV_VCPU_XSAVE') {
      if (blob < VCPU_XSAVE_MIN) throw bad(`X86_PV_VCPU_XSAVE context of ${blob} bytes (min 16)`);
    } else if (r.name === 'X86_PV_VCPU_MSRS') {
      r.msrs.forEach((m, i) =>
        this.reserved(m.reserved, item, off + 16 + 16 * i + 4, `X86_PV_VCPU_MSRS entry ${i} reserved`),
      );
    }
  }

  private checkCheckpoint(item: RecordItem): void {
    if (this.type === 'plain')
      throw this.err(StreamErrorCode.ERR_ORDER, 'CHECKPOINT in a plain stream', item);
    this.needSde(item);
    if (this.facts.domainType === DOMAIN_TYPE_X86_PV) this.needP2m(item);
    this.facts.checkpoints++;
    this.inCheckpoint = false;
    if (this.wrapped) this.seg = 'ckpt';
  }

  /** Call after the reader finished; checks the stream's end. Returns the facts. */
  finish(summary: Pick<ReaderSummary, 'endedBy' | 'bytes'>): ValidationFacts {
    this.facts.bytes = summary.bytes;
    if (this.opts.backChannel || this.finalEnd) return this.facts;
    const layer: Layer = this.wrapped ? 'libxl' : 'libxc';
    if (this.checkpointed && this.facts.checkpoints > 0) {
      this.facts.partialCheckpoint = this.inCheckpoint || this.seg === 'ckpt';
      return this.facts;
    }
    throw new StreamError(
      StreamErrorCode.ERR_MISSING_END,
      this.checkpointed
        ? 'checkpointed stream ended before its first complete checkpoint'
        : `stream ended without its ${this.wrapped ? 'libxl' : 'libxc'} END record`,
      { offset: summary.bytes, layer },
    );
  }
}

export interface ValidationReport {
  facts: ValidationFacts;
  /** the first MAX_WARNINGS_PER_CODE warnings of each code */
  warnings: StreamWarning[];
  /** how many more of each code there were */
  suppressedWarnings: Partial<Record<StreamErrorCode, number>>;
  summary: ReaderSummary;
}

/**
 * Read and validate a whole stream. PAGE_DATA payloads are skipped, not buffered (lazy mode), so
 * memory stays at the reader's read-ahead. Throws the first StreamError.
 */
export async function validateStream(
  input: StreamInput,
  opts: ValidatorOptions & Omit<ReaderOptions, 'lazyPageData'> = {},
): Promise<ValidationReport> {
  const reader = new StreamReader(input, { ...opts, lazyPageData: true });
  let v: StreamValidator | null = null;
  for await (const item of reader) {
    v ??= new StreamValidator({
      ...opts,
      backChannel: opts.backChannel ?? reader.summary.format === 'colo-back',
    });
    v.check(item);
  }
  v ??= new StreamValidator({
    ...opts,
    backChannel: opts.backChannel ?? reader.summary.format === 'colo-back',
  });
  const facts = v.finish(reader.summary);
  return { facts, warnings: v.warnings, suppressedWarnings: v.suppressedWarnings, summary: reader.summary };
}
