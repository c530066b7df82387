// Domain names on a real host, as the toolstack keeps them: /local/domain/<domid>/name and the
// domain's /vm/<uuid>/name in xenstore (what `xl list` shows). A migration moves a name between two
// domains: the sender renames its stopped source "<name>--migratedaway" right before it clears the
// receiver to start, and renames it back if the guest resumes at the source; the receiver builds its
// copy under "<name>--incoming" while another domain holds the name and takes the name when
// cleared. On one host (and for two toolstacks on one xenstore) that is what keeps the two copies
// from ever holding the same name. libxl does the same in a xenstore transaction; this client has
// none, so a rename checks, then writes (a concurrent rename by another toolstack could interleave).
// A mock host keeps names as files in its directory (names/<domid>), with the same rules.
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Xenstore, xenstoredPath } from './xenstore.js';
import { MigrationError, MigrationErrorCode } from '../engine/errors.js';
import type { Hypervisor, MockHost } from '../xen/types.js';
import { domainExists } from './destroy.js';

export const MIGRATED_AWAY_SUFFIX = '--migratedaway';
const E = MigrationErrorCode;
export const INCOMING_SUFFIX = '--incoming';

/** How a migration reads and changes domain names; `null` where the host keeps none (the mock). */
export interface DomainNames {
  name(domid: number): Promise<string | null>;
  /** the domain (other than `except`) that holds `name`, if any */
  holder(name: string, except?: number): Promise<number | null>;
  /** rename domid to `to`; refuses (ERR_NAME_IN_USE) when another domain holds `to` */
  rename(domid: number, to: string): Promise<void>;
  /** every live domain's name (domains without one are left out) */
  all?(): Promise<Map<number, string>>;
}

