// fast-check generators for records and whole streams (PV/HVM, v2/v3, plain/Remus/COLO,
// bare libxc / libxl / xl-wrapped).
import fc from 'fast-check';
import type { LibxcRecord, LibxlRecord, StreamType } from '../../src/stream/index.js';
import { build, DHDR_HVM, DHDR_PV, IHDR2, IHDR3, LIBXL_HDR, XL_HDR, type Part } from './helpers.js';

const u32 = fc.nat({ max: 0xffffffff });
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const DATA_TYPES = [0, 1, 2, 3, 4, 9, 10, 11, 12];
const ALL_TYPES = [...DATA_TYPES, 13, 14, 15];
const bytesArb = (min: number, max: number) => fc.uint8Array({ minLength: min, maxLength: max });

export const pfnArb = fc.tuple(fc.nat({ max: 0xfffff }), u32).map(([hi, lo]) => hi * 2 ** 32 + lo);

/** PAGE_DATA with cheap page contents (each page filled with one byte). */
export function pageDataArb(
  opts: { maxEntries?: number; maxPfn?: number; reserved?: boolean } = {},
): fc.Arbitrary<LibxcRecord> {
  const pfn = opts.maxPfn !== undefined ? fc.nat({ max: opts.maxPfn }) : pfnArb;
  return fc
    .record({
      entries: fc.array(fc.tuple(pfn, fc.constantFrom(...ALL_TYPES), fc.nat({ max: 255 })), {
        minLength: 1,
        maxLength: opts.maxEntries ?? 12,
      }),
      reserved: opts.reserved ? fc.oneof(fc.constant(0), u32) : fc.constant(0),
      pfnRes: opts.reserved
        ? fc.array(fc.nat({ max: 255 }), { minLength: 64, maxLength: 64 })
        : fc.constant(null),
    })
    .map(({ entries, reserved, pfnRes }) => {
      const withData = entries.filter(([, t]) => DATA_TYPES.includes(t));
      const data = new Uint8Array(withData.length * 4096);
      withData.forEach(([, , fill], i) => data.fill(fill, i * 4096, (i + 1) * 4096));
      const r: LibxcRecord = {
        name: 'PAGE_DATA',
        count: entries.length,
        reserved,
        pfns: Float64Array.from(entries.map((e) => e[0])),
        types: Uint8Array.from(entries.map((e) => e[1])),
        dataPages: withData.length,
        data,
      };
      if (pfnRes && entries.some((_, i) => pfnRes[i % 64] !== 0))
        r.pfnReserved = Uint8Array.from(entries.map((_, i) => pfnRes[i % 64]!));
      return r;
    });
}

/** Any libxc record (all fields random, reserved ones included). */
export const libxcRecordArb: fc.Arbitrary<LibxcRecord> = fc.oneof(
  fc.constantFrom<LibxcRecord>(
    { name: 'END' },
    { name: 'VERIFY' },
    { name: 'CHECKPOINT' },
    { name: 'STATIC_DATA_END' },
  ),
  pageDataArb({ reserved: true }),
  fc.record({
    name: fc.constant('X86_PV_INFO' as const),
    guestWidth: fc.nat({ max: 255 }),
    ptLevels: fc.nat({ max: 255 }),
    reserved: fc.nat({ max: 2 ** 48 - 1 }),
  }),
  fc.record({
    name: fc.constant('X86_PV_P2M_FRAMES' as const),
    startPfn: u32,
    endPfn: u32,
    frames: fc.array(u64, { maxLength: 5 }).map((a) => BigUint64Array.from(a)),
  }),
  fc.record({
    name: fc.constantFrom(
      'X86_PV_VCPU_BASIC' as const,
      'X86_PV_VCPU_EXTENDED' as const,
      'X86_PV_VCPU_XSAVE' as const,
    ),
    vcpuId: u32,
    reserved: u32,
    context: bytesArb(0, 300),
  }),
  fc.record({
    name: fc.constant('X86_PV_VCPU_MSRS' as const),
    vcpuId: u32,
    reserved: u32,
    msrs: fc.array(fc.record({ index: u32, reserved: u32, value: u64 }), { maxLength: 4 }),
  }),
  fc.record({
    name: fc.constantFrom('SHARED_INFO' as const, 'HVM_CONTEXT' as const, 'TOOLSTACK' as const),
    data: bytesArb(0, 300),
  }),
  fc.record({
    name: fc.constant('X86_TSC_INFO' as const),
    mode: u32,
    khz: u32,
    nsec: u64,
    incarnation: u32,
    reserved: u32,
  }),
  fc.record({
    name: fc.constant('HVM_PARAMS' as const),
    reserved: u32,
    params: fc.array(fc.record({ index: u64, value: u64 }), { maxLength: 6 }),
  }),
  fc.record({
    name: fc.constant('CHECKPOINT_DIRTY_PFN_LIST' as const),
    pfns: fc.array(u64, { maxLength: 8 }).map((a) => BigUint64Array.from(a)),
  }),
  fc.record({
    name: fc.constant('X86_CPUID_POLICY' as const),
    leaves: fc.array(fc.record({ leaf: u32, subleaf: u32, a: u32, b: u32, c: u32, d: u32 }), {
      maxLength: 4,
    }),
  }),
  fc.record({
    name: fc.constant('X86_MSR_POLICY' as const),
    msrs: fc.array(fc.record({ idx: u32, flags: u32, val: u64 }), { maxLength: 4 }),
  }),
  fc.record({
    name: fc.constant('UNKNOWN' as const),
    type: fc.integer({ min: 0x80000000, max: 0xffffffff }),
    body: bytesArb(0, 40),
  }),
);

