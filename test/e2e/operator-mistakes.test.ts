// Operator mistakes that must leave the guest alone and say what really happened (issue 12, items
// 2, 3 and 7), through the CLI in real processes on mock hosts:
// - `restore FILE DOMID` never destroys a domain the restore did not create, refuses a domain that
//   is not empty or already ran before reading the stream, and never claims to have paused a
//   domain that no longer exists;
// - `remus` before the first ACK (no listener, missing TLS options, refused handshake, a backup that
//   never acknowledges) leaves the guest running and says why; `migrate` reports the source's true
//   state;
// - `save` to a missing directory or to a directory is a clean error before the domain is touched.
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  checksum,
  cli,
  createDomain,
  listDomains,
  makePki,
  ok,
  startCli,
  tempDir,
  tempHost,
  until,
  type Done,
  type Pki,
  type Running,
} from './helpers.js';
import { openMockHost } from '../../src/xen/hypervisor.js';
import { ControlConnection, listen } from '../../src/transport/index.js';

const tmp = tempDir('xenmig-mistakes-');
const procs: Running[] = [];
const cleanups: (() => void | Promise<void>)[] = [];
let pki: Pki | null = null;

afterEach(async () => {
  for (const p of procs.splice(0))
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  for (const c of cleanups.splice(0)) await c();
});
afterAll(() => tmp.cleanup());

function track(r: Running): Running {
  procs.push(r);
  return r;
}

function host(): string {
  const h = tempHost();
  cleanups.push(h.cleanup);
  return h.dir;
}

async function stateOf(h: string, domid: number) {
  return (await listDomains(h)).find((d) => d.domid === domid);
}

function noCrash(r: Done): void {
  expect(r.stderr).not.toMatch(/Unhandled 'error' event|\n\s+at |node:internal/);
}

/** A valid xl save file of a small HVM guest. */
async function saveFile(name: string): Promise<string> {
  const h = host();
  const d = await createDomain(h, 'hvm', '16M');
  const file = join(tmp.dir, name);
  await ok(['save', String(d), file, '--host', h]);
  return file;
}

describe('restore FILE DOMID never destroys what it did not create', () => {
  for (const onFailure of ['destroy', 'pause'] as const) {
    it(`into the user's running domain (--on-failure ${onFailure}): refused up front, the domain runs on untouched`, async () => {
      const file = await saveFile(`running-${onFailure}.xl`);
      const h = host();
      const d = await createDomain(h, 'hvm', '16M');
      const before = await checksum(h, d);
      const r = await cli(['restore', file, String(d), '--on-failure', onFailure, '--host', h]);
      expect(r.code, r.stderr).toBe(1);
      noCrash(r);
      expect(r.stderr).toMatch(
        new RegExp(
          `ERR_DOMAIN_NOT_EMPTY: refusing to restore into domain ${d}: it has 4096 pages of memory, it has already run`,
        ),
      );
      expect(r.stderr).toMatch(/leave DOMID out to restore into a new domain/);
      expect(r.stderr).not.toMatch(/destroyed|left paused/);
      expect(await stateOf(h, d)).toMatchObject({ state: 'running', paused: false, pages: 4096 });
      expect(await checksum(h, d)).toBe(before);
    });
  }

  it('into a domain that does not exist (--on-failure pause): says so, claims no pause', async () => {
    const file = await saveFile('missing.xl');
    const h = host();
    const r = await cli(['restore', file, '77', '--on-failure', 'pause', '--host', h]);
    expect(r.code, r.stderr).toBe(1);
    noCrash(r);
    expect(r.stderr).toMatch(/ESRCH/);
    expect(r.stderr).not.toMatch(/paused|destroyed/);
    expect(await listDomains(h)).toEqual([]);
  });

  it('a failed restore into an empty domain leaves that domain paused, not destroyed, and says so', async () => {
    const file = await saveFile('truncated-src.xl');
    const cut = join(tmp.dir, 'truncated.xl');
    const bytes = readFileSync(file);
    writeFileSync(cut, bytes.subarray(0, Math.floor(bytes.length / 2)));
    const h = host();
    const e = Number(await ok(['mock', 'create', '--empty', '--type', 'hvm', '--memory', '4G', '--host', h]));
    const r = await cli(['restore', cut, String(e), '--host', h]);
    expect(r.code, r.stderr).toBe(1);
    noCrash(r);
    expect(r.stderr).toMatch(
      new RegExp(`the half-restored domain ${e} was left paused \\(it was not created by this restore\\)`),
    );
    expect(await stateOf(h, e)).toMatchObject({ paused: true });
  });

  it('--on-failure pause, the domain destroyed meanwhile: reports it gone instead of "left paused"', async () => {
    const file = await saveFile('gone-src.xl');
    const h = host();
    const e = Number(await ok(['mock', 'create', '--empty', '--type', 'hvm', '--memory', '4G', '--host', h]));
    const bytes = readFileSync(file);
    const p = track(
      startCli(['restore', '-', String(e), '--on-failure', 'pause', '--host', h], {
        stdio: ['pipe', 'pipe', 'pipe'],
      }),
    );
    // half the stream (the domain receives memory), then someone destroys the domain, then EOF
    p.child.stdin!.write(bytes.subarray(0, Math.floor(bytes.length / 2)));
    await until(async () => ((await stateOf(h, e))?.pages ?? 0) > 0, 'the restore to populate the domain');
    await ok(['mock', 'destroy', String(e), '--host', h]);
    p.child.stdin!.end();
    const r = await p.done;
    expect(r.code, r.stderr).toBe(1);
    noCrash(r);
    expect(r.stderr).toMatch(new RegExp(`domain ${e} no longer exists`));
    expect(r.stderr).not.toMatch(/left paused/);
  });
});

