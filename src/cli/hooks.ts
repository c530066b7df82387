// The --checksum-at-suspend debug hook: the sender suspends the guest itself (as the default suspend
// callback does) and, once it is suspended and before the final round reads its memory, records the
// mock checksum and register state of the source. A destination copy must hash the same.
import { writeFileSync } from 'node:fs';
import type { SaveCallbacks } from '../engine/save/types.js';
import { suspendDomain } from '../toolstack/save.js';
import type { Hypervisor } from '../xen/types.js';
import { ShutdownReason } from '../xen/constants.js';
import { domainState } from './state.js';
import { UsageError } from './util.js';

export interface ChecksumHook {
  callbacks: Pick<SaveCallbacks, 'suspend'>;
  /**
   * How long the hook held the suspended guest (checksum, state, file), ms; null before it ran.
   * This time is inside the measured downtime but is no part of the migration.
   */
  heldMs(): number | null;
}

export function checksumAtSuspend(
  xen: Hypervisor,
  domid: number,
  file: string,
  signal?: AbortSignal,
): ChecksumHook {
  if (xen.flavour !== 'mock' || typeof (xen as unknown as { checksum?: unknown }).checksum !== 'function')
    throw new UsageError('--checksum-at-suspend needs the mock host');
  const mock = xen as Hypervisor & { checksum(domid: number): string };
  // debug: hold the guest this much longer, as the checksum of a large guest would (tests)
  const extraHold = Number(process.env.XENMIG_DEBUG_CHECKSUM_HOLD_MS ?? 0) || 0;
  let held: number | null = null;
  return {
    heldMs: () => held,
    callbacks: {
      suspend: async () => {
        await suspendDomain(xen, domid, 60_000, signal);
        const info = xen.domainInfo(domid);
        const t0 = performance.now();
        const sum = mock.checksum(domid);
        const state = domainState(xen, domid);
        if (extraHold > 0) await new Promise((r) => setTimeout(r, extraHold));
        // the time this hook adds to the guest's downtime
        const checksumMs = Math.round(performance.now() - t0);
        const record = {
          domid,
          suspended: info.shutdown && info.shutdownReason === ShutdownReason.SUSPEND,
          checksum: sum,
          state,
          checksumMs,
        };
        writeFileSync(file, JSON.stringify(record) + '\n');
        held = performance.now() - t0;
      },
    },
  };
}
