// suspendDomain on a real host (a guest with PV drivers): control/shutdown = "suspend" through
// xenstore, then the wait for SHUTDOWN_suspend on xenstored's @releaseDomain watch instead of a 5 ms
// poll, which on a one-CPU dom0 takes time from the guest that is suspending.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { suspendDomain } from '../../src/toolstack/save.js';
import type { Hypervisor } from '../../src/xen/types.js';
import { startFakeXenstored, type FakeXenstored } from './fake-xenstored.js';

const SHUTDOWN_SUSPEND = 2;
const DOMID = 7;

/** A PV guest on a "system" host that suspends once told to, counting the hypervisor's checks. */
function fakeHost() {
  const h = {
    suspended: false,
    checks: 0,
    remoteShutdowns: 0,
    xen: null as unknown as Hypervisor,
  };
  h.xen = {
    flavour: 'system',
    domainInfo: () => {
      h.checks++;
      return {
        type: 'pv',
        shutdown: h.suspended,
        shutdownReason: h.suspended ? SHUTDOWN_SUSPEND : 0,
        paused: false,
      };
    },
    hvmParamGet: () => 0n,
    shutdown: () => {
      h.remoteShutdowns++;
    },
  } as unknown as Hypervisor;
  return h;
}

describe('suspendDomain through xenstore', () => {
  let dir: string;
  let xs: FakeXenstored;
  const saved = process.env.XENSTORED_PATH;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'xenmig-suspend-'));
    xs = await startFakeXenstored(dir, { [`/local/domain/${DOMID}/control`]: '' });
    process.env.XENSTORED_PATH = xs.path;
  });
  afterEach(async () => {
    if (saved === undefined) delete process.env.XENSTORED_PATH;
    else process.env.XENSTORED_PATH = saved;
    await xs.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** The guest sees control/shutdown, takes `ms` to suspend, then xenstored fires @releaseDomain (if `fire`). */
  function guestSuspends(h: ReturnType<typeof fakeHost>, ms: number, fire: boolean) {
    const t = setInterval(() => {
      if (xs.tree.get(`/local/domain/${DOMID}/control/shutdown`) !== 'suspend') return;
      clearInterval(t);
      setTimeout(() => {
        h.suspended = true;
        if (fire) xs.fire('@releaseDomain');
      }, ms);
    }, 5);
    return () => clearInterval(t);
  }

  it('asks through control/shutdown and wakes on @releaseDomain, checking a few times instead of every 5 ms', async () => {
    const h = fakeHost();
    const stop = guestSuspends(h, 400, true);
    try {
      await suspendDomain(h.xen, DOMID, 10_000);
    } finally {
      stop();
    }
    expect(h.suspended).toBe(true);
    expect(h.remoteShutdowns).toBe(0);
    expect(xs.log).toContain('WATCH @releaseDomain');
    expect(xs.log.indexOf('WATCH @releaseDomain')).toBeLessThan(
      xs.log.indexOf(`WRITE /local/domain/${DOMID}/control/shutdown`),
    );
    // a 5 ms poll checks ~80 times in 400 ms; events and the 25 ms fallback check at most ~8 times
    expect(h.checks).toBeGreaterThanOrEqual(2);
    expect(h.checks).toBeLessThan(30);
  });

  it('still returns when the event is missed (the 25 ms fallback check)', async () => {
    const h = fakeHost();
    const stop = guestSuspends(h, 150, false);
    try {
      await suspendDomain(h.xen, DOMID, 10_000);
    } finally {
      stop();
    }
    expect(h.suspended).toBe(true);
  });

  it('a guest that never suspends: ERR_NOT_SUSPENDED at the timeout, the connection closed', async () => {
    const h = fakeHost();
    await expect(suspendDomain(h.xen, DOMID, 300)).rejects.toMatchObject({ code: 'ERR_NOT_SUSPENDED' });
    expect(xs.tree.get(`/local/domain/${DOMID}/control/shutdown`)).toBe('suspend');
  });
});
