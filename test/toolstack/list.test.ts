// xenmig list and domains by name on a real host, without one: a hypervisor that reports a real
// host's domains, a xenstored (fake-xenstored.ts) with their names, and libxl's userdata directory.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listDomains } from '../../src/toolstack/list.js';
import { resolveDomain } from '../../src/toolstack/names.js';
import type { DomainInfo, Hypervisor } from '../../src/xen/types.js';
import { startFakeXenstored, type FakeXenstored } from './fake-xenstored.js';

const dir = mkdtempSync(join(tmpdir(), 'xenmig-list-'));
let xs: FakeXenstored;
const saved = { XENSTORED_PATH: process.env.XENSTORED_PATH, XEN_LIB_DIR: process.env.XEN_LIB_DIR };

function info(domid: number, type: 'pv' | 'hvm', o: Partial<DomainInfo> = {}): DomainInfo {
  return {
    domid,
    type,
    dying: false,
    paused: false,
    running: false,
    blocked: true,
    shutdown: false,
    shutdownReason: null,
    hap: type === 'hvm',
    totPages: 32768,
    maxPages: 33024,
    sharedInfoFrame: 0,
    maxVcpuId: 0,
    onlineVcpus: 1,
    maxPfn: 32767,
    guestWidth: 8,
    ...o,
  };
}

// dom0; a PVH guest with libxl's stored config; an HVM guest with a device model but no stored
// config; an HVM container with neither (xenmig saves it as PVH); a crashed PV guest; a paused one
const domains = [
  info(0, 'pv', { running: true, blocked: false, maxVcpuId: 1, totPages: 262144 }),
  info(3, 'hvm'),
  info(4, 'hvm', { maxVcpuId: 3 }),
  info(5, 'hvm'),
  info(6, 'pv', { shutdown: true, shutdownReason: 3, blocked: false }),
  info(7, 'pv', { paused: true, blocked: false }),
];
const host = {
  flavour: 'system',
  listDomains: () => domains.map((d) => ({ ...d })),
  domainInfo: (domid: number) => {
    const d = domains.find((x) => x.domid === domid);
    if (!d) throw Object.assign(new Error('no such domain'), { code: 'ESRCH' });
    return { ...d };
  },
} as unknown as Hypervisor;

const names = (id: number, name: string) => ({
  [`/local/domain/${id}/name`]: name,
  [`/local/domain/${id}/domid`]: String(id),
});

beforeAll(async () => {
  xs = await startFakeXenstored(dir, {
    ...names(0, 'Domain-0'),
    ...names(3, 'web'),
    ...names(4, 'win'),
    ...names(5, 'twin'),
    ...names(6, 'twin'),
    ...names(7, 'db'),
    // a domain destroyed by a toolstack that left its entries behind
    ...names(9, 'ghost'),
    '/local/domain/0/device-model/4/state': 'running',
  });
  process.env.XENSTORED_PATH = xs.path;
  process.env.XEN_LIB_DIR = dir;
  const stored = { c_info: { type: 'pvh', name: 'web' }, b_info: { max_memkb: 131072, max_vcpus: 1 } };
  writeFileSync(
    join(dir, 'userdata-d.3.00000003-0000-4000-8000-000000000000.libxl-json'),
    JSON.stringify(stored),
  );
});
afterAll(async () => {
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  await xs?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('on a real host', () => {
  it('lists every domain with its xenstore name, PV/PVH/HVM, memory, vCPUs and xl state letters', async () => {
    expect(await listDomains(host)).toEqual([
      { domid: 0, name: 'Domain-0', type: 'PV', memoryMiB: 1024, vcpus: 2, state: 'r-----' },
      { domid: 3, name: 'web', type: 'PVH', memoryMiB: 128, vcpus: 1, state: '-b----' },
      { domid: 4, name: 'win', type: 'HVM', memoryMiB: 128, vcpus: 4, state: '-b----' },
      { domid: 5, name: 'twin', type: 'PVH', memoryMiB: 128, vcpus: 1, state: '-b----' },
      { domid: 6, name: 'twin', type: 'PV', memoryMiB: 128, vcpus: 1, state: '----c-' },
      { domid: 7, name: 'db', type: 'PV', memoryMiB: 128, vcpus: 1, state: '--p---' },
    ]);
  });

  it('resolves names through xenstore: live domains only, ambiguous names refused, digits are domids', async () => {
    expect(await resolveDomain(host, 'web')).toBe(3);
    expect(await resolveDomain(host, 'Domain-0')).toBe(0);
    expect(await resolveDomain(host, '4')).toBe(4);
    expect(await resolveDomain(host, 7)).toBe(7);
    await expect(resolveDomain(host, 'ghost')).rejects.toMatchObject({
      code: 'ERR_NO_SUCH_DOMAIN',
      message: expect.stringContaining('xenmig list'),
    });
    await expect(resolveDomain(host, 'twin')).rejects.toMatchObject({
      code: 'ERR_AMBIGUOUS_DOMAIN',
      message: expect.stringContaining('domains 5, 6'),
    });
    await expect(resolveDomain(host, '99999')).rejects.toThrow(RangeError);
  });

  it('a xenstored that cannot be reached: a name is refused with why, asking for the domid', async () => {
    const path = process.env.XENSTORED_PATH;
    process.env.XENSTORED_PATH = join(dir, 'no-such-socket');
    try {
      await expect(resolveDomain(host, 'web')).rejects.toMatchObject({
        code: 'ERR_NO_SUCH_DOMAIN',
        message: expect.stringMatching(/cannot look up domain "web".*ENOENT.*give the domid/),
      });
      // a domid needs no lookup
      expect(await resolveDomain(host, '3')).toBe(3);
    } finally {
      process.env.XENSTORED_PATH = path;
    }
  });
});
