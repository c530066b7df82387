// Remus with disk replication between real processes on two mock hosts: the disk daemon
// (`xenmig disk serve`), a guest writer (NBD writes, then the counter in guest memory), the primary
// (`xenmig remus --disk`) and the backup (`xenmig remus-receive --disk-map`). The primary is killed
// (SIGKILL) at random moments; after the failover the backup's image must equal the primary's
// image at the checkpoint the backup resumed from (block by block, against the daemon's copy taken
// at that checkpoint's rotate), and the replica's memory counter must name a write its disk holds.
// Also: the refusals before the guest is touched (vbds without --disk, --disk towards xl, a backup
// without --disk-map).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { useMockHostPair } from '../support/hosts.js';
import { startBackupProcess, startPrimaryProcess } from '../support/processes.js';
import { Proc, prng, requireFreshBuild } from '../checkpoint/helpers.js';

const MAIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const WRITER = fileURLToPath(new URL('./fixtures/writer.mjs', import.meta.url));
const BS = 4096;
const NBLOCKS = 64;
/** the writer's blocks: the rest of the image is only ever on the backup through the initial copy */
const WRITTEN = 48;

const dirs = useMockHostPair('xenmig-diskrepl-', { before: requireFreshBuild, open: true });
const { A, B } = dirs;

async function startDaemon(
  t: string,
  image: string,
): Promise<{ proc: Proc; ctl: string; nbd: string; snaps: string }> {
  const snaps = join(dirs.root, `${t}-snaps`);
  mkdirSync(snaps, { recursive: true });
  const nbd = join(dirs.root, `${t}-nbd.sock`);
  const ctl = join(dirs.root, `${t}-ctl.sock`);
  const proc = new Proc(MAIN, [
    'disk',
    'serve',
    image,
    '--socket',
    nbd,
    '--control',
    ctl,
    '--json',
    '--snapshot-dir',
    snaps,
    '--snapshot-keep',
    '100000',
  ]);
  await proc.waitFor((j) => j.serving !== undefined, 'the disk daemon');
  return { proc, ctl, nbd, snaps };
}

const startBackup = (extra: string[]) => startBackupProcess(MAIN, dirs.b, extra);

/** Highest counter written to any block of an image (0: none). */
function maxCounter(img: Buffer): number {
  let m = 0;
  for (let i = 0; i < img.length; i += BS) {
    const k = Number(img.readBigUInt64LE(i));
    // a block the writer wrote carries k in its first 8 bytes and k & 0xff after them
    if (k > 0 && img[i + 8] === (k & 0xff) && img[i + BS - 1] === (k & 0xff)) m = Math.max(m, k);
  }
  return m;
}

function firstDiff(a: Buffer, b: Buffer): number {
  if (a.length !== b.length) return -2;
  for (let i = 0; i < a.length; i += BS)
    if (!a.subarray(i, i + BS).equals(b.subarray(i, i + BS))) return i / BS;
  return -1;
}