const xsString = fc.string({ maxLength: 12 }).filter((s) => !s.includes('\0'));
export const libxlRecordArb: fc.Arbitrary<LibxlRecord> = fc.oneof(
  fc.constantFrom<LibxlRecord>({ name: 'END' }, { name: 'LIBXC_CONTEXT' }, { name: 'CHECKPOINT_END' }),
  fc.record({
    name: fc.constant('EMULATOR_XENSTORE_DATA' as const),
    emulatorId: u32,
    index: u32,
    entries: fc.array(fc.tuple(xsString, xsString), { maxLength: 4 }),
  }),
  fc.record({
    name: fc.constant('EMULATOR_CONTEXT' as const),
    emulatorId: u32,
    index: u32,
    data: bytesArb(0, 200),
  }),
  fc.record({ name: fc.constant('CHECKPOINT_STATE' as const), controlId: u32 }),
  fc.record({
    name: fc.constant('UNKNOWN' as const),
    type: fc.integer({ min: 0x80000000, max: 0xffffffff }),
    body: bytesArb(0, 40),
  }),
);

export interface StreamShape {
  pv: boolean;
  width: 4 | 8;
  version: 2 | 3;
  wrap: 'xl' | 'libxl' | 'bare';
  mode: Exclude<StreamType, 'auto'>;
  checkpoints: number;
  policies: [boolean, boolean];
  paramsFirst: boolean;
  verify: boolean;
  vcpus: number;
  emulatorXs: boolean;
  pages: LibxcRecord[][]; // per checkpoint (+1 extra for VERIFY)
}

const MAX_PFN = 4095;

export const streamShapeArb: fc.Arbitrary<StreamShape> = fc
  .record({
    pv: fc.boolean(),
    width: fc.constantFrom(4 as const, 8 as const),
    version: fc.constantFrom(2 as const, 3 as const),
    wrap: fc.constantFrom('xl' as const, 'libxl' as const, 'bare' as const),
    mode: fc.constantFrom('plain' as const, 'remus' as const, 'colo' as const),
    checkpoints: fc.integer({ min: 1, max: 3 }),
    policies: fc.tuple(fc.boolean(), fc.boolean()),
    paramsFirst: fc.boolean(),
    verify: fc.boolean(),
    vcpus: fc.integer({ min: 1, max: 2 }),
    emulatorXs: fc.boolean(),
    pages: fc.array(
      fc.array(pageDataArb({ maxEntries: 6, maxPfn: MAX_PFN }), { minLength: 0, maxLength: 3 }),
      { minLength: 4, maxLength: 4 },
    ),
  })
  .map((s) => ({ ...s, checkpoints: s.mode === 'plain' ? 1 : s.checkpoints }));

