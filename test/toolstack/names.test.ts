// Domain names through a migration on one host (one xenstore): the sender renames its stopped source
// "<name>--migratedaway" before it clears the receiver, whose copy was built as "<name>--incoming"
// and takes the name when cleared; a receiver that cannot start its copy gets the source back under
// its own name. Against a small xenstored speaking xs_wire on a unix socket (fake-xenstored.ts).
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { migrate, mockBuilder, receive } from '../../src/api.js';
import { openMockHost, type MockHypervisor } from '../../src/xen/index.js';
import { configFromDomain } from '../../src/toolstack/config.js';
import {
  nameForNewDomain,
  xenstoreNames,
  MIGRATED_AWAY_SUFFIX,
  INCOMING_SUFFIX,
} from '../../src/toolstack/names.js';
import type { DomainBuilder } from '../../src/toolstack/restore.js';
import { removeToolstackState } from '../../src/toolstack/destroy.js';
import { startFakeXenstored, type FakeXenstored } from './fake-xenstored.js';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

let dir: string;
let xen: MockHypervisor;
let xs: FakeXenstored;

beforeAll(() => {
  dir = mkdtempSync('/dev/shm/xenmig-names-');
  xen = openMockHost(dir);
});
afterEach(async () => {
  await xs?.close();
});
afterAll(() => {
  xen?.close();
  rmSync(dir, { recursive: true, force: true });
});

const entries = (id: number, name: string, uuid = `0000000${id}-0000-4000-8000-000000000000`) => ({
  [`/local/domain/${id}/name`]: name,
  [`/local/domain/${id}/domid`]: String(id),
  [`/local/domain/${id}/vm`]: `/vm/${uuid}`,
  [`/vm/${uuid}/name`]: name,
});

describe('xenstoreNames', () => {
  it('renames a domain in /local/domain and /vm, and refuses a name another domain has', async () => {
    xs = await startFakeXenstored(dir, {
      ...entries(0, 'Domain-0'),
      ...entries(5, 'web'),
      ...entries(7, 'db'),
    });
    const n = xenstoreNames({ path: xs.path });
    expect(await n.name(5)).toBe('web');
    expect(await n.holder('db')).toBe(7);
    expect(await n.holder('db', 7)).toBeNull();
    await n.rename(5, 'web--migratedaway');
    expect(xs.tree.get('/local/domain/5/name')).toBe('web--migratedaway');
    expect(xs.tree.get('/vm/00000005-0000-4000-8000-000000000000/name')).toBe('web--migratedaway');
    await expect(n.rename(5, 'db')).rejects.toMatchObject({ code: 'ERR_NAME_IN_USE' });
    expect(xs.tree.get('/local/domain/5/name')).toBe('web--migratedaway');
    await expect(n.rename(9, 'x')).rejects.toMatchObject({ code: 'ERR_DOMAIN_MISMATCH' });
    await expect(n.rename(5, 'a/b')).rejects.toThrow(TypeError);
    expect(await nameForNewDomain(n, 12, 'db')).toEqual({ name: `db${INCOMING_SUFFIX}`, pending: 'db' });
    expect(await nameForNewDomain(n, 12, 'web')).toEqual({ name: 'web', pending: null });
  });
});

describe('a dead domain’s leftovers', () => {
  it('stale entries do not hold a name when the host can tell dead from alive', async () => {
    xs = await startFakeXenstored(dir, {
      ...entries(0, 'Domain-0'),
      ...entries(3, 'web'),
      ...entries(8, 'web--incoming'),
    });
    const alive = new Set([0, 8]);
    const n = xenstoreNames({ path: xs.path, exists: (d) => alive.has(d) });
    expect(await n.holder('web')).toBeNull();
    await n.rename(8, 'web');
    expect(xs.tree.get('/local/domain/8/name')).toBe('web');
    // without the check the leftovers of domain 3 block the name
    await expect(
      xenstoreNames({ path: xs.path })
        .rename(8, 'web--x')
        .then(() => xenstoreNames({ path: xs.path }).rename(8, 'web')),
    ).rejects.toMatchObject({ code: 'ERR_NAME_IN_USE' });
  });

  it('removeToolstackState removes the domain’s xenstore entries, backends and libxl userdata, nothing else', async () => {
    xs = await startFakeXenstored(dir, {
      ...entries(0, 'Domain-0'),
      ...entries(3, 'web'),
      ...entries(4, 'db'),
      '/libxl/3/type': 'pvh',
      '/libxl/4/type': 'pv',
      '/local/domain/0/backend/console/3/0/state': '4',
      '/local/domain/0/backend/vbd/3/51712/state': '4',
      '/local/domain/0/backend/vbd/4/51712/state': '4',
    });
    const ud = join(dir, 'userdata');
    mkdirSync(ud, { recursive: true });
    for (const f of [
      'userdata-d.3.aaaa.libxl-json',
      'userdata-d.34.bbbb.libxl-json',
      'userdata-d.4.cccc.libxl-json',
    ])
      writeFileSync(join(ud, f), '{}');
    await removeToolstackState(3, { xenstorePath: xs.path, userdataDir: ud });
    const keys = [...xs.tree.keys()];
    expect(keys.filter((k) => /\/3(\/|$)|00000003/.test(k))).toEqual([]);
    expect(xs.tree.get('/local/domain/4/name')).toBe('db');
    expect(xs.tree.get('/libxl/4/type')).toBe('pv');
    expect(xs.tree.get('/local/domain/0/backend/vbd/4/51712/state')).toBe('4');
    expect(existsSync(join(ud, 'userdata-d.3.aaaa.libxl-json'))).toBe(false);
    expect(existsSync(join(ud, 'userdata-d.34.bbbb.libxl-json'))).toBe(true);
    expect(existsSync(join(ud, 'userdata-d.4.cccc.libxl-json'))).toBe(true);
  });
});

