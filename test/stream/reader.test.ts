// Reader behaviour: inputs (bytes, chunks, Readable, fd, path), layering of checkpointed streams,
// lazy PAGE_DATA, EOF vs truncation, afterEnd, unknown optional records, bounded memory.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, openSync, closeSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  BytesSource,
  ChunkSource,
  FdSource,
  StreamError,
  StreamReader,
  concatBytes,
  detectFormat,
  encodeLibxcRecord,
  encodeLibxlRecord,
  readAll,
  validateStream,
  type StreamItem,
  type ByteSource,
} from '../../src/stream/index.js';
import {
  build,
  chunked,
  CKPT,
  EMU,
  HVMCTX,
  HVMPAR,
  hvmParts,
  LIBXL_HDR,
  LX_CKEND,
  LX_CTX,
  pageData,
  pvParts,
  TSC,
  XL_HDR,
  xlHvmParts,
  type Part,
} from './helpers.js';

const names = (items: StreamItem[]) => items.map((i) => `${i.layer}:${i.name}`);
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'xenmig-stream-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('format detection', () => {
  it('detects xl, libxl, libxc and rejects others', () => {
    expect(detectFormat(XL_HDR.subarray(0, 32))).toBe('xl');
    expect(detectFormat(LIBXL_HDR)).toBe('libxl');
    expect(detectFormat(new Uint8Array(8).fill(0xff))).toBe('libxc');
    expect(detectFormat(Uint8Array.from([0xff, 0xff]))).toBe('libxc');
    expect(detectFormat(Uint8Array.from([0x58, 0x65]))).toBe('xl');
    expect(detectFormat(Uint8Array.from([0x4c]))).toBe('libxl');
    expect(detectFormat(Uint8Array.from([0, 1, 2]))).toBeNull();
  });
});

describe('inputs', () => {
  const bytes = build(xlHvmParts());
  it('bytes, 1-byte chunks, Readable, fd and path give the same items and offsets', async () => {
    const ref = await readAll(bytes);
    const file = join(dir, 's.bin');
    writeFileSync(file, bytes);
    const fd = openSync(file, 'r');
    try {
      for (const input of [chunked(bytes, 1), Readable.from(chunked(bytes, [5, 4096, 3])), file, fd]) {
        const got = await readAll(input, { chunkSize: 64 });
        expect(names(got.items)).toEqual(names(ref.items));
        expect(got.items.map((i) => i.offset)).toEqual(ref.items.map((i) => i.offset));
        expect(got.summary).toEqual(ref.summary);
      }
    } finally {
      closeSync(fd);
    }
    const blocking = await readAll(file, { blockingReads: true, chunkSize: 100 });
    expect(names(blocking.items)).toEqual(names(ref.items));
    expect(ref.summary).toMatchObject({ format: 'xl', endedBy: 'END', bytes: bytes.length });
    expect(names(ref.items)).toEqual([
      'xl:XL_HEADER',
      'libxl:LIBXL_HEADER',
      'libxl:LIBXC_CONTEXT',
      'libxc:IMAGE_HEADER',
      'libxc:DOMAIN_HEADER',
      'libxc:X86_CPUID_POLICY',
      'libxc:X86_MSR_POLICY',
      'libxc:STATIC_DATA_END',
      'libxc:PAGE_DATA',
      'libxc:X86_TSC_INFO',
      'libxc:HVM_CONTEXT',
      'libxc:HVM_PARAMS',
      'libxc:END',
      'libxl:EMULATOR_CONTEXT',
      'libxl:END',
    ]);
    expect(ref.items.map((i) => i.index)).toEqual(ref.items.map((_, k) => k));
  });

  it('the byte sources honour readExact / readInto / peek / skip', async () => {
    const data = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff);
    const file = join(dir, 'src.bin');
    writeFileSync(file, data);
    const fd = openSync(file, 'r');
    const sources: [string, ByteSource][] = [
      ['bytes', new BytesSource(data)],
      ['chunks', new ChunkSource(chunked(data, [1, 7, 50]))],
      ['fd', new FdSource(fd, { chunkSize: 16 })], // clamped to 64
    ];
    try {
      for (const [name, s] of sources) {
        expect([...(await s.peek(3))], name).toEqual([0, 1, 2]);
        expect([...(await s.readExact(10))], name).toEqual([...data.subarray(0, 10)]);
        expect([...(await s.peek(20))], name).toEqual([...data.subarray(10, 30)]);
        const t = new Uint8Array(40);
        expect(await s.readInto(t), name).toBe(40);
        expect([...t], name).toEqual([...data.subarray(10, 50)]);
        expect(await s.skip(25), name).toBe(25);
        expect([...(await s.readExact(100))], name).toEqual([...data.subarray(75, 175)]);
        expect(s.position, name).toBe(175);
        expect((await s.readExact(200)).length, name).toBe(125); // short at EOF
        expect((await s.peek(1)).length, name).toBe(0);
        expect(await s.skip(5), name).toBe(0);
        expect(s.position, name).toBe(300);
      }
    } finally {
      closeSync(fd);
    }
  });
});

