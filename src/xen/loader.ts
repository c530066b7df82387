// Finds and loads the native addon (native/, built by binding.gyp or native/CMakeLists.txt).
//
// Flavours: 'system' (xenmig_system.node, the installed libxenctrl) and 'mock'
// (xenmig_mock.node, docker/mock's libxenctrl). Default: 'system' when /dev/xen/privcmd exists,
// else 'mock'; overridden by the `flavour` option, then by XENMIG_FLAVOUR=system|mock.
// Search order: the `path` option, XENMIG_ADDON_PATH (a .node file or a directory), then the
// package's build/Release, build/Debug, build/cmake/Release, build/cmake/Debug (cmake-js).
// A failure names every path tried and why it was not used.
import { existsSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DomainType, Hypervisor } from './types.js';

export type Flavour = 'system' | 'mock';

/** Raw per-domain info as the addon returns it (DomainInfo minus maxPfn/guestWidth/type). */
export interface NativeDomainInfo {
  domid: number;
  hvm: boolean;
  dying: boolean;
  paused: boolean;
  running: boolean;
  blocked: boolean;
  shutdown: boolean;
  shutdownReason: number;
  hap: boolean;
  totPages: number;
  maxPages: number;
  sharedInfoFrame: number;
  maxVcpuId: number;
  onlineVcpus: number;
  /** xen_domain_handle_t (the domain's uuid; all zeros when none was given) */
  handle?: Uint8Array;
  /** ns of CPU the domain's vCPUs have used (0: never ran) */
  cpuTime?: number;
}

export interface NativeMapping {
  readonly buffer: ArrayBuffer;
  readonly errors?: Int32Array;
  readonly pages: number;
  readonly maxMfn?: number;
  readonly mapped: boolean;
  readonly inflight: number;
  /** detaches `buffer`; true when the memory is released now, false when deferred to in-flight I/O */
  unmap(): boolean;
}

/** The native calls whose signature is the typed Hypervisor's own (hypervisor.ts validates, then passes through). */
type PassThroughCalls = Pick<
  Hypervisor,
  | 'close'
  | 'pause'
  | 'unpause'
  | 'resume'
  | 'shutdown'
  | 'destroy'
  | 'nrGpfns'
  | 'maxGpfn'
  | 'pfnTypes'
  | 'populatePhysmap'
  | 'pinTables'
  | 'vcpuContextGet'
  | 'vcpuContextSet'
  | 'vcpuExtendedGet'
  | 'vcpuExtendedSet'
  | 'vcpuXsaveGet'
  | 'vcpuXsaveSet'
  | 'vcpuMsrsGet'
  | 'vcpuMsrsSet'
  | 'vcpuOnline'
  | 'hvmContextGet'
  | 'hvmContextSet'
  | 'hvmParamGet'
  | 'hvmParamSet'
  | 'tscInfoGet'
  | 'cpuPolicySet'
>;

/**
 * The addon's Interface class (native/src/interface.cc): the Hypervisor's calls where they are the
 * same, and below the raw ones the typed wrapper (hypervisor.ts) shapes.
 */
export interface NativeInterface extends PassThroughCalls {
  lastLog(): string[];
  /** major << 16 | minor */
  version(): number;
  domainInfo(domid: number): NativeDomainInfo;
  listDomains(): NativeDomainInfo[];
  guestWidth(domid: number): number;
  shadowControl(domid: number, op: number): void;
  logDirty(domid: number, op: number, bitmap: Uint8Array, pages: number, mode: number): [number, number];
  map(domid: number, frames: BigUint64Array, prot: number): NativeMapping & { errors: Int32Array };
  mapM2p(): NativeMapping & { maxMfn: number };
  tscInfoSet(domid: number, mode: number, elapsedNsec: bigint, gtscKhz: number, incarnation: number): void;
  cpuPolicyGet(domid: number): [Uint8Array, Uint8Array];
}

/**
 * Every method of NativeInterface (the compiler checks that none is missing or extra): the loader
 * refuses an addon whose Interface lacks one (a build older than these sources).
 */
