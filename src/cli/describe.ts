// Decoded one-line summaries of stream items for `xenmig inspect` (text and JSON share the fields).
import {
  DOMAIN_TYPE_X86_HVM,
  DOMAIN_TYPE_X86_PV,
  PageType,
  type PageDataRecord,
  type StreamItem,
} from '../stream/index.js';

type StreamRecord = Extract<StreamItem, { kind: 'record' }>['record'];
import { parseDomainConfig } from '../toolstack/config.js';
import { jsonReplacer } from './util.js';
import { HvmParam } from '../xen/constants.js';

const PAGE_TYPE_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(PageType).map(([k, v]) => [v, k]),
);

/** HVM_PARAM_* names (xen/include/public/hvm/params.h). */
const HVM_PARAM_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(HvmParam).map(([k, v]) => [v, k]),
);

/** HVM save record type codes (xen/include/public/arch-x86/hvm/save.h). */
const HVM_SAVE_TYPES: Record<number, string> = {
  0: 'END',
  1: 'HEADER',
  2: 'CPU',
  3: 'PIC',
  4: 'IOAPIC',
  5: 'LAPIC',
  6: 'LAPIC_REGS',
  7: 'PCI_IRQ',
  8: 'ISA_IRQ',
  9: 'PCI_LINK',
  10: 'PIT',
  11: 'RTC',
  12: 'HPET',
  13: 'PMTIMER',
  14: 'MTRR',
  15: 'VIRIDIAN_DOMAIN',
  16: 'CPU_XSAVE',
  17: 'VIRIDIAN_VCPU',
  18: 'VMCE_VCPU',
  19: 'TSC_ADJUST',
  20: 'CPU_MSR',
};

const EMULATORS = ['unknown', 'qemu-traditional', 'qemu-upstream'];
const CHECKPOINT_STATES = ['NEW', 'SVM_SUSPENDED', 'SVM_READY', 'SVM_RESUMED'];
const TSC_MODES = ['default', 'always_emulate', 'native', 'native_paravirt', 'pvrdtscp'];

export interface Described {
  offset: number;
  index: number;
  layer: string;
  type: string;
  /** numeric record type (records only) */
  typeNumber?: number;
  /** body length (records) or header size */
  length: number;
  /** bytes occupied in the stream (record header + body + padding) */
  size: number;
  /** decoded fields */
  info: Record<string, unknown>;
  /** the human summary */
  summary: string;
}

/** Decodes the HVM context blob's save records: which types, which vCPU instances. */
export function hvmContextSummary(d: Uint8Array): {
  records: number;
  vcpus: number[];
  types: string[];
  ok: boolean;
} {
  const dv = new DataView(d.buffer, d.byteOffset, d.byteLength);
  const vcpus: number[] = [];
  const types = new Set<string>();
  let off = 0;
  let records = 0;
  while (off + 8 <= d.length) {
    const code = dv.getUint16(off, true);
    const inst = dv.getUint16(off + 2, true);
    const len = dv.getUint32(off + 4, true);
    records++;
    types.add(HVM_SAVE_TYPES[code] ?? `type${code}`);
    if (code === 2) vcpus.push(inst);
    off += 8 + len;
    if (code === 0) return { records, vcpus, types: [...types], ok: off <= d.length };
  }
  return { records, vcpus, types: [...types], ok: false };
}

export class PfnRanges {
  readonly ranges: [number, number][] = [];
  add(pfn: number): void {
    const last = this.ranges[this.ranges.length - 1];
    if (last && pfn === last[1] + 1) last[1] = pfn;
    else if (!(last && pfn >= last[0] && pfn <= last[1])) this.ranges.push([pfn, pfn]);
  }
  text(max = 6): string {
    const r = this.ranges.map(([a, b]) => (a === b ? hex(a) : `${hex(a)}-${hex(b)}`));
    return r.length <= max ? r.join(',') : `${r.slice(0, max).join(',')},… (${r.length} ranges)`;
  }
}

