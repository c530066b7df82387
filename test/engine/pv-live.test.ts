// Live PV save on the mock: a guest workload writes from another process while the live rounds
// run; what the restore builds must be the guest as it was at the suspend. Page tables that are
// inconsistent while live are deferred (sent as XTAB, then again after the suspend), as libxc does.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MigrationError } from '../../src/engine/errors.js';
import type { SaveStats } from '../../src/engine/save/types.js';
import { openMockHost, type MockHypervisor } from '../../src/xen/hypervisor.js';
import { buildChild, type ChildRunner } from './helpers/pv-child-build.js';
import { directMap, inspectPvDomain, mockLayout } from './helpers/pv-inspect.js';
import { tempHost, restoreLibxc, saveLibxc } from './helpers/pv.js';
import { StreamReader } from '../../src/stream/index.js';

const N = 4000;

/** (pfn, type) of every PAGE_DATA entry, in stream order */
async function entries(stream: Uint8Array): Promise<{ pfn: number; type: number }[]> {
  const out: { pfn: number; type: number }[] = [];
  for await (const it of new StreamReader(stream)) {
    if (it.kind === 'record' && it.record.name === 'PAGE_DATA')
      for (let i = 0; i < it.record.count; i++)
        out.push({ pfn: it.record.pfns[i]!, type: it.record.types[i]! });
  }
  return out;
}

function pte(mfn: number, flags: number): Uint8Array {
  const b = new Uint8Array(8);
  const v = new DataView(b.buffer);
  v.setUint32(0, ((mfn % 2 ** 20) * 4096 + flags) >>> 0, true);
  v.setUint32(4, Math.floor(mfn / 2 ** 20), true);
  return b;
}

