// Remus between real processes on two mock hosts: primary (xenmig remus), backup (xenmig
// remus-receive) and the guest workload each run in a process of their own.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useMockHostPair } from '../support/hosts.js';
import { startBackupProcess, startPrimaryProcess } from '../support/processes.js';
import { checksumLog, CLI, Proc, prng, requireFreshBuild, WORKLOAD } from './helpers.js';

const dirs = useMockHostPair('xenmig-remus-', { before: requireFreshBuild, open: true });
const { A, B } = dirs;

const startBackup = (log: string, extra: string[] = []) =>
  startBackupProcess(CLI, dirs.b, ['--checksum-log', log, ...extra]);

describe('remus: checkpoints under a workload', () => {
  it('after each acknowledged checkpoint the backup holds exactly the state the primary had while suspended for it', async () => {
    const d = A().createDomain({ type: 'hvm', pages: 256, populate: true });
    const wl = new Proc(WORKLOAD, [dirs.a, '4000', '200', '7', String(d)]);
    await new Promise<void>((r) => wl.child.stdout!.once('data', () => r()));
    const logA = join(dirs.root, 'w-primary.log');
    const logB = join(dirs.root, 'w-backup.log');
    const { proc: backup, port } = await startBackup(logB, ['--failover-timeout-ms', '3000']);
    const N = 40;
    const primary = startPrimaryProcess(CLI, d, port, dirs.a, [
      '-i',
      '20',
      '--max-checkpoints',
      String(N),
      '--json',
      '--checksum-log',
      logA,
    ]);
    const pe = await primary.exited;
    const be = await backup.exited;
    wl.kill();
    await wl.exited;
    expect(pe.code, primary.stderr).toBe(0);
    expect(be.code, backup.stderr).toBe(0);

    const stats = primary.json.filter((j) => typeof j.checkpoint === 'number');
    expect(stats.map((s) => s.checkpoint)).toEqual([...Array(N).keys()].map((i) => i + 1));
    for (const s of stats) {
      expect(s.ackMs as number).toBeGreaterThanOrEqual(0);
      expect(s.pauseMs as number).toBeGreaterThan(0);
      // the guest's share (waiting for it to suspend) is part of the pause, never more
      expect(s.suspendMs as number).toBeGreaterThanOrEqual(0);
      expect(s.suspendMs as number).toBeLessThanOrEqual(s.pauseMs as number);
      expect(s.bytes as number).toBeGreaterThan(0);
    }
    // the workload dirties pages between checkpoints (not necessarily during the short initial
    // round, which on a fast mock can end before the workload's next write)
    expect(stats.filter((s) => (s.dirtyPages as number) > 0).length).toBeGreaterThan(N / 2);
    expect(primary.json.at(-1)).toMatchObject({
      result: 'max-checkpoints',
      checkpoints: N,
      lastAcked: N,
      guest: 'running',
    });
    // a deliberate stop: the backup discards its replica instead of taking over
    expect(backup.json.at(-1)).toMatchObject({ result: 'discarded', checkpoint: N });

    const prim = new Map(checksumLog(logA).map((e) => [e.checkpoint as number, e.checksum as string]));
    const back = checksumLog(logB).filter((e) => e.checkpoint !== undefined);
    expect(back.map((e) => e.checkpoint)).toEqual([...Array(N).keys()].map((i) => i + 1));
    for (const e of back)
      expect(e.checksum, `checkpoint ${String(e.checkpoint)}`).toBe(prim.get(e.checkpoint as number));
    // the workload really changed the guest between checkpoints
    expect(new Set(prim.values()).size).toBeGreaterThan(N / 2);
    // the primary's guest still runs; the replica is gone
    expect(A().domainInfo(d).paused).toBe(false);
    expect(B().listDomainIds()).toEqual([]);
    A().destroyDomain(d);
  });
});

