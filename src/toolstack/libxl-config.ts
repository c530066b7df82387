// The configuration libxl keeps for each domain it created (XEN_LIB_DIR/userdata-d.<domid>.<uuid>
// .libxl-json, "libxl-json" userdata): the JSON `xl save` puts in its header and `xl list -l`
// prints. On a real host xenmig saves with it, so `xl restore` of a xenmig file rebuilds the same
// guest (name, kernel, memory, devices); without it the header carries only a minimal config.
import { readdirSync, readFileSync } from 'node:fs';
import type { DomainInfo } from '../xen/types.js';
import { parseDomainConfig, type DomainConfig } from './config.js';

export const XEN_LIB_DIR = '/var/lib/xen';

/** The stored libxl config and, when there is none, why. */
export function findLibxlStoredConfig(domid: number, info?: DomainInfo, dir = process.env.XEN_LIB_DIR ?? XEN_LIB_DIR): { config: DomainConfig | null; why: string } {
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
    if (!(Number(b['max_memkb']) > 0) && !(Number(b['target_memkb']) > 0)) b['max_memkb'] = Math.max(info.maxPages * 4 - 1024, info.totPages * 4);
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