function hex(n: number | bigint): string {
  return '0x' + n.toString(16);
}

/** Running state an inspector needs across items (domain type, checkpoint numbers). */
export class Describer {
  private checkpoint = 0;

  describe(item: StreamItem): Described {
    const base = { offset: item.offset, index: item.index, layer: item.layer, type: item.name };
    const info: Record<string, unknown> = {};
    if (item.kind !== 'record') {
      const summary = headerSummary(item, info);
      return { ...base, length: item.size, size: item.size, info, summary };
    }
    const r = item.record;
    let summary = this.checkpointSummary(r, info) ?? recordSummary(r, info);
    if (item.badPaddingAt >= 0) {
      info.badPaddingAt = item.badPaddingAt;
      summary += ` (non-zero padding at ${item.badPaddingAt})`;
    }
    return { ...base, typeNumber: item.type, length: item.bodyLength, size: item.size, info, summary };
  }

  /** The records that number checkpoints; undefined for any other. */
  private checkpointSummary(r: StreamRecord, info: Record<string, unknown>): string | undefined {
    let summary: string | undefined;
    switch (r.name) {
      case 'CHECKPOINT':
        this.checkpoint++;
        info.checkpoint = this.checkpoint;
        summary = `checkpoint ${this.checkpoint}`;
        break;
      case 'CHECKPOINT_END':
        info.checkpoint = this.checkpoint;
        summary = `end of checkpoint ${this.checkpoint}`;
        break;
      case 'CHECKPOINT_STATE':
        info.controlId = r.controlId;
        summary = `control ${r.controlId} (${CHECKPOINT_STATES[r.controlId] ?? '?'}), checkpoint ${this.checkpoint}`;
        break;
    }
    return summary;
  }
}

/** The headers (xl, libxl, libxc image and domain). */
function headerSummary(item: Exclude<StreamItem, { kind: 'record' }>, info: Record<string, unknown>): string {
  let summary = '';
  switch (item.kind) {
    case 'xl-header': {
      const h = item.header;
      info.mandatoryFlags = h.mandatoryFlags;
      info.optionalFlags = h.optionalFlags;
      info.optionalDataLength = h.optionalData.length;
      summary = `flags ${hex(h.mandatoryFlags)}, ${h.optionalData.length} bytes of config`;
      if (h.configText !== undefined) {
        try {
          const c = parseDomainConfig(h.configText);
          info.config = { kind: c.kind, name: c.name, maxMemKb: c.maxMemKb, maxVcpus: c.maxVcpus };
          summary += `: ${c.kind}${c.name ? ` "${c.name}"` : ''}, ${Math.round(c.maxMemKb / 1024)} MiB, ${c.maxVcpus} vCPU${c.maxVcpus === 1 ? '' : 's'}`;
        } catch (e) {
          info.configError = (e as Error).message;
          summary += ` (unparsable: ${(e as Error).message})`;
        }
      }
      break;
    }
    case 'libxl-header':
      info.version = item.header.version;
      info.options = item.header.options;
      summary = `version ${item.header.version}, options ${hex(item.header.options)}${item.header.options & 2 ? ' (legacy)' : ''}`;
      break;
    case 'image-header':
      info.version = item.header.version;
      info.options = item.header.options;
      summary = `libxc stream version ${item.header.version}, ${item.header.options & 1 ? 'big' : 'little'}-endian`;
      break;
    case 'domain-header': {
      const h = item.header;
      const dt =
        h.type === DOMAIN_TYPE_X86_PV
          ? 'x86 PV'
          : h.type === DOMAIN_TYPE_X86_HVM
            ? 'x86 HVM'
            : `type ${h.type}`;
      Object.assign(info, { domainType: dt, pageShift: h.pageShift, xen: `${h.xenMajor}.${h.xenMinor}` });
      summary = `${dt}, page shift ${h.pageShift}, saved by Xen ${h.xenMajor}.${h.xenMinor}`;
      break;
    }
  }
  return summary;
}