const NATIVE_INTERFACE_METHODS: Record<keyof NativeInterface, true> = {
  close: true,
  lastLog: true,
  version: true,
  domainInfo: true,
  listDomains: true,
  pause: true,
  unpause: true,
  resume: true,
  shutdown: true,
  destroy: true,
  nrGpfns: true,
  maxGpfn: true,
  guestWidth: true,
  shadowControl: true,
  logDirty: true,
  map: true,
  pfnTypes: true,
  populatePhysmap: true,
  mapM2p: true,
  pinTables: true,
  vcpuContextGet: true,
  vcpuContextSet: true,
  vcpuExtendedGet: true,
  vcpuExtendedSet: true,
  vcpuXsaveGet: true,
  vcpuXsaveSet: true,
  vcpuMsrsGet: true,
  vcpuMsrsSet: true,
  vcpuOnline: true,
  hvmContextGet: true,
  hvmContextSet: true,
  hvmParamGet: true,
  hvmParamSet: true,
  tscInfoGet: true,
  tscInfoSet: true,
  cpuPolicyGet: true,
  cpuPolicySet: true,
};

/** The NativeInterface methods an addon's Interface class lacks (none for a current build). */
export function missingNativeMethods(addon: Pick<NativeAddon, 'Interface'>): string[] {
  const proto = addon.Interface.prototype as Record<string, unknown>;
  return Object.keys(NATIVE_INTERFACE_METHODS).filter((m) => typeof proto[m] !== 'function');
}

/** A real host's domain builder calls (native/src/builder.cc; the system flavour only). */
export interface NativeBuilder {
  createDomain(
    flags: number,
    maxVcpus: number,
    emulationFlags: number,
    handle: Uint8Array,
    maxGrantFrames: number,
    maxMaptrackFrames: number,
    grantVersion: number,
    maxEvtchnPort: number,
  ): number;
  setMaxVcpus(domid: number, maxVcpus: number): void;
  setMaxMem(domid: number, kb: number): void;
  setMemmapLimit(domid: number, kb: number): void;
  evtchnAllocUnbound(domid: number, remote: number): number;
  gnttabSeed(
    domid: number,
    hvm: boolean,
    consoleGfn: number,
    storeGfn: number,
    consoleDomid: number,
    storeDomid: number,
  ): void;
}

export interface NativeMock {
  DOMAIN_PV: number;
  DOMAIN_HVM: number;
  setHost(dir: string | null): void;
  host(): string;
  domainCreate(type: number, pages: number, vcpus: number, populate: boolean): number;
  domainDestroy(domid: number): void;
  domainList(): number[];
  setMaxMem(domid: number, maxMemKb: number): void;
  guestWrite(domid: number, pfn: number, offset: number, data: Uint8Array): void;
  checksum(domid: number): Uint8Array;
  workloadStart(
    domid: number,
    rate: number,
    hot: number,
    seed: number,
    durationMs: number,
  ): [number, Promise<number>];
  workloadStop(id: number): void;
}

/** Generic netlink sockets (native/src/netlink.cc): no message is built or parsed natively. */
export interface NativeNetlink {
  open(protocol: number, rcvbuf: number): number;
  /** sends `message`, then stores the replies already queued into `out` (>= 32 KiB; empty = send only) */
  request(fd: number, message: Uint8Array, out: Uint8Array): number;
  /** stores what is queued (>= 32 KiB buffer), without blocking */
  recv(fd: number, out: Uint8Array): number;
  close(fd: number): void;
}

export interface NativeAddon {
  readonly flavour: Flavour;
  readonly sizes: {
    vcpuContext: number;
    vcpuContextX64: number;
    vcpuContextX32: number;
    extVcpuContext: number;
    vcpuMsr: number;
    cpuidLeaf: number;
    msrEntry: number;
  };
  readonly build: { domctlInterfaceVersion: number; getinfoSingle: boolean };
  /** fcntl(fd, F_OFD_SETLK) on the whole file, never waiting: op 0 unlock, 1 exclusive, 2 shared; false = held elsewhere */
  lockFile?(fd: number, op: 0 | 1 | 2): boolean;
  /** fcntl(fd, F_SETPIPE_SZ, bytes): the pipe's capacity afterwards (absent from older builds) */
  setPipeSize?(fd: number, bytes: number): number;
  Interface: new () => NativeInterface;
  Mapping: abstract new () => NativeMapping;
  writePages(fd: number, header: Uint8Array, m: NativeMapping, indices: Uint32Array): Promise<number>;
  readPages(fd: number, m: NativeMapping, indices: Uint32Array): Promise<number>;
  mock?: NativeMock;
  /** the system flavour only (the mock host builds domains through `mock`) */
  builder?: NativeBuilder;
  /** absent from addons built before netlink.cc existed */
  netlink?: NativeNetlink;
}

