// Mutation fuzzer: every mutated input must either parse + validate or raise a StreamError —
// no other exception, no hang (per-input time bound), bounded memory — and reach the same verdict
// (code and offset, or the same facts) whether it arrives as one buffer or in odd chunks, eager or lazy.
// XENMIG_FUZZ_ITERATIONS (default 100000) and XENMIG_FUZZ_SEED control the run.
import { describe, it, expect } from 'vitest';
import {
  concatBytes,
  encodeItem,
  StreamError,
  StreamErrorCode,
  StreamReader,
  StreamValidator,
  readAll,
  type LibxcRecord,
  type ReaderOptions,
  type StreamItem,
  type StreamType,
} from '../../src/stream/index.js';
import {
  build,
  chunked,
  CKPT,
  DHDR_HVM,
  EMU,
  HVMCTX,
  HVMPAR,
  hvmParts,
  IHDR2,
  LIBXL_HDR,
  LX_CKEND,
  LX_CTX,
  pvParts,
  TSC,
  XL_HDR,
  xlHvmParts,
  type Part,
} from './helpers.js';

const ITERATIONS = Number(process.env.XENMIG_FUZZ_ITERATIONS ?? 100_000);
const SEED = Number(process.env.XENMIG_FUZZ_SEED ?? 0x5eed);
// A hang detector, not a speed check: an input that makes the reader loop or wait without end.
// Inputs take 20-200 ms at worst here; on a loaded machine one took 2.4 s, so the bound is far above.
const PER_INPUT_MS = 30_000;

/** xorshift32 */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  const next = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  return { next, int: (n: number) => next() % n, pick: <T>(a: readonly T[]) => a[next() % a.length]! };
}

// Small seeds: page data with mostly data-less entries so mutations hit structure.
const pd = (entries: [number, number][]): LibxcRecord => {
  const withData = entries.filter(([, t]) => t < 13);
  const data = new Uint8Array(withData.length * 4096);
  return {
    name: 'PAGE_DATA',
    count: entries.length,
    reserved: 0,
    pfns: Float64Array.from(entries.map((e) => e[0])),
    types: Uint8Array.from(entries.map((e) => e[1])),
    dataPages: withData.length,
    data,
  };
};
const smallPd: Part = {
  xc: pd([
    [1, 15],
    [2, 13],
    [3, 14],
    [4, 0],
  ]),
};
const swapPd = (parts: Part[]) =>
  parts.map((p) => (!(p instanceof Uint8Array) && 'xc' in p && p.xc.name === 'PAGE_DATA' ? smallPd : p));
const hvmBody = swapPd(hvmParts()).slice(0, -1);
const remus: Part[] = [
  LIBXL_HDR,
  { xl: LX_CTX },
  ...hvmBody,
  { xc: CKPT },
  { xl: EMU },
  { xl: LX_CKEND },
  smallPd,
  { xc: TSC },
  { xc: HVMCTX },
  { xc: HVMPAR },
  { xc: CKPT },
  { xl: LX_CKEND },
];
const colo: Part[] = [
  XL_HDR,
  LIBXL_HDR,
  { xl: LX_CTX },
  ...hvmBody,
  { xc: CKPT },
  { xl: EMU },
  { xl: LX_CKEND },
  { xl: { name: 'CHECKPOINT_STATE', controlId: 0 } },
  smallPd,
  { xc: TSC },
  { xc: HVMCTX },
  { xc: CKPT },
];

interface Seed {
  name: string;
  bytes: Uint8Array;
  streamType: StreamType;
  format?: ReaderOptions['format'];
  /** offsets of record headers and headers (structural hot spots) */
  hot: number[];
}
const seedDefs: [string, Part[], StreamType, ReaderOptions['format']?][] = [
  ['pv', swapPd(pvParts()), 'plain'],
  ['hvm', swapPd(hvmParts()), 'plain'],
  ['xl-hvm', swapPd(xlHvmParts()), 'plain'],
  [
    'hvm-v2',
    [IHDR2, DHDR_HVM, smallPd, { xc: TSC }, { xc: HVMPAR }, { xc: HVMCTX }, { xc: { name: 'END' } }],
    'plain',
  ],
  ['remus', remus, 'remus'],
  ['colo', colo, 'colo'],
  [
    'colo-back',
    [
      { xl: { name: 'CHECKPOINT_STATE', controlId: 2 } },
      { xc: { name: 'CHECKPOINT_DIRTY_PFN_LIST', pfns: new BigUint64Array([1n, 9n]) } },
    ],
    'plain',
    'colo-back',
  ],
];

async function makeSeeds(): Promise<Seed[]> {
  const out: Seed[] = [];
  for (const [name, parts, streamType, format] of seedDefs) {
    const bytes = build(parts);
    const { items } = await readAll(bytes, format ? { format } : {});
    const hot = items.map((i) => i.offset);
    out.push({ name, bytes, streamType, ...(format ? { format } : {}), hot });
  }
  return out;
}