/** Every record but the checkpoint ones. */
function recordSummary(r: StreamRecord, info: Record<string, unknown>): string {
  switch (r.name) {
    case 'PAGE_DATA':
      return pageDataSummary(r, info);
    case 'X86_PV_INFO':
      Object.assign(info, { guestWidth: r.guestWidth, ptLevels: r.ptLevels });
      return `guest width ${r.guestWidth} (${r.guestWidth * 8}-bit), ${r.ptLevels} page-table levels`;
    case 'X86_PV_P2M_FRAMES':
      Object.assign(info, { startPfn: r.startPfn, endPfn: r.endPfn, frames: r.frames.length });
      return `pfns ${hex(r.startPfn)}-${hex(r.endPfn)}, ${r.frames.length} frames`;
    case 'X86_PV_VCPU_BASIC':
    case 'X86_PV_VCPU_EXTENDED':
    case 'X86_PV_VCPU_XSAVE':
      Object.assign(info, { vcpu: r.vcpuId, contextBytes: r.context.length });
      return `vCPU ${r.vcpuId}, ${r.context.length} bytes`;
    case 'X86_PV_VCPU_MSRS':
      Object.assign(info, { vcpu: r.vcpuId, msrs: r.msrs.length });
      return `vCPU ${r.vcpuId}, ${r.msrs.length} MSRs`;
    case 'SHARED_INFO':
    case 'TOOLSTACK':
      return `${r.data.length} bytes`;
    case 'HVM_CONTEXT':
      return hvmContextRecordSummary(r.data, info);
    case 'HVM_PARAMS':
      return hvmParamsSummary(r.params, info);
    case 'X86_TSC_INFO':
      Object.assign(info, { mode: r.mode, khz: r.khz, nsec: r.nsec, incarnation: r.incarnation });
      return `mode ${r.mode} (${TSC_MODES[r.mode] ?? '?'}), ${r.khz} kHz, elapsed ${r.nsec} ns, incarnation ${r.incarnation}`;
    case 'X86_CPUID_POLICY':
      info.leaves = r.leaves.length;
      return `${r.leaves.length} CPUID leaves`;
    case 'X86_MSR_POLICY':
      info.msrs = r.msrs.length;
      return `${r.msrs.length} MSRs`;
    case 'CHECKPOINT_DIRTY_PFN_LIST':
      info.pfns = r.pfns.length;
      return `${r.pfns.length} pfns`;
    case 'EMULATOR_XENSTORE_DATA':
      return emulatorSummary(r, info, { entries: r.entries.length }, `${r.entries.length} xenstore entries`);
    case 'EMULATOR_CONTEXT':
      return emulatorSummary(r, info, { bytes: r.data.length }, `${r.data.length} bytes`);
    case 'UNKNOWN':
      info.optional = (r.type & 0x80000000) !== 0;
      return `unknown ${info.optional ? 'optional ' : ''}record ${hex(r.type)}`;
    default:
      return '';
  }
}

function hvmContextRecordSummary(data: Uint8Array, info: Record<string, unknown>): string {
  const c = hvmContextSummary(data);
  Object.assign(info, { bytes: data.length, vcpus: c.vcpus, saveRecords: c.records, saveTypes: c.types });
  return `${data.length} bytes, ${c.records} save records, vCPUs ${c.vcpus.join(',') || 'none'}${c.ok ? '' : ' (no END: malformed)'}`;
}

function hvmParamsSummary(
  params: readonly { index: bigint; value: bigint }[],
  info: Record<string, unknown>,
): string {
  const ps = params.map((p) => ({
    index: Number(p.index),
    name: HVM_PARAM_NAMES[Number(p.index)] ?? `param${p.index}`,
    value: p.value,
  }));
  info.params = ps;
  return `${ps.length} params: ` + ps.map((p) => `${p.name}=${hex(p.value)}`).join(' ');
}

