// The save engine maps the next batch while the previous one is being written. A sink that keeps
// the chunks it is given until its (late) write callback reads them then: every page must still be
// mapped at that moment, also when the save fails with a write in flight, and the stream must
// carry exactly the guest's pages.
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMockHost, type MockHypervisor } from '../../src/xen/hypervisor.js';
import type { Hypervisor, Mapping } from '../../src/xen/types.js';
import { libxcSave } from '../../src/engine/save/save.js';
import { readAll, StreamWriter } from '../../src/stream/index.js';
import { tempHost } from './helpers/pv.js';

const PAGES = 5000; // 5 batches

/** Consumes each chunk a few ms after write() was called, as a busy socket would. */
class LateSink extends Writable {
  readonly parts: Buffer[] = [];
  /** chunks that had lost their bytes (unmapped under the write) when consumed */
  detached = 0;
  pending = 0;
  constructor() {
    super({ highWaterMark: 64 << 20 });
  }
  override _write(chunk: Buffer, _e: BufferEncoding, cb: (e?: Error) => void): void {
    const expected = chunk.length;
    this.pending++;
    setTimeout(() => {
      this.pending--;
      // the writer never hands over empty chunks: an empty one lost its bytes before or after _write
      if (chunk.length === 0 || chunk.length !== expected) this.detached++;
      this.parts.push(Buffer.from(chunk));
      cb();
    }, 2);
  }
}

/** `xen` with map() observed (and made to fail from call `failAt` on). */
function observed(xen: Hypervisor, sink: LateSink, failAt = Infinity) {
  const seen = { maps: 0, mapsWhileWriting: 0 };
  const hv = new Proxy(xen, {
    get(target, key) {
      if (key === 'map') {
        return (domid: number, frames: BigUint64Array, prot: 'r' | 'rw'): Mapping => {
          if (++seen.maps >= failAt)
            throw Object.assign(new Error('injected map failure'), { code: 'EIO', errno: 5, syscall: 'map' });
          if (sink.pending > 0) seen.mapsWhileWriting++;
          return target.map(domid, frames, prot);
        };
      }
      const v = Reflect.get(target, key, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { hv, seen };
}

describe('save engine: next batch mapped while the previous one is written', () => {
  let host: ReturnType<typeof tempHost>;
  let xen: MockHypervisor;

  beforeAll(() => {
    host = tempHost('xenmig-pv-overlap-');
    xen = openMockHost(host.dir);
  });
  afterAll(() => {
    xen?.close();
    host?.cleanup();
  });

  it('every page reaches a late sink intact, and mapping overlaps writing', async () => {
    const d = xen.createDomain({ type: 'hvm', pages: PAGES, vcpus: 1 });
    expect(await xen.workload(d, { rate: 1_000_000, seed: 7, durationMs: 30 })).toBeGreaterThan(0);
    const sink = new LateSink();
    const { hv, seen } = observed(xen, sink);
    const out = new StreamWriter(sink);
    await libxcSave({
      xen: hv,
      domid: d,
      out,
      live: false,
      zeroCopy: true,
      callbacks: { suspend: async () => xen.shutdown(d, 2) },
    });
    expect(sink.detached).toBe(0);
    expect(seen.maps).toBeGreaterThanOrEqual(5);
    expect(seen.mapsWhileWriting).toBeGreaterThan(0);
    // the stream's pages are the guest's
    const { items } = await readAll(Buffer.concat(sink.parts));
    let pages = 0;
    for (const it of items) {
      if (it.kind !== 'record' || it.layer !== 'libxc' || it.record.name !== 'PAGE_DATA') continue;
      const r = it.record;
      let j = 0;
      for (let i = 0; i < r.count; i++) {
        if (r.types[i]! >= 0xd) continue; // no data
        const m = xen.map(d, BigUint64Array.of(BigInt(r.pfns[i]!)), 'r');
        expect(
          Buffer.compare(Buffer.from(r.data!.subarray(j * 4096, (j + 1) * 4096)), Buffer.from(m.bytes)),
        ).toBe(0);
        m.unmap();
        j++;
        pages++;
      }
    }
    expect(pages).toBe(PAGES);
    xen.destroy(d);
  });

  it('a failure while a write is in flight leaves that write its pages, and rejects with the failure', async () => {
    const d = xen.createDomain({ type: 'hvm', pages: PAGES, vcpus: 1 });
    const sink = new LateSink();
    const { hv } = observed(xen, sink, 3);
    const out = new StreamWriter(sink);
    await expect(
      libxcSave({
        xen: hv,
        domid: d,
        out,
        live: false,
        zeroCopy: true,
        callbacks: { suspend: async () => xen.shutdown(d, 2) },
      }),
    ).rejects.toThrow('injected map failure');
    await new Promise((r) => setTimeout(r, 20));
    expect(sink.pending).toBe(0);
    expect(sink.detached).toBe(0);
    xen.destroy(d);
  });
});
