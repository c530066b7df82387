// Property tests: decode(encode(x)) == x for records and for whole generated streams, read in
// random chunkings, eager and lazy; generated streams validate.
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  concatBytes,
  decodeLibxcBody,
  decodeLibxlBody,
  encodeItem,
  encodeLibxcRecord,
  encodeLibxlRecord,
  libxcRecordType,
  libxlRecordType,
  StreamReader,
  StreamValidator,
  type ReaderOptions,
  type StreamInput,
} from '../../src/stream/index.js';
import { libxcRecordArb, libxlRecordArb, streamShapeArb, buildStream } from './gen.js';
import { chunked } from './helpers.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const RUNS = Number(process.env.XENMIG_PROPERTY_RUNS ?? 200);

describe('record properties', () => {
  it('libxc: decode(encode(x)) == x', () => {
    fc.assert(
      fc.property(libxcRecordArb, (r) => {
        const b = encodeLibxcRecord(r);
        const len = b[4]! | (b[5]! << 8) | (b[6]! << 16) | (b[7]! << 24);
        expect(b.length).toBe(8 + Math.ceil(len / 8) * 8);
        const d = decodeLibxcBody(libxcRecordType(r), b.subarray(8, 8 + len), {
          offset: 0,
          index: 0,
          layer: 'libxc',
        });
        expect(d).toEqual(r);
      }),
      { numRuns: RUNS * 2 },
    );
  });
  it('libxl: decode(encode(x)) == x', () => {
    fc.assert(
      fc.property(libxlRecordArb, (r) => {
        const b = encodeLibxlRecord(r);
        const len = b[4]! | (b[5]! << 8) | (b[6]! << 16) | (b[7]! << 24);
        expect(
          decodeLibxlBody(libxlRecordType(r), b.subarray(8, 8 + len), {
            offset: 0,
            index: 0,
            layer: 'libxl',
          }),
        ).toEqual(r);
      }),
      { numRuns: RUNS * 2 },
    );
  });
});

async function reencode(input: StreamInput, opts: ReaderOptions, streamType: 'plain' | 'remus' | 'colo') {
  const r = new StreamReader(input, opts);
  const v = new StreamValidator({ streamType });
  const out: Uint8Array[] = [];
  const names: string[] = [];
  for await (const it of r) {
    v.check(it);
    names.push(`${it.layer}:${it.name}`);
    if (it.kind === 'record' && it.record.name === 'PAGE_DATA' && it.record.data === null) {
      const payload = new Uint8Array(it.record.dataPages * 4096);
      await it.record.readPayloadInto!(payload);
      out.push(encodeItem(it, payload));
    } else out.push(encodeItem(it));
  }
  const facts = v.finish(r.summary);
  return { bytes: concatBytes(out), names, facts, summary: r.summary };
}

describe('stream properties', () => {
  it('generated streams parse, validate and re-encode identically in any chunking', async () => {
    await fc.assert(
      fc.asyncProperty(
        streamShapeArb,
        fc.oneof(
          fc.constant(null),
          fc.array(fc.integer({ min: 1, max: 97 }), { minLength: 1, maxLength: 4 }),
        ),
        fc.boolean(),
        async (shape, sizes, lazy) => {
          const { bytes, parts, streamType } = buildStream(shape);
          const input = sizes ? chunked(bytes, sizes) : bytes;
          const res = await reencode(input, { lazyPageData: lazy }, streamType);
          expect(res.bytes.length).toBe(bytes.length);
          expect(Buffer.compare(Buffer.from(res.bytes), Buffer.from(bytes))).toBe(0);
          expect(res.names.length).toBe(parts.length);
          expect(res.summary.endedBy).toBe(streamType === 'plain' ? 'END' : 'EOF');
          expect(res.facts.checkpoints).toBe(streamType === 'plain' ? 0 : shape.checkpoints);
          expect(res.facts.domainType).toBe(shape.pv ? 1 : 2);
          // every libxc record is tagged libxc, every libxl record libxl
          parts.forEach((p, i) => {
            if (!(p instanceof Uint8Array))
              expect(res.names[i]!.startsWith('xc' in p ? 'libxc:' : 'libxl:')).toBe(true);
          });
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('1-byte chunks give the same items as one buffer', async () => {
    await fc.assert(
      fc.asyncProperty(streamShapeArb, async (shape) => {
        const { bytes, streamType } = buildStream(shape);
        const a = await reencode(bytes, {}, streamType);
        const b = await reencode(chunked(bytes, 1), {}, streamType);
        expect(b.names).toEqual(a.names);
        expect(Buffer.compare(Buffer.from(b.bytes), Buffer.from(bytes))).toBe(0);
      }),
      { numRuns: 15 },
    );
  });

  it('fd / path sources with any read-ahead size give the same bytes (eager and lazy, blocking or not)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'xenmig-prop-'));
    try {
      let n = 0;
      await fc.assert(
        fc.asyncProperty(
          streamShapeArb,
          fc.integer({ min: 1, max: 20000 }),
          fc.boolean(),
          fc.boolean(),
          async (shape, chunkSize, lazy, blocking) => {
            const { bytes, streamType } = buildStream(shape);
            const file = join(dir, `s${n++}.bin`);
            writeFileSync(file, bytes);
            const res = await reencode(
              file,
              { chunkSize, lazyPageData: lazy, blockingReads: blocking },
              streamType,
            );
            expect(Buffer.compare(Buffer.from(res.bytes), Buffer.from(bytes))).toBe(0);
            rmSync(file);
          },
        ),
        { numRuns: Math.max(20, RUNS / 2) },
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