/** Build a valid stream of the given shape; returns its parts and the expected record sequence. */
export function buildStream(s: StreamShape): {
  bytes: Uint8Array;
  parts: Part[];
  streamType: Exclude<StreamType, 'auto'>;
} {
  const p: Part[] = [];
  const wrapped = s.wrap !== 'bare';
  if (s.wrap === 'xl') p.push(XL_HDR);
  if (wrapped) p.push(LIBXL_HDR, { xl: { name: 'LIBXC_CONTEXT' } });
  p.push(s.version === 3 ? IHDR3 : IHDR2, s.pv ? DHDR_PV : DHDR_HVM);
  if (s.pv)
    p.push({
      xc: { name: 'X86_PV_INFO', guestWidth: s.width, ptLevels: s.width === 8 ? 4 : 3, reserved: 0 },
    });
  if (s.version === 3) {
    if (s.policies[0])
      p.push({ xc: { name: 'X86_CPUID_POLICY', leaves: [{ leaf: 1, subleaf: 0, a: 2, b: 3, c: 4, d: 5 }] } });
    if (s.policies[1]) p.push({ xc: { name: 'X86_MSR_POLICY', msrs: [{ idx: 0xce, flags: 0, val: 7n }] } });
    p.push({ xc: { name: 'STATIC_DATA_END' } });
  }
  if (s.pv) {
    const fpp = 4096 / s.width;
    const frames = new BigUint64Array(Math.floor(MAX_PFN / fpp) + 1).map((_, i) => BigInt(100 + i));
    p.push({ xc: { name: 'X86_PV_P2M_FRAMES', startPfn: 0, endPfn: MAX_PFN, frames } });
  }
  const emulator = (): Part[] =>
    s.pv
      ? []
      : [
          ...(s.emulatorXs
            ? [
                {
                  xl: {
                    name: 'EMULATOR_XENSTORE_DATA',
                    emulatorId: 2,
                    index: 0,
                    entries: [['physmap/1/size', '800000']],
                  },
                } as Part,
              ]
            : []),
          { xl: { name: 'EMULATOR_CONTEXT', emulatorId: 2, index: 0, data: new Uint8Array(21).fill(0x51) } },
        ];
  for (let k = 0; k < s.checkpoints; k++) {
    const pages = s.pages[k]!;
    // v2 HVM: the implied STATIC_DATA_END comes with the first PAGE_DATA, so end-of-checkpoint
    // records need no special care; PV v2 streams already have P2M_FRAMES.
    for (const pd of pages) p.push({ xc: pd });
    p.push({
      xc: { name: 'X86_TSC_INFO', mode: 0, khz: 1000 + k, nsec: BigInt(k), incarnation: k, reserved: 0 },
    });
    if (s.pv) {
      p.push({ xc: { name: 'SHARED_INFO', data: new Uint8Array(4096).fill(k) } });
      for (let v = 0; v < s.vcpus; v++) {
        p.push({
          xc: {
            name: 'X86_PV_VCPU_BASIC',
            vcpuId: v,
            reserved: 0,
            context: new Uint8Array(s.width === 8 ? 5168 : 2800).fill(v),
          },
        });
        p.push({ xc: { name: 'X86_PV_VCPU_EXTENDED', vcpuId: v, reserved: 0, context: new Uint8Array(64) } });
        if (v === 0)
          p.push({
            xc: { name: 'X86_PV_VCPU_XSAVE', vcpuId: v, reserved: 0, context: new Uint8Array(24).fill(1) },
          });
        p.push({
          xc: {
            name: 'X86_PV_VCPU_MSRS',
            vcpuId: v,
            reserved: 0,
            msrs: [{ index: 0xc0000103, reserved: 0, value: 5n }],
          },
        });
      }
    } else {
      const ctx: Part = { xc: { name: 'HVM_CONTEXT', data: new Uint8Array(40).fill(k + 1) } };
      const par: Part = {
        xc: { name: 'HVM_PARAMS', reserved: 0, params: [{ index: 1n, value: 0xfeffcn + BigInt(k) }] },
      };
      p.push(...(s.paramsFirst ? [par, ctx] : [ctx, par]));
    }
    if (s.mode === 'plain') {
      if (s.verify) {
        p.push({ xc: { name: 'VERIFY' } });
        for (const pd of s.pages[3]!) p.push({ xc: pd });
      }
      p.push({ xc: { name: 'END' } });
      if (wrapped) p.push(...emulator(), { xl: { name: 'END' } });
    } else {
      p.push({ xc: { name: 'CHECKPOINT' } });
      if (wrapped) {
        p.push(...emulator(), { xl: { name: 'CHECKPOINT_END' } });
        if (s.mode === 'colo') p.push({ xl: { name: 'CHECKPOINT_STATE', controlId: 0 } });
      }
    }
  }
  return { bytes: build(p), parts: p, streamType: s.mode };
}
