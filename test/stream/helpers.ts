// Shared helpers for the stream tests: vector location, small stream builders, chunking.
import {
  encodeDomainHeader,
  encodeImageHeader,
  encodeLibxcRecord,
  encodeLibxlHeader,
  encodeLibxlRecord,
  encodeXlHeader,
  concatBytes,
  type LibxcRecord,
  type LibxlRecord,
  type StreamItem,
  StreamReader,
  type ReaderOptions,
  StreamValidator,
  type ValidatorOptions,
  type StreamInput,
} from '../../src/stream/index.js';

export { VECTORS } from '../fixtures/vectors.js';

export function page(fill: number): Uint8Array {
  return new Uint8Array(4096).fill(fill);
}

/** A PAGE_DATA record for (pfn, type) pairs; data pages filled with pfn & 0xff. */
export function pageData(entries: [number, number][]): LibxcRecord {
  const dataEntries = entries.filter(([, t]) => t <= 4 || (t >= 9 && t <= 12));
  const data = new Uint8Array(dataEntries.length * 4096);
  dataEntries.forEach(([pfn], i) => data.fill(pfn & 0xff, i * 4096, (i + 1) * 4096));
  return {
    name: 'PAGE_DATA',
    count: entries.length,
    reserved: 0,
    pfns: Float64Array.from(entries.map((e) => e[0])),
    types: Uint8Array.from(entries.map((e) => e[1])),
    dataPages: dataEntries.length,
    data,
  };
}

export type Part = Uint8Array | { xc: LibxcRecord } | { xl: LibxlRecord };
export function build(parts: Part[]): Uint8Array {
  return concatBytes(
    parts.map((p) =>
      p instanceof Uint8Array ? p : 'xc' in p ? encodeLibxcRecord(p.xc) : encodeLibxlRecord(p.xl),
    ),
  );
}

export const IHDR3 = encodeImageHeader({ version: 3 });
export const IHDR2 = encodeImageHeader({ version: 2 });
export const DHDR_PV = encodeDomainHeader({ type: 1, pageShift: 12, reserved: 0, xenMajor: 4, xenMinor: 17 });
export const DHDR_HVM = encodeDomainHeader({
  type: 2,
  pageShift: 12,
  reserved: 0,
  xenMajor: 4,
  xenMinor: 17,
});
export const LIBXL_HDR = encodeLibxlHeader();
export const XL_HDR = encodeXlHeader({ configText: '{"c_info":{}}\n' });

export const PV_INFO: LibxcRecord = { name: 'X86_PV_INFO', guestWidth: 8, ptLevels: 4, reserved: 0 };
export const P2M: LibxcRecord = {
  name: 'X86_PV_P2M_FRAMES',
  startPfn: 0,
  endPfn: 15,
  frames: new BigUint64Array([7n]),
};
export const SDE: LibxcRecord = { name: 'STATIC_DATA_END' };
export const END: LibxcRecord = { name: 'END' };
export const TSC: LibxcRecord = {
  name: 'X86_TSC_INFO',
  mode: 0,
  khz: 2_000_000,
  nsec: 123456789n,
  incarnation: 1,
  reserved: 0,
};
export const CPUID: LibxcRecord = {
  name: 'X86_CPUID_POLICY',
  leaves: [{ leaf: 0, subleaf: 0xffffffff, a: 0xd, b: 1, c: 2, d: 3 }],
};
export const MSRP: LibxcRecord = { name: 'X86_MSR_POLICY', msrs: [{ idx: 0xce, flags: 0, val: 1n << 40n }] };
export const SHINFO: LibxcRecord = { name: 'SHARED_INFO', data: page(0x5a) };
export const VCPU: LibxcRecord = {
  name: 'X86_PV_VCPU_BASIC',
  vcpuId: 0,
  reserved: 0,
  context: new Uint8Array(5168).fill(1),
};
export const HVMCTX: LibxcRecord = { name: 'HVM_CONTEXT', data: new Uint8Array(100).fill(3) };
export const HVMPAR: LibxcRecord = {
  name: 'HVM_PARAMS',
  reserved: 0,
  params: [{ index: 1n, value: 0xfeffcn }],
};
export const CKPT: LibxcRecord = { name: 'CHECKPOINT' };
export const LX_CTX: LibxlRecord = { name: 'LIBXC_CONTEXT' };
export const LX_END: LibxlRecord = { name: 'END' };
export const LX_CKEND: LibxlRecord = { name: 'CHECKPOINT_END' };
export const EMU: LibxlRecord = {
  name: 'EMULATOR_CONTEXT',
  emulatorId: 2,
  index: 0,
  data: new Uint8Array(13).fill(9),
};

/** Minimal valid bare libxc PV v3 stream parts. */
export function pvParts(): Part[] {
  return [
    IHDR3,
    DHDR_PV,
    { xc: PV_INFO },
    { xc: CPUID },
    { xc: SDE },
    { xc: P2M },
    {
      xc: pageData([
        [0, 0],
        [1, 15],
        [2, 1],
      ]),
    },
    { xc: TSC },
    { xc: SHINFO },
    { xc: VCPU },
    { xc: END },
  ];
}
/** Minimal valid bare libxc HVM v3 stream parts. */
export function hvmParts(): Part[] {
  return [
    IHDR3,
    DHDR_HVM,
    { xc: CPUID },
    { xc: MSRP },
    { xc: SDE },
    {
      xc: pageData([
        [0, 0],
        [5, 0],
        [9, 15],
      ]),
    },
    { xc: TSC },
    { xc: HVMCTX },
    { xc: HVMPAR },
    { xc: END },
  ];
}
/** xl-wrapped HVM stream. */
export function xlHvmParts(): Part[] {
  return [XL_HDR, LIBXL_HDR, { xl: LX_CTX }, ...hvmParts(), { xl: EMU }, { xl: LX_END }];
}

/** Yield bytes in chunks of the given size (or sizes cycling). */
export async function* chunked(b: Uint8Array, sizes: number | number[]): AsyncGenerator<Uint8Array> {
  const s = Array.isArray(sizes) ? sizes : [sizes];
  let i = 0;
  for (let o = 0; o < b.length; i++) {
    const n = Math.max(1, s[i % s.length]!);
    yield b.slice(o, o + n);
    o += n;
  }
}

export async function parse(
  input: StreamInput,
  ropts: ReaderOptions = {},
  vopts?: ValidatorOptions,
): Promise<StreamItem[]> {
  const r = new StreamReader(input, ropts);
  const v = vopts ? new StreamValidator(vopts) : null;
  const items: StreamItem[] = [];
  for await (const it of r) {
    if (it.kind === 'record' && it.layer === 'libxc' && it.record.name === 'PAGE_DATA' && it.record.data)
      it.record.data = new Uint8Array(it.record.data);
    v?.check(it);
    items.push(it);
  }
  v?.finish(r.summary);
  return items;
}