/** A backup that says READY (remus) and then reads everything and never acknowledges. */
async function mutedBackup(): Promise<number> {
  const l = await listen({ host: '127.0.0.1', port: 0, insecure: true });
  cleanups.push(() => l.close());
  void (async () => {
    try {
      const ch = await l.accept();
      cleanups.push(() => ch.destroy());
      await new ControlConnection(ch.readable, ch.writable).send({
        type: 'READY',
        protocol: 1,
        version: '0.1.0',
        capabilities: ['remus', 'colo'],
      });
      ch.readable.on('error', () => {}).resume();
    } catch {
      /* closed */
    }
  })();
  return l.address().port;
}

describe('remus before the first ACK: nothing to protect, the guest keeps running', () => {
  const cases: [string, () => Promise<string[]>, RegExp][] = [
    ['no listener', async () => ['tcp://127.0.0.1:1', '--insecure'], /ECONNREFUSED/],
    [
      'a refused handshake (plain TCP against a TLS backup)',
      async () => {
        pki ??= makePki(tmp.dir);
        const backup = track(
          startCli([
            'remus-receive',
            '--listen',
            '127.0.0.1:0',
            '--cert',
            pki.server.cert,
            '--key',
            pki.server.key,
            '--ca',
            pki.ca,
            '--host',
            host(),
          ]),
        );
        const port = Number(
          /listening on port (\d+)/.exec(await backup.waitErr(/listening on port \d+/))![1],
        );
        return [`tcp://127.0.0.1:${port}`, '--insecure'];
      },
      /refused the plain TCP connection/,
    ],
    [
      'a backup that never acknowledges',
      async () => [`tcp://127.0.0.1:${await mutedBackup()}`, '--insecure', '--ack-timeout-ms', '500'],
      /no ACK\(1\) within 500 ms/,
    ],
  ];
  for (const [what, dest, why] of cases) {
    it(`${what}: exit 1, the guest runs, the error says why`, async () => {
      const h = host();
      const d = await createDomain(h, 'hvm', '16M');
      const r = await cli([
        'remus',
        String(d),
        ...(await dest()),
        '--on-backup-loss',
        'pause',
        '--json',
        '--host',
        h,
      ]);
      expect(r.code, r.stderr).toBe(1);
      noCrash(r);
      expect(r.stderr).toMatch(why);
      expect(r.stderr).toMatch(
        new RegExp(`no replica of domain ${d} was ever established .*the guest keeps running here`),
      );
      expect(r.stderr).not.toMatch(/guest paused/);
      const last = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
      expect(last).toMatchObject({ result: 'no-replica', guest: 'running', lastAcked: 0 });
      expect(await stateOf(h, d)).toMatchObject({ state: 'running', paused: false, shutdown: false });
    });
  }

  it('tcp:// without TLS options or --insecure: a usage error (exit 2) before the domain is touched', async () => {
    const h = host();
    const d = await createDomain(h, 'hvm', '16M');
    const before = await checksum(h, d);
    const r = await cli(['remus', String(d), 'tcp://127.0.0.1:1', '--host', h]);
    expect(r.code, r.stderr).toBe(2);
    noCrash(r);
    expect(r.stderr).toMatch(
      /ERR_USAGE: tcp:\/\/ needs --cert, --key and --ca \(mutual TLS\), or --insecure/,
    );
    expect(await stateOf(h, d)).toMatchObject({ state: 'running', paused: false });
    expect(await checksum(h, d)).toBe(before);
  });
});

describe("migrate states the source's true state", () => {
  it('a paused source (e.g. after Remus lost its backup) is reported paused, not "runs"', async () => {
    const h = host();
    const d = await createDomain(h, 'hvm', '16M');
    const xen = openMockHost(h);
    try {
      xen.pause(d);
    } finally {
      xen.close();
    }
    const r = await cli(['migrate', String(d), 'tcp://127.0.0.1:1', '--insecure', '--host', h]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/the source was not touched and is paused/);
    expect(r.stderr).not.toMatch(/runs/);
    expect(await stateOf(h, d)).toMatchObject({ paused: true });
  });

  it('a running source is reported running', async () => {
    const h = host();
    const d = await createDomain(h, 'hvm', '16M');
    const r = await cli(['migrate', String(d), 'tcp://127.0.0.1:1', '--insecure', '--host', h]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/the source was not touched and runs/);
  });
});

describe('save to a path it cannot write', () => {
  const targets: [string, () => string, RegExp][] = [
    ['a missing directory', () => join(tmp.dir, 'no-such-dir', 'guest.xl'), /its directory does not exist/],
    ['a directory', () => tmp.dir, /it is a directory/],
  ];
  for (const [what, target, why] of targets) {
    for (const live of [false, true]) {
      it(`${what}${live ? ' (--live)' : ''}: ERR_SAVE_FILE, exit 1, no stack trace, the domain runs untouched`, async () => {
        const h = host();
        const d = await createDomain(h, 'hvm', '16M');
        const before = await checksum(h, d);
        const r = await cli(['save', String(d), target(), ...(live ? ['--live'] : []), '--host', h]);
        expect(r.code, r.stderr).toBe(1);
        noCrash(r);
        expect(r.stderr.trim().split('\n')).toHaveLength(1);
        expect(r.stderr).toMatch(
          new RegExp(
            `^xenmig: ERR_SAVE_FILE: cannot write the save file .*: ${why.source}; domain ${d} was not touched`,
          ),
        );
        expect(await stateOf(h, d)).toMatchObject({ state: 'running', paused: false, shutdown: false });
        expect(await checksum(h, d)).toBe(before);
      });
    }
  }
});