/** The two emulator records: which emulator and instance, then what the record holds. */
function emulatorSummary(
  r: { emulatorId: number; index: number },
  info: Record<string, unknown>,
  held: Record<string, number>,
  heldText: string,
): string {
  Object.assign(info, {
    emulator: EMULATORS[r.emulatorId] ?? r.emulatorId,
    emulatorId: r.emulatorId,
    instance: r.index,
  });
  Object.assign(info, held);
  return `emulator ${r.emulatorId} (${EMULATORS[r.emulatorId] ?? '?'}) #${r.index}, ${heldText}`;
}

function pageDataSummary(r: PageDataRecord, info: Record<string, unknown>): string {
  const types: Record<string, number> = {};
  const ranges = new PfnRanges();
  for (let i = 0; i < r.count; i++) {
    const t = PAGE_TYPE_NAMES[r.types[i]!] ?? `0x${r.types[i]!.toString(16)}`;
    types[t] = (types[t] ?? 0) + 1;
    ranges.add(r.pfns[i]!);
  }
  Object.assign(info, { count: r.count, dataPages: r.dataPages, pageTypes: types, pfnRanges: ranges.ranges });
  return pageSummary(r.count, r.dataPages, ranges, types, 1);
}

export function pageSummary(
  count: number,
  dataPages: number,
  ranges: PfnRanges,
  types: Record<string, number>,
  records: number,
): string {
  const t = Object.entries(types)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  return `${records > 1 ? `${records} records, ` : ''}${count} pfns (${dataPages} with data) pfns ${ranges.text()} types ${t}`;
}

/** Consecutive PAGE_DATA records folded into one line. */
export class PageFold {
  records = 0;
  count = 0;
  dataPages = 0;
  length = 0;
  size = 0;
  first: Described | null = null;
  lastIndex = 0;
  readonly types: Record<string, number> = {};
  readonly ranges = new PfnRanges();

  add(d: Described): void {
    this.first ??= d;
    this.records++;
    this.lastIndex = d.index;
    this.count += d.info.count as number;
    this.dataPages += d.info.dataPages as number;
    this.length += d.length;
    this.size += d.size;
    for (const [k, v] of Object.entries(d.info.pageTypes as Record<string, number>))
      this.types[k] = (this.types[k] ?? 0) + v;
    for (const [a, b] of d.info.pfnRanges as [number, number][])
      for (let p = a; p <= b; p++) this.ranges.add(p);
  }

  result(): Described {
    const f = this.first!;
    return {
      offset: f.offset,
      index: f.index,
      layer: f.layer,
      type: 'PAGE_DATA',
      typeNumber: 1,
      length: this.length,
      size: this.size,
      info: {
        records: this.records,
        lastIndex: this.lastIndex,
        count: this.count,
        dataPages: this.dataPages,
        pageTypes: this.types,
        pfnRanges: this.ranges.ranges,
      },
      summary: pageSummary(this.count, this.dataPages, this.ranges, this.types, this.records),
    };
  }
}

export function formatText(d: Described): string {
  const off = `${d.offset.toString().padStart(10)} 0x${d.offset.toString(16).padStart(8, '0')}`;
  return `${off}  ${d.layer.padEnd(5)}  ${d.type.padEnd(24)} ${String(d.length).padStart(9)}  ${d.summary}`;
}

export function formatJson(d: Described): string {
  return JSON.stringify(
    {
      offset: d.offset,
      index: d.index,
      layer: d.layer,
      type: d.type,
      ...(d.typeNumber !== undefined ? { typeNumber: d.typeNumber } : {}),
      length: d.length,
      size: d.size,
      ...d.info,
      summary: d.summary,
    },
    jsonReplacer,
  );
}
