// Golden bytes for headers and framing; encode/decode round trip of every record type.
import { describe, it, expect } from 'vitest';
import {
  decodeDomainHeader,
  decodeImageHeader,
  decodeLibxcBody,
  decodeLibxlBody,
  decodeLibxlHeader,
  encodeDomainHeader,
  encodeImageHeader,
  encodeLibxcRecord,
  encodeLibxlHeader,
  encodeLibxlRecord,
  encodePageDataHeader,
  encodeXlHeader,
  libxcRecordType,
  libxlRecordType,
  LibxcType,
  concatBytes,
  readAll,
  type LibxcRecord,
  type LibxlRecord,
  type Loc,
} from '../../src/stream/index.js';
import { pageData, page } from './helpers.js';

const hex = (b: Uint8Array) =>
  Buffer.from(b)
    .toString('hex')
    .replace(/(..)(?!$)/g, '$1 ');
const loc: Loc = { offset: 0, index: 0, layer: 'libxc' };

describe('golden header bytes', () => {
  it('x86 v3 image header', () => {
    expect(hex(encodeImageHeader())).toBe(
      'ff ff ff ff ff ff ff ff 58 45 4e 46 00 00 00 03 00 00 00 00 00 00 00 00',
    );
    expect(hex(encodeImageHeader({ version: 2 }))).toBe(
      'ff ff ff ff ff ff ff ff 58 45 4e 46 00 00 00 02 00 00 00 00 00 00 00 00',
    );
    expect(decodeImageHeader(encodeImageHeader(), 0, 0)).toEqual({
      version: 3,
      options: 0,
      reserved1: 0,
      reserved2: 0,
    });
  });
  it('domain header (PV, Xen 4.17)', () => {
    const h = { type: 1, pageShift: 12, reserved: 0, xenMajor: 4, xenMinor: 17 };
    expect(hex(encodeDomainHeader(h))).toBe('01 00 00 00 0c 00 00 00 04 00 00 00 11 00 00 00');
    expect(decodeDomainHeader(encodeDomainHeader(h))).toEqual(h);
  });
  it('libxl header', () => {
    expect(hex(encodeLibxlHeader())).toBe('4c 69 62 78 6c 46 6d 74 00 00 00 02 00 00 00 00');
    expect(decodeLibxlHeader(encodeLibxlHeader({ options: 2 }), 0, 0)).toEqual({ version: 2, options: 2 });
  });
  it('xl header with JSON config', () => {
    const b = encodeXlHeader({ configText: '{}' });
    expect(Buffer.from(b.subarray(0, 32)).toString('latin1')).toBe('Xen saved domain, xl format\n \0 \r');
    // byteorder 0x01020304 little-endian, mandatory JSON|STREAMv2, optional flags 0, optional len 7
    expect(hex(b.subarray(32))).toBe('04 03 02 01 03 00 00 00 00 00 00 00 07 00 00 00 03 00 00 00 7b 7d 00');
  });
  it('record framing pads to 8 with zeros', () => {
    const b = encodeLibxlRecord({ name: 'CHECKPOINT_STATE', controlId: 3 });
    expect(hex(b)).toBe('05 00 00 00 04 00 00 00 03 00 00 00 00 00 00 00');
    expect(hex(encodeLibxcRecord({ name: 'END' }))).toBe('00 00 00 00 00 00 00 00');
  });
  it('PAGE_DATA pfn words: type nibble at bit 60, 52-bit pfn', () => {
    const { bytes, dataPages } = encodePageDataHeader({ pfns: [0x12345, 2 ** 52 - 1], types: [0xf, 0x9] });
    expect(dataPages).toBe(1);
    expect(hex(bytes)).toBe(
      '01 00 00 00 18 10 00 00 02 00 00 00 00 00 00 00 45 23 01 00 00 00 00 f0 ff ff ff ff ff ff 0f 90',
    );
    // header + pages == the whole record
    const rec = pageData([
      [3, 0],
      [4, 15],
      [5, 12],
    ]);
    const whole = encodeLibxcRecord(rec);
    const h = encodePageDataHeader(rec as { pfns: Float64Array; types: Uint8Array });
    expect(concatBytes([h.bytes, (rec as { data: Uint8Array }).data])).toEqual(whole);
  });
});

const u8 = (n: number, f = 0xab) => new Uint8Array(n).fill(f);

