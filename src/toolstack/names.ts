// Domain names on a real host, as the toolstack keeps them: /local/domain/<domid>/name and the
// domain's /vm/<uuid>/name in xenstore (what `xl list` shows). A migration moves a name between two
// domains: the sender renames its stopped source "<name>--migratedaway" right before it clears the
// receiver to start, and renames it back if the guest resumes at the source; the receiver builds its
// copy under "<name>--incoming" while another domain holds the name and takes the name when
// cleared. On one host (and for two toolstacks on one xenstore) that is what keeps the two copies
// from ever holding the same name. libxl does the same in a xenstore transaction; this client has
// none, so a rename checks, then writes (a concurrent rename by another toolstack could interleave).
import { Xenstore, xenstoredPath } from './xenstore.js';
import { MigrationError, MigrationErrorCode } from '../engine/errors.js';
import type { Hypervisor } from '../xen/types.js';
import { domainExists } from './destroy.js';

export const MIGRATED_AWAY_SUFFIX = '--migratedaway';
export const INCOMING_SUFFIX = '--incoming';

/** How a migration reads and changes domain names; `null` where the host keeps none (the mock). */
export interface DomainNames {
  name(domid: number): Promise<string | null>;
  /** the domain (other than `except`) that holds `name`, if any */
  holder(name: string, except?: number): Promise<number | null>;
  /** rename domid to `to`; refuses (ERR_NAME_IN_USE) when another domain holds `to` */
  rename(domid: number, to: string): Promise<void>;
}

async function withStore<T>(path: string | undefined, f: (s: Xenstore) => Promise<T>): Promise<T> {
  const s = await Xenstore.open(path);
  try {
    return await f(s);
  } finally {
    s.close();
  }
}

/**
 * The domain (other than `except`) named `name` in this xenstore. Entries a dead domain left behind
 * (a toolstack that destroyed it without cleaning up) do not count when `exists` can tell.
 */
export async function holderIn(s: Xenstore, name: string, except?: number, exists?: (domid: number) => boolean): Promise<number | null> {
  for (const d of await s.directory('/local/domain')) {
    const id = Number(d);
    if (!Number.isInteger(id) || id === except) continue;
    if ((await s.read(`/local/domain/${id}/name`)) === name && (!exists || exists(id))) return id;
  }
  return null;
}

/**
 * The name a new domain is built under: `want`, or "<want>--incoming" while another domain holds
 * `want` (then `pending` is the name it takes when cleared, with `rename`).
 */
export async function nameForNewDomain(names: Pick<DomainNames, 'holder'>, domid: number, want: string): Promise<{ name: string; pending: string | null }> {
  return (await names.holder(want, domid)) === null ? { name: want, pending: null } : { name: want + INCOMING_SUFFIX, pending: want };
}

/**
 * Names kept in xenstore (the xenstored socket at `path`, else the usual ones). `exists` tells live
 * domains from stale entries (e.g. `(d) => hypervisor has d`).
 */
export function xenstoreNames(opts: { path?: string; exists?: (domid: number) => boolean } = {}): DomainNames {
  return {
    name: (domid) => withStore(opts.path, (s) => s.read(`/local/domain/${domid}/name`)),
    holder: (name, except) => withStore(opts.path, (s) => holderIn(s, name, except, opts.exists)),
    rename: (domid, to) =>
      withStore(opts.path, async (s) => {
        if (!to || to.includes('/')) throw new TypeError(`bad domain name ${JSON.stringify(to)}`);
        const dom = `/local/domain/${domid}`;
        const old = await s.read(`${dom}/name`);
        if (old === null && (await s.read(`${dom}/domid`)) === null && (await s.read(`${dom}/vm`)) === null)
          throw new MigrationError(MigrationErrorCode.ERR_DOMAIN_MISMATCH, `domain ${domid} has no xenstore entries to rename`, { domid });
        if (old === to) return;
        const other = await holderIn(s, to, domid, opts.exists);
        if (other !== null)
          throw new MigrationError(MigrationErrorCode.ERR_NAME_IN_USE, `cannot rename domain ${domid} to ${JSON.stringify(to)}: domain ${other} has that name`, { domid });
        await s.write(`${dom}/name`, to);
        const vm = await s.read(`${dom}/vm`);
        if (vm && vm.startsWith('/vm/')) await s.write(`${vm}/name`, to);
      }),
  };
}

/** Names on this host: xenstore on a real host with a xenstored, none otherwise (the mock). */
export function hostNames(xen: Hypervisor): DomainNames | null {
  if (xen.flavour !== 'system') return null;
  if (!xenstoredPath()) return null;
  return xenstoreNames({ exists: (d) => domainExists(xen, d) });
}