type Rng = ReturnType<typeof rng>;
const le32 = (b: Uint8Array, o: number, v: number) => {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
};

function mutate(s: Seed, r: Rng): Uint8Array {
  let b: Uint8Array = new Uint8Array(s.bytes);
  const n = 1 + (r.int(4) === 0 ? r.int(4) : 0);
  for (let m = 0; m < n; m++) {
    const len = b.length;
    const pos = () =>
      r.int(2) === 0 && s.hot.length ? Math.min(len - 1, r.pick(s.hot) + r.int(24)) : r.int(Math.max(1, len));
    switch (r.int(9)) {
      case 0: {
        if (len) {
          const p = pos();
          b[p] = b[p]! ^ (1 << r.int(8));
        }
        break;
      }
      case 1: {
        if (len) b[pos()] = r.pick([0, 0xff, 1, 0x80, 0x7f, r.int(256)]);
        break;
      }
      case 2:
        b = b.subarray(0, r.int(len + 1));
        break;
      case 3: {
        const p = r.int(len + 1);
        const ins = new Uint8Array(r.pick([1, 4, 8, 16, r.int(64)]));
        for (let i = 0; i < ins.length; i++) ins[i] = r.int(3) === 0 ? r.int(256) : 0;
        const c = new Uint8Array(len + ins.length);
        c.set(b.subarray(0, p));
        c.set(ins, p);
        c.set(b.subarray(p), p + ins.length);
        b = c;
        break;
      }
      case 4: {
        const p = r.int(len + 1);
        const e = Math.min(len, p + r.int(24) + 1);
        const c = new Uint8Array(len - (e - p));
        c.set(b.subarray(0, p));
        c.set(b.subarray(e), p);
        b = c;
        break;
      }
      case 5:
      case 6: {
        // length / count field edits at a record header (+4) or just after it (+8: counts)
        const h = r.pick(s.hot) + r.pick([4, 4, 8, 0]);
        if (h + 4 <= len) {
          const cur = b[h]! | (b[h + 1]! << 8) | (b[h + 2]! << 16) | (b[h + 3]! * 0x1000000);
          le32(
            b,
            h,
            r.pick([
              cur + 1,
              cur - 1,
              cur + 8,
              cur - 8,
              cur + 4096,
              0,
              0xffffffff,
              0x8000000,
              0x8000001,
              r.next(),
              cur * 2,
            ]) >>> 0,
          );
        }
        break;
      }
      case 7: {
        // duplicate a structural slice (repeat a record)
        const a = r.pick(s.hot);
        const k = r.pick([8, 16, 24, 32]);
        if (a + k <= len) {
          const c = new Uint8Array(len + k);
          c.set(b.subarray(0, a + k));
          c.set(b.subarray(a), a + k);
          b = c;
        }
        break;
      }
      case 8: {
        // set a type field to a random/known value
        const h = r.pick(s.hot);
        if (h + 4 <= len)
          le32(b, h, r.pick([r.int(0x14), r.int(7), 0x80000000 | r.int(16), 0xb, 0xe, 0xf, 0x10, 5]));
        break;
      }
    }
  }
  return b;
}

const ERROR_CODES = new Set(Object.values(StreamErrorCode).filter((c) => c.startsWith('ERR_')));

/**
 * What a rejection must be: a StreamError with an ERR_ code and the integer byte offset of the
 * problem inside the input (at most its end). Returns what is wrong with it, or null.
 */
export function badRejection(e: unknown, inputLength: number): string | null {
  if (!(e instanceof StreamError)) return `not a StreamError: ${String(e)}`;
  if (!ERROR_CODES.has(e.code)) return `code ${e.code} is not an ERR_ code`;
  const o = e.offset;
  if (typeof o !== 'number' || !Number.isInteger(o) || o < 0 || o > inputLength)
    return `${e.code} at offset ${o} (input ${inputLength} bytes)`;
  return null;
}

/** Reads and validates `input`; the verdict is a comparable summary of the outcome. */
async function outcome(
  input: Uint8Array | AsyncIterable<Uint8Array>,
  opts: ReaderOptions,
  streamType: StreamType,
  readPayloads: boolean,
  items?: StreamItem[],
): Promise<{ error: unknown; verdict: string }> {
  try {
    const rd = new StreamReader(input, opts);
    let v: StreamValidator | null = null;
    for await (const it of rd) {
      v ??= new StreamValidator({
        streamType,
        backChannel: rd.summary.format === 'colo-back' || opts.format === 'colo-back',
      });
      v.check(it);
      items?.push(it);
      if (readPayloads && it.kind === 'record' && it.record.name === 'PAGE_DATA' && it.record.readPayloadInto)
        await it.record.readPayloadInto(new Uint8Array(it.record.dataPages * 4096));
    }
    v ??= new StreamValidator({
      streamType,
      backChannel: rd.summary.format === 'colo-back' || opts.format === 'colo-back',
    });
    const f = v.finish(rd.summary);
    return {
      error: null,
      verdict: `ok ${f.pageEntries}/${f.dataPages}/${f.checkpoints}/${f.partialCheckpoint}/${f.bytes}`,
    };
  } catch (e) {
    const x = e as { code?: string; offset?: number };
    return { error: e, verdict: `${x.code} @${x.offset}` };
  }
}