export const SAMPLE_LIBXC: LibxcRecord[] = [
  { name: 'END' },
  pageData([
    [0, 0],
    [1, 1],
    [2, 2],
    [3, 3],
    [4, 4],
    [5, 9],
    [6, 10],
    [7, 11],
    [8, 12],
    [9, 13],
    [10, 14],
    [2 ** 52 - 1, 15],
  ]),
  pageData([[77, 15]]),
  { name: 'X86_PV_INFO', guestWidth: 4, ptLevels: 3, reserved: 0 },
  {
    name: 'X86_PV_P2M_FRAMES',
    startPfn: 0,
    endPfn: 1023,
    frames: new BigUint64Array([1n, 0xffffffffffffffffn]),
  },
  { name: 'X86_PV_VCPU_BASIC', vcpuId: 3, reserved: 0, context: u8(5168) },
  { name: 'X86_PV_VCPU_EXTENDED', vcpuId: 0, reserved: 0, context: u8(64) },
  { name: 'X86_PV_VCPU_XSAVE', vcpuId: 1, reserved: 0, context: u8(17) },
  {
    name: 'X86_PV_VCPU_MSRS',
    vcpuId: 0,
    reserved: 0,
    msrs: [{ index: 0xc0000080, reserved: 0, value: 0x8000000000000001n }],
  },
  { name: 'SHARED_INFO', data: page(7) },
  { name: 'X86_TSC_INFO', mode: 3, khz: 3_000_000, nsec: 0xffffffffffffn, incarnation: 9, reserved: 0 },
  { name: 'HVM_CONTEXT', data: u8(2503) },
  {
    name: 'HVM_PARAMS',
    reserved: 0,
    params: [
      { index: 1n, value: 2n },
      { index: 38n, value: 0xffffffffffffffffn },
    ],
  },
  { name: 'HVM_PARAMS', reserved: 0, params: [] },
  { name: 'TOOLSTACK', data: u8(5) },
  { name: 'VERIFY' },
  { name: 'CHECKPOINT' },
  { name: 'CHECKPOINT_DIRTY_PFN_LIST', pfns: new BigUint64Array([5n, 1n, 1n << 51n]) },
  { name: 'STATIC_DATA_END' },
  { name: 'X86_CPUID_POLICY', leaves: [{ leaf: 7, subleaf: 0, a: 1, b: 2, c: 3, d: 0xffffffff }] },
  { name: 'X86_MSR_POLICY', msrs: [{ idx: 0x10a, flags: 0, val: 123n }] },
  { name: 'UNKNOWN', type: 0x80000123, body: u8(3) },
];

export const SAMPLE_LIBXL: LibxlRecord[] = [
  { name: 'END' },
  { name: 'LIBXC_CONTEXT' },
  {
    name: 'EMULATOR_XENSTORE_DATA',
    emulatorId: 2,
    index: 0,
    entries: [
      ['physmap/1/start_addr', 'f0000000'],
      ['physmap/1/name', 'vga.vram ü'],
    ],
  },
  { name: 'EMULATOR_XENSTORE_DATA', emulatorId: 2, index: 0, entries: [] },
  { name: 'EMULATOR_CONTEXT', emulatorId: 2, index: 0, data: u8(1001) },
  { name: 'CHECKPOINT_END' },
  { name: 'CHECKPOINT_STATE', controlId: 2 },
  { name: 'UNKNOWN', type: 0x80000006, body: u8(9) },
];

describe('round trip of every record type', () => {
  it('covers libxc types 0x00..0x12 and libxl types 0..5', () => {
    const xc = new Set(SAMPLE_LIBXC.map(libxcRecordType));
    for (let t = 0; t <= 0x12; t++) expect(xc.has(t), `libxc type ${t}`).toBe(true);
    const xl = new Set(SAMPLE_LIBXL.map(libxlRecordType));
    for (let t = 0; t <= 5; t++) expect(xl.has(t), `libxl type ${t}`).toBe(true);
  });
  for (const r of SAMPLE_LIBXC) {
    it(`libxc ${r.name}${r.name === 'UNKNOWN' ? ' (optional)' : ''}`, () => {
      const b = encodeLibxcRecord(r);
      expect(b.length % 8).toBe(0);
      const len = new DataView(b.buffer).getUint32(4, true);
      expect(b.subarray(8 + len).every((x) => x === 0)).toBe(true);
      const d = decodeLibxcBody(libxcRecordType(r), b.subarray(8, 8 + len), loc);
      expect(d).toEqual(r);
      expect(encodeLibxcRecord(d)).toEqual(b);
    });
  }
  for (const r of SAMPLE_LIBXL) {
    it(`libxl ${r.name}`, () => {
      const b = encodeLibxlRecord(r);
      const len = new DataView(b.buffer).getUint32(4, true);
      const d = decodeLibxlBody(libxlRecordType(r), b.subarray(8, 8 + len), { ...loc, layer: 'libxl' });
      expect(d).toEqual(r);
      expect(encodeLibxlRecord(d)).toEqual(b);
    });
  }
  it('reserved fields survive a round trip', async () => {
    const recs: LibxcRecord[] = [
      { name: 'X86_PV_INFO', guestWidth: 8, ptLevels: 4, reserved: 0xffffffffffff },
      { name: 'X86_TSC_INFO', mode: 0, khz: 1, nsec: 2n, incarnation: 3, reserved: 0xdeadbeef },
      { ...(pageData([[1, 0]]) as object), reserved: 5, pfnReserved: Uint8Array.from([0xff]) } as LibxcRecord,
    ];
    for (const r of recs) {
      const b = encodeLibxcRecord(r);
      const len = new DataView(b.buffer).getUint32(4, true);
      expect(decodeLibxcBody(libxcRecordType(r), b.subarray(8, 8 + len), loc)).toEqual(r);
    }
  });
  it('through the reader, libxc type numbers are kept', async () => {
    const bytes = concatBytes([
      encodeImageHeader(),
      encodeDomainHeader({ type: 2, pageShift: 12, reserved: 0, xenMajor: 4, xenMinor: 17 }),
      ...SAMPLE_LIBXC.slice(1).map(encodeLibxcRecord),
      encodeLibxcRecord({ name: 'END' }),
    ]);
    const { items, summary } = await readAll(bytes);
    expect(summary.endedBy).toBe('END');
    const recs = items.filter((i) => i.kind === 'record');
    expect(recs.map((i) => i.kind === 'record' && i.type)).toEqual([
      ...SAMPLE_LIBXC.slice(1).map(libxcRecordType),
      LibxcType.END,
    ]);
  });
});
