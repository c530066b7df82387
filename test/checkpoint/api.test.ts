// The replication API in one process: stop() and abort are deliberate ends (no takeover), hooks
// run in order, and the COLO back-channel framing is the spec's 8-byte record header.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MockHypervisor } from '../../src/xen/hypervisor.js';
import {
  BackChannelDecoder,
  encodeDirtyPfns,
  encodeState,
  receiveReplica,
  remus,
  type CheckpointStat,
} from '../../src/checkpoint/index.js';
import { CheckpointState } from '../../src/stream/index.js';
import { connectTcp } from '../../src/transport/index.js';
import { mockBuilder } from '../../src/api.js';
import { MigrationError, MigrationErrorCode } from '../../src/engine/errors.js';
import { listeningPort, scratchMockHost } from './helpers.js';
import { inProcessBackup } from '../support/replication.js';

describe('COLO back channel framing', () => {
  it('CHECKPOINT_DIRTY_PFN_LIST has the 8-byte record header (not the 16 bytes Xen >= 4.18 writes)', () => {
    const b = encodeDirtyPfns([3, 0x1234, 7]);
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    expect(b.length).toBe(8 + 3 * 8);
    expect(dv.getUint32(0, true)).toBe(0x0f);
    expect(dv.getUint32(4, true)).toBe(24);
    expect(dv.getBigUint64(8, true)).toBe(3n);
    expect(dv.getBigUint64(16, true)).toBe(0x1234n);
  });

  it('CHECKPOINT_STATE is type 5 with a 4-byte body padded to 8', () => {
    const b = encodeState(CheckpointState.SVM_RESUMED);
    expect([...b]).toEqual([5, 0, 0, 0, 4, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('decodes records split at every byte', () => {
    const all = new Uint8Array([
      ...encodeState(CheckpointState.SVM_SUSPENDED),
      ...encodeDirtyPfns([9, 10]),
      ...encodeDirtyPfns([]),
      ...encodeState(CheckpointState.SVM_READY),
    ]);
    for (let cut = 0; cut <= all.length; cut++) {
      const d = new BackChannelDecoder();
      const out = [...d.push(all.subarray(0, cut)), ...d.push(all.subarray(cut))];
      expect(out.map((r) => (r.kind === 'state' ? `S${r.state}` : `D${[...r.pfns].join(',')}`))).toEqual([
        'S1',
        'D9,10',
        'D',
        'S2',
      ]);
    }
  });
});

describe('remus API in one process', () => {
  let host: ReturnType<typeof scratchMockHost>;
  let xen: MockHypervisor;
  beforeAll(() => {
    host = scratchMockHost('xenmig-remus-api-');
    xen = host.xen;
  });
  afterAll(() => host?.close());

  async function pair(opts: { abort?: boolean }) {
    const d = xen.createDomain({ type: 'hvm', pages: 32, populate: true });
    const events: string[] = [];
    const { backup, url } = await inProcessBackup({
      xen,
      failoverTimeoutMs: 5000,
    });
    const ac = new AbortController();
    const h = remus(d, url, {
      xen,
      insecure: true,
      intervalMs: 5,
      log: () => {},
      ...(opts.abort ? { signal: ac.signal } : {}),
      hooks: {
        postsuspend: async (n) => void events.push(`postsuspend ${n}`),
        preresume: async (n) => void events.push(`preresume ${n}`),
        commit: async (n) => void events.push(`commit ${n}`),
        stopped: async (why, acked) => void events.push(`stopped ${why} ${acked}`),
      },
    });
    const seen: CheckpointStat[] = [];
    for await (const s of h) {
      seen.push(s);
      if (s.checkpoint === 3) {
        if (opts.abort) ac.abort();
        else void h.stop();
      }
    }
    return { d, h, r: await h.done, b: await backup, events, seen };
  }

  it('stop(): the guest keeps running here, the backup discards its replica, hooks ran in order', async () => {
    const { d, r, b, events, seen } = await pair({});
    expect(r).toMatchObject({ reason: 'stopped', guest: 'running', lastAcked: seen.at(-1)!.checkpoint });
    expect(b.outcome).toBe('discarded');
    expect(xen.domainInfo(d).paused || xen.domainInfo(d).shutdown).toBe(false);
    const n = seen.at(-1)!.checkpoint;
    const want: string[] = [];
    for (let k = 1; k <= n; k++) want.push(`postsuspend ${k}`, `preresume ${k}`, `commit ${k}`);
    want.push(`stopped stopped ${n}`);
    expect(events).toEqual(want);
    xen.destroyDomain(d);
  });

  it('failover while another live domain still holds the name: the replica stays paused, the backup reports ERR_NAME_IN_USE', async () => {
    const d = xen.createDomain({ type: 'hvm', pages: 32, populate: true });
    const base = mockBuilder(xen);
    let replica = -1;
    // as xenBuilder.start() when the primary's domain on this host still has the name
    const builder = {
      create: async (c: Parameters<typeof base.create>[0]) => (replica = await base.create(c)),
      destroy: (x: number) => base.destroy(x),
      start: async () => {
        throw new MigrationError(MigrationErrorCode.ERR_NAME_IN_USE, 'domain 1 has that name');
      },
    };
    const listening = listeningPort();
    const backup = receiveReplica({
      xen,
      builder,
      listen: { host: '127.0.0.1', port: 0 },
      insecure: true,
      failoverTimeoutMs: 200,
      onListening: listening.onListening,
      log: () => {},
    });
    backup.catch(() => undefined);
    const channel = await connectTcp({ host: '127.0.0.1', port: await listening.port, insecure: true });
    const h = remus(d, '-', { xen, channel, intervalMs: 5, log: () => {}, onBackupLoss: 'continue' });
    for await (const s of h) {
      // the link dies mid-replication (the backup cannot tell this from a dead primary)
      if (s.checkpoint === 3) channel.destroy();
    }
    await h.done;
    await expect(backup).rejects.toMatchObject({ code: 'ERR_NAME_IN_USE' });
    const info = xen.domainInfo(replica);
    expect(info.paused || info.shutdown).toBe(true);
    xen.destroyDomain(replica);
    xen.destroyDomain(d);
  });

  it('an abort signal is a deliberate stop too (no takeover by the backup)', async () => {
    const { d, r, b } = await pair({ abort: true });
    expect(r).toMatchObject({ reason: 'aborted', guest: 'running' });
    expect(r.error).toBeUndefined();
    expect(b.outcome).toBe('discarded');
    xen.destroyDomain(d);
  });
});

describe('the xl wire (as xl remus / xl migrate-receive -r)', () => {
  let host: ReturnType<typeof scratchMockHost>;
  let xen: MockHypervisor;
  beforeAll(() => {
    host = scratchMockHost('xenmig-remus-xl-');
    xen = host.xen;
  });
  afterAll(() => host?.close());

  for (const colo of [false, true]) {
    it(`${colo ? 'COLO' : 'Remus'}: banner, the stream, ${colo ? 'raw back-channel records' : 'no acknowledgements'}; the replica matches each checkpoint`, async () => {
      const d = xen.createDomain({ type: 'hvm', pages: 32, populate: true });
      const prim = new Map<number, string>();
      const back = new Map<number, string>();
      const { backup, url } = await inProcessBackup({
        xen,
        protocol: 'xl',
        colo,
        failoverTimeoutMs: 5000,
        onCheckpoint: (n, x, dd) => void back.set(n, (x as MockHypervisor).checksum(dd)),
      });
      const h = remus(d, url, {
        xen,
        protocol: 'xl',
        colo,
        insecure: true,
        intervalMs: 5,
        maxCheckpoints: 4,
        log: () => {},
        onSuspended: (n, x, dd) => void prim.set(n, (x as MockHypervisor).checksum(dd)),
        onIdle: (n) => xen.guestWrite(d, n, 0, new TextEncoder().encode(`epoch ${n}`)),
      });
      const stats: CheckpointStat[] = [];
      for await (const s of h) stats.push(s);
      const r = await h.done;
      const b = await backup;
      expect(r.error).toBeUndefined();
      expect(r.checkpoints).toBe(4);
      if (!colo) expect(stats.every((s) => s.ackMs === 0)).toBe(true); // nothing to wait for on the xl wire
      expect(b.outcome).toBe('discarded');
      for (let k = 1; k <= 4; k++) expect(back.get(k), `checkpoint ${k}`).toBe(prim.get(k));
      xen.destroyDomain(d);
    });
  }
});

describe('COLO checkpoints on demand', () => {
  it('the output comparator triggers checkpoints long before the timer', async () => {
    const host = scratchMockHost('xenmig-colo-cmp-');
    const xen = host.xen;
    try {
      const d = xen.createDomain({ type: 'hvm', pages: 32, populate: true });
      const { backup, url } = await inProcessBackup({
        xen,
        colo: true,
        failoverTimeoutMs: 3_600_000,
      });
      let divergences = 0;
      const h = remus(d, url, {
        xen,
        colo: true,
        insecure: true,
        intervalMs: 3_600_000, // the timer alone would take an hour per checkpoint
        maxCheckpoints: 5,
        log: () => {},
        comparator: async () => {
          divergences++; // "the outputs differ": checkpoint now
        },
      });
      const r = await h.done;
      expect(r.error).toBeUndefined();
      expect(r.checkpoints).toBe(5);
      expect(divergences).toBe(4); // one wait between each two checkpoints
      expect((await backup).outcome).toBe('discarded');
      xen.destroyDomain(d);
    } finally {
      host.close();
    }
  });
});

describe('persistent mappings (HVM, no ballooning)', () => {
  it('each checkpoint copied through mappings kept across checkpoints is bit-exact, also for pages populated later', async () => {
    const host = scratchMockHost('xenmig-remus-pm-');
    const xen = host.xen;
    try {
      const d = xen.createDomain({ type: 'hvm', pages: 4096, populate: false });
      xen.populatePhysmap(
        d,
        BigUint64Array.from({ length: 64 }, (_, i) => BigInt(i * 37)),
      );
      const donor = xen.createDomain({ type: 'hvm', pages: 16, populate: true });
      xen.hvmContextSet(d, xen.hvmContextGet(donor));
      xen.destroyDomain(donor);
      const prim = new Map<number, string>();
      const back = new Map<number, string>();
      const { backup, url } = await inProcessBackup({
        xen,
        onCheckpoint: (n, x, dd) => void back.set(n, (x as MockHypervisor).checksum(dd)),
      });
      const h = remus(d, url, {
        xen,
        insecure: true,
        intervalMs: 2,
        maxCheckpoints: 8,
        persistentMappings: true,
        log: () => {},
        onSuspended: (n, x, dd) => void prim.set(n, (x as MockHypervisor).checksum(dd)),
        onIdle: (n) => {
          // rewrite known pages, and populate a new one inside an already mapped chunk
          for (let i = 0; i < 64; i += 7) xen.guestWrite(d, i * 37, n * 8, new TextEncoder().encode(`e${n}`));
          xen.populatePhysmap(d, BigUint64Array.from([BigInt(1 + n)]));
          xen.guestWrite(d, 1 + n, 0, new TextEncoder().encode(`new page ${n}`));
        },
      });
      const r = await h.done;
      expect(r.error).toBeUndefined();
      expect((await backup).outcome).toBe('discarded');
      expect(new Set(prim.values()).size).toBe(8);
      for (let k = 1; k <= 8; k++) expect(back.get(k), `checkpoint ${k}`).toBe(prim.get(k));
    } finally {
      host.close();
    }
  });
});