describe('mutation fuzzer', () => {
  it(`${ITERATIONS} mutated inputs: StreamError or success, nothing else`, async () => {
    const seeds = await makeSeeds();
    // seeds themselves are valid
    for (const s of seeds) {
      const rd = new StreamReader(s.bytes, s.format ? { format: s.format } : {});
      const v = new StreamValidator({ streamType: s.streamType, backChannel: s.format === 'colo-back' });
      for await (const it of rd) v.check(it);
      v.finish(rd.summary);
    }
    const r = rng(SEED);
    const rssStart = process.memoryUsage().rss;
    let ok = 0;
    let rejected = 0;
    let reencoded = 0;
    let worst = 0;
    const codes = new Map<string, number>();
    console.log(`fuzz: seed ${SEED} (XENMIG_FUZZ_SEED), ${ITERATIONS} inputs`);
    for (let i = 0; i < ITERATIONS; i++) {
      const s = seeds[i % seeds.length]!;
      const bytes = mutate(s, r);
      const mode = r.int(8);
      const opts: ReaderOptions = {
        lazyPageData: mode === 1,
        ...(s.format
          ? { format: s.format }
          : r.int(4) === 0
            ? { format: r.pick(['xl', 'libxl', 'libxc', 'colo-back'] as const) }
            : {}),
      };
      const input = mode === 2 ? chunked(bytes, [1 + r.int(13), 1 + r.int(200)]) : bytes;
      const streamType: StreamType = r.int(5) === 0 ? 'auto' : s.streamType;
      const readPayloads = r.int(2) === 0;
      const t0 = performance.now();
      const got = await outcome(input, opts, streamType, readPayloads);
      const dt = performance.now() - t0;
      const why = got.error === null ? null : badRejection(got.error, bytes.length);
      if (why !== null)
        throw new Error(
          `seed ${SEED} iteration ${i} (${s.name}): ${why}\ninput: ${Buffer.from(bytes).toString('hex')}`,
        );
      // the same bytes as one eager buffer: chunking, lazy payloads and payload reads must not change
      // the verdict (same code at the same offset, or the same facts)
      const items: StreamItem[] = [];
      const ref = await outcome(
        bytes,
        { ...(opts.format ? { format: opts.format } : {}) },
        streamType,
        false,
        items,
      );
      // an accepted input is exactly what its items say: they re-encode to the same bytes
      if (ref.error === null && Buffer.compare(concatBytes(items.map((it) => encodeItem(it))), bytes) !== 0) {
        throw new Error(
          `seed ${SEED} iteration ${i} (${s.name}): accepted, but its items re-encode differently\ninput: ${Buffer.from(bytes).toString('hex')}`,
        );
      }
      // Lazy payloads (mode 1) legitimately see a record's own field errors before they learn that
      // its payload is cut off: the eager reference then reports ERR_TRUNCATED at that record.
      const lazyFirst =
        opts.lazyPageData === true &&
        ref.error instanceof StreamError &&
        ref.error.code === 'ERR_TRUNCATED' &&
        got.error instanceof StreamError &&
        (got.error.offset ?? -1) >= (ref.error.offset ?? Infinity);
      if (got.verdict !== ref.verdict && !lazyFirst) {
        throw new Error(
          `seed ${SEED} iteration ${i} (${s.name}, mode ${mode}): ${got.verdict} but as one buffer ${ref.verdict}\ninput: ${Buffer.from(bytes).toString('hex')}`,
        );
      }
      if (got.error) {
        const e = got.error as StreamError;
        codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
        rejected++;
      } else {
        ok++;
        reencoded++;
      }
      if (dt > worst) worst = dt;
      if (dt > PER_INPUT_MS)
        throw new Error(`seed ${SEED} iteration ${i} (${s.name}) took ${dt.toFixed(0)} ms`);
    }
    const rssGrowth = process.memoryUsage().rss - rssStart;
    console.log(
      `fuzz: ${ITERATIONS} inputs, ${ok} accepted, ${rejected} rejected, worst ${worst.toFixed(1)} ms, rss +${(rssGrowth / 2 ** 20).toFixed(0)} MiB`,
      Object.fromEntries(codes),
    );
    expect(rejected).toBeGreaterThan(ITERATIONS / 4);
    // the re-encoding check ran on a real share of the inputs, not only on the rejected ones
    expect(reencoded).toBeGreaterThan(ITERATIONS / 100);
    expect(codes.size).toBeGreaterThan(12);
    expect(rssGrowth).toBeLessThan(256 * 2 ** 20);
  });
});
