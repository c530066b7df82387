// The Remus primary drives network output buffering at the right moments (mock host, in process):
// setup before the guest is touched, plug inside each suspend, release of epoch n on ACK(n) (or,
// without ACKs, once checkpoint n is written), release-all when the guest runs on, teardown always.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { remus } from '../../src/checkpoint/index.js';
import type { NetBuffer } from '../../src/netbuf/index.js';
import type { MockHypervisor } from '../../src/xen/hypervisor.js';
import { useScratchMockHost } from '../support/hosts.js';
import { inProcessBackup } from '../support/replication.js';

/** A NetBuffer that records each call, with the guest's state at that moment. */
class Recording implements NetBuffer {
  readonly backend = 'recording';
  readonly interfaces = ['vif-test'];
  readonly calls: string[] = [];
  constructor(
    private readonly xen: MockHypervisor,
    private readonly domid: () => number,
    private readonly failSetup = false,
  ) {}
  private state(): string {
    const i = this.xen.domainInfo(this.domid());
    return i.shutdown ? 'suspended' : i.paused ? 'paused' : 'running';
  }
  setup() {
    this.calls.push(`setup ${this.state()}`);
    if (this.failSetup)
      throw Object.assign(new Error('no plug qdisc'), { code: 'ERR_NET_BUFFER_UNSUPPORTED' });
  }
  plug(n: number) {
    this.calls.push(`plug ${n} ${this.state()}`);
  }
  release(n: number) {
    this.calls.push(`release ${n}`);
  }
  releaseAll() {
    this.calls.push('releaseAll');
  }
  teardown() {
    this.calls.push('teardown');
  }
}

describe('remus: network output buffering in the checkpoint cycle', () => {
  const host = useScratchMockHost('xenmig-netbuf-');

  it('xenmig backup: plug while suspended, release n after ACK(n) (commit order), stop → release all, teardown', async () => {
    const { xen } = host;
    const d = xen.createDomain({ type: 'hvm', pages: 32, populate: true });
    const nb = new Recording(xen, () => d);
    const { backup, url } = await inProcessBackup({ xen, failoverTimeoutMs: 5000 });
    const h = remus(d, url, {
      xen,
      insecure: true,
      intervalMs: 5,
      log: () => {},
      netBuffer: nb,
      hooks: { commit: async (n) => void nb.calls.push(`commit ${n}`) },
    });
    for await (const s of h) if (s.checkpoint === 3) void h.stop();
    const r = await h.done;
    await backup;
    expect(r).toMatchObject({ reason: 'stopped', guest: 'running' });
    const want = ['setup running'];
    for (let k = 1; k <= r.checkpoints; k++) want.push(`plug ${k} suspended`, `release ${k}`, `commit ${k}`);
    want.push('releaseAll', 'teardown');
    expect(nb.calls).toEqual(want);
    xen.destroyDomain(d);
  });

  it('no ACKs (a file, as towards xl migrate-receive -r): epoch n released once checkpoint n is written', async () => {
    const { xen } = host;
    const d = xen.createDomain({ type: 'hvm', pages: 32, populate: true });
    const nb = new Recording(xen, () => d);
    const r = await remus(d, join(xen.dir, 'remus.stream'), {
      xen,
      intervalMs: 1,
      maxCheckpoints: 3,
      log: () => {},
      netBuffer: nb,
    }).done;
    expect(r).toMatchObject({ reason: 'max-checkpoints', guest: 'running' });
    expect(nb.calls).toEqual([
      'setup running',
      'plug 1 suspended',
      'release 1',
      'plug 2 suspended',
      'release 2',
      'plug 3 suspended',
      'release 3',
      'releaseAll',
      'teardown',
    ]);
    xen.destroyDomain(d);
  });

  it('backup lost with onBackupLoss pause: held output is dropped (teardown without release)', async () => {
    const { xen } = host;
    const d = xen.createDomain({ type: 'hvm', pages: 32, populate: true });
    const nb = new Recording(xen, () => d);
    const ac = new AbortController();
    const started = await inProcessBackup({ xen, failoverTimeoutMs: 3_600_000, signal: ac.signal });
    const backup = started.backup.catch(() => null);
    const h = remus(d, started.url, {
      xen,
      insecure: true,
      intervalMs: 5,
      ackTimeoutMs: 300,
      onBackupLoss: 'pause',
      log: () => {},
      netBuffer: nb,
    });
    for await (const s of h) if (s.checkpoint === 2) ac.abort(); // the backup goes away
    const r = await h.done;
    await backup;
    expect(r.reason).toBe('backup-lost');
    if (r.guest === 'paused') {
      expect(nb.calls.slice(-1)).toEqual(['teardown']);
      expect(nb.calls).not.toContain('releaseAll');
    } else {
      // (once pause-on-loss applies only after the first ACK, an early loss keeps the guest running)
      expect(nb.calls.slice(-2)).toEqual(['releaseAll', 'teardown']);
    }
    expect(nb.calls.filter((c) => c.startsWith('plug')).every((c) => c.endsWith('suspended'))).toBe(true);
    xen.resume(d, false);
    xen.destroyDomain(d);
  });

  it('setup fails: replication refused before the guest is touched, nothing else called', async () => {
    const { xen } = host;
    const d = xen.createDomain({ type: 'hvm', pages: 32, populate: true });
    const before = xen.checksum(d);
    const nb = new Recording(xen, () => d, true);
    const r = await remus(d, join(host.xen.dir, 'refused.stream'), {
      xen,
      intervalMs: 1,
      maxCheckpoints: 1,
      log: () => {},
      netBuffer: nb,
    }).done;
    expect(r).toMatchObject({ reason: 'refused', guest: 'running', checkpoints: 0 });
    expect(r.error?.message).toMatch(/no plug qdisc/);
    expect(nb.calls).toEqual(['setup running']);
    expect(xen.checksum(d)).toBe(before);
    expect(xen.domainInfo(d)).toMatchObject({ paused: false, shutdown: false });
    xen.destroyDomain(d);
  });
});
