// Destroying a domain the way its host's toolstack expects. On the mock: the hypervisor call. On a
// real host the domain also has toolstack state that outlives xc_domain_destroy — its xenstore
// entries (name, vm path, /libxl/<domid>), device backends and hotplug, libxl's stored config — and a
// name that stale entries would keep "taken". `xl destroy` tears all of that down as libxl does, so
// it is used when xl is installed; without it xenmig destroys the domain itself and removes the
// xenstore entries and libxl userdata files (device backends are then left to dom0's drivers).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Hypervisor } from '../xen/types.js';
import { Xenstore, XENSTORED_SOCKETS } from './xenstore.js';
import { removeLibxlStoredConfig } from './libxl-config.js';

export interface DestroyOptions {
  /** the xl binary, or false to never use it (default: `xl` on PATH) */
  xl?: string | false;
  xenstorePath?: string;
  /** libxl's userdata directory (default $XEN_LIB_DIR, else /var/lib/xen) */
  userdataDir?: string;
}

function onPath(cmd: string): string | null {
  for (const d of (process.env.PATH ?? '').split(delimiter)) {
    if (d && existsSync(join(d, cmd))) return join(d, cmd);
  }
  return null;
}

function run(argv: string[], timeoutMs: number): Promise<{ rc: number | null; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('error', (e) => {
      clearTimeout(t);
      resolve({ rc: null, err: e.message });
    });
    p.on('close', (rc) => {
      clearTimeout(t);
      resolve({ rc, err });
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
export async function removeToolstackState(domid: number, opts: Pick<DestroyOptions, 'xenstorePath' | 'userdataDir'> = {}): Promise<void> {
  if (opts.xenstorePath || process.env.XENSTORED_PATH || XENSTORED_SOCKETS.some((p) => existsSync(p))) {
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
export async function destroyDomain(xen: Hypervisor, domid: number, opts: DestroyOptions = {}): Promise<void> {
  if (xen.flavour !== 'system') {
    xen.destroy(domid);
    return;
  }
  const xl = opts.xl === false ? null : (opts.xl ?? onPath('xl'));
  if (xl) {
    const r = await run([xl, 'destroy', String(domid)], 60_000);
    if (r.rc === 0) return;
  }
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
