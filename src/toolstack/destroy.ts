// Destroying a domain the way its host's toolstack expects. On the mock: the hypervisor call. On a
// real host the domain also has toolstack state that outlives xc_domain_destroy — its xenstore
// entries (name, vm path, /libxl/<domid>), device backends and hotplug, libxl's stored config — and a
// name that stale entries would keep "taken". `xl destroy` tears all of that down as libxl does, so
// it is used when xl is installed; without it xenmig destroys the domain itself and removes the
// xenstore entries and libxl userdata files (device backends are then left to dom0's drivers).
import { spawn } from 'node:child_process';
import type { Hypervisor } from '../xen/types.js';
import { Xenstore, xenstoredPath } from './xenstore.js';
import { removeLibxlStoredConfig } from './libxl-config.js';

export interface DestroyOptions {
  /** the xl binary, or false to never use it (default: `xl` on PATH; not installed = not used) */
  xl?: string | false;
  xenstorePath?: string;
  /** libxl's userdata directory (default $XEN_LIB_DIR, else /var/lib/xen) */
  userdataDir?: string;
}

/** Exit status of argv (null: it could not run, e.g. not installed, or was killed after timeoutMs). */
function run(argv: string[], timeoutMs: number): Promise<number | null> {
  return new Promise((resolve) => {
    const p = spawn(argv[0]!, argv.slice(1), { stdio: 'ignore' });
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('error', () => {
      clearTimeout(t);
      resolve(null);
    });
    p.on('close', (rc) => {
      clearTimeout(t);
      resolve(rc);
    });
  });
}

/** Whether the hypervisor has domid (in any state). */
export function domainExists(xen: Hypervisor, domid: number): boolean {
  try {
    xen.domainInfo(domid);
    return true;
  } catch {
    return false;
  }
}

/** Remove what a toolstack keeps for a dead domain in xenstore and libxl's userdata directory. */
export async function removeToolstackState(
  domid: number,
  opts: Pick<DestroyOptions, 'xenstorePath' | 'userdataDir'> = {},
): Promise<void> {
  if (xenstoredPath(opts.xenstorePath)) {
    const s = await Xenstore.open(opts.xenstorePath);
    try {
      const vm = await s.read(`/local/domain/${domid}/vm`);
      await s.release(domid).catch(() => undefined);
      await s.rm(`/local/domain/${domid}`);
      if (vm && /^\/vm\/[0-9a-f-]+$/i.test(vm)) await s.rm(vm);
      await s.rm(`/libxl/${domid}`);
      const backends = await s.directory('/local/domain/0/backend').catch(() => [] as string[]);
      for (const kind of backends) await s.rm(`/local/domain/0/backend/${kind}/${domid}`);
    } finally {
      s.close();
    }
  }
  removeLibxlStoredConfig(domid, opts.userdataDir, true);
}

/** Destroy domid with its toolstack state (see the file comment). */
export async function destroyDomain(
  xen: Hypervisor,
  domid: number,
  opts: DestroyOptions = {},
): Promise<void> {
  if (xen.flavour !== 'system') {
    xen.destroy(domid);
    return;
  }
  if (opts.xl !== false && (await run([opts.xl ?? 'xl', 'destroy', String(domid)], 60_000)) === 0) return;
  try {
    xen.destroy(domid);
  } catch (e) {
    if (domainExists(xen, domid)) throw e;
  }
  try {
    await removeToolstackState(domid, opts);
  } catch {
    /* the domain is gone; its entries are best effort */
  }
}
