// PV through the toolstack layer on the mock: an `xl save`-format file restored by the xl layer
// (strict validation, domain built from the stream's config, unpaused), and a Remus stream of
// PV checkpoints whose failover restore is the last complete checkpoint. Plus the linear p2m
// list (arch.p2m_cr3) on a mock guest, and its generation counter while live.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mockBuilder } from '../../src/api.js';
import { MigrationError } from '../../src/engine/errors.js';
import { restoreDomain } from '../../src/toolstack/restore.js';
import { saveDomain } from '../../src/toolstack/save.js';
import { openMockHost, type MockHypervisor } from '../../src/xen/hypervisor.js';
import { mockLayout } from './helpers/pv-inspect.js';
import { decode, tempHost, saveLibxc, Sink } from './helpers/pv.js';

const N = 2500;

describe('PV through the toolstack layer', () => {
  let host: ReturnType<typeof tempHost>;
  let xen: MockHypervisor;
  beforeAll(() => {
    host = tempHost('xenmig-pv-ts-');
    xen = openMockHost(host.dir);
  });
  afterAll(() => {
    xen?.close();
    host?.cleanup();
  });

  it('xl format: save, restore into a domain built from the config, unpaused, checksum equal', async () => {
    const d = xen.createDomain({ type: 'pv', pages: N, vcpus: 2 });
    expect(await xen.workload(d, { rate: 1_000_000, seed: 5, durationMs: 20 })).toBeGreaterThan(0);
    const sink = new Sink();
    let atSuspend = '';
    await saveDomain({
      xen,
      domid: d,
      out: sink,
      format: 'xl',
      callbacks: {
        suspend: async () => {
          xen.shutdown(d, 2);
          atSuspend = xen.checksum(d);
        },
      },
    });
    const r = await restoreDomain({ xen, input: sink.bytes(), builder: mockBuilder(xen) });
    expect(r.unpaused).toBe(true);
    expect(xen.domainInfo(r.domid)).toMatchObject({ type: 'pv', maxVcpuId: 1, totPages: N });
    expect(xen.checksum(r.domid)).toBe(atSuspend);
    xen.destroy(r.domid);
    xen.destroy(d);
  });

  it.each([false, true])(
    'Remus (staging %s): PV checkpoints; the failover restore holds the last complete checkpoint',
    async (staging) => {
      const d = xen.createDomain({ type: 'pv', pages: N, vcpus: 1 });
      const sums: string[] = [];
      let n = 0;
      const sink = new Sink();
      await saveDomain({
        xen,
        domid: d,
        out: sink,
        format: 'libxl',
        live: true,
        streamType: 'remus',
        staging,
        callbacks: {
          suspend: async () => {
            xen.shutdown(d, 2);
            sums.push(xen.checksum(d));
          },
          checkpoint: async () => {
            // the guest runs again (postcopy resumed it): it changes a page before the next one
            xen.guestWrite(d, 10 + n, 0, new Uint8Array([n + 1, 0xaa]));
            n++;
            return n < 3 ? 'again' : 'stop';
          },
        },
      });
      expect(sums.length).toBe(3);
      expect(new Set(sums).size).toBe(3);
      const e = xen.createDomain({ type: 'pv', pages: N, vcpus: 1, populate: false });
      const r = await restoreDomain({
        xen,
        input: sink.bytes(),
        domid: e,
        streamType: 'remus',
        paused: true,
      });
      expect(r.stats.endedBy).toBe('failover');
      expect(r.stats.checkpoints).toBe(3);
      expect(xen.checksum(r.domid)).toBe(sums[2]);
      xen.destroy(r.domid);
      xen.destroy(d);
    },
  );

  describe('linear p2m list (arch.p2m_cr3 / p2m_vaddr, as Linux publishes it)', () => {
    /** publish the mock guest's p2m leaves as a virtual list: they sit in its direct map */
    function publishList(d: number, generation: bigint): void {
      const L = mockLayout(N);
      const ctx = xen.vcpuContextGet(d, 0);
      const cr3 = new DataView(ctx.buffer, ctx.byteOffset).getBigUint64(4984 + 24, true);
      const info = xen.domainInfo(d);
      const sh = xen.map(d, new BigUint64Array([BigInt(info.sharedInfoFrame)]), 'rw');
      const v = new DataView(sh.bytes.buffer, sh.bytes.byteOffset);
      v.setBigUint64(3088 + 24, cr3, true);
      v.setBigUint64(3088 + 32, 0xffff888000000000n + BigInt(L.p2mLeaf) * 4096n, true);
      v.setBigUint64(3088 + 40, generation, true);
      sh.unmap();
    }
    function bumpGeneration(d: number): void {
      const info = xen.domainInfo(d);
      const sh = xen.map(d, new BigUint64Array([BigInt(info.sharedInfoFrame)]), 'rw');
      const v = new DataView(sh.bytes.buffer, sh.bytes.byteOffset);
      v.setBigUint64(3088 + 40, v.getBigUint64(3088 + 40, true) + 1n, true);
      sh.unmap();
    }

    it('a save through the list carries what a save through the frame-list tree carries', async () => {
      const d = xen.createDomain({ type: 'pv', pages: N, vcpus: 1 });
      xen.pause(d);
      const viaTree = await decode(await saveLibxc(xen, d, { suspend: async () => {} }));
      publishList(d, 7n);
      const viaList = await decode(await saveLibxc(xen, d, { suspend: async () => {} }));
      expect(viaList.records.find((r) => r.name === 'X86_PV_P2M_FRAMES')).toEqual(
        viaTree.records.find((r) => r.name === 'X86_PV_P2M_FRAMES'),
      );
      expect(viaList.pages.size).toBe(N);
      for (const [pfn, pg] of viaTree.pages) {
        const o = viaList.pages.get(pfn)!;
        expect(o.type).toBe(pg.type);
        expect(Buffer.compare(o.data!, pg.data!), `pfn ${pfn}`).toBe(0);
      }
      xen.destroy(d);
    });

    it('a p2m generation change during the live rounds aborts the save', async () => {
      const d = xen.createDomain({ type: 'pv', pages: N, vcpus: 1 });
      publishList(d, 1n);
      const err = await saveLibxc(xen, d, {
        live: true,
        callbacks: {
          precopyPolicy: (s) => {
            if (s.iteration === 1 && s.dirtyCount === -1) bumpGeneration(d);
            return s.iteration >= 2 ? 'stop-and-copy' : 'continue';
          },
        },
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MigrationError);
      expect((err as MigrationError).code).toBe('ERR_PV_STATE');
      expect((err as Error).message).toMatch(/p2m generation changed from 1 to 2/);
      xen.destroy(d);
    });
  });
});
