// The configuration libxl keeps for each domain it created (XEN_LIB_DIR/userdata-d.<domid>.<uuid>
// .libxl-json, "libxl-json" userdata): the JSON `xl save` puts in its header and `xl list -l`
// prints. On a real host xenmig saves with it, so `xl restore` of a xenmig file rebuilds the same
// guest (name, kernel, memory, devices); without it the header carries only a minimal config.
import { readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import type { DomainInfo } from '../xen/types.js';
import { parseDomainConfig, type DomainConfig } from './config.js';

export const XEN_LIB_DIR = '/var/lib/xen';

/** The stored libxl config and, when there is none, why. */
export function findLibxlStoredConfig(
  domid: number,
  info?: DomainInfo,
  dir = process.env.XEN_LIB_DIR ?? XEN_LIB_DIR,
): { config: DomainConfig | null; why: string } {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    return { config: null, why: `cannot list ${dir}: ${(e as Error).message}` };
  }
  const prefix = `userdata-d.${domid}.`;
  const file = names.find((n) => n.startsWith(prefix) && n.endsWith('.libxl-json'));
  if (!file) return { config: null, why: `no ${dir}/${prefix}*.libxl-json (${names.length} entries)` };
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(readFileSync(`${dir}/${file}`, 'utf8').replace(/\0+$/, '')) as Record<string, unknown>;
  } catch (e) {
    return { config: null, why: `${file}: ${(e as Error).message}` };
  }
  // libxl leaves fields at their defaults out of the JSON: fill what xenmig needs from the domain
  const b = (json['b_info'] ??= {}) as Record<string, unknown>;
  if (info) {
    if (!(Number(b['max_memkb']) > 0) && !(Number(b['target_memkb']) > 0))
      b['max_memkb'] = Math.max(info.maxPages * 4 - 1024, info.totPages * 4);
    if (!(Number(b['max_vcpus']) > 0)) b['max_vcpus'] = info.maxVcpuId + 1;
  }
  try {
    return { config: parseDomainConfig(JSON.stringify(json, null, 4) + '\n'), why: file };
  } catch (e) {
    return { config: null, why: `${file}: ${(e as Error).message}` };
  }
}

/** The stored libxl config of a domain, or null (no libxl state, unreadable, or unusable). */
export function libxlStoredConfig(domid: number, info?: DomainInfo): DomainConfig | null {
  return findLibxlStoredConfig(domid, info).config;
}

/**
 * Store a domain's config as libxl does for the domains it creates, so that `xl list -l` shows it
 * and a later save (by xenmig or xl) carries it: XEN_LIB_DIR/userdata-d.<domid>.<uuid>.libxl-json,
 * written whole (temporary file, then rename). Stale files of an earlier domain with this domid go.
 */
export function writeLibxlStoredConfig(
  domid: number,
  uuid: string,
  json: Record<string, unknown>,
  dir = process.env.XEN_LIB_DIR ?? XEN_LIB_DIR,
): string {
  removeLibxlStoredConfig(domid, dir);
  const file = `${dir}/userdata-d.${domid}.${uuid}.libxl-json`;
  writeFileSync(`${file}.tmp`, JSON.stringify(json, null, 4) + '\n', { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
  return file;
}

/** Remove the stored libxl config(s) of domid (`all`: every kind of libxl userdata of it) (best effort). */
export function removeLibxlStoredConfig(
  domid: number,
  dir = process.env.XEN_LIB_DIR ?? XEN_LIB_DIR,
  all = false,
): void {
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) {
    if (n.startsWith(`userdata-d.${domid}.`) && (all || n.endsWith('.libxl-json'))) {
      try {
        unlinkSync(`${dir}/${n}`);
      } catch {
        /* best effort */
      }
    }
  }
}
