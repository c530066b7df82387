// COLO: the CHECKPOINT_STATE exchange in the order of libxl_colo_{save,restore}.c, the secondary's
// dirty pfns merged into the next checkpoint, and failover to either side.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { receiveReplica, remus, type CheckpointStat } from '../../src/checkpoint/index.js';
import type { MockHypervisor } from '../../src/xen/hypervisor.js';
import { useMockHostPair } from '../support/hosts.js';
import { startBackupProcess } from '../support/processes.js';
import { CLI, listeningPort, Proc, requireFreshBuild, WORKLOAD } from './helpers.js';

const dirs = useMockHostPair('xenmig-colo-', { before: requireFreshBuild });
const { on } = dirs;

describe('colo: one process, two domains (state exchange and dirty-pfn merge)', () => {
  it('exchanges SVM_SUSPENDED, DIRTY_PFN_LIST, SVM_READY, SVM_RESUMED, NEW in order and resends what the secondary dirtied', async () => {
    const xen = on(join(dirs.root, 'single'));
    const pvm = xen.createDomain({ type: 'hvm', pages: 64, populate: true });
    const N = 5;
    const SVM_PFN = 40; // written only by the secondary, after checkpoint 2
    const p: [number, string][] = [];
    const s: [number, string][] = [];
    const primSums = new Map<number, string>();
    const backSums = new Map<number, string>();
    const listening = listeningPort();
    const secondary = receiveReplica({
      xen,
      colo: true,
      listen: { host: '127.0.0.1', port: 0 },
      insecure: true,
      failoverTimeoutMs: 5000,
      onListening: listening.onListening,
      log: () => {},
      trace: (e, n) => s.push([n, e]),
      onCheckpoint: (n, x, d) => void backSums.set(n, (x as MockHypervisor).checksum(d)),
      // the SVM runs between checkpoints: after checkpoint 2 it writes a page the PVM never touches
      onResumed: (n, x, d) => {
        if (n === 2)
          (x as MockHypervisor).guestWrite(
            d,
            SVM_PFN,
            128,
            new TextEncoder().encode('secondary output diverged'),
          );
      },
    });
    const h = remus(pvm, `tcp://127.0.0.1:${await listening.port}`, {
      xen,
      colo: true,
      insecure: true,
      intervalMs: 10,
      maxCheckpoints: N,
      log: () => {},
      trace: (e, n) => p.push([n, e]),
      onSuspended: (n, x, d) => void primSums.set(n, (x as MockHypervisor).checksum(d)),
      onIdle: (n) => xen.guestWrite(pvm, n % 8, 0, new TextEncoder().encode(`primary ${n}`)),
    });
    const stats: CheckpointStat[] = [];
    for await (const st of h) stats.push(st);
    const r = await h.done;
    const sr = await secondary;
    expect(r.error).toBeUndefined();
    expect(r.checkpoints).toBe(N);
    expect(sr.outcome).toBe('discarded');

    // primary side, per checkpoint (libxl_colo_save.c): k = 1 has no SVM_SUSPENDED / dirty list
    const pOf = (k: number) => p.filter(([n]) => n === k).map(([, e]) => e.replace(/\(.*\)/, ''));
    expect(pOf(1)).toEqual(['recv SVM_READY', 'recv SVM_RESUMED', 'send NEW']);
    for (let k = 2; k < N; k++)
      expect(pOf(k)).toEqual([
        'recv SVM_SUSPENDED',
        'recv DIRTY_PFN_LIST',
        'recv SVM_READY',
        'recv SVM_RESUMED',
        'send NEW',
      ]);
    expect(pOf(N)).toEqual([
      'recv SVM_SUSPENDED',
      'recv DIRTY_PFN_LIST',
      'recv SVM_READY',
      'recv SVM_RESUMED',
    ]);
    // secondary side (libxl_colo_restore.c), after each applied checkpoint n < N
    const sOf = (k: number) => s.filter(([n]) => n === k).map(([, e]) => e.replace(/\(.*\)/, ''));
    for (let k = 1; k < N; k++)
      expect(sOf(k)).toEqual([
        'send SVM_READY',
        'send SVM_RESUMED',
        'recv NEW',
        'send SVM_SUSPENDED',
        'send DIRTY_PFN_LIST',
      ]);

    // the secondary reported the page it dirtied after checkpoint 2 ...
    const sent = s.find(([n, e]) => n === 2 && e.startsWith('send DIRTY_PFN_LIST'))![1];
    expect(sent).toMatch(new RegExp(`[(,]${SVM_PFN}[,)]`));
    const got = p.find(([n, e]) => n === 3 && e.startsWith('recv DIRTY_PFN_LIST'))![1];
    expect(got).toBe(sent.replace('send', 'recv'));
    expect(stats[2]!.dirtyPages).toBeGreaterThan(stats[1]!.dirtyPages - 1);
    // ... and checkpoint 3 overwrote it: the SVM holds exactly the PVM's state again
    for (let k = 1; k <= N; k++) expect(backSums.get(k), `checkpoint ${k}`).toBe(primSums.get(k));
  });
});

