// Failover at every byte offset of a recorded Remus stream: the backup must end up holding exactly
// the last checkpoint completed before the cut (libxc CHECKPOINT and libxl CHECKPOINT_END both
// received), bit for bit, or — before the first complete checkpoint — no domain at all.
import { execFile } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMockHost, type MockHypervisor } from '../../src/xen/hypervisor.js';
import { remus } from '../../src/checkpoint/index.js';
import { tempHost } from '../support/hosts.js';
import { restoreDomain } from '../../src/toolstack/restore.js';
import { readAll } from '../../src/stream/index.js';

const CHECKPOINTS = 3;

describe('Remus restore: failover at every byte offset', () => {
  let dir: string;
  let a: MockHypervisor;
  let b: MockHypervisor;
  let stream: Uint8Array;
  const atSuspend = new Map<number, string>();
  /** byte offset just past checkpoint k's CHECKPOINT_END */
  const ends: number[] = [];

  beforeAll(async () => {
    // tmpfs: thousands of domains are created and destroyed
    dir = tempHost('xenmig-cut-').dir;
    a = openMockHost(join(dir, 'a'));
    b = openMockHost(join(dir, 'b'));
    // a tiny guest: one populated page, rewritten between checkpoints
    const d = a.createDomain({ type: 'hvm', pages: 16, populate: false });
    a.populatePhysmap(d, new BigUint64Array([0n]));
    // the mock gives an unpopulated HVM domain no register state: borrow a populated one's
    const donor = a.createDomain({ type: 'hvm', pages: 16, populate: true });
    a.hvmContextSet(d, a.hvmContextGet(donor));
    a.destroyDomain(donor);
    const file = join(dir, 'remus.stream');
    const h = remus(d, file, {
      xen: a,
      intervalMs: 1,
      maxCheckpoints: CHECKPOINTS,
      log: () => {},
      onSuspended: (n, x, dd) => {
        atSuspend.set(n, (x as MockHypervisor).checksum(dd));
      },
      onIdle: (n) => {
        a.guestWrite(d, 0, (n * 40) % 4000, new TextEncoder().encode(`checkpoint ${n} was here`));
      },
    });
    const r = await h.done;
    expect(r.error).toBeUndefined();
    expect(r.checkpoints).toBe(CHECKPOINTS);
    stream = readFileSync(file);
    const { items } = await readAll(stream);
    for (const it of items)
      if (it.kind === 'record' && it.name === 'CHECKPOINT_END') ends.push(it.offset + it.size);
    expect(ends.length).toBe(CHECKPOINTS);
    // every checkpoint captured a distinct state (the test can tell them apart)
    expect(new Set(atSuspend.values()).size).toBe(CHECKPOINTS);
  });

  afterAll(() => {
    a?.close();
    b?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  // destination domains as small as the source (mockBuilder's 4 GiB gfn span is slower to set up)
  const small = {
    create: () => b.createDomain({ type: 'hvm', pages: 16, populate: false }),
    destroy: (d: number) => b.destroyDomain(d),
  };

  async function restorePrefix(
    len: number,
  ): Promise<{ checksum: string | null; checkpoint: number; domains: number }> {
    const before = b.listDomainIds().length;
    let applied = 0;
    let domid: number | null = null;
    try {
      const r = await restoreDomain({
        xen: b,
        input: stream.subarray(0, len),
        builder: small,
        streamType: 'remus',
        paused: true,
        callbacks: {
          checkpointApplied: async (n) => {
            applied = n;
          },
        },
      });
      domid = r.domid;
      expect(r.stats.endedBy).toBe('failover');
      const sum = b.checksum(domid);
      b.destroyDomain(domid);
      return { checksum: sum, checkpoint: applied, domains: b.listDomainIds().length - before };
    } catch {
      return { checksum: null, checkpoint: 0, domains: b.listDomainIds().length - before };
    }
  }

  it('a prefix ending exactly at a checkpoint boundary restores that checkpoint', async () => {
    for (let k = 1; k <= CHECKPOINTS; k++) {
      const r = await restorePrefix(ends[k - 1]!);
      expect(r.checkpoint).toBe(k);
      expect(r.checksum).toBe(atSuspend.get(k));
    }
  });

  it('every cut offset yields the last complete checkpoint, never a half-applied one', async () => {
    // thousands of restores, each into a fresh domain: spread over child processes (the mock's
    // per-domain setup waits more than it computes). Workers run the built library (dist/).
    const expected = join(dir, 'expected.json');
    writeFileSync(
      expected,
      JSON.stringify({
        ends,
        sums: [...Array(CHECKPOINTS).keys()].map((i) => atSuspend.get(i + 1)),
        pages: 16,
      }),
    );
    const WORKERS = 4;
    const worker = fileURLToPath(new URL('./fixtures/cut-worker.mjs', import.meta.url));
    const results = await Promise.all(
      [...Array(WORKERS).keys()].map(
        (r) =>
          new Promise<{ checked: number; failures: number; first: unknown[] }>((resolve, reject) => {
            execFile(
              process.execPath,
              [worker, join(dir, 'remus.stream'), join(dir, `w${r}`), expected, String(r), String(WORKERS)],
              { maxBuffer: 1 << 20 },
              (err, stdout, stderr) => {
                if (err) reject(new Error(`cut worker ${r} failed: ${err.message}\n${stderr}`));
                else resolve(JSON.parse(stdout) as { checked: number; failures: number; first: unknown[] });
              },
            );
          }),
      ),
    );
    const total = ends[CHECKPOINTS - 1]!;
    expect(results.reduce((n, r) => n + r.checked, 0)).toBe(total + 1);
    expect(results.flatMap((r) => r.first)).toEqual([]);
    expect(results.reduce((n, r) => n + r.failures, 0)).toBe(0);
  });
});
