// The domain configuration carried in the xl header (libxl_domain_config as JSON). xenmig reads the
// fields it needs to build the destination domain and passes the rest through untouched.
import type { DomainInfo } from '../xen/types.js';

export type GuestKind = 'pv' | 'hvm' | 'pvh';

export interface DomainConfig {
  kind: GuestKind;
  name: string | undefined;
  maxMemKb: number;
  maxVcpus: number;
  /** the full JSON object as parsed */
  json: Record<string, unknown>;
  /** the exact text (kept byte for byte when re-sent) */
  text: string;
}

export class ConfigError extends Error {
  readonly code = 'ERR_CONFIG';
}

function obj(v: unknown): Record<string, unknown> {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

export function parseDomainConfig(text: string): DomainConfig {
  let json: Record<string, unknown>;
  try {
    json = obj(JSON.parse(text.replace(/\0+$/, '')));
  } catch (e) {
    throw new ConfigError(`domain config is not JSON: ${(e as Error).message}`);
  }
  const cInfo = obj(json['c_info']);
  const bInfo = obj(json['b_info']);
  const type = cInfo['type'] ?? 'pv';
  const kind = typeof type === 'string' ? type : JSON.stringify(type);
  if (kind !== 'pv' && kind !== 'hvm' && kind !== 'pvh')
    throw new ConfigError(`unknown guest type "${kind}" in the domain config`);
  const maxMemKb = Number(bInfo['max_memkb'] ?? bInfo['target_memkb'] ?? 0);
  const maxVcpus = Number(bInfo['max_vcpus'] ?? 1);
  if (!Number.isSafeInteger(maxMemKb) || maxMemKb <= 0)
    throw new ConfigError('domain config has no usable b_info.max_memkb');
  if (!Number.isSafeInteger(maxVcpus) || maxVcpus <= 0 || maxVcpus > 4096)
    throw new ConfigError('domain config has no usable b_info.max_vcpus');
  return {
    kind,
    name: typeof cInfo['name'] === 'string' ? cInfo['name'] : undefined,
    maxMemKb,
    maxVcpus,
    json,
    text,
  };
}

/** A minimal libxl-style config for a domain xenmig did not get a config for. */
export function configFromDomain(info: DomainInfo, name?: string): DomainConfig {
  const json = {
    c_info: { type: info.type === 'hvm' ? 'pvh' : 'pv', name: name ?? `xenmig-${info.domid}` },
    b_info: {
      max_vcpus: info.maxVcpuId + 1,
      max_memkb: info.maxPages * 4,
      target_memkb: info.totPages * 4,
    },
  };
  const text = JSON.stringify(json, null, 4) + '\n';
  return parseDomainConfig(text);
}

/** The same config under another name (c_info.name), as libxl refreshes it from the live domain. */
export function withName(config: DomainConfig, name: string): DomainConfig {
  if (config.name === name) return config;
  const json = structuredClone(config.json);
  json['c_info'] = { ...obj(json['c_info']), name };
  return parseDomainConfig(JSON.stringify(json, null, 4) + '\n');
}

/** The same config as another guest kind (c_info.type). */
export function withKind(config: DomainConfig, kind: GuestKind): DomainConfig {
  if (config.kind === kind) return config;
  const json = structuredClone(config.json);
  json['c_info'] = { ...obj(json['c_info']), type: kind };
  return parseDomainConfig(JSON.stringify(json, null, 4) + '\n');
}

/** The libxc domain type a guest kind produces (PVH streams are HVM-type). */
export function domainTypeOf(kind: GuestKind): 'pv' | 'hvm' {
  return kind === 'pv' ? 'pv' : 'hvm';
}
