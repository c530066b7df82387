// One operation per domain (issue 12, item 1): while a xenmig process holds a domain for save,
// migrate, remus or restore-into, every other of those operations on it — from another process — is
// refused with ERR_DOMAIN_BUSY naming the holder, before it touches the domain. A holder killed with
// SIGKILL leaves its lock file behind but not its lock: the next operation proceeds. And the
// issue's corruption (two migrations of one busy guest at once) is now refused.
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import {
  checksum,
  createDomain,
  listDomains,
  ok,
  readAtSuspend,
  startCli,
  startWorkload,
  tempDir,
  tempHost,
  until,
  cli,
  type Done,
  type Running,
} from './helpers.js';
import { DomainBusyError, lockDomain, probeLibxlLock } from '../../src/toolstack/domain-lock.js';
import { openMockHost } from '../../src/xen/hypervisor.js';

const tmp = tempDir('xenmig-lock-');
const procs: Running[] = [];
const cleanups: (() => void)[] = [];
const servers: Server[] = [];

afterEach(async () => {
  for (const p of procs.splice(0))
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  for (const c of cleanups.splice(0)) c();
  for (const s of servers.splice(0)) await new Promise<void>((r) => s.close(() => r()));
});
afterAll(() => tmp.cleanup());

function track(r: Running): Running {
  procs.push(r);
  return r;
}

