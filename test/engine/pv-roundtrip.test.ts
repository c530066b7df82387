// PV save -> restore on the mock: into an empty domain on the same host, and on a second host in a
// child process (the mock host is chosen per process). Checksums (memory normalised + vCPU state)
// must be equal, and the restored guest must be consistent on its new frames: M2P, its own p2m,
// every page-table entry, the pins, and a second save of it must carry the same normalised pages.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMockHost, type MockHypervisor } from '../../src/xen/hypervisor.js';
import { buildChild, type ChildRunner } from './helpers/pv-child-build.js';
import { inspectPvDomain } from './helpers/pv-inspect.js';
import { libxcSave } from '../../src/engine/save/save.js';
import { StreamWriter } from '../../src/stream/index.js';
import { decode, tempHost, restoreLibxc, saveLibxc, Sink } from './helpers/pv.js';

const N = 3000;

/** pfns whose content is machine-specific in a mock guest: start info and the p2m pages */
function machineSpecific(n: number): Set<number> {
  const np2m = Math.ceil(n / 512);
  const nmid = Math.ceil(np2m / 512);
  const s = new Set<number>();
  for (let p = n - np2m - nmid - 1; p < n; p++) s.add(p); // p2m top, mids, leaves
  const nl1 = Math.ceil(n / 512);
  const nl2 = Math.ceil(nl1 / 512);
  const first = n - (3 + 1 + 1 + nl2 + nl1 + 1 + nmid + np2m);
  s.add(first); // start info
  return s;
}

