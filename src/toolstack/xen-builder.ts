// The real-host domain builder: creates the empty destination domain of a restore or incoming
// migration the way libxl does before it hands the stream to libxc, and finishes it afterwards.
//
// create(config)  xc_domain_create + xc_domain_max_vcpus (PV: no flags; PVH: hvm|hap with only the LAPIC emulated) with
//                 the config's vCPUs, grant/maptrack frames, grant version and event channels;
//                 max memory = target + 1 MiB (libxl's LIBXL_MAXMEM_CONSTANT); PV: the e820 limit;
//                 the xenstore and console event channels (in that order, both to dom0, so a fresh
//                 domain gets the same port numbers the guest already uses); PVH: HVM_PARAM_STORE_EVTCHN
//                 and HVM_PARAM_CONSOLE_EVTCHN; the xenstore skeleton (/local/domain/N with the
//                 guest-writable dirs, /vm/<uuid>, /libxl/N/type).
// finish(domid)   after the stream, while still paused: reads where the xenstore and console rings
//                 are (PVH: HVM params; PV: start info via vCPU 0's rdx), seeds the grant table
//                 (reserved entries for xenconsoled and xenstored), writes memory/store/console/cpu
//                 entries and introduces the domain to xenstored (xenconsoled then attaches).
// start(domid)    cleared to run: a domain that create() had to name "<name>--incoming" (another
//                 domain, e.g. the migration's source on this host, held the name) takes its name.
// destroy(domid)  destroys the domain and removes what create() wrote.
// Disks and NICs: checked in create() (refused there, before anything exists, when this host cannot
// attach them), attached in finish() through libxl (src/toolstack/devices.ts).
// Full HVM guests need a device model (QEMU) and are refused.
import { randomBytes } from 'node:crypto';
import type { Hypervisor } from '../xen/types.js';
import { HvmParam } from '../xen/constants.js';
import type { NativeBuilder } from '../xen/loader.js';
import { NativeHypervisor } from '../xen/hypervisor.js';
import { MigrationError, MigrationErrorCode } from '../engine/errors.js';
import type { DomainConfig } from './config.js';
import type { DomainBuilder } from './restore.js';
import { Xenstore, type XsPerm } from './xenstore.js';
import { writeLibxlStoredConfig } from './libxl-config.js';
import { destroyDomain, domainExists } from './destroy.js';
import {
  attachDevices,
  checkDestinationDevices,
  DEVICE_CAPABILITY,
  findProgram,
  localDeviceHost,
  type GuestDevices,
} from './devices.js';
import { holderIn, nameForNewDomain, xenstoreNames } from './names.js';

const HVM_REFUSED =
  'full HVM guests need a device model (QEMU), which xenmig cannot start yet; restore HVM guests with xl restore';
const CDF_HVM = 1 << 0;
const CDF_HAP = 1 << 1;
const X86_EMU_LAPIC = 1 << 0;
/** libxl: LIBXL_MAXMEM_CONSTANT (KiB) added to the target for Xen's max pages */
const MAXMEM_CONSTANT_KB = 1024;
/** vcpu_guest_context_x86_64_t: user_regs.rdx (a PV guest's start info mfn after restore) */
const VCPU64_RDX = 616;
const START_INFO_STORE_MFN = 56;
const START_INFO_CONSOLE_MFN = 72;

interface Built {
  config: DomainConfig;
  hvm: boolean;
  uuid: string;
  storePort: number;
  consolePort: number;
  /** the config's name, while the domain is built under "<name>--incoming" (another domain has it) */
  pendingName: string | null;
  /** disks and NICs, attached by finish() through libxl */
  devices: GuestDevices;
}

export interface XenBuilder extends DomainBuilder {
  /** After the stream, before unpausing: grant seed, xenstore entries, introduce. */
  finish(domid: number): Promise<{ storeGfn: number; consoleGfn: number }>;
  /** Cleared to run: a domain built as "<name>--incoming" takes its name (ERR_NAME_IN_USE if still held). */
  start(domid: number): Promise<void>;
  /** domids this builder created and has not destroyed */
  readonly domains: ReadonlyMap<number, Readonly<Built>>;
}