describe('colo: separate processes, failover', () => {
  async function start(tag: string, primaryExtra: string[]) {
    const dA = on(dirs.a).createDomain({ type: 'hvm', pages: 64, populate: true });
    const wl = new Proc(WORKLOAD, [dirs.a, '2000', '64', '5', String(dA)]);
    await new Promise<void>((r) => wl.child.stdout!.once('data', () => r()));
    const { proc: secondary, port } = await startBackupProcess(CLI, dirs.b, [
      '--colo',
      '--failover-timeout-ms',
      '500',
      '--heartbeat-ms',
      '50',
    ]);
    const primary = new Proc(CLI, [
      'remus',
      String(dA),
      `tcp://127.0.0.1:${port}`,
      '--colo',
      '--host',
      dirs.a,
      '--insecure',
      '-i',
      '10',
      '--json',
      ...primaryExtra,
    ]);
    await primary.waitFor((j) => (j.checkpoint as number) >= 5, `${tag}: checkpoint 5`);
    return { dA, wl, secondary, primary };
  }

  it('the primary dies: the secondary takes over and runs the guest', async () => {
    const before = new Set(on(dirs.b).listDomainIds());
    const { dA, wl, secondary, primary } = await start('primary dies', []);
    primary.kill('SIGKILL');
    await primary.exited;
    const se = await secondary.exited;
    wl.kill();
    await wl.exited;
    expect(se.code, secondary.stderr).toBe(0);
    const res = secondary.json.at(-1)!;
    expect(res).toMatchObject({ result: 'failover', guest: 'running' });
    expect(res.checkpoint as number).toBeGreaterThanOrEqual(5);
    const b = on(dirs.b);
    const svm = res.domid as number;
    expect(b.listDomainIds().filter((x) => !before.has(x))).toEqual([svm]);
    const info = b.domainInfo(svm);
    expect(info.paused || info.shutdown).toBe(false);
    b.destroyDomain(svm);
    on(dirs.a).destroyDomain(dA);
  });

  it('the secondary dies: the primary continues (--on-backup-loss continue)', async () => {
    const { dA, wl, secondary, primary } = await start('secondary dies', [
      '--on-backup-loss',
      'continue',
      '--ack-timeout-ms',
      '1000',
    ]);
    secondary.kill('SIGKILL');
    await secondary.exited;
    const pe = await primary.exited;
    wl.kill();
    await wl.exited;
    expect(pe.code).toBe(1);
    expect(primary.json.at(-1)).toMatchObject({ result: 'backup-lost', guest: 'running' });
    expect(primary.stderr).toMatch(/backup lost after checkpoint \d+/);
    const a = on(dirs.a);
    const info = a.domainInfo(dA);
    expect(info.paused || info.shutdown).toBe(false);
    a.destroyDomain(dA);
    const b = on(dirs.b);
    for (const x of b.listDomainIds()) b.destroyDomain(x);
  });
});
