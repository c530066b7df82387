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

export function checksumAtSuspend(xen: Hypervisor, domid: number, file: string, signal?: AbortSignal): Pick<SaveCallbacks, 'suspend'> {
  if (xen.flavour !== 'mock' || typeof (xen as unknown as { checksum?: unknown }).checksum !== 'function')
    throw new UsageError('--checksum-at-suspend needs the mock host');
  const mock = xen as Hypervisor & { checksum(domid: number): string };
  return {
    suspend: async () => {
      await suspendDomain(xen, domid, 60_000, signal);
      const info = xen.domainInfo(domid);
      const t0 = performance.now();
      const sum = mock.checksum(domid);
      const state = domainState(xen, domid);
      // the time this hook adds to the guest's downtime
      const checksumMs = Math.round(performance.now() - t0);
      const record = { domid, suspended: info.shutdown && info.shutdownReason === ShutdownReason.SUSPEND, checksum: sum, state, checksumMs };
      writeFileSync(file, JSON.stringify(record) + '\n');
    },
  };
}