function obj(v: unknown): Record<string, unknown> {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function num(v: unknown, dflt: number): number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : dflt;
}

function uuidBytes(uuid: unknown): { text: string; bytes: Uint8Array } {
  if (
    typeof uuid === 'string' &&
    /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(uuid) &&
    !/^[0-]+$/.test(uuid)
  )
    return { text: uuid.toLowerCase(), bytes: Uint8Array.from(Buffer.from(uuid.replace(/-/g, ''), 'hex')) };
  const b = randomBytes(16);
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString('hex');
  return {
    text: `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`,
    bytes: Uint8Array.from(b),
  };
}

/** The builder calls of the addon `xen` was opened with (native/src/builder.cc, system flavour). */
function nativeBuilder(xen: Hypervisor): NativeBuilder {
  if (!(xen instanceof NativeHypervisor))
    throw new TypeError(
      'xenBuilder needs a hypervisor handle from openHypervisor (src/xen), which holds the builder calls',
    );
  const b = xen.builderCalls();
  if (!b)
    throw new MigrationError(
      MigrationErrorCode.ERR_UNSUPPORTED,
      'this addon has no domain builder calls (rebuild native/: npm run build:native)',
    );
  return b;
}

export interface XenBuilderOptions {
  xenstorePath?: string;
  /** libxl's userdata directory (default /var/lib/xen) */
  libDir?: string;
  /** the xl binary that attaches devices (default: xl on PATH; none = guests with devices are refused) */
  xl?: string | null;
}

/** What the builder's steps share: the host's handles and the domains built so far. */
interface BuilderContext {
  readonly xen: Hypervisor;
  readonly nb: NativeBuilder;
  readonly opts: XenBuilderOptions;
  /** the xl binary that attaches devices, or null */
  readonly xl: string | null;
  readonly deviceHost: ReturnType<typeof localDeviceHost>;
  readonly built: Map<number, Built>;
  xs(): Promise<Xenstore>;
  /** stale xenstore entries of dead domains do not hold a name */
  alive(d: number): boolean;
}

export function xenBuilder(xen: Hypervisor, opts: XenBuilderOptions = {}): XenBuilder {
  if (xen.flavour !== 'system')
    throw new TypeError('xenBuilder needs the system flavour (the mock host has mockBuilder)');
  const xl = opts.xl === undefined ? findProgram('xl') : opts.xl;
  const ctx: BuilderContext = {
    xen,
    nb: nativeBuilder(xen),
    opts,
    xl,
    deviceHost: localDeviceHost(xl),
    built: new Map<number, Built>(),
    xs: () => Xenstore.open(opts.xenstorePath),
    alive: (d: number) => domainExists(xen, d),
  };
  const api: XenBuilder = {
    domains: ctx.built,
    capabilities: ctx.deviceHost.kinds.map((k) => DEVICE_CAPABILITY[k]),
    create: (config: DomainConfig) => buildDomain(ctx, config),
    finish: (domid: number) => finishDomain(ctx, domid),
    start: (domid: number) => startDomain(ctx, domid),
    destroy: (domid: number) => destroyBuilt(ctx, domid),
  };
  return finishingOnce(api);
}

/** A step after the domain exists failed: destroy it; the step's error is the one that counts. */
function destroyKeepingError(xen: Hypervisor, domid: number): void {
  try {
    xen.destroy(domid);
  } catch {
    /* keep the first error */
  }
}