describe('checkpointed streams', () => {
  const state = (id: number): Part => ({ xl: { name: 'CHECKPOINT_STATE', controlId: id } });
  const ck: Part[] = [{ xc: pageData([[3, 0]]) }, { xc: TSC }, { xc: HVMCTX }, { xc: HVMPAR }, { xc: CKPT }];
  const head: Part[] = [LIBXL_HDR, { xl: LX_CTX }, ...hvmParts().slice(0, -1), { xc: CKPT }];
  it('Remus: libxc CHECKPOINT hands over to libxl until CHECKPOINT_END, no END, EOF ends', async () => {
    const bytes = build([...head, { xl: EMU }, { xl: LX_CKEND }, ...ck, { xl: EMU }, { xl: LX_CKEND }]);
    const { items, summary } = await readAll(chunked(bytes, 3));
    const n = names(items);
    const i = n.indexOf('libxc:CHECKPOINT');
    expect(n.slice(i, i + 4)).toEqual([
      'libxc:CHECKPOINT',
      'libxl:EMULATOR_CONTEXT',
      'libxl:CHECKPOINT_END',
      'libxc:PAGE_DATA',
    ]);
    expect(n.at(-1)).toBe('libxl:CHECKPOINT_END');
    expect(summary.endedBy).toBe('EOF');
    const rep = await validateStream(bytes, { streamType: 'remus' });
    expect(rep.facts.checkpoints).toBe(2);
    expect(rep.facts.partialCheckpoint).toBe(false);
    await expect(validateStream(bytes)).rejects.toMatchObject({ code: 'ERR_ORDER' }); // plain by default
    const auto = await validateStream(bytes, { streamType: 'auto' });
    expect(auto.facts.checkpoints).toBe(2);
  });
  it('COLO: CHECKPOINT_STATE (type 5, length 4) is libxl; X86_PV_VCPU_EXTENDED (type 5) stays libxc', async () => {
    const bytes = build([
      ...head,
      { xl: EMU },
      { xl: LX_CKEND },
      state(0),
      ...ck,
      { xl: EMU },
      { xl: LX_CKEND },
      state(0),
    ]);
    const { items } = await readAll(bytes);
    const n = names(items);
    expect(n.filter((x) => x === 'libxl:CHECKPOINT_STATE').length).toBe(2);
    expect(n[n.indexOf('libxl:CHECKPOINT_STATE') + 1]).toBe('libxc:PAGE_DATA');
    expect((await validateStream(bytes, { streamType: 'colo' })).facts.checkpoints).toBe(2);
    // PV: a checkpoint that resumes with a VCPU_EXTENDED record right after CHECKPOINT_END
    const pv = pvParts().slice(0, -1);
    const pvBytes = build([
      LIBXL_HDR,
      { xl: LX_CTX },
      ...pv,
      { xc: CKPT },
      { xl: LX_CKEND },
      { xc: { name: 'X86_PV_VCPU_EXTENDED', vcpuId: 0, reserved: 0, context: new Uint8Array(64) } },
    ]);
    const pvItems = names((await readAll(pvBytes)).items);
    expect(pvItems.at(-1)).toBe('libxc:X86_PV_VCPU_EXTENDED');
  });
  it('stream ending inside a checkpoint is a (valid) failover point, flagged as partial', async () => {
    const bytes = build([...head, { xl: EMU }, { xl: LX_CKEND }, { xc: pageData([[3, 0]]) }]);
    const rep = await validateStream(bytes, { streamType: 'remus' });
    expect(rep.facts.partialCheckpoint).toBe(true);
  });
  it('COLO back channel', async () => {
    const bytes = build([
      state(2),
      state(3),
      state(1),
      { xc: { name: 'CHECKPOINT_DIRTY_PFN_LIST', pfns: new BigUint64Array([4n, 2n]) } },
      state(2),
    ]);
    const { items } = await readAll(bytes, { format: 'colo-back' });
    expect(names(items)).toEqual([
      'libxl:CHECKPOINT_STATE',
      'libxl:CHECKPOINT_STATE',
      'libxl:CHECKPOINT_STATE',
      'libxc:CHECKPOINT_DIRTY_PFN_LIST',
      'libxl:CHECKPOINT_STATE',
    ]);
    await validateStream(bytes, { format: 'colo-back' });
  });
});

