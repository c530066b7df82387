// The QEMU-shaped statistics count as "normal" only the pages sent with their contents; page entries
// without contents (holes of an HVM guest's gfn space) are reported apart.
import { afterAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { tempHost } from '../support/hosts.js';
import { PassThrough } from 'node:stream';
import { openMockHost } from '../../src/xen/index.js';
import { saveDomain } from '../../src/toolstack/save.js';
import { Clock, queryMigrate } from '../../src/cli/stats.js';

const dir = tempHost('xenmig-stats-').dir;
const xen = openMockHost(dir);
afterAll(() => {
  xen.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('query-migrate statistics', () => {
  it('normal = pages with contents; holes apart', async () => {
    const d = xen.createDomain({ type: 'hvm', pages: 4096, populate: false });
    xen.populatePhysmap(
      d,
      BigUint64Array.from({ length: 300 }, (_, i) => BigInt(i * 7)),
    );
    const populated = xen.domainInfo(d).totPages;
    const pt = new PassThrough();
    pt.resume();
    const { stats } = await saveDomain({ xen, domid: d, out: pt, config: undefined });
    const q = queryMigrate({ clock: new Clock(), stats, guestBytes: populated * 4096, downtimeMs: null });
    // every gfn up to the highest populated one is walked: the unpopulated ones are holes
    expect(stats.pages).toBe(xen.nrGpfns(d));
    expect(populated).toBeGreaterThanOrEqual(300);
    expect(stats.pages).toBeGreaterThan(populated);
    expect(q.ram?.normal).toBe(populated);
    expect(q.ram?.['normal-bytes']).toBe(populated * 4096);
    expect(q.xenmig['holes']).toBe(stats.pages - populated);
  });
});

describe('the error in the statistics', () => {
  it('a thrown object without a message is described by its JSON, not "[object Object]"', () => {
    const error = { code: 'ERR_X', detail: 7 };
    const q = queryMigrate({ clock: new Clock(), stats: null, guestBytes: 0, downtimeMs: null, error });
    expect(q['error-desc']).toBe('ERR_X: {"code":"ERR_X","detail":7}');
  });
});
