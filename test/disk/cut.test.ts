// A recorded Remus stream with a replicated disk, cut at every record boundary (and one byte into
// every record): the backup's image must equal the primary's image at the last checkpoint that
// completed before the cut (its CHECKPOINT_END received), block for block; before the first
// complete checkpoint the backup takes nothing over. This fails if the backup applied disk blocks
// before CHECKPOINT_END, or if the initial copy were missing (the primary's image starts random,
// the backup's zero).
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMockHost, type MockHypervisor } from '../../src/xen/hypervisor.js';
import { remus } from '../../src/checkpoint/index.js';
import { restoreDomain } from '../../src/toolstack/restore.js';
import { readAll } from '../../src/stream/index.js';
import { serveDisk, type DiskServer } from '../../src/disk/daemon.js';
import { DiskReplication } from '../../src/disk/primary.js';
import { DiskReplicaSet } from '../../src/disk/replica.js';
import { replicaDiskHooks } from '../../src/disk/replica-hooks.js';

const CHECKPOINTS = 4;
const BS = 4096;
const BLOCKS = 32;

/** First differing block, or -1. */
function firstDiff(a: Buffer, b: Buffer): number {
  for (let i = 0; i < a.length; i += BS)
    if (!a.subarray(i, i + BS).equals(b.subarray(i, i + BS))) return i / BS;
  return a.length === b.length ? -1 : a.length / BS;
}