describe('lazy PAGE_DATA', () => {
  const bytes = build(pvParts());
  it('readPayloadInto fills the target with exactly the data pages', async () => {
    const r = new StreamReader(chunked(bytes, [1000, 3]), { lazyPageData: true });
    const seen: string[] = [];
    for await (const it of r) {
      seen.push(it.name);
      if (it.kind === 'record' && it.record.name === 'PAGE_DATA') {
        expect(it.record.data).toBeNull();
        const target = new Uint8Array(it.record.dataPages * 4096 + 10).fill(0xcc);
        await it.record.readPayloadInto!(target);
        // pageData() fills each data page with pfn & 0xff: pfns 0 and 2 carry data
        expect(target[0]).toBe(0);
        expect(target[4096]).toBe(2);
        expect(target[8191]).toBe(2);
        expect(target[8192]).toBe(0xcc);
        expect(it.record.payloadOffset).toBe(it.offset + 16 + 8 * it.record.count);
        await expect(it.record.readPayloadInto!(target)).rejects.toMatchObject({ code: 'ERR_USAGE' });
        await expect(it.record.readPayloadInto!(new Uint8Array(1))).rejects.toMatchObject({
          code: 'ERR_USAGE',
        });
      }
    }
    expect(seen.at(-1)).toBe('END');
  });
  it('an unconsumed payload is skipped; skipPayload works; late reads are refused', async () => {
    let held: (() => Promise<void>) | null = null;
    for (const consume of ['none', 'skip'] as const) {
      const r = new StreamReader(bytes, { lazyPageData: true });
      const after: string[] = [];
      let inPd = false;
      for await (const it of r) {
        if (inPd) after.push(it.name);
        if (it.kind === 'record' && it.record.name === 'PAGE_DATA') {
          inPd = true;
          if (consume === 'skip') await it.record.skipPayload!();
          else
            held = () =>
              it.record.name === 'PAGE_DATA'
                ? it.record.readPayloadInto!(new Uint8Array(8192))
                : Promise.resolve();
        }
      }
      expect(after[0]).toBe('X86_TSC_INFO');
    }
    await expect(held!()).rejects.toMatchObject({ code: 'ERR_USAGE' });
  });
  it('truncated payload is ERR_TRUNCATED from readPayloadInto', async () => {
    const pdOff = build(pvParts().slice(0, 6)).length;
    const r = new StreamReader(bytes.subarray(0, pdOff + 40 + 100), { lazyPageData: true });
    let err: unknown;
    try {
      for await (const it of r)
        if (it.kind === 'record' && it.record.name === 'PAGE_DATA')
          await it.record.readPayloadInto!(new Uint8Array(8192));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StreamError);
    expect(err).toMatchObject({ code: 'ERR_TRUNCATED', offset: pdOff, recordType: 'PAGE_DATA' });
  });
});