describe('remus --disk: the primary is killed (SIGKILL) at random moments', () => {
  const TRIALS = Number(process.env.XENMIG_DISK_TRIALS ?? 6);
  const SEED = Number(process.env.XENMIG_DISK_SEED ?? 20261203);

  it(`${TRIALS} trials (seed ${SEED}): the backup image is the primary's at the failover checkpoint`, async () => {
    const rnd = prng(SEED);
    const outcomes: string[] = [];
    for (let t = 0; t < TRIALS; t++) {
      const killAt = t === 0 ? 0 : 1 + Math.floor(rnd() * 60);
      const extraMs = rnd() * 10;
      const pimg = join(dirs.root, `t${t}-primary.img`);
      const bimg = join(dirs.root, `t${t}-backup.img`);
      writeFileSync(pimg, randomBytes(NBLOCKS * BS)); // the initial copy must carry this
      writeFileSync(bimg, Buffer.alloc(NBLOCKS * BS));
      const d = A().createDomain({ type: 'hvm', pages: 32, populate: true });
      const daemon = await startDaemon(`t${t}`, pimg);
      const writer = new Proc(WRITER, [dirs.a, String(d), daemon.nbd, String(WRITTEN)]);
      await new Promise<void>((r) => writer.child.stdout!.once('data', () => r()));
      const before = new Set(B().listDomainIds());
      const { proc: backup, port } = await startBackup([
        '--failover-timeout-ms',
        '400',
        '--heartbeat-ms',
        '50',
        '--disk-map',
        `xvda=${bimg}`,
      ]);
      const primary = startPrimaryProcess(MAIN, d, port, dirs.a, [
        '-i',
        '10',
        '--ack-timeout-ms',
        '2000',
        '--json',
        '--disk',
        `xvda=${daemon.ctl}`,
      ]);
      try {
        // kill point 0: during the initial copy or the live phase (the primary is connected by then)
        if (killAt === 0)
          while (!daemon.proc.stderr.includes('replication started'))
            await new Promise((r) => setTimeout(r, 2));
        else await primary.waitFor((j) => (j.checkpoint as number) >= killAt, `checkpoint ${killAt}`);
        await new Promise((r) => setTimeout(r, extraMs));
        primary.kill('SIGKILL');
        await primary.exited;
        await backup.exited;
        const acked = Math.max(
          0,
          ...primary.json.map((j) => (typeof j.checkpoint === 'number' ? j.checkpoint : 0)),
        );
        const res = backup.json.at(-1)!;
        const ctx = `trial ${t}: kill at ${killAt}+${extraMs.toFixed(1)}ms, acked ${acked}, result ${JSON.stringify(res)}\n${backup.stderr}\n${primary.stderr}`;
        if (res.result === 'failed') {
          expect(acked, ctx).toBe(0);
          expect(
            B()
              .listDomainIds()
              .filter((x) => !before.has(x)),
            ctx,
          ).toEqual([]);
          outcomes.push(`${t}:none`);
          continue;
        }
        expect(res.result, ctx).toBe('failover');
        const m = res.checkpoint as number;
        expect(m, ctx).toBeGreaterThanOrEqual(Math.max(1, acked));
        const snap = join(daemon.snaps, `epoch-${m}.img`);
        expect(existsSync(snap), ctx).toBe(true);
        const got = readFileSync(bimg);
        const want = readFileSync(snap);
        const diff = firstDiff(got, want);
        expect(diff, `${ctx}\nfirst differing block ${diff}`).toBe(-1);
        // memory and disk of the same checkpoint: the counter in memory names a write on the disk
        const domid = res.domid as number;
        const map = B().map(domid, new BigUint64Array([1n]), 'r');
        const memCounter = Number(
          new DataView(map.bytes.buffer, map.bytes.byteOffset, 8).getBigUint64(0, true),
        );
        map.unmap();
        const diskMax = maxCounter(got);
        expect(diskMax, `${ctx}: memory says ${memCounter}`).toBeGreaterThanOrEqual(memCounter);
        B().destroyDomain(domid);
        outcomes.push(`${t}:${acked}->${m} mem ${memCounter} disk ${diskMax}`);
      } finally {
        primary.kill('SIGKILL');
        backup.kill('SIGKILL');
        // SIGKILL: a primary killed inside a checkpoint leaves the guest suspended, and the writer
        // blocked in guestWrite (as a suspended guest would be) cannot run its SIGTERM handler
        writer.kill('SIGKILL');
        daemon.proc.kill();
        await Promise.all([writer.exited, daemon.proc.exited]);
        try {
          A().destroyDomain(d);
        } catch {
          /* gone */
        }
        rmSync(daemon.snaps, { recursive: true, force: true });
      }
    }
    console.log(`remus --disk SIGKILL trials (acked->failover checkpoint): ${outcomes.join(' | ')}`);
    // the writes really happened during replication, and the kills landed inside runs
    expect(outcomes.filter((o) => /mem [1-9]/.test(o)).length).toBeGreaterThan(TRIALS / 2);
  }, 600_000);
});