/** create(): the domain, its xenstore skeleton and libxl's stored config; destroyed again on failure. */
async function buildDomain(ctx: BuilderContext, config: DomainConfig): Promise<number> {
  const { xen } = ctx;
  if (config.kind === 'hvm') throw new MigrationError(MigrationErrorCode.ERR_UNSUPPORTED_DEVICE, HVM_REFUSED);
  // everything the domain needs beyond memory is checked before anything is created
  const devices = checkDestinationDevices(config, ctx.deviceHost);
  const { domid, b } = createDomain(xen, ctx.nb, config, devices);
  try {
    const s = await ctx.xs();
    try {
      await writeSkeleton(s, domid, b, ctx.alive);
    } finally {
      s.close();
    }
    storeLibxlConfig(domid, b, ctx.opts.libDir);
    ctx.built.set(domid, b);
    return domid;
  } catch (e) {
    destroyKeepingError(xen, domid);
    throw e;
  }
}

/** finish(): after the stream, grant table seeded, xenstore entries written, domain introduced, devices attached. */
async function finishDomain(
  ctx: BuilderContext,
  domid: number,
): Promise<{ storeGfn: number; consoleGfn: number }> {
  const b = ctx.built.get(domid);
  if (!b)
    throw new MigrationError(
      MigrationErrorCode.ERR_UNSUPPORTED,
      `domain ${domid} was not created by this builder`,
      {
        domid,
      },
    );
  const { storeGfn, consoleGfn } = ringFrames(ctx.xen, domid, b);
  ctx.nb.gnttabSeed(domid, b.hvm, consoleGfn, storeGfn, 0, 0);
  const s = await ctx.xs();
  try {
    await writeDomainEntries(s, domid, b, storeGfn);
    await writeConsoleEntries(s, domid, b, consoleGfn);
    await s.introduce(domid, storeGfn, b.storePort);
  } finally {
    s.close();
  }
  // disks and NICs through libxl, as its own restore adds them: after the stream, while paused
  if (b.devices.disks.length || b.devices.nics.length)
    await attachDevices(domid, b.devices, ctx.xl ? { xl: ctx.xl } : {});
  return { storeGfn, consoleGfn };
}

/** start(): the domain takes its own name once the source that held it is gone. */
async function startDomain(ctx: BuilderContext, domid: number): Promise<void> {
  const b = ctx.built.get(domid);
  if (!b || b.pendingName === null) return;
  const { xenstorePath } = ctx.opts;
  await xenstoreNames({
    ...(xenstorePath !== undefined ? { path: xenstorePath } : {}),
    exists: ctx.alive,
  }).rename(domid, b.pendingName);
  b.pendingName = null;
}

/**
 * destroy(): through xl when installed: libxl removes attached devices (backends, hotplug: loop devices,
 * bridge ports) with the domain; else the hypervisor call plus xenstore/userdata cleanup.
 */
async function destroyBuilt(ctx: BuilderContext, domid: number): Promise<void> {
  const { opts } = ctx;
  try {
    await destroyDomain(ctx.xen, domid, {
      xl: ctx.xl ?? false,
      ...(opts.xenstorePath !== undefined ? { xenstorePath: opts.xenstorePath } : {}),
      ...(opts.libDir !== undefined ? { userdataDir: opts.libDir } : {}),
    });
  } finally {
    ctx.built.delete(domid);
  }
}

/**
 * finish() runs once per domain: restoreDomain calls it before unpausing, and callers that drive
 * the steps themselves may call it again (they get the same result).
 */
function finishingOnce(api: XenBuilder): XenBuilder {
  const finishing = new Map<number, Promise<{ storeGfn: number; consoleGfn: number }>>();
  const finishOnce = api.finish.bind(api);
  const destroyOnce = api.destroy.bind(api);
  api.finish = (domid: number) => {
    let p = finishing.get(domid);
    if (!p) {
      p = finishOnce(domid);
      finishing.set(domid, p);
      p.catch(() => finishing.delete(domid));
    }
    return p;
  };
  api.destroy = async (domid: number) => {
    finishing.delete(domid);
    return destroyOnce(domid);
  };
  return api;
}

/**
 * The empty domain with the config's vCPUs, memory limits and the xenstore and console event
 * channels (libxl__build_pre's part); destroyed again when a step fails.
 */
