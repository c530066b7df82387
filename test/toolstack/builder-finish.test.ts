// restoreDomain hands a domain it built back to its builder's finish() exactly once, after the whole
// stream and before anything unpauses it (on real hosts: grant seed, xenstore introduction).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { openMockHost, type MockHypervisor } from '../../src/xen/index.js';
import { saveDomain } from '../../src/toolstack/save.js';
import { restoreDomain, type DomainBuilder } from '../../src/toolstack/restore.js';
import { mockBuilder } from '../../src/api.js';

describe('domain builder finish()', () => {
  let dir: string;
  let xen: MockHypervisor;
  let stream: Buffer;
  let sum: string;

  beforeAll(async () => {
    dir = mkdtempSync('/dev/shm/xenmig-finish-');
    xen = openMockHost(dir);
    const d = xen.createDomain({ type: 'hvm', pages: 2048, vcpus: 1, populate: true });
    xen.guestWrite(d, 7, 100, new Uint8Array([9, 8, 7]));
    const chunks: Buffer[] = [];
    const pt = new PassThrough();
    pt.on('data', (c: Buffer) => chunks.push(c));
    await saveDomain({ xen, domid: d, out: pt });
    stream = Buffer.concat(chunks);
    sum = xen.checksum(d);
  });
  afterAll(() => {
    xen?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const paused of [false, true]) {
    it(`is called once, on the complete and still paused domain (paused: ${paused})`, async () => {
      const base = mockBuilder(xen);
      const seen: { domid: number; paused: boolean; sum: string }[] = [];
      const builder: DomainBuilder = {
        create: (c) => base.create(c),
        destroy: (d) => base.destroy(d),
        finish: (d) => {
          const info = xen.domainInfo(d);
          seen.push({ domid: d, paused: info.paused || info.shutdown, sum: xen.checksum(d) });
        },
      };
      const r = await restoreDomain({ xen, input: stream, builder, paused });
      expect(seen).toEqual([{ domid: r.domid, paused: true, sum }]);
      expect(xen.domainInfo(r.domid).paused).toBe(paused);
      xen.destroyDomain(r.domid);
    });
  }

  it('is not called when the restore fails', async () => {
    const base = mockBuilder(xen);
    let calls = 0;
    const builder: DomainBuilder = {
      create: (c) => base.create(c),
      destroy: (d) => base.destroy(d),
      finish: () => void calls++,
    };
    await expect(
      restoreDomain({ xen, input: stream.subarray(0, stream.length - 100), builder }),
    ).rejects.toThrow();
    expect(calls).toBe(0);
  });
});