describe('PV save/restore on the mock', () => {
  let host: ReturnType<typeof tempHost>;
  let hostB: ReturnType<typeof tempHost>;
  let xen: MockHypervisor;
  let child: ChildRunner;
  let src = 0;
  let stream: Buffer;
  let sumAtSuspend = '';

  beforeAll(async () => {
    host = tempHost('xenmig-pv-a-');
    hostB = tempHost('xenmig-pv-b-');
    xen = openMockHost(host.dir);
    child = await buildChild();
    src = xen.createDomain({ type: 'pv', pages: N, vcpus: 2 });
    // the guest has run and written: its pages are not the freshly built ones
    expect(await xen.workload(src, { rate: 1_000_000, seed: 42, durationMs: 30 })).toBeGreaterThan(0);
    stream = await saveLibxc(xen, src);
    sumAtSuspend = xen.checksum(src);
  });
  afterAll(() => {
    xen?.close();
    child?.dispose();
    host?.cleanup();
    hostB?.cleanup();
  });

  it('the stream has the PV records a libxc sender writes, in order', async () => {
    const { records, pages } = await decode(stream);
    const names = records.map((r) => r.name);
    expect(names.slice(0, 5)).toEqual([
      'X86_PV_INFO',
      'X86_CPUID_POLICY',
      'X86_MSR_POLICY',
      'STATIC_DATA_END',
      'X86_PV_P2M_FRAMES',
    ]);
    expect(names.slice(5)).toEqual([
      'X86_TSC_INFO',
      'SHARED_INFO',
      ...['X86_PV_VCPU_BASIC', 'X86_PV_VCPU_EXTENDED', 'X86_PV_VCPU_XSAVE', 'X86_PV_VCPU_MSRS'],
      ...['X86_PV_VCPU_BASIC', 'X86_PV_VCPU_EXTENDED', 'X86_PV_VCPU_XSAVE', 'X86_PV_VCPU_MSRS'],
      'END',
    ]);
    const info = records[0]!;
    expect(info).toMatchObject({ guestWidth: 8, ptLevels: 4 });
    const p2m = records[4]!;
    if (p2m.name !== 'X86_PV_P2M_FRAMES') throw new Error('no P2M_FRAMES');
    expect(p2m.startPfn).toBe(0);
    expect(p2m.endPfn).toBe(N - 1);
    // the leaves are the mock guest's last ceil(N/512) pfns, named by pfn (not mfn)
    expect(Array.from(p2m.frames, Number)).toEqual(
      Array.from({ length: Math.ceil(N / 512) }, (_, j) => N - Math.ceil(N / 512) + j),
    );
    expect(pages.size).toBe(N);
    // normalised page tables: every present entry names a pfn of the guest, Xen's L4 slots are empty
    let tables = 0;
    for (const [, pg] of pages) {
      const lvl = pg.type & 7;
      if (!pg.data || lvl < 1 || lvl > 4 || (pg.type > 4 && pg.type < 9)) continue;
      tables++;
      const v = new DataView(pg.data.buffer, pg.data.byteOffset, 4096);
      for (let e = 0; e < 512; e++) {
        const lo = v.getUint32(e * 8, true);
        if (lvl === 4 && e >= 256 && e <= 272) expect(lo).toBe(0);
        if (!(lo & 1)) continue;
        const pfn = (v.getUint32(e * 8 + 4, true) & 0xfffff) * 2 ** 20 + (lo >>> 12);
        expect(pfn).toBeLessThan(N);
      }
    }
    expect(tables).toBe(1 + 1 + 1 + Math.ceil(N / 512)); // L4, L3, one L2, the L1s
  });

  it('restores into an empty domain on the same host: equal checksum, consistent on the new frames', async () => {
    const e = xen.createDomain({ type: 'pv', pages: N, vcpus: 2, populate: false });
    const stats = await restoreLibxc(xen, e, stream);
    expect(stats.pages).toBe(N);
    expect(xen.checksum(e)).toBe(sumAtSuspend);
    const f = inspectPvDomain(xen, e);
    expect(f, JSON.stringify(f)).toMatchObject({
      pages: N,
      m2pMismatches: 0,
      p2mMismatches: 0,
      foreignPtes: 0,
      cr3PinnedL4: true,
    });
    expect(f.tableTypes).toEqual(inspectPvDomain(xen, src).tableTypes);

    // run it (the guest rebuilds its frame list, as Linux does), then save it again: the same pages
    xen.unpause(e);
    expect(xen.checksum(e)).toBe(sumAtSuspend);
    const again = await decode(await saveLibxc(xen, e));
    const first = await decode(stream);
    const skip = machineSpecific(N);
    let compared = 0;
    for (const [pfn, pg] of first.pages) {
      const other = again.pages.get(pfn)!;
      expect(other.type, `type of pfn ${pfn}`).toBe(pg.type);
      if (skip.has(pfn)) continue;
      expect(Buffer.compare(other.data!, pg.data!), `pfn ${pfn}`).toBe(0);
      compared++;
    }
    expect(compared).toBe(N - skip.size);
    // and the vCPU state, frames as pfns, is the sender's (vCPU0's rax: the suspend return value)
    const basics = (d: typeof first) =>
      d.records
        .filter((r) => r.name === 'X86_PV_VCPU_BASIC')
        .map((r) => (r as { context: Uint8Array }).context);
    const [a0, a1] = basics(first);
    const [b0, b1] = basics(again);
    expect(Buffer.compare(b1!, a1!)).toBe(0);
    const z = (b: Uint8Array) => {
      const c = b.slice();
      c.fill(0, 600, 608);
      return c;
    };
    expect(Buffer.compare(z(b0!), z(a0!))).toBe(0);
    xen.destroy(e);
  });

  it('restores on a second host, in another process: equal checksum, consistent there', async () => {
    const file = join(hostB.dir, 'stream.bin');
    writeFileSync(file, stream);
    const [out] = await child.run({
      op: 'restore',
      host: hostB.dir,
      stream: file,
      pages: N,
      vcpus: 2,
      padPages: 700,
    });
    expect(out).not.toHaveProperty('error');
    expect(out!.checksum).toBe(sumAtSuspend);
    expect(out!.facts).toMatchObject({
      pages: N,
      m2pMismatches: 0,
      p2mMismatches: 0,
      foreignPtes: 0,
      cr3PinnedL4: true,
    });
  });

  it('a changed page shows in the checksum (the comparison can fail)', async () => {
    const e = xen.createDomain({ type: 'pv', pages: N, vcpus: 2, populate: false });
    await restoreLibxc(xen, e, stream);
    xen.unpause(e); // a paused guest's writes wait for the unpause
    expect(xen.checksum(e)).toBe(sumAtSuspend);
    xen.guestWrite(e, 5, 0, new Uint8Array([1, 2, 3]));
    expect(xen.checksum(e)).not.toBe(sumAtSuspend);
    xen.destroy(e);
  });

  it('verify mode (live, debug): the resent pages, page tables localised, match what was restored', async () => {
    const d = xen.createDomain({ type: 'pv', pages: N, vcpus: 1 });
    const sink = new Sink();
    const out = new StreamWriter(sink);
    await libxcSave({
      xen,
      domid: d,
      out,
      live: true,
      verify: true,
      callbacks: { suspend: async () => xen.shutdown(d, 2) },
    });
    await out.end();
    const e = xen.createDomain({ type: 'pv', pages: N, vcpus: 1, populate: false });
    const stats = await restoreLibxc(xen, e, sink.bytes());
    expect(stats.verifyMismatches).toBe(0);
    expect(xen.checksum(e)).toBe(xen.checksum(d));
    xen.destroy(e);
    xen.destroy(d);
  });
});