/** A name a domain can have: not empty, no '/', and not all digits (that is a domid, as xl reads it). */
export function checkDomainName(name: string): void {
  if (typeof name !== 'string' || !name || name.includes('/') || /^\d+$/.test(name))
    throw new TypeError(`bad domain name ${JSON.stringify(name)} (not empty, no '/', not all digits)`);
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
export async function holderIn(
  s: Xenstore,
  name: string,
  except?: number,
  exists?: (domid: number) => boolean,
): Promise<number | null> {
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
export async function nameForNewDomain(
  names: Pick<DomainNames, 'holder'>,
  domid: number,
  want: string,
): Promise<{ name: string; pending: string | null }> {
  return (await names.holder(want, domid)) === null
    ? { name: want, pending: null }
    : { name: want + INCOMING_SUFFIX, pending: want };
}

/**
 * Names kept in xenstore (the xenstored socket at `path`, else the usual ones). `exists` tells live
 * domains from stale entries (e.g. `(d) => hypervisor has d`).
 */
export function xenstoreNames(
  opts: { path?: string; exists?: (domid: number) => boolean } = {},
): Required<DomainNames> {
  return {
    name: (domid) => withStore(opts.path, (s) => s.read(`/local/domain/${domid}/name`)),
    holder: (name, except) => withStore(opts.path, (s) => holderIn(s, name, except, opts.exists)),
    all: () =>
      withStore(opts.path, async (s) => {
        const out = new Map<number, string>();
        for (const d of await s.directory('/local/domain')) {
          const id = Number(d);
          if (!/^\d+$/.test(d) || (opts.exists && !opts.exists(id))) continue;
          const name = await s.read(`/local/domain/${id}/name`);
          if (name !== null) out.set(id, name);
        }
        return out;
      }),
    rename: (domid, to) =>
      withStore(opts.path, async (s) => {
        if (!to || to.includes('/')) throw new TypeError(`bad domain name ${JSON.stringify(to)}`);
        const dom = `/local/domain/${domid}`;
        const old = await s.read(`${dom}/name`);
        if (old === null && (await s.read(`${dom}/domid`)) === null && (await s.read(`${dom}/vm`)) === null)
          throw new MigrationError(
            MigrationErrorCode.ERR_DOMAIN_MISMATCH,
            `domain ${domid} has no xenstore entries to rename`,
            { domid },
          );
        if (old === to) return;
        const other = await holderIn(s, to, domid, opts.exists);
        if (other !== null)
          throw new MigrationError(
            MigrationErrorCode.ERR_NAME_IN_USE,
            `cannot rename domain ${domid} to ${JSON.stringify(to)}: domain ${other} has that name`,
            { domid },
          );
        await s.write(`${dom}/name`, to);
        const vm = await s.read(`${dom}/vm`);
        if (vm && vm.startsWith('/vm/')) await s.write(`${vm}/name`, to);
      }),
  };
}

/**
 * Names kept by a mock host in its directory: names/<domid> holds the name (what xenstore's
 * /local/domain/<domid>/name is on a real host). The mock never reuses a domid, so the file a
 * destroyed domain left behind names nothing; `exists` tells.
 */
export function mockNames(
  dir: string,
  exists: (domid: number) => boolean,
): Required<DomainNames> & { remove(domid: number): void } {
  const names = join(dir, 'names');
  const all = (): Map<number, string> => {
    const out = new Map<number, string>();
    let entries: string[] = [];
    try {
      entries = readdirSync(names);
    } catch {
      return out;
    }
    for (const e of entries) {
      if (!/^\d+$/.test(e) || !exists(Number(e))) continue;
      try {
        out.set(Number(e), readFileSync(join(names, e), 'utf8'));
      } catch {
        /* removed meanwhile */
      }
    }
    return out;
  };
  const holder = (name: string, except?: number): number | null => {
    for (const [id, n] of all()) if (n === name && id !== except) return id;
    return null;
  };
  return {
    name: async (domid) => (exists(domid) ? (all().get(domid) ?? null) : null),
    holder: async (name, except) => holder(name, except),
    all: async () => all(),
    rename: async (domid, to) => {
      checkDomainName(to);
      if (!exists(domid))
        throw new MigrationError(E.ERR_DOMAIN_MISMATCH, `domain ${domid} does not exist`, { domid });
      const other = holder(to, domid);
      if (other !== null) {
        const msg = `cannot rename domain ${domid} to ${JSON.stringify(to)}: domain ${other} has that name`;
        throw new MigrationError(E.ERR_NAME_IN_USE, msg, { domid });
      }
      mkdirSync(names, { recursive: true });
      const file = join(names, String(domid));
      writeFileSync(`${file}.tmp`, to);
      renameSync(`${file}.tmp`, file);
    },
    remove: (domid) => rmSync(join(names, String(domid)), { force: true }),
  };
}

/** Names on this host: xenstore on a real host with a xenstored, the host directory's on the mock. */
export function hostNames(xen: Hypervisor): DomainNames | null {
  const exists = (d: number) => domainExists(xen, d);
  if (xen.flavour === 'mock') {
    const dir = (xen as Partial<MockHost>).dir;
    return typeof dir === 'string' ? mockNames(dir, exists) : null;
  }
  if (!xenstoredPath()) return null;
  return xenstoreNames({ exists });
}

/**
 * The domain `nameOrId` names, as xl reads a domain argument: a number (or a string of digits) is a
 * domid; anything else is a name, looked up through the host's names. Unknown and
 * ambiguous names are refused (ERR_NO_SUCH_DOMAIN, ERR_AMBIGUOUS_DOMAIN).
 */
export async function resolveDomain(xen: Hypervisor, nameOrId: string | number): Promise<number> {
  const hint = "`xenmig list` shows the host's domains";
  if (typeof nameOrId === 'number' || /^\d+$/.test(nameOrId)) {
    const domid = Number(nameOrId);
    // whether it exists is for the operation to find (it reports ESRCH as before)
    if (!Number.isSafeInteger(domid) || domid < 0 || domid >= 0x7ff0)
      throw new RangeError(`domid must be in 0..${0x7fef}, got ${nameOrId}`);
    return domid;
  }
  const name = JSON.stringify(nameOrId);
  if (!nameOrId) throw new MigrationError(E.ERR_NO_SUCH_DOMAIN, `empty domain name; ${hint}`);
  const names = hostNames(xen);
  if (!names?.all)
    throw new MigrationError(
      E.ERR_NO_SUCH_DOMAIN,
      `no domain names on this host (no xenstored): give domain ${name} by its id`,
    );
  let all: Map<number, string>;
  try {
    all = await names.all();
  } catch (e) {
    const why = (e as Error).message;
    throw new MigrationError(E.ERR_NO_SUCH_DOMAIN, `cannot look up domain ${name}: ${why}; give the domid`, {
      cause: e,
    });
  }
  const hits = [...all].filter(([, n]) => n === nameOrId).map(([id]) => id);
  if (hits.length === 0)
    throw new MigrationError(E.ERR_NO_SUCH_DOMAIN, `no domain named ${name} on this host; ${hint}`);
  if (hits.length > 1)
    throw new MigrationError(
      E.ERR_AMBIGUOUS_DOMAIN,
      `domains ${hits.join(', ')} are all named ${name}: give the domid`,
    );
  return hits[0]!;
}