/** The receiver's builder: the mock's, plus xenstore entries named as xenBuilder names them. */
function namingBuilder(seen: string[], opts: { failStart?: boolean } = {}): DomainBuilder {
  const base = mockBuilder(xen);
  const names = xenstoreNames({ path: xs.path });
  const pending = new Map<number, string | null>();
  return {
    async create(c) {
      const d = await base.create(c);
      const { name, pending: p } = await nameForNewDomain(names, d, c.name!);
      xs.tree.set(`/local/domain/${d}`, '');
      xs.tree.set(`/local/domain/${d}/domid`, String(d));
      xs.tree.set(`/local/domain/${d}/name`, name);
      pending.set(d, p);
      seen.push(`create ${name}`);
      return d;
    },
    async destroy(d) {
      await base.destroy(d);
      for (const k of [...xs.tree.keys()])
        if (k === `/local/domain/${d}` || k.startsWith(`/local/domain/${d}/`)) xs.tree.delete(k);
    },
    async start(d) {
      if (opts.failStart) throw new Error('injected: the copy cannot start');
      const p = pending.get(d);
      if (p) await names.rename(d, p);
      seen.push(`start ${xs.tree.get(`/local/domain/${d}/name`)}`);
    },
  };
}

async function migrateOnOneHost(failStart: boolean) {
  const src = xen.createDomain({ type: 'hvm', pages: 1024, vcpus: 1, populate: true });
  xs = await startFakeXenstored(dir, { ...entries(0, 'Domain-0'), ...entries(src, 'guest') });
  const config = configFromDomain(xen.domainInfo(src), 'guest');
  const seen: string[] = [];
  const names = xenstoreNames({ path: xs.path });
  let port = 0;
  let listening!: () => void;
  const up = new Promise<void>((r) => (listening = r));
  const rx = receive({
    xen,
    listen: { host: '127.0.0.1', port: 0 },
    insecure: true,
    builder: namingBuilder(seen, { failStart }),
    onListening: (p) => {
      port = p;
      listening();
    },
    onStage: (stage) => {
      // the instant the receiver is cleared: the source must already have given up the name
      if (stage === 'unpause') seen.push(`cleared: source is ${xs.tree.get(`/local/domain/${src}/name`)}`);
    },
  }).catch((e: Error) => e);
  await up;
  const tx = await migrate(src, `tcp://127.0.0.1:${port}`, {
    xen,
    insecure: true,
    live: false,
    config,
    names,
  }).catch((e: Error) => e);
  return { src, seen, rx: await rx, tx };
}

describe('names through a migration on one host', () => {
  it('source → "<name>--migratedaway" before the receiver is cleared; the copy built as "<name>--incoming" takes the name', async () => {
    const { src, seen, rx, tx } = await migrateOnOneHost(false);
    expect(tx).not.toBeInstanceOf(Error);
    expect(rx).not.toBeInstanceOf(Error);
    const dst = (rx as Awaited<ReturnType<typeof receive>>).domid!;
    expect(seen).toEqual([
      `create guest${INCOMING_SUFFIX}`,
      `cleared: source is guest${MIGRATED_AWAY_SUFFIX}`,
      'start guest',
    ]);
    expect(xs.tree.get(`/local/domain/${dst}/name`)).toBe('guest');
    expect(xen.listDomainIds()).not.toContain(src);
    xen.destroyDomain(dst);
  });

  it('the copy cannot start: it is discarded and the source runs again under its own name', async () => {
    const { src, seen, rx, tx } = await migrateOnOneHost(true);
    expect(rx).toBeInstanceOf(Error);
    expect(tx).toBeInstanceOf(Error);
    expect(seen).toEqual([
      `create guest${INCOMING_SUFFIX}`,
      `cleared: source is guest${MIGRATED_AWAY_SUFFIX}`,
    ]);
    expect(xs.tree.get(`/local/domain/${src}/name`)).toBe('guest');
    expect(xs.tree.get(`/vm/0000000${src}-0000-4000-8000-000000000000/name`)).toBe('guest');
    const info = xen.domainInfo(src);
    expect(info.paused || info.shutdown).toBe(false);
    expect(xen.listDomainIds()).toEqual([src]);
    xen.destroyDomain(src);
  });
});

describe('xenstoreNames.all (xenmig list, domains by name on a real host)', () => {
  it('every live domain with a name; stale entries of dead domains left out', async () => {
    xs = await startFakeXenstored(dir, {
      ...entries(0, 'Domain-0'),
      ...entries(5, 'web'),
      ...entries(7, 'db'),
      '/local/domain/9/domid': '9',
    });
    expect(await xenstoreNames({ path: xs.path }).all()).toEqual(
      new Map([
        [0, 'Domain-0'],
        [5, 'web'],
        [7, 'db'],
      ]),
    );
    expect(await xenstoreNames({ path: xs.path, exists: (d) => d !== 7 }).all()).toEqual(
      new Map([
        [0, 'Domain-0'],
        [5, 'web'],
      ]),
    );
  });
});
