// Epochs of the disk daemon (copy-on-write), the disk records, and the backup's apply-at-commit.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ReplicatedImage, type EpochChunk } from '../../src/disk/image.js';
import { decodeDiskRecordBody, encodeDiskRecordBody, XENMIG_DISK_RECORD } from '../../src/disk/records.js';
import { DiskReplicaSet } from '../../src/disk/replica.js';
import { DiskError } from '../../src/disk/errors.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'xenmig-epochs-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const BS = 4096;
const block = (v: number) => Buffer.alloc(BS, v);
async function all(it: AsyncIterable<EpochChunk>): Promise<Map<number, number>> {
  const m = new Map<number, number>();
  for await (const c of it) c.blocks.forEach((b, i) => m.set(b, c.data[i * BS]!));
  return m;
}

describe('ReplicatedImage epochs', () => {
  it('a block rewritten after rotate(n) is fetched with its content at rotate(n); writes after rotate go to epoch n+1', async () => {
    writeFileSync(join(dir, 'a.img'), Buffer.alloc(16 * BS));
    const img = new ReplicatedImage(join(dir, 'a.img'), { maxPreservedBytes: 1 << 20 });
    await img.write(0, block(1), false); // not tracked: no primary yet
    img.start();
    await img.write(1 * BS, block(2), false);
    await img.write(2 * BS + 100, Buffer.alloc(10, 3), false); // partial block: the whole block is sent
    await img.write(1 * BS, block(4), false); // deduplicated
    expect(img.rotate(1)).toBe(2);
    await img.write(1 * BS, block(5), false); // after rotate: epoch 1 must still see 4
    await img.write(3 * BS, block(6), false);
    const e1 = await all(img.fetch(1, 1));
    expect([...e1]).toEqual([
      [1, 4],
      [2, 0],
    ]);
    expect(img.stats.preserved).toBe(1);
    expect(img.rotate(2)).toBe(2);
    expect([...(await all(img.fetch(2)))]).toEqual([
      [1, 5],
      [3, 6],
    ]);
    expect(() => img.rotate(2)).toThrow(/open epoch is 3/);
    await expect(all(img.fetch(2))).rejects.toThrow(/not closed or was fetched/);
    img.close();
  });

  it('over maxPreservedBytes a write to an unsent block waits until the fetch has sent it (bounded memory, no error)', async () => {
    writeFileSync(join(dir, 'b.img'), Buffer.alloc(64 * BS));
    const img = new ReplicatedImage(join(dir, 'b.img'), { maxPreservedBytes: 2 * BS });
    img.start();
    for (let b = 0; b < 8; b++) await img.write(b * BS, block(10 + b), false);
    img.rotate(1);
    await img.write(0, block(99), false); // 1 preserved
    await img.write(BS, block(99), false); // 2 preserved: at the bound
    let done = false;
    const w = img.write(2 * BS, block(99), false).then(() => (done = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(done).toBe(false);
    const e1 = await all(img.fetch(1, 2));
    await w;
    expect([...e1.values()]).toEqual([10, 11, 12, 13, 14, 15, 16, 17]);
    expect(img.stats.waits).toBeGreaterThan(0);
    img.close();
  });

  it('an epoch over maxTrackedBlocks becomes "every block" and still fetches the right contents', async () => {
    writeFileSync(join(dir, 'c.img'), Buffer.alloc(8 * BS));
    const img = new ReplicatedImage(join(dir, 'c.img'), { maxTrackedBlocks: 2 });
    img.start();
    for (let b = 0; b < 4; b++) await img.write(b * BS, block(b + 1), false);
    expect(img.rotate(1)).toBe(8);
    await img.write(6 * BS, block(7), false);
    const e1 = await all(img.fetch(1));
    expect([...e1.values()]).toEqual([1, 2, 3, 4, 0, 0, 0, 0]);
    img.close();
  });
});

describe('disk records', () => {
  it('round-trip and golden bytes of BLOCKS', () => {
    const body = encodeDiskRecordBody({
      kind: 'blocks',
      disk: 'xvda',
      checkpoint: 7,
      blockSize: 512,
      blocks: [3],
      data: Buffer.alloc(512, 0xee),
    });
    expect(body.subarray(0, 40).toString('hex')).toBe(
      '03000000' +
        '04000000' +
        Buffer.from('xvda').toString('hex') +
        '00000000' +
        '07000000' +
        '00020000' +
        '01000000' +
        '00000000' +
        '0300000000000000',
    );
    const r = decodeDiskRecordBody(body);
    expect(r).toMatchObject({ kind: 'blocks', disk: 'xvda', checkpoint: 7, blockSize: 512, blocks: [3] });
  });

  it('malformed bodies are DiskErrors with the offset in the body', () => {
    const good = encodeDiskRecordBody({
      kind: 'blocks',
      disk: 'xvda',
      checkpoint: 1,
      blockSize: 512,
      blocks: [0],
      data: Buffer.alloc(512),
    });
    const cases: [Buffer, RegExp, number][] = [
      [Buffer.alloc(4), /4 bytes/, 0],
      [Buffer.from('0100000000000000', 'hex'), /name length 0/, 4],
      [good.subarray(0, good.length - 1), /need/, 24],
      [
        Buffer.concat([good.subarray(0, 20), Buffer.from('00030000', 'hex'), good.subarray(24)]),
        /block size 768/,
        20,
      ],
      [Buffer.from('09000000010000007800000000000000', 'hex'), /unknown kind 9/, 0],
    ];
    for (const [b, msg, off] of cases) {
      let err: unknown;
      try {
        decodeDiskRecordBody(b);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(DiskError);
      expect((err as DiskError).code).toBe('ERR_DISK_RECORD');
      expect((err as DiskError).message).toMatch(msg);
      expect((err as DiskError).offset).toBe(off);
    }
  });
});

describe('DiskReplicaSet (backup)', () => {
  const rec = (r: Parameters<typeof encodeDiskRecordBody>[0]) => encodeDiskRecordBody(r);
  it('applies the initial copy at once, a checkpoint only at commit, and nothing of a discarded one (also from the journal)', () => {
    const path = join(dir, 'backup.img');
    writeFileSync(path, Buffer.alloc(8 * BS));
    const set = new DiskReplicaSet(new Map([['xvda', path]]), { maxBufferBytes: BS });
    expect(set.capabilities()).toEqual(['disk-replication', `disk:xvda:${8 * BS}`]);
    set.take(XENMIG_DISK_RECORD, rec({ kind: 'info', disk: 'xvda', size: 8 * BS, blockSize: BS }), 'head');
    set.take(
      XENMIG_DISK_RECORD,
      rec({ kind: 'sync', disk: 'xvda', offset: 0, data: Buffer.alloc(8 * BS, 1) }),
      'head',
    );
    expect(readFileSync(path).every((b) => b === 1)).toBe(true);
    const blocks = (v: number) =>
      rec({
        kind: 'blocks',
        disk: 'xvda',
        checkpoint: 1,
        blockSize: BS,
        blocks: [2, 5],
        data: Buffer.concat([block(v), block(v + 1)]),
      });
    set.take(XENMIG_DISK_RECORD, blocks(7), 'checkpoint'); // block 5 spills to the journal
    expect(readFileSync(path)[2 * BS]).toBe(1);
    set.commit();
    const img = readFileSync(path);
    expect([img[2 * BS], img[5 * BS], img[3 * BS]]).toEqual([7, 8, 1]);
    set.take(XENMIG_DISK_RECORD, blocks(20), 'checkpoint');
    set.discard();
    set.commit(); // an empty checkpoint
    expect([readFileSync(path)[2 * BS], readFileSync(path)[5 * BS]]).toEqual([7, 8]);
    expect(() =>
      set.take(
        XENMIG_DISK_RECORD,
        rec({ kind: 'sync', disk: 'xvda', offset: 0, data: Buffer.alloc(8) }),
        'checkpoint',
      ),
    ).toThrow(/after the initial copy/);
    expect(() =>
      set.take(
        XENMIG_DISK_RECORD,
        rec({ kind: 'blocks', disk: 'xvda', checkpoint: 2, blockSize: BS, blocks: [8], data: block(1) }),
        'checkpoint',
      ),
    ).toThrow(/beyond the image/);
    expect(() =>
      set.take(XENMIG_DISK_RECORD, rec({ kind: 'info', disk: 'xvdb', size: 1, blockSize: BS }), 'head'),
    ).toThrow(/no --disk-map/);
    expect(set.take(0x80000001, Buffer.alloc(0), 'checkpoint')).toBe(false);
    set.close();
  });

  it('refuses a primary image of another size, and a commit for a disk the primary never copied', () => {
    const path = join(dir, 'b2.img');
    writeFileSync(path, Buffer.alloc(4 * BS));
    const set = new DiskReplicaSet(new Map([['xvda', path]]));
    expect(() =>
      set.take(
        XENMIG_DISK_RECORD,
        encodeDiskRecordBody({ kind: 'info', disk: 'xvda', size: 8 * BS, blockSize: BS }),
        'head',
      ),
    ).toThrow(/is 32768 bytes/);
    expect(() => set.commit()).toThrow(/does not replicate it/);
    set.close();
  });
});

describe('DiskControlClient', () => {
  it('a request on a connection the daemon already closed fails at once (the guest may be suspended waiting for it)', async () => {
    const { createServer } = await import('node:net');
    const { DiskControlClient } = await import('../../src/disk/control.js');
    const path = join(dir, 'ctl.sock');
    const server = createServer((s) => s.destroy());
    await new Promise<void>((r) => server.listen(path, r));
    try {
      const c = await DiskControlClient.connect(path);
      // let the close arrive and be processed before the request is written
      await new Promise((r) => setTimeout(r, 100));
      const t0 = Date.now();
      const outcome = await Promise.race([
        c.rotate(1).then(
          () => 'answered',
          (e: Error) => e.message,
        ),
        new Promise<string>((r) => setTimeout(() => r('hung'), 3000)),
      ]);
      expect(outcome).toMatch(/disk daemon at .*: connection closed/);
      expect(Date.now() - t0).toBeLessThan(1000);
      c.close();
    } finally {
      server.close();
    }
  });
});