/** A TCP listener that accepts and never answers: a sender waits for READY there, holding its domain. */
async function silentListener(): Promise<{ port: number; connections: () => number }> {
  const sockets: Socket[] = [];
  const s = createServer((c) => {
    c.on('error', () => {});
    sockets.push(c);
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const close = s.close.bind(s);
  s.close = ((cb?: (e?: Error) => void) => {
    sockets.forEach((c) => c.destroy());
    return close(cb);
  }) as typeof s.close;
  return { port: (s.address() as { port: number }).port, connections: () => sockets.length };
}

interface LockFile {
  pid: number;
  operation: string;
  since: string;
}

function lockFiles(host: string): { name: string; holder: LockFile | null }[] {
  const dir = join(host, 'xenmig-locks');
  if (!existsSync(dir)) return [];
  return readdirSync(dir).map((name) => {
    try {
      return { name, holder: JSON.parse(readFileSync(join(dir, name), 'utf8')) as LockFile };
    } catch {
      return { name, holder: null };
    }
  });
}

/** Wait until `p` holds the lock of domid (its lock file names it). */
function waitHeld(host: string, domid: number, p: Running): Promise<LockFile> {
  return until(async () => {
    if (p.child.exitCode !== null) throw new Error(`the holder exited (${p.child.exitCode}): ${p.err()}`);
    return lockFiles(host).find((f) => f.name.startsWith(`domain-${domid}-`) && f.holder?.pid === p.child.pid)
      ?.holder;
  }, `process ${p.child.pid} to hold domain ${domid}`);
}

type Op = 'save' | 'migrate' | 'remus' | 'restore';
const OPS: Op[] = ['save', 'migrate', 'remus', 'restore'];

function expectBusy(r: Done, domid: number, holder: Running, op: string): void {
  expect(r.code, r.stderr).toBe(1);
  expect(r.stderr).toMatch(
    new RegExp(
      `ERR_DOMAIN_BUSY: domain ${domid} is held by xenmig ${op} \\(pid ${holder.child.pid}, since \\d{4}-`,
    ),
  );
  expect(r.stderr).toMatch(/wait until it ends, or stop it/);
  expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
}

describe('one operation per domain, across processes', () => {
  // holders in order: each one blocked somewhere observable, holding its domain
  for (const holderOp of ['migrate', 'remus', 'save', 'restore'] as const) {
    it(`${holderOp} holds the domain: save, migrate, remus and restore-into from other processes are refused; SIGKILLed, the next operation proceeds`, async () => {
      const h = tempHost();
      cleanups.push(h.cleanup);
      const host = h.dir;
      // a valid save file (of a throwaway domain) for the restore contenders: the refusal is not the file's fault
      const donor = await createDomain(host, 'hvm', '16M');
      const saved = join(tmp.dir, `donor-${holderOp}.xl`);
      await ok(['save', String(donor), saved, '--host', host]);
      const silent = await silentListener();
      // a running domain, or an empty one that never ran for restore-into
      const target =
        holderOp === 'restore'
          ? Number(await ok(['mock', 'create', '--empty', '--type', 'hvm', '--memory', '4G', '--host', host]))
          : await createDomain(host, 'hvm', '16M');
      const d = String(target);
      let holder: Running;
      switch (holderOp) {
        case 'migrate': // connected, waiting for a receiver's READY that never comes
        case 'remus':
          holder = track(
            startCli([holderOp, d, `tcp://127.0.0.1:${silent.port}`, '--insecure', '--host', host]),
          );
          await until(async () => silent.connections() > 0, 'the holder to connect');
          break;
        case 'save': // streaming its first live round into a pipe nobody reads
          holder = track(
            startCli(['save', d, '-', '--live', '--host', host], {
              stdio: ['ignore', 'pipe', 'pipe'],
              rawStdout: true,
            }),
          );
          await once(holder.child.stdout!, 'readable');
          break;
        case 'restore': // waiting for the stream on a stdin that stays open
          holder = track(startCli(['restore', '-', d, '--host', host], { stdio: ['pipe', 'pipe', 'pipe'] }));
          break;
      }
      await waitHeld(host, target, holder);
      const before = await checksum(host, target);
      const stateBefore = (await listDomains(host)).find((x) => x.domid === target);
      for (const op of OPS) {
        const args: Record<Op, string[]> = {
          save: ['save', d, join(tmp.dir, `contender-${holderOp}.xl`)],
          migrate: ['migrate', d, 'tcp://127.0.0.1:1', '--insecure'],
          remus: ['remus', d, 'tcp://127.0.0.1:1', '--insecure'],
          restore: ['restore', saved, d],
        };
        const r = await cli([...args[op], '--host', host]);
        expectBusy(r, target, holder, holderOp);
        // the contender did not touch the domain: same memory and state, the holder still has it
        expect(await checksum(host, target), `${op} while ${holderOp} holds`).toBe(before);
        expect((await listDomains(host)).find((x) => x.domid === target)).toEqual(stateBefore);
        expect(holder.child.exitCode).toBeNull();
      }
      // SIGKILL: no chance to clean up; the lock file stays, naming a dead process ...
      holder.child.kill('SIGKILL');
      await holder.done;
      const left = lockFiles(host).find((f) => f.name.startsWith(`domain-${target}-`));
      expect(left?.holder?.pid).toBe(holder.child.pid);
      // ... and the next operation takes the domain all the same
      if (holderOp === 'restore') {
        const r = await cli(['restore', saved, d, '--host', host]);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout.trim()).toBe(d);
      } else {
        const r = await cli([
          'save',
          d,
          join(tmp.dir, `after-kill-${holderOp}.xl`),
          '--keep-running',
          '--host',
          host,
        ]);
        expect(r.code, r.stderr).toBe(0);
      }
      expect((await listDomains(host)).find((x) => x.domid === target)?.state).toBe('running');
      // a holder that ends normally removes its lock file
      expect(lockFiles(host).filter((f) => f.name.startsWith(`domain-${target}-`))).toEqual([]);
    });
  }

  it("two migrations of one busy guest at once (the issue's corruption): the second is refused, the first hands over the exact state", async () => {
    const a = tempHost();
    const b1 = tempHost();
    const b2 = tempHost();
    cleanups.push(a.cleanup, b1.cleanup, b2.cleanup);
    const domid = await createDomain(a.dir, 'hvm', '16M');
    const workload = track(await startWorkload(a.dir, domid, 1000, 0, 7));
    const receivers = [b1.dir, b2.dir].map((B) =>
      track(startCli(['receive', '--listen', '127.0.0.1:0', '--insecure', '--host', B])),
    );
    const ports = await Promise.all(
      receivers.map(async (r) =>
        Number(/listening on .*:(\d+)/.exec(await r.waitErr(/listening on .*:\d+/))![1]),
      ),
    );
    const atSuspend = [join(tmp.dir, 'race-1.json'), join(tmp.dir, 'race-2.json')];
    const migrate = (i: number) =>
      track(
        startCli([
          'migrate',
          String(domid),
          `tcp://127.0.0.1:${ports[i]}`,
          '--insecure',
          '--bandwidth',
          '4M',
          '--checksum-at-suspend',
          atSuspend[i]!,
          '--host',
          a.dir,
        ]),
      );
    const first = migrate(0);
    // the first is streaming: its receiver has built the destination domain
    await until(async () => (await listDomains(b1.dir)).length > 0, 'the first migration to stream');
    expect(first.child.exitCode).toBeNull();
    const second = await migrate(1).done;
    expectBusy(second, domid, first, 'migrate');
    expect(existsSync(atSuspend[1]!)).toBe(false); // it never suspended the source
    const r1 = await first.done;
    expect(r1.code, r1.stderr).toBe(0);
    // the destination holds exactly the state the source had at its suspend
    const at = readAtSuspend(atSuspend[0]!);
    const [copy] = await listDomains(b1.dir);
    expect(copy?.state).toBe('running');
    expect(await checksum(b1.dir, copy!.domid)).toBe(at.checksum);
    expect(await listDomains(b2.dir)).toEqual([]);
    expect(await listDomains(a.dir)).toEqual([]);
    workload.child.kill('SIGKILL');
  }, 180_000);
});

describe('the lock itself', () => {
  it('in one process too: a second lock on a held domain is refused; released = free again', () => {
    const h = tempHost();
    cleanups.push(h.cleanup);
    const xen = openMockHost(h.dir);
    try {
      const d = xen.createDomain({ type: 'hvm', pages: 64 });
      const l1 = lockDomain(xen, d, 'save');
      let err: unknown;
      try {
        lockDomain(xen, d, 'migrate');
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(DomainBusyError);
      expect((err as DomainBusyError).code).toBe('ERR_DOMAIN_BUSY');
      expect((err as DomainBusyError).holder).toMatchObject({
        pid: process.pid,
        operation: 'save',
        domid: d,
      });
      l1.release();
      l1.release(); // idempotent
      const l2 = lockDomain(xen, d, 'migrate');
      l2.release();
      expect(readdirSync(join(h.dir, 'xenmig-locks'))).toEqual([]);
    } finally {
      xen.close();
    }
  });

  it('refuses while libxl holds its own per-domain lock (a POSIX fcntl lock, as libxl__lock_domain_userdata takes)', async () => {
    const dir = join(tmp.dir, 'xenlib');
    execFileSync('mkdir', ['-p', dir]);
    const uuid = '0123abcd-0000-4000-8000-00000000beef';
    const file = join(dir, `userdata-l.5.${uuid}.domain-userdata-lock`);
    // a separate process holds lockf (F_SETLK, F_WRLCK) on the file, as libxl does, until told to stop
    const script = join(tmp.dir, 'hold.py');
    writeFileSync(
      script,
      'import fcntl, sys\nf = open(sys.argv[1], "a+")\nfcntl.lockf(f, fcntl.LOCK_EX)\nprint("locked", flush=True)\nsys.stdin.read()\n',
    );
    const py = spawn('python3', [script, file], { stdio: ['pipe', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      py.stdout.once('data', () => resolve());
      py.once('exit', (c) => reject(new Error(`python3 exited ${c}`)));
    });
    try {
      expect(() => probeLibxlLock(dir, 5, uuid)).toThrow(/ERR_DOMAIN_BUSY|locked by libxl/);
      try {
        probeLibxlLock(dir, 5, uuid);
      } catch (e) {
        expect((e as DomainBusyError).code).toBe('ERR_DOMAIN_BUSY');
      }
    } finally {
      py.stdin.end();
      await new Promise((r) => py.once('exit', r));
    }
    // libxl let go: the probe takes and releases it, removing the file as libxl does
    expect(() => probeLibxlLock(dir, 5, uuid)).not.toThrow();
    expect(existsSync(file)).toBe(false);
  });
});