describe('remus: the primary is killed (SIGKILL) at random moments', () => {
  // Guarantee tested: the backup resumes the guest from a checkpoint m with
  //   (last checkpoint the primary saw acknowledged) <= m <= (last checkpoint the primary captured),
  // holding exactly the primary's state at m (checksum taken while suspended for m), and nothing
  // half-applied. m may exceed the last acknowledged one: the backup can apply and ACK a
  // checkpoint that the primary never gets to read — still a complete checkpoint. Before the first
  // complete checkpoint there is nothing to take over: no domain may be left on the backup host.
  const TRIALS = Number(process.env.XENMIG_REMUS_TRIALS ?? 20);
  const SEED = Number(process.env.XENMIG_REMUS_SEED ?? 20261127);

  it(`${TRIALS} trials (seed ${SEED}), kill points spread over 0..110 checkpoints`, async () => {
    const rnd = prng(SEED);
    const hA = A();
    const domains = [...Array(TRIALS)].map(() => hA.createDomain({ type: 'hvm', pages: 32, populate: true }));
    const wl = new Proc(WORKLOAD, [dirs.a, '2000', '32', '11', ...domains.map(String)]);
    await new Promise<void>((r) => wl.child.stdout!.once('data', () => r()));
    const outcomes: string[] = [];
    try {
      for (let t = 0; t < TRIALS; t++) {
        const d = domains[t]!;
        const killAt = Math.floor(rnd() * 111); // checkpoint number to reach (0 = during the live phase)
        const extraMs = rnd() * 8;
        const logA = join(dirs.root, `k${t}-primary.log`);
        const logB = join(dirs.root, `k${t}-backup.log`);
        const before = new Set(B().listDomainIds());
        const { proc: backup, port } = await startBackup(logB, [
          '--failover-timeout-ms',
          '400',
          '--heartbeat-ms',
          '50',
        ]);
        const primary = startPrimaryProcess(CLI, d, port, dirs.a, [
          '-i',
          '5',
          '--ack-timeout-ms',
          '2000',
          '--json',
          '--checksum-log',
          logA,
        ]);
        if (killAt > 0)
          await primary.waitFor((j) => (j.checkpoint as number) >= killAt, `checkpoint ${killAt}`);
        await new Promise((r) => setTimeout(r, extraMs));
        primary.kill('SIGKILL');
        await primary.exited;
        const be = await backup.exited;
        const acked = Math.max(
          0,
          ...primary.json.map((j) => (typeof j.checkpoint === 'number' ? j.checkpoint : 0)),
        );
        const captured = new Map(
          checksumLog(logA).map((e) => [e.checkpoint as number, e.checksum as string]),
        );
        const res = backup.json.at(-1)!;
        const blog = checksumLog(logB);
        const ctx = `trial ${t}: kill at ${killAt}+${extraMs.toFixed(1)}ms, acked ${acked}, result ${JSON.stringify(res)}\n${backup.stderr}`;
        if (res.result === 'failed') {
          expect(acked, ctx).toBe(0);
          expect(be.code, ctx).not.toBe(0);
          expect(
            B()
              .listDomainIds()
              .filter((x) => !before.has(x)),
            ctx,
          ).toEqual([]);
          outcomes.push(`${t}:none`);
        } else {
          expect(res.result, ctx).toBe('failover');
          const m = res.checkpoint as number;
          expect(m, ctx).toBeGreaterThanOrEqual(Math.max(1, acked));
          expect(captured.has(m), ctx).toBe(true);
          const fo = blog.find((e) => e.failover !== undefined)!;
          expect(fo.failover, ctx).toBe(m);
          expect(fo.checksum, ctx).toBe(captured.get(m));
          const domid = res.domid as number;
          expect(B().domainInfo(domid).paused, ctx).toBe(false);
          expect(res.guest, ctx).toBe('running');
          expect(
            B()
              .listDomainIds()
              .filter((x) => !before.has(x)),
            ctx,
          ).toEqual([domid]);
          B().destroyDomain(domid);
          outcomes.push(`${t}:${acked}->${m}`);
        }
      }
    } finally {
      wl.kill();
      await wl.exited;
    }
    console.log(`remus SIGKILL trials (acked->failover checkpoint): ${outcomes.join(' ')}`);
    // the kill points must really have landed inside long runs too
    expect(
      outcomes.some((o) => /->(\d+)$/.test(o) && Number(/->(\d+)$/.exec(o)![1]) >= 50),
      outcomes.join(' '),
    ).toBe(true);
  });
});

describe('remus: the backup is lost', () => {
  for (const policy of ['pause', 'continue'] as const) {
    it(`--on-backup-loss ${policy}: the primary ${policy === 'pause' ? 'pauses' : 'keeps running'} its guest and logs the checkpoint numbers`, async () => {
      const d = A().createDomain({ type: 'hvm', pages: 32, populate: true });
      const { proc: backup, port } = await startBackup(join(dirs.root, `loss-${policy}.log`), [
        '--failover-timeout-ms',
        '60000',
      ]);
      const primary = startPrimaryProcess(CLI, d, port, dirs.a, [
        '-i',
        '10',
        '--ack-timeout-ms',
        '500',
        '--on-backup-loss',
        policy,
        '--json',
      ]);
      await primary.waitFor((j) => (j.checkpoint as number) >= 5, 'checkpoint 5');
      backup.kill('SIGKILL');
      await backup.exited;
      const pe = await primary.exited;
      expect(pe.code).toBe(1);
      const res = primary.json.at(-1)!;
      expect(res).toMatchObject({ result: 'backup-lost', guest: policy === 'pause' ? 'paused' : 'running' });
      const acked = res.lastAcked as number;
      expect(acked).toBeGreaterThanOrEqual(5);
      expect(primary.stderr).toMatch(
        new RegExp(`backup lost after checkpoint \\d+ \\(last acknowledged ${acked}\\)`),
      );
      const info = A().domainInfo(d);
      expect(info.shutdown).toBe(false); // never left suspended
      expect(info.paused).toBe(policy === 'pause');
      // the backup's half-received replica died with it; clean the host
      for (const x of B().listDomainIds()) B().destroyDomain(x);
      A().destroyDomain(d);
    });
  }
});