describe('live PV save on the mock', () => {
  let host: ReturnType<typeof tempHost>;
  let xen: MockHypervisor;
  let child: ChildRunner;

  beforeAll(async () => {
    host = tempHost('xenmig-pv-live-');
    xen = openMockHost(host.dir);
    child = await buildChild();
  });
  afterAll(() => {
    xen?.close();
    child?.dispose();
    host?.cleanup();
  });

  it('a guest writing from another process during the live rounds restores as it was at the suspend', async () => {
    const d = xen.createDomain({ type: 'pv', pages: N, vcpus: 2 });
    let writes: number | undefined;
    const wl = child.start(
      { op: 'workload', host: host.dir, domid: d, rate: 50_000, seed: 99, durationMs: 600_000 },
      (l) => {
        if (typeof l.writes === 'number') writes = l.writes;
      },
    );
    await new Promise<void>((res, rej) => {
      wl.child.stdout!.once('data', () => res());
      wl.child.once('exit', () => rej(new Error('workload child ended early')));
    });
    let atSuspend = '';
    let stats: SaveStats | undefined;
    let progressAt = -1;
    const stream = await saveLibxc(xen, d, {
      live: true,
      suspend: async () => {
        xen.shutdown(d, 2);
        atSuspend = xen.checksum(d); // no guest write can land after the shutdown returned
      },
      callbacks: {
        // between rounds, wait until the other process has dirtied pages again (PEEK does not
        // clear the log; bounded, so a silent workload fails the assertions below instead of hanging)
        precopyPolicy: (s) => {
          if (s.dirtyCount === -1) {
            const bitmap = new Uint8Array(Math.ceil(N / 64) * 8);
            const t = Date.now();
            while (Date.now() - t < 20_000) {
              xen.logDirtyPeek(d, bitmap, N);
              if (bitmap.some((b) => b !== 0)) break;
            }
          }
          progressAt = s.iteration;
          return s.iteration >= 3 ? 'stop-and-copy' : 'continue';
        },
      },
      onStats: (s) => (stats = s),
    });
    wl.child.kill('SIGTERM');
    await wl.done.catch(() => 0);
    void writes;
    // the source stays suspended: nothing written after the checksum was taken
    expect(xen.checksum(d)).toBe(atSuspend);
    expect(progressAt).toBeGreaterThanOrEqual(3);
    const live = stats!.rounds.filter((r) => r.kind === 'live');
    expect(live.length).toBeGreaterThanOrEqual(2);
    expect(live[0]!.pages).toBe(N);
    // the guest really wrote during the live phase: later rounds resent dirty pages
    expect(live.slice(1).reduce((a, r) => a + r.pages, 0)).toBeGreaterThan(0);

    const e = xen.createDomain({ type: 'pv', pages: N, vcpus: 2, populate: false });
    await restoreLibxc(xen, e, stream);
    expect(xen.checksum(e)).toBe(atSuspend);
    expect(inspectPvDomain(xen, e)).toMatchObject({
      m2pMismatches: 0,
      p2mMismatches: 0,
      foreignPtes: 0,
      cr3PinnedL4: true,
    });
    xen.destroy(e);
    xen.destroy(d);
  });

  it('a page table naming a foreign frame while live is deferred (XTAB) and sent again after the suspend', async () => {
    const d = xen.createDomain({ type: 'pv', pages: N, vcpus: 1 });
    const L = mockLayout(N);
    const l1 = L.l1 + 1; // the L1 mapping pfns 512..1023
    const mfns = directMap(xen, d, N);
    const original = pte(mfns[512]!, 0x63); // present, rw, accessed, dirty
    const foreign = pte(2 ** 30, 0x63); // no such frame on this host
    let atSuspend = '';
    const stream = await saveLibxc(xen, d, {
      live: true,
      suspend: async () => {
        xen.shutdown(d, 2);
        atSuspend = xen.checksum(d);
      },
      callbacks: {
        precopyPolicy: (s) => {
          // before the first pass: the guest is mid-update of a PTE; after it: done
          if (s.iteration === 0 && s.dirtyCount !== -1) xen.guestWrite(d, l1, 0, foreign);
          if (s.iteration === 1 && s.dirtyCount === -1) xen.guestWrite(d, l1, 0, original);
          return s.iteration >= 2 ? 'stop-and-copy' : 'continue';
        },
      },
    });
    const seen = (await entries(stream)).filter((x) => x.pfn === l1).map((x) => x.type);
    expect(seen[0]).toBe(0xf); // XTAB: deferred
    expect(seen.slice(1)).toContain(1); // an L1 table afterwards
    const e = xen.createDomain({ type: 'pv', pages: N, vcpus: 1, populate: false });
    await restoreLibxc(xen, e, stream);
    expect(xen.checksum(e)).toBe(atSuspend);
    xen.destroy(e);
    xen.destroy(d);
  });

  it('the same foreign frame with the guest suspended is an ERR_PV_STATE error', async () => {
    const d = xen.createDomain({ type: 'pv', pages: N, vcpus: 1 });
    const L = mockLayout(N);
    xen.guestWrite(d, L.l1 + 1, 8, pte(2 ** 30, 0x63));
    const err = await saveLibxc(xen, d).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MigrationError);
    expect((err as MigrationError).code).toBe('ERR_PV_STATE');
    expect((err as Error).message).toMatch(/not one of the guest's frames|cannot be normalised/);
    xen.destroy(d);
  });

  it('a superpage mapping (PSE in an L2) is refused, as libxc does', async () => {
    const d = xen.createDomain({ type: 'pv', pages: N, vcpus: 1 });
    const L = mockLayout(N);
    const mfns = directMap(xen, d, N);
    xen.guestWrite(d, L.l2, 8 * 100, pte(mfns[0]!, 0xe3)); // present, rw, A, D, PSE
    const err = await saveLibxc(xen, d).catch((e: unknown) => e);
    expect((err as MigrationError).code).toBe('ERR_PV_STATE');
    expect((err as Error).message).toMatch(/superpage/);
    xen.destroy(d);
  });

  it('a p2m the guest changes during the live rounds aborts the save clearly', async () => {
    const d = xen.createDomain({ type: 'pv', pages: N, vcpus: 1 });
    const L = mockLayout(N);
    const mfns = directMap(xen, d, N);
    const err = await saveLibxc(xen, d, {
      live: true,
      callbacks: {
        precopyPolicy: (s) => {
          // the guest moves its second p2m leaf (frame list entry 1) to another of its pages
          if (s.iteration === 1 && s.dirtyCount === -1) {
            const b = new Uint8Array(8);
            new DataView(b.buffer).setBigUint64(0, BigInt(mfns[10]!), true);
            xen.guestWrite(d, L.p2mMid, 8, b);
          }
          return s.iteration >= 2 ? 'stop-and-copy' : 'continue';
        },
      },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MigrationError);
    expect((err as MigrationError).code).toBe('ERR_PV_STATE');
    expect((err as Error).message).toMatch(/changed its p2m.*leaf 1 moved/);
    xen.destroy(d);
  });
});
