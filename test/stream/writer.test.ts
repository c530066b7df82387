// StreamWriter: framing, PAGE_DATA batching (≤ 1024), backpressure, fd target, buffer reuse.
import { describe, it, expect } from 'vitest';
import { Writable } from 'node:stream';
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  StreamWriter,
  StreamError,
  concatBytes,
  encodePageDataHeader,
  encodeLibxcRecord,
  pageDataBatches,
  readAll,
  validateStream,
} from '../../src/stream/index.js';

/** A Writable that accepts one chunk per tick and records what it got (copying it late). */
function slowSink(hwm = 16) {
  const got: Uint8Array[] = [];
  let maxPending = 0;
  const ws = new Writable({
    highWaterMark: hwm,
    write(chunk: Buffer, _e, cb) {
      maxPending = Math.max(maxPending, ws.writableLength);
      setTimeout(() => {
        got.push(new Uint8Array(chunk)); // copied only when "sent": the writer must not reuse before
        cb();
      }, 1);
    },
  });
  return { ws, bytes: () => concatBytes(got), maxPending: () => maxPending };
}

async function writeHvm(w: StreamWriter, pages: number, reuse: Uint8Array) {
  await w.writeImageHeader();
  await w.writeDomainHeader({ type: 2, pageShift: 12, reserved: 0, xenMajor: 4, xenMinor: 17 });
  await w.writeLibxcRecord({ name: 'STATIC_DATA_END' });
  const pfns = Array.from({ length: pages }, (_, i) => i);
  const types = pfns.map((p) => (p % 7 === 3 ? 15 : 0));
  const dataPages = types.filter((t) => t === 0).length;
  // one reusable staging buffer, refilled after each await (as a save engine would)
  for (const [hdr, d] of pageDataBatches(pfns, types, new Uint8Array(dataPages * 4096))) {
    reuse.fill(hdr[16]!); // first pfn's low byte
    await w.writeRaw(hdr, reuse.subarray(0, d.length));
    reuse.fill(0xee); // clobber: must not show up in the output
  }
  await w.writeLibxcRecord({ name: 'X86_TSC_INFO', mode: 0, khz: 1, nsec: 2n, incarnation: 3, reserved: 0 });
  await w.writeLibxcRecord({ name: 'HVM_CONTEXT', data: Uint8Array.from([1, 2, 3]) });
  await w.writeLibxcRecord({ name: 'END' });
}

describe('StreamWriter', () => {
  it('writes PAGE_DATA in batches of at most 1024 and honours backpressure without buffer reuse hazards', async () => {
    const sink = slowSink();
    const w = new StreamWriter(sink.ws);
    const reuse = new Uint8Array(1024 * 4096);
    await writeHvm(w, 2500, reuse);
    await w.end();
    const out = sink.bytes();
    expect(w.bytesWritten).toBe(out.length);
    expect(sink.maxPending()).toBeLessThanOrEqual(1024 * 4096 + 8 + 8 * 1024 + 8);
    const { items } = await readAll(out);
    const pds = items.flatMap((i) =>
      i.kind === 'record' && i.record.name === 'PAGE_DATA' ? [i.record] : [],
    );
    expect(pds.map((p) => p.count)).toEqual([1024, 1024, 452]);
    expect(pds.map((p) => p.pfns[0])).toEqual([0, 1024, 2048]);
    for (const p of pds) {
      expect(p.data!.every((b) => b === (p.pfns[0]! & 0xff))).toBe(true); // no 0xee from the clobber
    }
    await validateStream(out.subarray(0), { streamType: 'plain' }).catch((e) => {
      throw e;
    });
  });

  it('writes to an fd (writev) with the same bytes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'xenmig-w-'));
    try {
      const file = join(dir, 'out.bin');
      const fd = openSync(file, 'w');
      const w = new StreamWriter(fd);
      await writeHvm(w, 1030, new Uint8Array(1024 * 4096));
      closeSync(fd);
      const sink = slowSink(1 << 20);
      const w2 = new StreamWriter(sink.ws);
      await writeHvm(w2, 1030, new Uint8Array(1024 * 4096));
      await w2.end();
      expect(Buffer.compare(readFileSync(file), Buffer.from(sink.bytes()))).toBe(0);
      await validateStream(file);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('writePages equals the pure encoder; header-only builder + page bytes equals the record', async () => {
    const sink = slowSink(1 << 20);
    const w = new StreamWriter(sink.ws);
    const data = new Uint8Array(2 * 4096).fill(7);
    await w.writePages([5, 6, 7], [0, 15, 9], data);
    await w.end();
    const rec = encodeLibxcRecord({
      name: 'PAGE_DATA',
      count: 3,
      reserved: 0,
      pfns: Float64Array.from([5, 6, 7]),
      types: Uint8Array.from([0, 15, 9]),
      dataPages: 2,
      data,
    });
    expect(sink.bytes()).toEqual(rec);
    const h = encodePageDataHeader({ pfns: [5, 6, 7], types: [0, 15, 9] });
    expect(h.dataPages).toBe(2);
    expect(concatBytes([h.bytes, data])).toEqual(rec);
  });

  it('writeRecord pads with zeros; misuse raises StreamError ERR_USAGE', async () => {
    const sink = slowSink(1 << 20);
    const w = new StreamWriter(sink.ws);
    await w.writeRecord(0x9, Uint8Array.from([1, 2, 3]));
    await w.end();
    expect([...sink.bytes()]).toEqual([9, 0, 0, 0, 3, 0, 0, 0, 1, 2, 3, 0, 0, 0, 0, 0]);
    const w2 = new StreamWriter(slowSink().ws);
    await expect(w2.writePages([1, 2], [0], new Uint8Array(4096))).rejects.toBeInstanceOf(StreamError);
    await expect(w2.writePages([1], [5], new Uint8Array(4096))).rejects.toMatchObject({ code: 'ERR_USAGE' });
    await expect(w2.writePages([1], [0], new Uint8Array(10))).rejects.toMatchObject({ code: 'ERR_USAGE' });
    expect(() => encodePageDataHeader({ pfns: [2 ** 52], types: [0] })).toThrow(StreamError);
  });

  it('propagates target errors', async () => {
    const ws = new Writable({
      write(_c, _e, cb) {
        cb(new Error('disk full'));
      },
    });
    ws.on('error', () => {});
    const w = new StreamWriter(ws);
    await expect(w.writeImageHeader()).rejects.toThrow('disk full');
  });
});
