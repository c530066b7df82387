// ReadableByteSource: reads across chunk boundaries, and bytes read ahead past what the reader
// consumed go back to the Readable on release() (the handshake reads them after the stream).
import { describe, expect, it } from 'vitest';
import { PassThrough } from 'node:stream';
import { ReadableByteSource } from '../../src/stream/readable-source.js';

const bytes = (n: number, seed = 0) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);

describe('ReadableByteSource', () => {
  it('reads, peeks and skips across chunks, and hands the unconsumed rest back on release()', async () => {
    const all = bytes(10_000);
    const pt = new PassThrough();
    // uneven chunks, written before and while reading
    pt.write(all.subarray(0, 3));
    const src = new ReadableByteSource(pt);
    const head = src.readExact(10);
    pt.write(all.subarray(3, 5000));
    expect(Array.from(await head)).toEqual(Array.from(all.subarray(0, 10)));
    expect(Array.from(await src.peek(16))).toEqual(Array.from(all.subarray(10, 26)));
    expect(await src.skip(90)).toBe(90);
    const target = new Uint8Array(6000);
    const into = src.readInto(target.subarray(0, 4950));
    pt.write(all.subarray(5000, 10_000));
    expect(await into).toBe(4950);
    expect(Array.from(target.subarray(0, 4950))).toEqual(Array.from(all.subarray(100, 5050)));
    expect(src.position).toBe(5050);
    // read a little of the last chunk, then give the rest back
    expect(Array.from(await src.readExact(50))).toEqual(Array.from(all.subarray(5050, 5100)));
    src.release();
    const rest: Buffer[] = [];
    pt.end();
    for await (const c of pt) rest.push(c as Buffer);
    expect(Array.from(Buffer.concat(rest))).toEqual(Array.from(all.subarray(5100)));
  });

  it('ends short at the end of the input, and reports a stream error', async () => {
    const pt = new PassThrough();
    const src = new ReadableByteSource(pt);
    pt.end(Buffer.from([1, 2, 3]));
    expect(Array.from(await src.readExact(8))).toEqual([1, 2, 3]);
    expect(await src.readInto(new Uint8Array(4))).toBe(0);

    const bad = new PassThrough();
    const s2 = new ReadableByteSource(bad);
    const p = s2.readExact(4);
    bad.destroy(new Error('link down'));
    await expect(p).rejects.toThrow(/link down/);
  });
});
