// xenmig remus of a guest with vifs: refused without network buffering unless --no-net-buffer or
// --unsafe (the guest's vifs come from its libxl config: --config here, the stored one on a real
// host). Mock domains have no vif devices: their vif backends (vifD.0) do not exist on this host, so
// buffering cannot be set up and the replication must be refused with the guest untouched.
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMockHost, type MockHypervisor } from '../../src/xen/hypervisor.js';
import { CLI, hostDirs, Proc, requireFreshBuild } from '../checkpoint/helpers.js';

describe('xenmig remus: safe mode for guests with vifs', () => {
  const dirs = hostDirs('xenmig-remus-netbuf-');
  let xen: MockHypervisor;
  let d: number;
  let cfg: string;
  beforeAll(() => {
    requireFreshBuild();
    xen = openMockHost(dirs.a);
    d = xen.createDomain({ type: 'hvm', pages: 32, populate: true });
    cfg = join(dirs.root, 'guest.json');
    writeFileSync(
      cfg,
      JSON.stringify({
        c_info: { type: 'pvh', name: 'netguest' },
        b_info: { max_memkb: 128, max_vcpus: 1 },
        nics: [{ devid: 0, mac: '00:16:3e:00:00:01', bridge: 'xenbr0' }],
      }),
    );
  });
  afterAll(() => {
    xen?.close();
    rmSync(dirs.root, { recursive: true, force: true });
  });

  const run = async (...extra: string[]) => {
    const p = new Proc(CLI, [
      'remus',
      String(d),
      join(dirs.root, `s-${extra.join('')}.stream`),
      '--host',
      dirs.a,
      '-i',
      '1',
      '--max-checkpoints',
      '2',
      '--json',
      '--config',
      cfg,
      ...extra,
    ]);
    return { p, e: await p.exited };
  };

  it('without a flag: refused before the guest is touched, naming the vif and the flags', async () => {
    const before = xen.checksum(d);
    const { p, e } = await run();
    expect(e.code, p.stderr).toBe(1);
    expect(p.stderr).toMatch(new RegExp(`vif${d}\\.0`));
    expect(p.stderr).toMatch(/refused, guest untouched.*--no-net-buffer \(or --unsafe\)/);
    expect(p.json.at(-1)).toMatchObject({ result: 'refused', checkpoints: 0, guest: 'running' });
    expect(xen.checksum(d)).toBe(before);
    expect(xen.domainInfo(d)).toMatchObject({ paused: false, shutdown: false });
  });

  it.each([['--no-net-buffer'], ['--unsafe']])('%s: replicates, and says it is unsafe', async (flag) => {
    const { p, e } = await run(flag);
    expect(e.code, p.stderr).toBe(0);
    expect(p.stderr).toMatch(/without network buffering/);
    expect(p.json.at(-1)).toMatchObject({ result: 'max-checkpoints', checkpoints: 2 });
  });

  it('a guest without vifs needs no flag', async () => {
    const p = new Proc(CLI, [
      'remus',
      String(d),
      join(dirs.root, 'novif.stream'),
      '--host',
      dirs.a,
      '-i',
      '1',
      '--max-checkpoints',
      '1',
      '--json',
    ]);
    const e = await p.exited;
    expect(e.code, p.stderr).toBe(0);
    expect(p.stderr).not.toMatch(/network buffering/);
  });
});
