// The configuration libxl keeps for each domain it created (XEN_LIB_DIR/userdata-d.<domid>.<uuid>
// .libxl-json, "libxl-json" userdata): the same JSON `xl save` puts in its header and `xl list -l`
// prints. On a real host xenmig saves with it, so `xl restore` of a xenmig file rebuilds the same
// guest (name, kernel, memory, devices); without it the header carries only a minimal config.
import { readdirSync, readFileSync } from 'node:fs';
import { parseDomainConfig, type DomainConfig } from './config.js';

export const XEN_LIB_DIR = '/var/lib/xen';

/** The stored libxl config of a domain, or null (no libxl state, unreadable, or not JSON). */
export function libxlStoredConfig(domid: number, dir = process.env.XEN_LIB_DIR ?? XEN_LIB_DIR): DomainConfig | null {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return null;
  }
  const prefix = `userdata-d.${domid}.`;
  const file = names.find((n) => n.startsWith(prefix) && n.endsWith('.libxl-json'));
  if (!file) return null;
  try {
    const text = readFileSync(`${dir}/${file}`, 'utf8');
    return parseDomainConfig(text.endsWith('\n') ? text : text + '\n');
  } catch {
    return null;
  }
}