function createDomain(
  xen: Hypervisor,
  nb: NativeBuilder,
  config: DomainConfig,
  devices: GuestDevices,
): { domid: number; b: Built } {
  const hvm = config.kind === 'pvh';
  const c = obj(config.json['c_info']);
  const bi = obj(config.json['b_info']);
  const { text: uuid, bytes: handle } = uuidBytes(c['uuid']);
  const grantVersion = num(bi['max_grant_version'], 2) || 2;
  const domid = nb.createDomain(
    hvm ? CDF_HVM | (c['hap'] === false ? 0 : CDF_HAP) : 0,
    config.maxVcpus,
    hvm ? X86_EMU_LAPIC : 0,
    handle,
    num(bi['max_grant_frames'], 64) || 64,
    num(bi['max_maptrack_frames'], 1024) || 1024,
    grantVersion,
    num(bi['event_channels'], 1023) || 1023,
  );
  try {
    nb.setMaxVcpus(domid, config.maxVcpus);
    const target = num(bi['target_memkb'], config.maxMemKb) || config.maxMemKb;
    nb.setMaxMem(domid, target + MAXMEM_CONSTANT_KB);
    if (!hvm) nb.setMemmapLimit(domid, config.maxMemKb + num(obj(bi['type.pv'])['slack_memkb'], 0));
    const storePort = nb.evtchnAllocUnbound(domid, 0);
    const consolePort = nb.evtchnAllocUnbound(domid, 0);
    if (hvm) {
      xen.hvmParamSet(domid, HvmParam.STORE_EVTCHN, BigInt(storePort));
      xen.hvmParamSet(domid, HvmParam.CONSOLE_EVTCHN, BigInt(consolePort));
    }
    return { domid, b: { config, hvm, uuid, storePort, consolePort, pendingName: null, devices } };
  } catch (e) {
    destroyKeepingError(xen, domid);
    throw e;
  }
}

/** The xenstore skeleton of a new domain: /local/domain/N with its guest-writable dirs, /vm/<uuid>, /libxl/N/type. */
async function writeSkeleton(
  s: Xenstore,
  domid: number,
  b: Built,
  alive: (d: number) => boolean,
): Promise<void> {
  const dom = `/local/domain/${domid}`;
  const vm = `/vm/${b.uuid}`;
  const ro: XsPerm[] = ['n0', `r${domid}`];
  const rw: XsPerm[] = ['n0', `b${domid}`];
  await s.rm(dom);
  await s.mkdir(dom);
  await s.setPerms(dom, ro);
  await s.mkdir(vm);
  await s.setPerms(vm, ro);
  // libxl builds an incoming domain as "<name>--incoming" and renames it when cleared; here only
  // while another domain (the migration's source on this host) holds the name
  const holder = (n: string, except?: number) => holderIn(s, n, except, alive);
  const { name, pending } = await nameForNewDomain({ holder }, domid, b.config.name ?? `xenmig-${domid}`);
  b.pendingName = pending;
  await s.write(`${vm}/uuid`, b.uuid);
  await s.write(`${vm}/name`, name);
  await s.write(`${dom}/vm`, vm);
  await s.write(`${dom}/name`, name);
  await s.write(`${dom}/domid`, String(domid));
  for (const d of ['cpu', 'memory']) {
    await s.mkdir(`${dom}/${d}`);
    await s.setPerms(`${dom}/${d}`, ro);
  }
  const writable = ['device', 'control', 'data', 'drivers', 'feature', 'attr', 'error'];
  for (const d of [...writable, 'device/suspend/event-channel', 'control/shutdown', 'control/sysrq']) {
    await s.mkdir(`${dom}/${d}`);
    await s.setPerms(`${dom}/${d}`, rw);
  }
  await s.mkdir(`/libxl/${domid}`);
  await s.setPerms(`/libxl/${domid}`, ['n0']);
  await s.write(`/libxl/${domid}/type`, b.config.kind);
}

