// A guest's devices, as its libxl config lists them, and what each end of a save, restore or
// migration can honour. The rule: an operation refuses, before it touches a domain, a device it
// cannot carry over; it never reports success for a guest that lost a disk or a NIC on the way.
//
// Who sets devices up: on a real host, libxl. xenmig builds the empty domain and restores its
// memory itself, then asks libxl to attach each vbd and vif through `xl block-attach` and
// `xl network-attach` (after the stream, before the unpause, as libxl's own restore does), so the
// backends, the hotplug scripts (block, vif-bridge), libxl's xenstore and stored-config entries are
// libxl's own and `xl destroy` / `block-list` / `network-list` know them. Re-implementing libxl's
// device state machines would duplicate a large, version-dependent part of Xen for no gain.
//
// Sender side (save, migrate, Remus): PCI passthrough cannot move (as in xl); an HVM guest's device
// model state needs an emulator provider. Receiver side: the builder can attach vbds backed by
// `phy` (a block device, or a file through the block script's loop device) and vifs on a bridge of
// this host, each in dom0; anything else in the config is refused before the domain is created.
import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { MigrationError, MigrationErrorCode } from '../engine/errors.js';
import type { DomainConfig } from './config.js';

export interface DiskDevice {
  /** xvda, hda, sdb, ... */
  vdev: string;
  /** the image file or block device in dom0 */
  target: string;
  /** the `xl block-attach` arguments that recreate it */
  spec: string[];
}

export interface NicDevice {
  devid: number;
  mac: string | null;
  bridge: string;
  /** the `xl network-attach` arguments that recreate it */
  spec: string[];
}

export interface GuestDevices {
  disks: DiskDevice[];
  nics: NicDevice[];
  /** PCI devices passed through (cannot migrate) */
  pci: number;
  /** devices or settings the builder cannot recreate, one reason each */
  unsupported: string[];
}

/** The device lists of libxl_domain_config other than disks and NICs (all refused when non-empty). */
const OTHER_DEVICE_LISTS: Record<string, string> = {
  pcidevs: 'PCI passthrough device',
  rdms: 'reserved device memory region',
  dtdevs: 'device-tree passthrough device',
  vfbs: 'virtual framebuffer (vfb)',
  vkbs: 'virtual keyboard (vkb)',
  vtpms: 'virtual TPM (vtpm)',
  p9s: '9pfs share',
  pvcallsifs: 'PV calls interface',
  vdispls: 'virtual display (vdispl)',
  vsnds: 'virtual sound card (vsnd)',
  channels: 'console channel',
  usbctrls: 'USB controller',
  usbdevs: 'USB device',
  virtios: 'virtio device',
};

/** Capabilities a receiver announces (xenmig READY) for the device kinds its builder attaches. */
export const DEVICE_CAPABILITY = { vbd: 'device-vbd', vif: 'device-vif' } as const;
/**
 * What a receiver must offer to receive a full HVM guest: it starts the guest's device model with the
 * saved state. No xenmig receiver offers it yet (HVM guests are received with xl migrate-receive).
 */
export const DEVICE_MODEL_CAPABILITY = 'device-model-qemu';