describe('Remus disk replication: the stream cut anywhere', () => {
  let dir: string;
  let a: MockHypervisor;
  let b: MockHypervisor;
  let server: DiskServer;
  let stream: Uint8Array;
  const snapshot = (n: number) => readFileSync(join(dir, 'snaps', `epoch-${n}.img`));
  /** byte offset just past checkpoint k's CHECKPOINT_END, and every record's offset */
  const ends: number[] = [];
  const starts: number[] = [];
  let initial: Buffer;

  beforeAll(async () => {
    dir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'xenmig-diskcut-'));
    a = openMockHost(join(dir, 'a'));
    b = openMockHost(join(dir, 'b'));
    initial = randomBytes(BLOCKS * BS);
    writeFileSync(join(dir, 'primary.img'), initial);
    const { mkdirSync } = await import('node:fs');
    mkdirSync(join(dir, 'snaps'));
    server = await serveDisk(join(dir, 'primary.img'), {
      socket: join(dir, 'nbd.sock'),
      control: join(dir, 'ctl.sock'),
      snapshotDir: join(dir, 'snaps'),
      snapshotKeep: 100,
    });
    const d = a.createDomain({ type: 'hvm', pages: 16, populate: true });
    const file = join(dir, 'remus.stream');
    const h = remus(d, file, {
      xen: a,
      intervalMs: 1,
      maxCheckpoints: CHECKPOINTS,
      disks: new DiskReplication([{ name: 'xvda', control: join(dir, 'ctl.sock') }]),
      log: () => {},
      onIdle: async (n) => {
        // between checkpoints: a few blocks, one rewritten every time, one partial write
        for (const blk of [0, n, n + 7])
          await server.image.write(blk * BS, Buffer.alloc(BS, 0x10 * n + blk), false);
        await server.image.write(20 * BS + 100, Buffer.alloc(50, n), false);
        a.guestWrite(d, 1, 0, new TextEncoder().encode(`checkpoint ${n}`));
      },
    });
    const r = await h.done;
    expect(r.error).toBeUndefined();
    expect(r.checkpoints).toBe(CHECKPOINTS);
    stream = readFileSync(file);
    const { items } = await readAll(stream);
    for (const it of items) {
      starts.push(it.offset);
      if (it.kind === 'record' && it.name === 'CHECKPOINT_END') ends.push(it.offset + it.size);
    }
    expect(ends.length).toBe(CHECKPOINTS);
    // the checkpoints' images differ from each other: the test can tell them apart (checkpoint 1
    // holds the random initial image: the backup's zeros must be replaced by the initial copy)
    const imgs = [1, 2, 3, 4].map(snapshot).map((x) => x.toString('hex'));
    expect(new Set(imgs).size).toBe(CHECKPOINTS);
    expect(snapshot(1).equals(initial)).toBe(true);
  }, 60_000);

  afterAll(async () => {
    await server?.close();
    a?.close();
    b?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the backup image is the primary image at the last complete checkpoint, at every cut', async () => {
    const cuts = [...new Set([...starts, ...starts.map((s) => s + 1), stream.length])]
      .filter((c) => c <= stream.length)
      .sort((x, y) => x - y);
    const small = {
      create: () => b.createDomain({ type: 'hvm', pages: 16, populate: false }),
      destroy: (x: number) => b.destroyDomain(x),
    };
    const backupImg = join(dir, 'backup.img');
    let checked = 0;
    for (const len of cuts) {
      const complete = ends.filter((e) => e <= len).length;
      writeFileSync(backupImg, Buffer.alloc(BLOCKS * BS));
      const set = new DiskReplicaSet(new Map([['xvda', backupImg]]), { maxBufferBytes: 3 * BS });
      const hooks = replicaDiskHooks(set, { colo: false, xl: false, log: () => {} });
      let applied = 0;
      let domid: number | null = null;
      let error: Error | null = null;
      try {
        const r = await restoreDomain({
          xen: b,
          input: stream.subarray(0, len),
          builder: small,
          streamType: 'remus',
          paused: true,
          extraRecords: hooks.records!,
          callbacks: { checkpointApplied: async (n) => void (applied = n) },
        });
        domid = r.domid;
      } catch (e) {
        error = e as Error;
      } finally {
        set.close();
      }
      if (domid !== null) b.destroyDomain(domid);
      const ctx = `cut at ${len} of ${stream.length}: ${complete} complete checkpoints, applied ${applied}, error ${error?.message}`;
      if (complete === 0) {
        expect(error, ctx).not.toBeNull();
        continue;
      }
      expect(error, ctx).toBeNull();
      expect(applied, ctx).toBe(complete);
      const diff = firstDiff(readFileSync(backupImg), snapshot(complete));
      expect(diff, `${ctx}: first differing block ${diff}`).toBe(-1);
      checked++;
    }
    expect(checked).toBeGreaterThan(20);
  }, 120_000);

  it('a malformed disk record in checkpoint 3: that checkpoint is not applied (failover to 2, logged with the typed error)', async () => {
    const { items } = await readAll(stream);
    const rec = items.find(
      (it) =>
        it.offset > ends[1]! &&
        it.offset < ends[2]! &&
        it.kind === 'record' &&
        it.layer === 'libxl' &&
        it.name.startsWith('UNKNOWN'),
    );
    expect(rec, 'a disk record in checkpoint 3').toBeDefined();
    const bad = Uint8Array.from(stream.subarray(0, ends[CHECKPOINTS - 1]!));
    // BLOCKS body: kind, name length, "xvda", pad to 16, checkpoint, block size <- 768
    new DataView(bad.buffer).setUint32(rec!.offset + 8 + 20, 768, true);
    const backupImg = join(dir, 'backup-bad.img');
    writeFileSync(backupImg, Buffer.alloc(BLOCKS * BS));
    const set = new DiskReplicaSet(new Map([['xvda', backupImg]]));
    const logs: string[] = [];
    const hooks = replicaDiskHooks(set, { colo: false, xl: false, log: (l) => logs.push(l) });
    let applied = 0;
    const r = await restoreDomain({
      xen: b,
      input: bad,
      builder: {
        create: () => b.createDomain({ type: 'hvm', pages: 16, populate: false }),
        destroy: (x: number) => b.destroyDomain(x),
      },
      streamType: 'remus',
      paused: true,
      extraRecords: hooks.records!,
      callbacks: { checkpointApplied: async (n) => void (applied = n) },
    });
    set.close();
    b.destroyDomain(r.domid);
    expect(applied).toBe(2);
    expect(logs.join('\n')).toMatch(/disk record: block size 768; checkpoint 3 is not applied/);
    expect(firstDiff(readFileSync(backupImg), snapshot(2))).toBe(-1);
  });
});
