// Issue 12 item 4: PV page tables that map themselves (or their parent) must not hang a restore,
// nor grow its memory: the mock types page tables as Xen does (a frame has one table type at a
// time, each table is validated once), so the pin is refused with EINVAL, the restore fails with a
// typed error, the half-restored domain is destroyed and a bystander's memory is untouched.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checksum, createDomain, listDomains, ok, tempDir, tempHost } from '../cli/helpers.js';
import { crashText, supervise } from './supervise.js';
import { TABLE_ATTACKS, withTableAttack } from './pt.js';

describe('self-referencing PV page tables (restore through the CLI)', () => {
  const host = tempHost();
  const tmp = tempDir('xenmig-pt-');
  let saved: Buffer;
  let bystander = 0;
  let bystanderSum = '';

  beforeAll(async () => {
    const d = await createDomain(host.dir, 'pv', '8M');
    const file = join(tmp.dir, 'good.xl');
    await ok(['save', String(d), file, '--host', host.dir]);
    saved = readFileSync(file);
    bystander = await createDomain(host.dir, 'pv', '4M');
    bystanderSum = await checksum(host.dir, bystander);
  });
  afterAll(() => {
    host.cleanup();
    tmp.cleanup();
  });

  it('the unmodified stream restores (the harness works)', async () => {
    const file = join(tmp.dir, 'plain.xl');
    writeFileSync(file, saved);
    const r = await supervise(['restore', file, '--host', host.dir], { deadlineMs: 60_000, rssLimitMb: 400 });
    expect(r.code, r.stderr).toBe(0);
    await ok(['mock', 'destroy', r.stdout.trim(), '--host', host.dir]);
  });

  for (const attack of TABLE_ATTACKS) {
    it(`${attack}: refused with a typed error, bounded time and memory, nothing left behind`, async () => {
      const file = join(tmp.dir, `${attack}.xl`);
      writeFileSync(file, await withTableAttack(saved, attack));
      const r = await supervise(['restore', file, '--host', host.dir], {
        deadlineMs: 60_000,
        rssLimitMb: 400,
      });
      expect(
        r.killed,
        `${attack}: killed for ${r.killed}, peak ${r.peakRssKb} KiB; stderr:\n${r.stderr}`,
      ).toBeNull();
      expect(crashText(r.stderr), r.stderr).toBeNull();
      if (attack === 'l4-self-ro') {
        // a read-only self-map of the L4 is a linear page table, which Xen accepts
        expect(r.code, r.stderr).toBe(0);
        await ok(['mock', 'destroy', r.stdout.trim(), '--host', host.dir]);
      } else {
        expect(r.code, r.stderr).toBe(1);
        expect(r.stderr).toMatch(/ERR_PV_STATE: Xen refused the (pin|vcpu0).*EINVAL/);
        expect(r.stderr).toMatch(/was destroyed/);
      }
      expect((await listDomains(host.dir)).map((d) => d.domid).filter((d) => d !== bystander)).toEqual([]);
      expect(await checksum(host.dir, bystander)).toBe(bystanderSum);
    });
  }
});
