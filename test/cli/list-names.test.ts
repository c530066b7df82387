// xenmig list, and domains by name wherever a command takes a domid (as xl): real CLI processes
// against temporary mock hosts.
import { afterAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openMockHost } from '../../src/xen/index.js';
import { checksum, cli, listDomains, ok, startCli, tempDir, tempHost, type Running } from './helpers.js';

const host = tempHost();
const dest = tempHost();
const files = tempDir('xenmig-names-');
const running: Running[] = [];
afterAll(() => {
  for (const r of running)
    if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
  host.cleanup();
  dest.cleanup();
  files.cleanup();
});

interface Listed {
  domid: number;
  name: string | null;
  type: string;
  memoryMiB: number;
  vcpus: number;
  state: string;
}

async function create(dir: string, args: string[]): Promise<number> {
  return Number(await ok(['mock', 'create', '--host', dir, ...args]));
}

describe('xenmig list', () => {
  it('shows every domain of a mock host with its name, type, memory, vCPUs and xl state letters (text and --json)', async () => {
    const web = await create(host.dir, ['--type', 'hvm', '--memory', '8M', '--vcpus', '2', '--name', 'web']);
    const db = await create(host.dir, ['--type', 'pv', '--memory', '1M', '--name', 'db']);
    const susp = await create(host.dir, ['--type', 'pv', '--memory', '1M', '--name', 'suspended-one']);
    const crash = await create(host.dir, ['--type', 'hvm', '--memory', '4M']);
    const empty = await create(host.dir, ['--type', 'hvm', '--memory', '4M', '--empty', '--name', 'target']);
    // states the CLI does not make: through the host's control API in this process
    const h = openMockHost(host.dir);
    try {
      h.pause(db);
      h.shutdown(susp, 2); // SHUTDOWN_suspend
      h.shutdown(crash, 3); // SHUTDOWN_crash
    } finally {
      h.close();
    }
    const got = JSON.parse(await ok(['list', '--json', '--host', host.dir])) as Listed[];
    expect(got.map((d) => d.domid)).toEqual([web, db, susp, crash, empty]);
    const by = new Map(got.map((d) => [d.domid, d]));
    expect(by.get(web)).toEqual({
      domid: web,
      name: 'web',
      type: 'HVM',
      memoryMiB: 8,
      vcpus: 2,
      state: 'r-----',
    });
    expect(by.get(db)).toMatchObject({ name: 'db', type: 'PV', memoryMiB: 1, vcpus: 1 });
    expect(by.get(db)!.state[2]).toBe('p');
    expect(by.get(susp)).toMatchObject({ name: 'suspended-one', type: 'PV' });
    expect(by.get(susp)!.state.slice(3)).toBe('s--');
    expect(by.get(crash)).toMatchObject({ name: null, type: 'HVM', memoryMiB: 4 });
    expect(by.get(crash)!.state.slice(3)).toBe('-c-');
    expect(by.get(empty)).toMatchObject({ name: 'target', memoryMiB: 0 });
    expect(by.get(empty)!.state[2]).toBe('p');

    // the same through XENMIG_MOCK_HOST, as a table (xl's columns plus the type)
    const text = await ok(['list'], { env: { XENMIG_MOCK_HOST: host.dir } });
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/^Name\s+ID\s+Mem\s+VCPUs\s+State\s+Type$/);
    expect(lines).toHaveLength(6);
    const row = (id: number) => lines.find((l) => l.split(/\s+/)[1] === String(id))!.split(/\s+/);
    expect(row(web)).toEqual(['web', String(web), '8', '2', 'r-----', 'HVM']);
    expect(row(crash)).toEqual(['-', String(crash), '4', '1', by.get(crash)!.state, 'HVM']);
    expect(row(db)[0]).toBe('db');
  });

  it('an empty host lists only the header', async () => {
    const e = tempHost();
    try {
      expect(await ok(['list', '--host', e.dir])).toMatch(/^Name\s+ID\s+Mem\s+VCPUs\s+State\s+Type$/);
      expect(await ok(['list', '--json', '--host', e.dir])).toBe('[]');
    } finally {
      e.cleanup();
    }
  });
});

