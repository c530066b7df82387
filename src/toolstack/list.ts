// The host's domains as `xl list` shows them: id, name, guest type, memory, vCPUs and the six state
// letters (r running, b blocked, p paused, s shut down, c crashed, d dying; '-' where not).
import type { DomainInfo, Hypervisor } from '../xen/types.js';
import { libxlStoredConfig } from './libxl-config.js';
import { hostNames } from './names.js';
import { hasDeviceModel } from './xenstore.js';

/** SHUTDOWN_crash: the one shutdown reason xl shows as 'c' instead of 's'. */
const SHUTDOWN_CRASH = 3;

export interface DomainListEntry {
  domid: number;
  /** null where the host keeps no name for it (a mock domain created without one) */
  name: string | null;
  /** PV, PVH or HVM: libxl's stored config on a real host, else an HVM container with a device model is HVM */
  type: 'PV' | 'PVH' | 'HVM';
  /** pages the domain holds, MiB */
  memoryMiB: number;
  vcpus: number;
  /** xl's six state letters, e.g. "-b----" */
  state: string;
}

/** xl's state column for a domain's info. */
export function stateLetters(i: DomainInfo): string {
  const crashed = i.shutdown && i.shutdownReason === SHUTDOWN_CRASH;
  return [
    i.running ? 'r' : '-',
    i.blocked ? 'b' : '-',
    i.paused ? 'p' : '-',
    i.shutdown && !crashed ? 's' : '-',
    crashed ? 'c' : '-',
    i.dying ? 'd' : '-',
  ].join('');
}

async function guestType(xen: Hypervisor, i: DomainInfo): Promise<DomainListEntry['type']> {
  if (i.type === 'pv') return 'PV';
  // the mock simulates HVM containers and no device models: what it was created as
  if (xen.flavour === 'mock') return 'HVM';
  const stored = libxlStoredConfig(i.domid, i);
  if (stored) return stored.kind === 'pv' ? 'PV' : stored.kind === 'pvh' ? 'PVH' : 'HVM';
  return (await hasDeviceModel(i.domid).catch(() => false)) ? 'HVM' : 'PVH';
}

/** The host's domains, ascending by domid (domains destroyed while listing are left out). */
export async function listDomains(xen: Hypervisor): Promise<DomainListEntry[]> {
  const names =
    (await hostNames(xen)
      ?.all?.()
      .catch(() => null)) ?? new Map<number, string>();
  const out: DomainListEntry[] = [];
  for (const i of xen.listDomains().sort((a, b) => a.domid - b.domid)) {
    out.push({
      domid: i.domid,
      name: names.get(i.domid) ?? null,
      type: await guestType(xen, i),
      memoryMiB: (i.totPages * 4) / 1024,
      vcpus: i.maxVcpuId + 1,
      state: stateLetters(i),
    });
  }
  return out;
}