function obj(v: unknown): Record<string, unknown> {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function list(v: unknown): Record<string, unknown>[] {
  return Array.isArray(v) ? v.map(obj) : [];
}

function str(v: unknown): string | null {
  return typeof v === 'string' && v !== '' ? v : null;
}

/** libxl_defbool as JSON: "True" / "False" / "default" (or absent). */
function defbool(v: unknown): boolean | null {
  if (v === true || v === 'True') return true;
  if (v === false || v === 'False') return false;
  return null;
}

/** A disk-spec value may not contain the separators of xl's disk syntax. */
function plain(v: string): boolean {
  return !/[,=\s]/.test(v);
}

function disk(d: Record<string, unknown>, i: number, bad: string[]): DiskDevice | null {
  const vdev = str(d['vdev']);
  const target = str(d['pdev_path']);
  const name = `disk ${vdev ?? `#${i}`}`;
  const refuse = (why: string) => (bad.push(`${name}: ${why}`), null);
  if (!vdev) return refuse('no vdev');
  if (Number(d['backend_domid'] ?? 0) !== 0 || str(d['backend_domname']))
    return refuse('its backend is in a driver domain, not dom0');
  const backend = str(d['backend']) ?? 'unknown';
  if (backend !== 'phy' && backend !== 'unknown')
    return refuse(
      `backend "${backend}" (xenmig attaches "phy" disks: a block device or a raw file through the block script)`,
    );
  const format = str(d['format']) ?? 'raw';
  if (format !== 'raw' && format !== 'unknown')
    return refuse(`format "${format}" (only raw disks use the phy backend)`);
  if (Number(d['is_cdrom'] ?? 0) || Number(d['removable'] ?? 0))
    return refuse('removable/CD-ROM drives are not supported');
  if (defbool(d['colo_enable'])) return refuse('COLO disk replication is not supported');
  if (str(d['specification']) && d['specification'] !== 'xen')
    return refuse(`specification "${String(d['specification'])}"`);
  if (!target) return refuse('no target (an empty drive)');
  const script = str(d['script']);
  // the target may hold anything: xl reads the rest of the spec after "target=" as the target
  for (const [k, v] of [
    ['vdev', vdev],
    ['script', script ?? ''],
  ] as const)
    if (v && !plain(v)) return refuse(`${k} "${v}" contains a comma, "=" or white space`);
  const spec = [
    `format=raw`,
    `vdev=${vdev}`,
    `access=${Number(d['readwrite'] ?? 1) ? 'rw' : 'ro'}`,
    'backendtype=phy',
  ];
  if (script) spec.push(`script=${script}`);
  if (d['direct_io_safe'] === true || d['direct_io_safe'] === 'True') spec.push('direct-io-safe');
  const discard = defbool(d['discard_enable']);
  if (discard !== null) spec.push(discard ? 'discard' : 'no-discard');
  const trusted = defbool(d['trusted']);
  if (trusted !== null) spec.push(trusted ? 'trusted' : 'untrusted');
  spec.push(`target=${target}`); // last: xl takes the rest of the spec as the target
  return { vdev, target, spec };
}

function nic(n: Record<string, unknown>, i: number, bad: string[]): NicDevice | null {
  const devid = n['devid'] === undefined ? i : Number(n['devid']);
  const name = `vif ${devid}`;
  const refuse = (why: string) => (bad.push(`${name}: ${why}`), null);
  if (!Number.isSafeInteger(devid) || devid < 0) return refuse(`devid ${String(n['devid'])}`);
  if (Number(n['backend_domid'] ?? 0) !== 0 || str(n['backend_domname']))
    return refuse('its backend is in a driver domain, not dom0');
  const nictype = str(n['nictype']) ?? 'vif';
  if (nictype !== 'vif') return refuse(`type "${nictype}" (emulated NICs need a device model)`);
  if (Number(n['rate_bytes_per_interval'] ?? 0)) return refuse('a rate limit is set (not carried over yet)');
  for (const k of Object.keys(n)) if (/^colo/.test(k) && str(n[k])) return refuse(`COLO setting ${k}`);
  const bridge = str(n['bridge']) ?? 'xenbr0';
  const spec: string[] = [];
  const mac = str(n['mac']);
  if (mac && mac !== '00:00:00:00:00:00') spec.push(`mac=${mac}`);
  spec.push(`bridge=${bridge}`);
  for (const [k, key] of [
    ['script', 'script'],
    ['ip', 'ip'],
    ['ifname', 'vifname'],
    ['model', 'model'],
    ['gatewaydev', 'gatewaydev'],
  ] as const) {
    const v = str(n[k]);
    if (!v) continue;
    if (!plain(v) && k !== 'ip') return refuse(`${k} "${v}" contains a comma, "=" or white space`);
    // several addresses are one space-separated value in xl's syntax
    spec.push(`${key}=${v}`);
  }
  return { devid, mac: mac ?? null, bridge, spec };
}

/** The devices of a guest config, and what of it the builder cannot recreate. */
export function guestDevices(config: DomainConfig): GuestDevices {
  const j = config.json;
  const unsupported: string[] = [];
  const disks = list(j['disks'])
    .map((d, i) => disk(d, i, unsupported))
    .filter((d): d is DiskDevice => d !== null);
  const nics = list(j['nics'])
    .map((n, i) => nic(n, i, unsupported))
    .filter((n): n is NicDevice => n !== null)
    .sort((a, b) => a.devid - b.devid);
  // xl network-attach takes the next free devid: the source's devids must be 0, 1, ...
  nics.forEach((n, i) => {
    if (n.devid !== i)
      unsupported.push(
        `vif ${n.devid}: vif devids must be 0..${nics.length - 1} (libxl numbers attached vifs in order)`,
      );
  });
  for (const [key, what] of Object.entries(OTHER_DEVICE_LISTS)) {
    const n = list(j[key]).length;
    if (n) unsupported.push(`${n} ${what}${n > 1 ? 's' : ''}`);
  }
  return { disks, nics, pci: list(j['pcidevs']).length, unsupported };
}

/** The receiver capabilities a guest needs (xenmig protocol: checked against READY before any page). */
export function requiredDeviceCapabilities(config: DomainConfig): string[] {
  const caps: string[] = [];
  if (list(config.json['disks']).length) caps.push(DEVICE_CAPABILITY.vbd);
  if (list(config.json['nics']).length) caps.push(DEVICE_CAPABILITY.vif);
  if (config.kind === 'hvm') caps.push(DEVICE_MODEL_CAPABILITY);
  return caps;
}

/**
 * Sender side, before the source is touched: what no destination can receive from this sender.
 * `emulator`: whether a device-model state provider is configured.
 */
export function checkSourceDevices(
  config: DomainConfig,
  opts: { emulator: boolean; domid?: number; why?: string },
): void {
  const why: string[] = [];
  const pci = list(config.json['pcidevs']).length;
  if (pci)
    why.push(
      `${pci} PCI passthrough device${pci > 1 ? 's' : ''} (a passed-through device's state cannot be migrated; detach with xl pci-detach first)`,
    );
  if (config.kind === 'hvm' && !opts.emulator)
    why.push(
      `an HVM guest's device model (QEMU) state cannot be captured${opts.why ? ` (${opts.why})` : ''}; use xl save / xl migrate / xl remus for this guest`,
    );
  if (why.length)
    throw new MigrationError(
      MigrationErrorCode.ERR_UNSUPPORTED_DEVICE,
      `refused before touching the guest: ${why.join('; ')}`,
      opts.domid !== undefined ? { domid: opts.domid } : {},
    );
}

export interface DeviceHost {
  /** the devices a builder attaches on this host (none on the mock) */
  kinds: readonly ('vbd' | 'vif')[];
  /** why it attaches none (e.g. no xl), for the refusal */
  whyNone?: string;
  /** a file or block device exists in dom0 */
  pathExists?(path: string): boolean;
  /** a network bridge exists in dom0 */
  bridgeExists?(name: string): boolean;
}

/** The path of a program on PATH, or null. */
export function findProgram(name: string, path = process.env.PATH ?? ''): string | null {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      if (statSync(p).isFile()) return p;
    } catch {
      /* not here */
    }
  }
  return null;
}