describe('domains by name', () => {
  it('a name is refused when another domain has it, or when it reads as a domid', async () => {
    await create(host.dir, ['--type', 'hvm', '--memory', '4M', '--name', 'taken']);
    const before = (await listDomains(host.dir)).length;
    const dup = await cli([
      'mock',
      'create',
      '--type',
      'hvm',
      '--memory',
      '4M',
      '--name',
      'taken',
      '--host',
      host.dir,
    ]);
    expect(dup.code).not.toBe(0);
    expect(dup.stderr).toMatch(/--name taken: domain \d+ has that name/);
    const digits = await cli([
      'mock',
      'create',
      '--type',
      'hvm',
      '--memory',
      '4M',
      '--name',
      '42',
      '--host',
      host.dir,
    ]);
    expect(digits.code).not.toBe(0);
    expect(digits.stderr).toContain('not all digits');
    // nothing was created by either
    expect((await listDomains(host.dir)).length).toBe(before);
  });

  it('mock commands take a name in place of the domid', async () => {
    const d = await create(host.dir, ['--type', 'hvm', '--memory', '4M', '--name', 'named-mock']);
    expect(await ok(['mock', 'checksum', 'named-mock', '--host', host.dir])).toBe(
      await checksum(host.dir, d),
    );
    expect(JSON.parse(await ok(['mock', 'state', 'named-mock', '--host', host.dir])).domid).toBe(d);
    await ok(['mock', 'destroy', 'named-mock', '--host', host.dir]);
    expect((await listDomains(host.dir)).map((x) => x.domid)).not.toContain(d);
    // its name went with it
    const r = await cli(['mock', 'checksum', 'named-mock', '--host', host.dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('ERR_NO_SUCH_DOMAIN');
  });

  it('an unknown name is ERR_NO_SUCH_DOMAIN naming it and pointing at xenmig list; nothing is touched', async () => {
    for (const args of [
      ['save', 'no-such-guest', join(files.dir, 'never.xl')],
      ['migrate', 'no-such-guest', 'tcp://127.0.0.1:9', '--insecure'],
      ['remus', 'no-such-guest', '--blackhole'],
      ['restore', join(files.dir, 'never.xl'), 'no-such-guest'],
    ]) {
      const r = await cli([...args, '--host', host.dir]);
      expect(r.code, `${args[0]}: ${r.stderr}`).toBe(1);
      expect(r.stderr).toMatch(
        /^xenmig: ERR_NO_SUCH_DOMAIN: no domain named "no-such-guest" on this host; `xenmig list` shows/m,
      );
    }
  });

  it('a name two domains share is ERR_AMBIGUOUS_DOMAIN (give the domid)', async () => {
    const a = await create(host.dir, ['--type', 'hvm', '--memory', '4M', '--name', 'twin']);
    const b = await create(host.dir, ['--type', 'hvm', '--memory', '4M']);
    // another toolstack broke the rule: write the second name where the host keeps names
    writeFileSync(join(host.dir, 'names', String(b)), 'twin');
    const r = await cli(['save', 'twin', join(files.dir, 'twin.xl'), '--host', host.dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `ERR_AMBIGUOUS_DOMAIN: domains ${a}, ${b} are all named "twin": give the domid`,
    );
    // both still run
    const states = (await listDomains(host.dir))
      .filter((x) => x.domid === a || x.domid === b)
      .map((x) => x.state);
    expect(states).toEqual(['running', 'running']);
  });

  it('save NAME and restore into an empty domain given by NAME', async () => {
    const src = await create(host.dir, ['--type', 'hvm', '--memory', '4M', '--name', 'saved-by-name']);
    const sum = await checksum(host.dir, src);
    const file = join(files.dir, 'by-name.xl');
    await ok(['save', 'saved-by-name', file, '--host', host.dir]);
    expect((await listDomains(host.dir)).map((x) => x.domid)).not.toContain(src);
    const target = await create(dest.dir, [
      '--type',
      'hvm',
      '--memory',
      '4M',
      '--empty',
      '--name',
      'restore-here',
    ]);
    expect(await ok(['restore', file, 'restore-here', '--host', dest.dir])).toBe(String(target));
    expect(await checksum(dest.dir, target)).toBe(sum);
  });

  it('migrate NAME and remus NAME act on the named domain', async () => {
    const other = await create(host.dir, ['--type', 'hvm', '--memory', '4M']);
    const src = await create(host.dir, ['--type', 'hvm', '--memory', '4M', '--name', 'mover']);
    const b = tempHost();
    try {
      const receiver = startCli(['receive', '--listen', '127.0.0.1:0', '--insecure', '--host', b.dir]);
      running.push(receiver);
      const port = /listening on .*:(\d+)/.exec(await receiver.waitErr(/listening on .*:\d+/))![1];
      const m = await cli(['migrate', 'mover', `tcp://127.0.0.1:${port}`, '--insecure', '--host', host.dir]);
      expect(m.code, m.stderr).toBe(0);
      expect(m.stderr).toContain(`migrating domain ${src} to`);
      expect((await receiver.done).code).toBe(0);
      const left = (await listDomains(host.dir)).map((x) => x.domid);
      expect(left).not.toContain(src);
      expect(left).toContain(other);
      expect(await listDomains(b.dir)).toHaveLength(1);
    } finally {
      b.cleanup();
    }
    const rep = await create(host.dir, ['--type', 'hvm', '--memory', '4M', '--name', 'replicated']);
    const r = await cli([
      'remus',
      'replicated',
      '--blackhole',
      '--max-checkpoints',
      '2',
      '-i',
      '20',
      '--json',
      '--host',
      host.dir,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const last = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { checkpoints: number };
    expect(last.checkpoints).toBe(2);
    expect((await listDomains(host.dir)).find((x) => x.domid === rep)?.state).toBe('running');
  });
});