describe('remus --disk: refused before the guest is touched', () => {
  it('a guest with vbds and no --disk, --disk with --protocol xl, a --disk naming no vbd: usage errors; the guest runs on untouched', () => {
    const d = A().createDomain({ type: 'hvm', pages: 16, populate: true });
    const cfg = join(dirs.root, 'vbd.json');
    const json = {
      c_info: { type: 'pvh', name: 'g' },
      b_info: { max_vcpus: 1, max_memkb: 64, target_memkb: 64 },
      disks: [{ vdev: 'xvda', pdev_path: '/dev/nbd0', backend: 'phy', format: 'raw', readwrite: 1 }],
    };
    writeFileSync(cfg, JSON.stringify(json));
    const run = (args: string[]) => {
      try {
        execFileSync(
          process.execPath,
          [
            MAIN,
            'remus',
            String(d),
            'tcp://127.0.0.1:9',
            '--host',
            dirs.a,
            '--insecure',
            '--config',
            cfg,
            ...args,
          ],
          { stdio: 'pipe' },
        );
        return { code: 0, err: '' };
      } catch (e) {
        const x = e as { status: number; stderr: Buffer };
        return { code: x.status, err: x.stderr.toString() };
      }
    };
    const none = run([]);
    expect(none.code).toBe(2);
    expect(none.err).toMatch(
      /vbds without disk replication \(xvda\).*--disk NAME=CTL\.sock.*--no-disk-replication \(or --unsafe\)/s,
    );
    const xl = run(['--protocol', 'xl', '--disk', 'xvda=/nonexistent.sock']);
    expect(xl.code).toBe(2);
    expect(xl.err).toMatch(/--disk needs a xenmig backup/);
    const wrong = run(['--disk', 'xvdb=/nonexistent.sock']);
    expect(wrong.code).toBe(2);
    expect(wrong.err).toMatch(/--disk xvdb: domain \d+ has no such vbd \(its vbds: xvda\)/);
    const contra = run(['--disk', 'xvda=/nonexistent.sock', '--no-disk-replication']);
    expect(contra.code).toBe(2);
    const info = A().domainInfo(d);
    expect(info.paused || info.shutdown).toBe(false);
    A().destroyDomain(d);
  });

  it('an unreachable disk daemon refuses the replication (exit 1, guest untouched); a backup without --disk-map: no replica, the guest runs on', async () => {
    const d = A().createDomain({ type: 'hvm', pages: 16, populate: true });
    const gone = new Proc(MAIN, [
      'remus',
      String(d),
      'tcp://127.0.0.1:9',
      '--host',
      dirs.a,
      '--insecure',
      '--json',
      '--disk',
      `xvda=${join(dirs.root, 'none.sock')}`,
    ]);
    const ge = await gone.exited;
    expect(ge.code, gone.stderr).toBe(1);
    expect(gone.stderr).toMatch(
      /refused, guest untouched: disk daemon at .*none\.sock.*--no-disk-replication/,
    );
    expect(gone.json.at(-1)).toMatchObject({ result: 'refused', guest: 'running' });

    const img = join(dirs.root, 'nomap.img');
    writeFileSync(img, Buffer.alloc(16 * BS));
    const daemon = await startDaemon('nomap', img);
    const { proc: backup, port } = await startBackup([]);
    try {
      const primary = startPrimaryProcess(MAIN, d, port, dirs.a, ['--json', '--disk', `xvda=${daemon.ctl}`]);
      const pe = await primary.exited;
      expect(pe.code, primary.stderr).toBe(1);
      expect(primary.stderr).toMatch(
        /the backup cannot replicate the guest's disks: the backup does not apply disk records/,
      );
      expect(primary.json.at(-1)).toMatchObject({ result: 'no-replica', guest: 'running' });
      expect(A().domainInfo(d).paused).toBe(false);
    } finally {
      backup.kill();
      daemon.proc.kill();
      await Promise.all([backup.exited, daemon.proc.exited]);
      A().destroyDomain(d);
    }
  });
});

describe('remus --disk: the disk daemon dies during replication', () => {
  it('the next rotate fails at once, the guest is resumed (never left suspended) and the primary reports it', async () => {
    const d = A().createDomain({ type: 'hvm', pages: 16, populate: true });
    const img = join(dirs.root, 'dies.img');
    writeFileSync(img, Buffer.alloc(16 * BS));
    const daemon = await startDaemon('dies', img);
    writeFileSync(join(dirs.root, 'dies-b.img'), Buffer.alloc(16 * BS));
    const { proc: backup, port } = await startBackup(['--disk-map', `xvda=${join(dirs.root, 'dies-b.img')}`]);
    const primary = startPrimaryProcess(MAIN, d, port, dirs.a, [
      '-i',
      '20',
      '--json',
      '--on-backup-loss',
      'continue',
      '--disk',
      `xvda=${daemon.ctl}`,
    ]);
    try {
      await primary.waitFor((j) => (j.checkpoint as number) >= 3, 'checkpoint 3');
      daemon.proc.kill('SIGKILL');
      const timer = setTimeout(() => primary.kill('SIGKILL'), 20_000);
      const pe = await primary.exited;
      clearTimeout(timer);
      expect(pe.signal, `the primary hung with the daemon gone\n${primary.stderr}`).toBeNull();
      expect(pe.code, primary.stderr).toBe(1);
      expect(primary.stderr).toMatch(/disk daemon at .*ctl\.sock/);
      const info = A().domainInfo(d);
      expect(info.shutdown, 'the guest was left suspended').toBe(false);
      expect(info.paused).toBe(false);
    } finally {
      primary.kill('SIGKILL');
      backup.kill('SIGKILL');
      daemon.proc.kill('SIGKILL');
      await backup.exited;
      A().destroyDomain(d);
    }
  }, 60_000);
});