/** libxl's stored config: `xl list -l` shows it and a later save carries the real config. */
function storeLibxlConfig(domid: number, b: Built, libDir: string | undefined): void {
  const json = structuredClone(b.config.json) as Record<string, unknown>;
  json['c_info'] = {
    ...obj(json['c_info']),
    uuid: b.uuid,
    ...(b.config.name ? { name: b.config.name } : {}),
  };
  try {
    writeLibxlStoredConfig(domid, b.uuid, json, libDir);
  } catch {
    /* no libxl directory here: the domain works without it */
  }
}

/** Where the restored guest keeps its xenstore and console rings (PVH: HVM params; PV: start info via vCPU 0's rdx). */
function ringFrames(xen: Hypervisor, domid: number, b: Built): { storeGfn: number; consoleGfn: number } {
  if (b.hvm) {
    const storeGfn = Number(xen.hvmParamGet(domid, HvmParam.STORE_PFN));
    return { storeGfn, consoleGfn: Number(xen.hvmParamGet(domid, HvmParam.CONSOLE_PFN)) };
  }
  const ctx = xen.vcpuContextGet(domid, 0);
  const si = new DataView(ctx.buffer, ctx.byteOffset, ctx.byteLength).getBigUint64(VCPU64_RDX, true);
  const m = xen.map(domid, BigUint64Array.of(si), 'r');
  try {
    if (m.errors[0]) {
      const msg = `cannot map start info mfn ${si}: errno ${m.errors[0]}`;
      throw new MigrationError(MigrationErrorCode.ERR_UNSUPPORTED, msg, { domid });
    }
    const v = new DataView(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength);
    const storeGfn = Number(v.getBigUint64(START_INFO_STORE_MFN, true));
    return { storeGfn, consoleGfn: Number(v.getBigUint64(START_INFO_CONSOLE_MFN, true)) };
  } finally {
    m.unmap();
  }
}

/** memory, store and cpu entries of the restored domain. */
async function writeDomainEntries(s: Xenstore, domid: number, b: Built, storeGfn: number): Promise<void> {
  const bi = obj(b.config.json['b_info']);
  const dom = `/local/domain/${domid}`;
  await s.write(`${dom}/memory/static-max`, String(b.config.maxMemKb));
  await s.write(`${dom}/memory/target`, String(num(bi['target_memkb'], b.config.maxMemKb)));
  await s.write(`${dom}/memory/videoram`, String(num(bi['video_memkb'], 0)));
  await s.write(`${dom}/store/port`, String(b.storePort));
  await s.write(`${dom}/store/ring-ref`, String(storeGfn));
  for (let i = 0; i < b.config.maxVcpus; i++) await s.write(`${dom}/cpu/${i}/availability`, 'online');
}

/** The primary console, served by xenconsoled (libxl__device_console_add's entries). */
async function writeConsoleEntries(s: Xenstore, domid: number, b: Built, consoleGfn: number): Promise<void> {
  const con = `/local/domain/${domid}/console`;
  const be = `/local/domain/0/backend/console/${domid}/0`;
  await s.mkdir(con);
  await s.setPerms(con, ['n0', `r${domid}`]);
  const frontend = [
    ['backend', be],
    ['backend-id', '0'],
    ['limit', '1048576'],
    ['type', 'xenconsoled'],
    ['output', 'pty'],
    ['tty', ''],
    ['port', String(b.consolePort)],
    ['ring-ref', String(consoleGfn)],
  ] as const;
  for (const [k, v] of frontend) await s.write(`${con}/${k}`, v);
  await s.mkdir(be);
  await s.setPerms(be, ['n0', `r${domid}`]);
  const backend = [
    ['frontend', con],
    ['frontend-id', String(domid)],
    ['online', '1'],
    ['state', '1'],
    ['protocol', 'vt100'],
  ] as const;
  for (const [k, v] of backend) await s.write(`${be}/${k}`, v);
}