describe('ends and extras', () => {
  it('EOF at a record boundary vs truncation', async () => {
    const bytes = build(pvParts());
    const cut = (await readAll(bytes.subarray(0, bytes.length - 8))).summary;
    expect(cut.endedBy).toBe('EOF');
    await expect(readAll(bytes.subarray(0, bytes.length - 3))).rejects.toMatchObject({
      code: 'ERR_TRUNCATED',
      offset: bytes.length - 8,
    });
  });
  it("afterEnd: 'stop' leaves what follows END in the source", async () => {
    const bytes = build(xlHvmParts());
    const tail = new TextEncoder().encode('domain received, ready to unpause\0');
    const r = new StreamReader(Readable.from(chunked(concatBytes([bytes, tail]), 4096)), {
      afterEnd: 'stop',
    });
    for await (const _ of r) void _;
    expect(r.summary.endedBy).toBe('END');
    const rest = await r.source!.readExact(tail.length);
    expect(Buffer.from(rest).toString()).toBe('domain received, ready to unpause\0');
  });
  it('unknown optional records: yielded raw or skipped', async () => {
    const parts = pvParts();
    const unk = encodeLibxcRecord({ name: 'UNKNOWN', type: 0x80000042, body: Uint8Array.from([1, 2, 3]) });
    const bytes = build([...parts.slice(0, -1), unk, parts.at(-1)!]);
    const y = await readAll(bytes);
    const u = y.items.find((i) => i.name.startsWith('UNKNOWN'));
    expect(u && u.kind === 'record' && u.record.name === 'UNKNOWN' && [...u.record.body]).toEqual([1, 2, 3]);
    const s = await readAll(bytes, { unknownOptional: 'skip' });
    expect(s.items.length).toBe(y.items.length - 1);
    const rep = await validateStream(bytes);
    expect(rep.warnings.length).toBe(1);
    // libxl optional unknown: passes through too
    const lx = build([
      ...xlHvmParts().slice(0, -1),
      encodeLibxlRecord({ name: 'UNKNOWN', type: 0x80000001, body: new Uint8Array(0) }),
      { xl: { name: 'END' } },
    ]);
    expect((await validateStream(lx)).warnings[0]!.layer).toBe('libxl');
  });
  it('memory stays bounded when a length field lies on a short input', async () => {
    const hdr = build(pvParts().slice(0, 2));
    const liar = concatBytes([hdr, Uint8Array.from([9, 0, 0, 0, 0, 0, 0, 8]), new Uint8Array(100)]); // HVM_CONTEXT of 128 MiB
    const before = process.memoryUsage().arrayBuffers;
    await expect(readAll(chunked(liar, 10))).rejects.toMatchObject({ code: 'ERR_TRUNCATED' });
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 * 2 ** 20);
  });
  it('maxRecordLength lowers the cap', async () => {
    const bytes = build(pvParts());
    await expect(readAll(bytes, { maxRecordLength: 4096 })).rejects.toMatchObject({
      code: 'ERR_RECORD_TOO_LONG',
    });
  });
  it('a reader can only be iterated once', async () => {
    const r = new StreamReader(build(pvParts()));
    for await (const _ of r) void _;
    expect(() => r[Symbol.asyncIterator]()).toThrow(StreamError);
  });
});