/** The dom0 this process runs in: vbds and vifs when libxl's `xl` is installed. */
export function localDeviceHost(xl: string | null): DeviceHost {
  return {
    kinds: xl ? ['vbd', 'vif'] : [],
    ...(xl ? {} : { whyNone: "libxl's xl is not installed (xenmig attaches devices through it)" }),
    pathExists: (p) => existsSync(p),
    bridgeExists: (b) => {
      try {
        return statSync(`/sys/class/net/${b}/bridge`).isDirectory();
      } catch {
        return false;
      }
    },
  };
}

/** Receiver side, before the domain is created: every device the builder cannot attach here. */
export function checkDestinationDevices(config: DomainConfig, host: DeviceHost): GuestDevices {
  const d = guestDevices(config);
  const why = [...d.unsupported];
  const missing = (kind: 'vbd' | 'vif', n: number, what: string) => {
    if (n && !host.kinds.includes(kind))
      why.push(`${n} ${what}${n > 1 ? 's' : ''}: ${host.whyNone ?? `this host attaches no ${kind} devices`}`);
  };
  missing('vbd', d.disks.length, 'disk');
  missing('vif', d.nics.length, 'network interface');
  if (host.kinds.includes('vbd'))
    for (const k of d.disks)
      if (host.pathExists && !host.pathExists(k.target))
        why.push(`disk ${k.vdev}: ${k.target} does not exist on this host`);
  if (host.kinds.includes('vif'))
    for (const n of d.nics)
      if (host.bridgeExists && !host.bridgeExists(n.bridge))
        why.push(`vif ${n.devid}: bridge ${n.bridge} does not exist on this host`);
  if (why.length)
    throw new MigrationError(
      MigrationErrorCode.ERR_UNSUPPORTED_DEVICE,
      `the destination cannot recreate the guest's devices, refused before building it: ${why.join('; ')}`,
    );
  return d;
}

/** Run xl; resolves its exit status and stderr (rc null: it could not run or timed out). */
function runXl(xl: string, args: string[], timeoutMs: number): Promise<{ rc: number | null; err: string }> {
  return new Promise((resolve) => {
    let err = '';
    const p = spawn(xl, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.stderr.setEncoding('utf8');
    p.stderr.on('data', (d: string) => (err = (err + d).slice(-4000)));
    p.on('error', (e) => {
      clearTimeout(t);
      resolve({ rc: null, err: String(e) });
    });
    p.on('close', (rc) => {
      clearTimeout(t);
      resolve({ rc, err });
    });
  });
}

/**
 * Attach the guest's disks, then its NICs (in devid order), through libxl (`xl block-attach`,
 * `xl network-attach`), to a domain that is built, restored and still paused. libxl writes the
 * backend and frontend entries, runs the hotplug scripts and waits for each backend. On a failure
 * the error names the device; what was attached goes with the domain (the caller destroys it).
 */
export async function attachDevices(
  domid: number,
  devices: GuestDevices,
  opts: { xl?: string; timeoutMs?: number } = {},
): Promise<string[]> {
  const xl = opts.xl ?? 'xl';
  const done: string[] = [];
  const steps = [
    ...devices.disks.map((d) => ({
      what: `disk ${d.vdev} (${d.target})`,
      args: ['block-attach', String(domid), ...d.spec],
    })),
    ...devices.nics.map((n) => ({
      what: `vif ${n.devid} (bridge ${n.bridge})`,
      args: ['network-attach', String(domid), ...n.spec],
    })),
  ];
  for (const s of steps) {
    const r = await runXl(xl, s.args, opts.timeoutMs ?? 120_000);
    if (r.rc !== 0)
      throw new MigrationError(
        MigrationErrorCode.ERR_DEVICE,
        `attaching ${s.what} failed: xl ${s.args.join(' ')} ${r.rc === null ? 'did not run or timed out' : `exited ${r.rc}`}: ${r.err.trim().slice(-600)}`,
        { domid },
      );
    done.push(s.what);
  }
  return done;
}