describe('remus: a silent primary (no FIN, no data)', () => {
  it('the backup fails over by its watchdog to a complete checkpoint', async () => {
    const d = A().createDomain({ type: 'hvm', pages: 32, populate: true });
    const logA = join(dirs.root, 'silent-primary.log');
    const logB = join(dirs.root, 'silent-backup.log');
    const before = new Set(B().listDomainIds());
    const { proc: backup, port } = await startBackup(logB, ['--failover-timeout-ms', '500']);
    const primary = startPrimaryProcess(CLI, d, port, dirs.a, [
      '-i',
      '10',
      '--ack-timeout-ms',
      '100000',
      '--json',
      '--checksum-log',
      logA,
    ]);
    await primary.waitFor((j) => (j.checkpoint as number) >= 5, 'checkpoint 5');
    primary.kill('SIGSTOP'); // the connection stays open: only the watchdog can notice
    const be = await backup.exited;
    primary.kill('SIGKILL');
    await primary.exited;
    expect(be.code, backup.stderr).toBe(0);
    const res = backup.json.at(-1)!;
    expect(res.result).toBe('failover');
    expect(String(res.cause)).toMatch(/timed out/);
    const acked = Math.max(...primary.json.map((j) => (typeof j.checkpoint === 'number' ? j.checkpoint : 0)));
    expect(res.checkpoint as number).toBeGreaterThanOrEqual(acked);
    const captured = new Map(checksumLog(logA).map((e) => [e.checkpoint as number, e.checksum as string]));
    const fo = checksumLog(logB).find((e) => e.failover !== undefined)!;
    expect(fo.checksum).toBe(captured.get(res.checkpoint as number));
    expect(backup.stderr).toMatch(new RegExp(`failover to checkpoint ${String(res.checkpoint)}`));
    for (const x of B().listDomainIds()) if (!before.has(x)) B().destroyDomain(x);
    A().destroyDomain(d);
  });
});

describe('remus: checkpoints are the forward heartbeat', () => {
  it('an interval longer than the backup tolerates is capped, so a healthy primary is never failed over', async () => {
    const d = A().createDomain({ type: 'hvm', pages: 32, populate: true });
    const { proc: backup, port } = await startBackup(join(dirs.root, 'cap.log'), [
      '--failover-timeout-ms',
      '400',
      '--heartbeat-ms',
      '50',
    ]);
    const primary = startPrimaryProcess(CLI, d, port, dirs.a, [
      '-i',
      '60000',
      '--max-checkpoints',
      '4',
      '--json',
    ]);
    const pe = await primary.exited;
    const be = await backup.exited;
    expect(pe.code, primary.stderr).toBe(0);
    expect(be.code, backup.stderr).toBe(0);
    expect(primary.stderr).toMatch(/interval 60000 ms capped at 200 ms/);
    expect(primary.json.at(-1)).toMatchObject({ result: 'max-checkpoints', lastAcked: 4 });
    expect(backup.json.at(-1)).toMatchObject({ result: 'discarded', checkpoint: 4 });
    A().destroyDomain(d);
  });
});

describe('remus: the link breaks before the first complete checkpoint', () => {
  it('the backup process takes nothing over and leaves no domain behind', async () => {
    const { remus } = await import('../../src/checkpoint/index.js');
    const { readAll } = await import('../../src/stream/index.js');
    const { connectTcp, ControlConnection, writeAll } = await import('../../src/transport/index.js');
    const { readFileSync } = await import('node:fs');
    // record a short Remus stream of a small guest
    const d = A().createDomain({ type: 'hvm', pages: 64, populate: true });
    const file = join(dirs.root, 'early.stream');
    const r = await remus(d, file, { xen: A(), intervalMs: 1, maxCheckpoints: 2, log: () => {} }).done;
    expect(r.error).toBeUndefined();
    const stream = readFileSync(file);
    const { items } = await readAll(stream);
    const firstEnd = items.find((it) => it.kind === 'record' && it.name === 'CHECKPOINT_END')!;
    const before = new Set(B().listDomainIds());
    for (const cut of [Math.floor(firstEnd.offset / 2), firstEnd.offset + firstEnd.size - 1]) {
      const { proc: backup, port } = await startBackup(join(dirs.root, `early-${cut}.log`), [
        '--failover-timeout-ms',
        '300',
      ]);
      // a fake primary: READY, then a prefix of the stream, then the link drops
      const ch = await connectTcp({ host: '127.0.0.1', port, insecure: true });
      await new ControlConnection(ch.readable, ch.writable).expect('READY', { timeoutMs: 10_000 });
      await writeAll(ch.writable, stream.subarray(0, cut));
      await new Promise((res) => setTimeout(res, 50));
      ch.destroy();
      const be = await backup.exited;
      expect(be.code, backup.stderr).toBe(1);
      expect(backup.json.at(-1)).toMatchObject({ result: 'failed', checkpoint: 0 });
      expect(backup.stderr).toMatch(/failed before a complete checkpoint/);
      expect(
        B()
          .listDomainIds()
          .filter((x) => !before.has(x)),
      ).toEqual([]);
    }
    A().destroyDomain(d);
  });
});