export interface LoadOptions {
  flavour?: Flavour;
  /** a .node file, or a directory holding xenmig_<flavour>.node */
  path?: string;
}

export interface LoadedAddon {
  addon: NativeAddon;
  flavour: Flavour;
  path: string;
}

/** The repository / package root (this file is src/xen/loader.ts or dist/xen/loader.js). */
export const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export const PRIVCMD = '/dev/xen/privcmd';

function parseFlavour(v: string, from: string): Flavour {
  if (v === 'system' || v === 'mock') return v;
  throw new TypeError(`${from} must be 'system' or 'mock', got ${JSON.stringify(v)}`);
}

/** The flavour to load: option, else XENMIG_FLAVOUR, else system iff /dev/xen/privcmd exists. */
export function selectFlavour(opt?: Flavour): Flavour {
  if (opt !== undefined) return parseFlavour(opt, 'flavour');
  const env = process.env.XENMIG_FLAVOUR;
  if (env) return parseFlavour(env, 'XENMIG_FLAVOUR');
  return existsSync(PRIVCMD) ? 'system' : 'mock';
}

/** Every path the loader would try for `flavour`, in order. */
export function candidatePaths(flavour: Flavour, opts: LoadOptions = {}): string[] {
  const file = `xenmig_${flavour}.node`;
  const out: string[] = [];
  const add = (p: string) => {
    const abs = resolve(p);
    out.push(abs.endsWith('.node') && !isDir(abs) ? abs : join(abs, file));
  };
  if (opts.path) add(opts.path);
  if (process.env.XENMIG_ADDON_PATH) add(process.env.XENMIG_ADDON_PATH);
  for (const d of ['build/Release', 'build/Debug', 'build/cmake/Release', 'build/cmake/Debug'])
    out.push(join(packageRoot, d, file));
  return out;
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

const requireNative = createRequire(import.meta.url);
const cache = new Map<string, NativeAddon>();

export class AddonLoadError extends Error {
  readonly code = 'ERR_XENMIG_ADDON';
  constructor(
    readonly flavour: Flavour,
    readonly tried: { path: string; reason: string }[],
  ) {
    super(
      `cannot load the xenmig native addon (flavour '${flavour}'); tried:\n` +
        tried.map((t) => `  ${t.path}: ${t.reason}`).join('\n') +
        `\nbuild it with 'npm run build:native' (or set XENMIG_ADDON_PATH)`,
    );
    this.name = 'AddonLoadError';
  }
}

/** Loads the addon of the selected flavour; throws AddonLoadError naming every path tried. */
export function loadAddon(opts: LoadOptions = {}): LoadedAddon {
  const flavour = selectFlavour(opts.flavour);
  const tried: { path: string; reason: string }[] = [];
  for (const path of candidatePaths(flavour, opts)) {
    const cached = cache.get(path);
    if (cached && cached.flavour === flavour) return { addon: cached, flavour, path };
    if (!existsSync(path)) {
      tried.push({ path, reason: 'not found' });
      continue;
    }
    let addon: NativeAddon;
    try {
      addon = cached ?? (requireNative(path) as NativeAddon);
    } catch (e) {
      tried.push({ path, reason: `load failed: ${(e as Error).message.split('\n')[0]}` });
      continue;
    }
    if (addon.flavour !== flavour) {
      tried.push({ path, reason: `is the '${addon.flavour}' flavour, not '${flavour}'` });
      continue;
    }
    const missing = missingNativeMethods(addon);
    if (missing.length > 0) {
      tried.push({ path, reason: `is older than these sources (no ${missing.join(', ')})` });
      continue;
    }
    cache.set(path, addon);
    return { addon, flavour, path };
  }
  throw new AddonLoadError(flavour, tried);
}

export const DOMAIN_TYPE_CODE: Record<DomainType, number> = { pv: 1, hvm: 2 };

/**
 * The addon's setPipeSize (either flavour has it: it is no Xen call), found on first use; null when
 * no addon with it loads. For src/transport/pipe.ts, through setPipeSizer (src/api.ts).
 */
export function addonPipeSizer(): ((fd: number, bytes: number) => number) | null {
  for (const flavour of ['system', 'mock'] as const) {
    try {
      const { addon } = loadAddon({ flavour });
      if (typeof addon.setPipeSize === 'function') return addon.setPipeSize.bind(addon);
    } catch {
      /* the other flavour may load */
    }
  }
  return null;
}
