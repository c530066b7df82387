// xenmig mock …: create, list, checksum, state, workload, destroy on a temporary simulated host.
import { afterAll, describe, expect, it } from 'vitest';
import { checksum, cli, createDomain, listDomains, ok, startCli, tempHost } from './helpers.js';

const host = tempHost();
afterAll(() => host.cleanup());

describe('xenmig mock', () => {
  it('create prints the new domid; list shows it running with its size and vCPUs', async () => {
    const a = await createDomain(host.dir, 'hvm', '8M', 2);
    const b = await createDomain(host.dir, 'hvm', '4M');
    expect(b).toBeGreaterThan(a);
    const doms = await listDomains(host.dir);
    const da = doms.find((d) => d.domid === a)!;
    expect(da).toMatchObject({ type: 'hvm', state: 'running', pages: 2048, vcpus: 2 });
    expect(doms.find((d) => d.domid === b)!.pages).toBe(1024);
    const text = await ok(['mock', 'list', '--host', host.dir]);
    expect(text.split('\n').some((l) => l.startsWith(`${a}\thvm\trunning`))).toBe(true);
  });

  it('checksum is a stable SHA-256 while nothing writes; a workload changes it and reports its writes', async () => {
    const d = await createDomain(host.dir, 'hvm', '4M');
    const c1 = await checksum(host.dir, d);
    expect(c1).toMatch(/^[0-9a-f]{64}$/);
    expect(await checksum(host.dir, d)).toBe(c1);
    const w = await cli([
      'mock',
      'workload',
      String(d),
      '--rate',
      '2000',
      '--duration',
      '1',
      '--seed',
      '7',
      '--host',
      host.dir,
    ]);
    expect(w.code, w.stderr).toBe(0);
    expect(Number(w.stdout.trim())).toBeGreaterThan(0);
    expect(w.stderr).toContain('reason=duration');
    expect(await checksum(host.dir, d)).not.toBe(c1);
  });

  it('workload runs until SIGINT, then exits 0 with its write count', async () => {
    const d = await createDomain(host.dir, 'hvm', '4M');
    const w = startCli(['mock', 'workload', String(d), '--rate', '500', '--host', host.dir]);
    await w.waitErr('workload running');
    const c = await checksum(host.dir, d);
    for (let i = 0; i < 400 && (await checksum(host.dir, d)) === c; i++);
    w.child.kill('SIGINT');
    const r = await w.done;
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('reason=SIGINT');
    expect(Number(r.stdout.trim())).toBeGreaterThan(0);
  });

  it('state: HVM register state summary as JSON', async () => {
    const d = await createDomain(host.dir, 'hvm', '4M', 2);
    const s = JSON.parse(await ok(['mock', 'state', String(d), '--host', host.dir]));
    expect(s.domid).toBe(d);
    expect(s.type).toBe('hvm');
    expect(s.vcpusOnline).toEqual([0, 1]);
    expect(s.hvmContext.vcpus).toEqual([0, 1]);
    expect(s.hvmContext.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(Object.keys(s.hvmParams as object)).toContain('1'); // STORE_PFN
  });

  it('destroy removes the domain; commands on a missing domain fail with xenmig: CODE', async () => {
    const d = await createDomain(host.dir, 'hvm', '4M');
    await ok(['mock', 'destroy', String(d), '--host', host.dir]);
    expect((await listDomains(host.dir)).map((x) => x.domid)).not.toContain(d);
    for (const args of [
      ['mock', 'destroy', String(d)],
      ['mock', 'checksum', String(d)],
      ['mock', 'workload', String(d), '--rate', '10'],
    ]) {
      const r = await cli([...args, '--host', host.dir]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^xenmig: E[A-Z]+: /m);
    }
  });

  it('XENMIG_MOCK_HOST selects the host when --host is not given', async () => {
    const d = await createDomain(host.dir, 'hvm', '4M');
    const r = await cli(['mock', 'list', '--json'], { env: { XENMIG_MOCK_HOST: host.dir } });
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { domid: number }[]).map((x) => x.domid)).toContain(d);
  });

  it('bad arguments are usage errors (exit 2)', async () => {
    for (const args of [
      ['mock', 'create', '--type', 'arm', '--memory', '4M'],
      ['mock', 'create', '--type', 'hvm', '--memory', 'lots'],
      ['mock', 'create', '--type', 'hvm'],
      // a word is a domain name now (looked up: ERR_NO_SUCH_DOMAIN, exit 1); a domid out of range is usage
      ['mock', 'checksum', '99999'],
      ['mock', 'checksum', 'a/b'],
    ]) {
      const r = await cli([...args, '--host', host.dir]);
      expect(r.code, args.join(' ')).toBe(2);
    }
  });
});
