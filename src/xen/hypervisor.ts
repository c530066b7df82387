// The Hypervisor interface (types.ts) over the native addon. TypeScript owns validation and state;
// every native call is flat and receives arguments already checked here, so a bad argument is a
// TypeError/RangeError naming the parameter and native code only ever fails with a XenError.
import type {
  DomainInfo,
  DomainType,
  Hypervisor,
  LogDirtyStats,
  Mapping,
  MockHost,
  Prot,
  TscInfo,
  XenError,
} from './types.js';
import {
  DOMAIN_TYPE_CODE,
  loadAddon,
  type Flavour,
  type LoadOptions,
  type NativeAddon,
  type NativeBuilder,
  type NativeDomainInfo,
  type NativeInterface,
  type NativeMapping,
  type NativeMock,
} from './loader.js';

import { HVM_NR_PARAMS, PAGE_SIZE, ShutdownReason } from './constants.js';

export { HVM_NR_PARAMS, PAGE_SIZE };
/** Domain ids >= DOMID_FIRST_RESERVED (0x7FF0) name no ordinary domain. */
export const DOMID_FIRST_RESERVED = 0x7ff0;
/** x86-64 Xen: 52-bit physical addresses, so frame numbers are below 2^40. */
export const MAX_FRAME = 2n ** 40n - 1n;
export const MAX_PAGES = 2 ** 40;
export const MAX_VCPU_ID = 0xffff;
/** Entries per pfnTypes / populatePhysmap hypercall (Xen refuses more than 1024 page types). */
const BATCH = 1024;
/** Most pages one map() call takes (4 GiB of address space). */
export const MAX_MAP_PAGES = 1 << 20;
/** Most page tables one pinTables() call takes (libxc's MAX_PIN_BATCH). */
export const MAX_PIN_BATCH = 1024;

export const SHADOW_OP_OFF = 0;
export const SHADOW_OP_ENABLE_LOGDIRTY = 2;
export const SHADOW_OP_CLEAN = 11;
export const SHADOW_OP_PEEK = 12;
export const SHADOW_LOGDIRTY_FINAL = 1;

export const SHUTDOWN = {
  poweroff: ShutdownReason.POWEROFF,
  reboot: ShutdownReason.REBOOT,
  suspend: ShutdownReason.SUSPEND,
  crash: ShutdownReason.CRASH,
  watchdog: ShutdownReason.WATCHDOG,
  soft_reset: ShutdownReason.SOFT_RESET,
} as const;

const PROT_READ = 1;
const PROT_WRITE = 2;

/** true for the errors native calls throw (code, errno, syscall). */
export function isXenError(e: unknown): e is XenError {
  return (
    e instanceof Error &&
    typeof (e as XenError).code === 'string' &&
    typeof (e as XenError).errno === 'number' &&
    typeof (e as XenError).syscall === 'string'
  );
}

// ---- argument checks -------------------------------------------------------------------------

function describe(v: unknown): string {
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'string') return JSON.stringify(v);
  if (v === null || typeof v !== 'object') return String(v);
  return Object.prototype.toString.call(v);
}

function integer(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number') throw new TypeError(`${name} must be a number, got ${describe(v)}`);
  if (!Number.isInteger(v)) throw new TypeError(`${name} must be an integer, got ${describe(v)}`);
  if (v < min || v > max) throw new RangeError(`${name} must be in ${min}..${max}, got ${v}`);
  return v;
}

function checkDomid(v: unknown): number {
  return integer('domid', v, 0, DOMID_FIRST_RESERVED - 1);
}

function checkVcpu(v: unknown): number {
  return integer('vcpu', v, 0, MAX_VCPU_ID);
}

function u32(name: string, v: unknown): number {
  return integer(name, v, 0, 0xffffffff);
}

function u64(name: string, v: unknown): bigint {
  if (typeof v !== 'bigint') throw new TypeError(`${name} must be a bigint, got ${describe(v)}`);
  if (v < 0n || v > 0xffffffffffffffffn) throw new RangeError(`${name} must be in 0..2^64-1, got ${v}`);
  return v;
}

function bytes(
  name: string,
  v: unknown,
  opts: { min?: number; max?: number; multiple?: number } = {},
): Uint8Array {
  if (!(v instanceof Uint8Array)) throw new TypeError(`${name} must be a Uint8Array, got ${describe(v)}`);
  const { min = 0, max = Infinity, multiple = 1 } = opts;
  if (v.byteLength < min || v.byteLength > max)
    throw new RangeError(
      `${name} must be ${min === max ? `${min}` : `${min}..${max === Infinity ? '' : max}`} bytes, got ${v.byteLength}`,
    );
  if (v.byteLength % multiple !== 0)
    throw new RangeError(`${name} must be a multiple of ${multiple} bytes, got ${v.byteLength}`);
  return v;
}

function frames(name: string, v: unknown, maxLen = Infinity): BigUint64Array {
  if (!(v instanceof BigUint64Array))
    throw new TypeError(`${name} must be a BigUint64Array, got ${describe(v)}`);
  if (v.length === 0) throw new RangeError(`${name} must not be empty`);
  if (v.length > maxLen) throw new RangeError(`${name} has ${v.length} entries, at most ${maxLen} allowed`);
  // through 32-bit halves: reading a BigUint64Array element makes a BigInt, and a million of them
  // per round cost seconds on an emulated CPU (test/realxen bench: 7 s of a save's page walk)
  const w = new Uint32Array(v.buffer, v.byteOffset, v.length * 2);
  const hi = HOST_LE ? 1 : 0;
  for (let i = 0; i < v.length; i++)
    if (w[2 * i + hi]! > MAX_FRAME_HI)
      throw new RangeError(`${name}[${i}] = ${v[i]} is beyond the largest frame number ${MAX_FRAME}`);
  return v;
}
const HOST_LE = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
/** the high 32 bits of MAX_FRAME (2^40 - 1): a frame is valid when its high half is at most this */
const MAX_FRAME_HI = Number(MAX_FRAME >> 32n);

function checkFd(v: unknown): number {
  return integer('fd', v, 0, 0x7fffffff);
}

/** Bytes a log-dirty bitmap for `pages` pages needs: whole 64-bit words. */
export function bitmapBytes(pages: number): number {
  return Math.ceil(pages / 64) * 8;
}

// ---- Mapping ---------------------------------------------------------------------------------

class NativeBackedMapping implements Mapping {
  readonly bytes: Uint8Array;
  readonly errors: Int32Array;
  readonly pages: number;

  constructor(
    readonly domid: number,
    readonly prot: Prot,
    /** @internal */ readonly native: NativeMapping & { errors: Int32Array },
    readonly owner: NativeHypervisor,
  ) {
    this.bytes = new Uint8Array(native.buffer);
    this.errors = native.errors;
    this.pages = native.pages;
  }

  get mapped(): boolean {
    return this.native.mapped;
  }

  /** Detaches `bytes` (length 0 from now on) and unmaps; deferred while page I/O is in flight. */
  unmap(): void {
    this.native.unmap();
  }

  [Symbol.dispose](): void {
    this.unmap();
  }
}

function checkMapping(hv: NativeHypervisor, m: unknown, write: boolean): NativeBackedMapping {
  if (!(m instanceof NativeBackedMapping) || m.owner !== hv)
    throw new TypeError('mapping must be a Mapping returned by this hypervisor handle');
  if (!m.mapped) throw new TypeError('mapping has been unmapped');
  if (write && m.prot !== 'rw') throw new TypeError("readPages needs a mapping made with prot 'rw'");
  return m;
}

function checkIndices(m: NativeBackedMapping, v: unknown): Uint32Array {
  if (!(v instanceof Uint32Array)) throw new TypeError(`indices must be a Uint32Array, got ${describe(v)}`);
  for (let i = 0; i < v.length; i++) {
    const p = v[i]!;
    if (p >= m.pages) throw new RangeError(`indices[${i}] = ${p} is beyond the mapping's ${m.pages} pages`);
    if (m.errors[p] !== 0)
      throw new RangeError(`indices[${i}] = ${p} names a page that failed to map (errno ${m.errors[p]})`);
  }
  return v;
}

/** 16 handle bytes as Xen prints a uuid (8-4-4-4-12 lower-case hex). */
export function uuidText(h: Uint8Array): string {
  const x = Buffer.from(h.buffer, h.byteOffset, h.byteLength).toString('hex').padEnd(32, '0');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

// ---- Hypervisor ------------------------------------------------------------------------------

export interface OpenOptions extends LoadOptions {}

export class NativeHypervisor implements Hypervisor {
  readonly flavour: Flavour;
  /** @internal */ protected readonly addon: NativeAddon;
  /** @internal */ protected readonly native: NativeInterface;
  #closed = false;

  constructor(addon: NativeAddon) {
    this.addon = addon;
    this.flavour = addon.flavour;
    this.native = new addon.Interface();
  }

  /**
   * A real host's domain builder calls (native/src/builder.cc), through the addon this handle was
   * opened with and with arguments checked here like every other call; null when the addon has none
   * (the mock flavour builds domains through its host API).
   */
  builderCalls(): NativeBuilder | null {
    const b = this.addon.builder;
    if (!b) return null;
    const kb = (name: string, v: unknown) => integer(name, v, 0, Number.MAX_SAFE_INTEGER);
    const gfn = (name: string, v: unknown) => integer(name, v, 0, MAX_PAGES - 1);
    const i32 = (name: string, v: unknown) => integer(name, v, 0, 0x7fffffff);
    return {
      createDomain: (
        flags,
        maxVcpus,
        emulationFlags,
        handle,
        grantFrames,
        maptrackFrames,
        grantVersion,
        maxEvtchnPort,
      ) =>
        b.createDomain(
          u32('flags', flags),
          integer('maxVcpus', maxVcpus, 1, MAX_VCPU_ID + 1),
          u32('emulationFlags', emulationFlags),
          bytes('handle', handle, { min: 16, max: 16 }),
          i32('maxGrantFrames', grantFrames),
          i32('maxMaptrackFrames', maptrackFrames),
          u32('grantVersion', grantVersion),
          u32('maxEvtchnPort', maxEvtchnPort),
        ),
      setMaxVcpus: (domid, n) => b.setMaxVcpus(checkDomid(domid), integer('maxVcpus', n, 1, MAX_VCPU_ID + 1)),
      setMaxMem: (domid, v) => b.setMaxMem(checkDomid(domid), kb('maxMemKb', v)),
      setMemmapLimit: (domid, v) => b.setMemmapLimit(checkDomid(domid), kb('memKb', v)),
      evtchnAllocUnbound: (domid, remote) => b.evtchnAllocUnbound(checkDomid(domid), checkDomid(remote)),
      gnttabSeed: (domid, hvm, consoleGfn, storeGfn, consoleDomid, storeDomid) => {
        if (typeof hvm !== 'boolean') throw new TypeError(`hvm must be a boolean, got ${describe(hvm)}`);
        b.gnttabSeed(
          checkDomid(domid),
          hvm,
          gfn('consoleGfn', consoleGfn),
          gfn('storeGfn', storeGfn),
          checkDomid(consoleDomid),
          checkDomid(storeDomid),
        );
      },
    };
  }

  /** libxen's recent log lines on this handle (most recent last). */
  log(): string[] {
    return this.native.lastLog();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.native.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  version(): { major: number; minor: number } {
    const v = this.native.version();
    return { major: v >>> 16, minor: v & 0xffff };
  }

  #info(raw: NativeDomainInfo): DomainInfo {
    const type: DomainType = raw.hvm ? 'hvm' : 'pv';
    return {
      domid: raw.domid,
      type,
      dying: raw.dying,
      paused: raw.paused,
      running: raw.running,
      blocked: raw.blocked,
      shutdown: raw.shutdown,
      shutdownReason: raw.shutdown ? raw.shutdownReason : null,
      hap: raw.hap,
      totPages: raw.totPages,
      maxPages: raw.maxPages,
      sharedInfoFrame: raw.sharedInfoFrame,
      maxVcpuId: raw.maxVcpuId,
      onlineVcpus: raw.onlineVcpus,
      // XENMEM_maximum_gpfn: HVM the highest mapped gfn (nr_gpfns - 1); PV Xen answers
      // shared_info.arch.max_pfn - 1, the guest's own max pfn.
      maxPfn: this.native.maxGpfn(raw.domid),
      guestWidth: type === 'hvm' ? 8 : this.native.guestWidth(raw.domid),
      ...(raw.handle ? { uuid: uuidText(raw.handle) } : {}),
      ...(raw.cpuTime !== undefined ? { cpuTime: raw.cpuTime } : {}),
    };
  }

  domainInfo(domid: number): DomainInfo {
    return this.#info(this.native.domainInfo(checkDomid(domid)));
  }

  listDomains(): DomainInfo[] {
    const out: DomainInfo[] = [];
    for (const raw of this.native.listDomains()) {
      try {
        out.push(this.#info(raw));
      } catch (e) {
        if (isXenError(e) && e.code === 'ESRCH') continue; // went away while listing
        throw e;
      }
    }
    return out;
  }

  pause(domid: number): void {
    this.native.pause(checkDomid(domid));
  }
  unpause(domid: number): void {
    this.native.unpause(checkDomid(domid));
  }
  resume(domid: number, fast: boolean): void {
    checkDomid(domid);
    if (typeof fast !== 'boolean') throw new TypeError(`fast must be a boolean, got ${describe(fast)}`);
    this.native.resume(domid, fast);
  }
  shutdown(domid: number, reason: number): void {
    this.native.shutdown(checkDomid(domid), integer('reason', reason, 0, 255));
  }
  destroy(domid: number): void {
    this.native.destroy(checkDomid(domid));
  }

  nrGpfns(domid: number): number {
    return this.native.nrGpfns(checkDomid(domid));
  }
  maxGpfn(domid: number): number {
    return this.native.maxGpfn(checkDomid(domid));
  }

  /** XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY; as libxc, on failure switch shadow mode off and retry once. */
  logDirtyEnable(domid: number): void {
    checkDomid(domid);
    try {
      this.native.shadowControl(domid, SHADOW_OP_ENABLE_LOGDIRTY);
    } catch (first) {
      // EOPNOTSUPP: no shadow paging for this (PV) guest; retrying cannot help, and OFF would fail
      // with EINVAL and hide the cause (seen on Debian's Xen 4.17, test/realxen).
      if (!isXenError(first) || first.code === 'ESRCH' || first.code === 'EOPNOTSUPP') throw first;
      try {
        this.native.shadowControl(domid, SHADOW_OP_OFF);
      } catch {
        throw first;
      }
      this.native.shadowControl(domid, SHADOW_OP_ENABLE_LOGDIRTY);
    }
  }
  logDirtyOff(domid: number): void {
    this.native.shadowControl(checkDomid(domid), SHADOW_OP_OFF);
  }

  #logDirty(domid: number, op: number, bitmap: Uint8Array, pages: number, mode: number): LogDirtyStats {
    checkDomid(domid);
    integer('pages', pages, 1, MAX_PAGES);
    if (!(bitmap instanceof Uint8Array))
      throw new TypeError(`bitmap must be a Uint8Array, got ${describe(bitmap)}`);
    const need = bitmapBytes(pages);
    if (bitmap.byteLength < need)
      throw new RangeError(`bitmap too small: ${pages} pages need ${need} bytes, got ${bitmap.byteLength}`);
    const [faultCount, dirtyCount] = this.native.logDirty(domid, op, bitmap, pages, mode);
    return { faultCount, dirtyCount };
  }
  logDirtyClean(domid: number, bitmap: Uint8Array, pages: number, final = false): LogDirtyStats {
    if (typeof final !== 'boolean') throw new TypeError(`final must be a boolean, got ${describe(final)}`);
    return this.#logDirty(domid, SHADOW_OP_CLEAN, bitmap, pages, final ? SHADOW_LOGDIRTY_FINAL : 0);
  }
  logDirtyPeek(domid: number, bitmap: Uint8Array, pages: number): LogDirtyStats {
    return this.#logDirty(domid, SHADOW_OP_PEEK, bitmap, pages, 0);
  }

  map(domid: number, frameList: BigUint64Array, prot: Prot): Mapping {
    checkDomid(domid);
    frames('frames', frameList, MAX_MAP_PAGES);
    if (prot !== 'r' && prot !== 'rw') throw new TypeError(`prot must be 'r' or 'rw', got ${describe(prot)}`);
    const n = this.native.map(domid, frameList, prot === 'rw' ? PROT_READ | PROT_WRITE : PROT_READ);
    return new NativeBackedMapping(domid, prot, n, this);
  }

  writePages(fd: number, header: Uint8Array, m: Mapping, indices: Uint32Array): Promise<number> {
    try {
      checkFd(fd);
      bytes('header', header);
      const nm = checkMapping(this, m, false);
      checkIndices(nm, indices);
      return this.addon.writePages(fd, header, nm.native, indices);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  readPages(fd: number, m: Mapping, indices: Uint32Array): Promise<number> {
    try {
      checkFd(fd);
      const nm = checkMapping(this, m, true);
      checkIndices(nm, indices);
      return this.addon.readPages(fd, nm.native, indices);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** In place, in batches of 1024 (Xen's XEN_DOMCTL_getpageframeinfo3 limit). */
  pfnTypes(domid: number, frameList: BigUint64Array): void {
    checkDomid(domid);
    frames('frames', frameList);
    for (let i = 0; i < frameList.length; i += BATCH)
      this.native.pfnTypes(domid, frameList.subarray(i, Math.min(i + BATCH, frameList.length)));
  }

  /** Order-0 extents, in batches of 1024; PV: in place, gfns become the allocated mfns. */
  populatePhysmap(domid: number, gfns: BigUint64Array): void {
    checkDomid(domid);
    frames('gfns', gfns);
    for (let i = 0; i < gfns.length; i += BATCH)
      this.native.populatePhysmap(domid, gfns.subarray(i, Math.min(i + BATCH, gfns.length)));
  }

  mapM2p(): { table: BigUint64Array; maxMfn: number; unmap(): void } {
    const n = this.native.mapM2p();
    const table = new BigUint64Array(n.buffer);
    return { table, maxMfn: n.maxMfn, unmap: () => void n.unmap() };
  }

  pinTables(domid: number, mfns: BigUint64Array, levels: Uint8Array): void {
    checkDomid(domid);
    frames('mfns', mfns, MAX_PIN_BATCH);
    if (!(levels instanceof Uint8Array))
      throw new TypeError(`levels must be a Uint8Array, got ${describe(levels)}`);
    if (levels.length !== mfns.length)
      throw new RangeError(`levels has ${levels.length} entries, mfns ${mfns.length}`);
    for (let i = 0; i < levels.length; i++)
      if (levels[i]! < 1 || levels[i]! > 4)
        throw new RangeError(`levels[${i}] = ${levels[i]} is not a page-table level 1..4`);
    this.native.pinTables(domid, mfns, levels);
  }

  vcpuContextGet(domid: number, vcpu: number): Uint8Array {
    return this.native.vcpuContextGet(checkDomid(domid), checkVcpu(vcpu));
  }
  vcpuContextSet(domid: number, vcpu: number, ctx: Uint8Array): void {
    checkDomid(domid);
    checkVcpu(vcpu);
    this.native.vcpuContextSet(domid, vcpu, bytes('ctx', ctx, { min: 1, max: this.addon.sizes.vcpuContext }));
  }
  vcpuExtendedGet(domid: number, vcpu: number): Uint8Array {
    return this.native.vcpuExtendedGet(checkDomid(domid), checkVcpu(vcpu));
  }
  vcpuExtendedSet(domid: number, vcpu: number, ctx: Uint8Array): void {
    checkDomid(domid);
    checkVcpu(vcpu);
    this.native.vcpuExtendedSet(
      domid,
      vcpu,
      bytes('ctx', ctx, { min: 8, max: this.addon.sizes.extVcpuContext }),
    );
  }
  vcpuXsaveGet(domid: number, vcpu: number): Uint8Array {
    return this.native.vcpuXsaveGet(checkDomid(domid), checkVcpu(vcpu));
  }
  vcpuXsaveSet(domid: number, vcpu: number, ctx: Uint8Array): void {
    checkDomid(domid);
    checkVcpu(vcpu);
    this.native.vcpuXsaveSet(domid, vcpu, bytes('ctx', ctx, { min: 1, multiple: 8 }));
  }
  vcpuMsrsGet(domid: number, vcpu: number): Uint8Array {
    return this.native.vcpuMsrsGet(checkDomid(domid), checkVcpu(vcpu));
  }
  vcpuMsrsSet(domid: number, vcpu: number, msrs: Uint8Array): void {
    checkDomid(domid);
    checkVcpu(vcpu);
    this.native.vcpuMsrsSet(domid, vcpu, bytes('msrs', msrs, { multiple: this.addon.sizes.vcpuMsr }));
  }
  vcpuOnline(domid: number, vcpu: number): boolean {
    return this.native.vcpuOnline(checkDomid(domid), checkVcpu(vcpu));
  }

  hvmContextGet(domid: number): Uint8Array {
    return this.native.hvmContextGet(checkDomid(domid));
  }
  hvmContextSet(domid: number, ctx: Uint8Array): void {
    checkDomid(domid);
    this.native.hvmContextSet(domid, bytes('ctx', ctx, { min: 1, max: 0x7fffffff }));
  }
  hvmParamGet(domid: number, index: number): bigint {
    return this.native.hvmParamGet(checkDomid(domid), integer('index', index, 0, HVM_NR_PARAMS - 1));
  }
  hvmParamSet(domid: number, index: number, value: bigint): void {
    checkDomid(domid);
    integer('index', index, 0, HVM_NR_PARAMS - 1);
    this.native.hvmParamSet(domid, index, u64('value', value));
  }
  tscInfoGet(domid: number): TscInfo {
    return this.native.tscInfoGet(checkDomid(domid));
  }
  tscInfoSet(domid: number, tsc: TscInfo): void {
    checkDomid(domid);
    if (typeof tsc !== 'object' || tsc === null)
      throw new TypeError(`tsc must be an object, got ${describe(tsc)}`);
    this.native.tscInfoSet(
      domid,
      u32('tsc.mode', tsc.mode),
      u64('tsc.elapsedNsec', tsc.elapsedNsec),
      u32('tsc.gtscKhz', tsc.gtscKhz),
      u32('tsc.incarnation', tsc.incarnation),
    );
  }
  cpuPolicyGet(domid: number): { cpuid: Uint8Array; msrs: Uint8Array } {
    const [cpuid, msrs] = this.native.cpuPolicyGet(checkDomid(domid));
    return { cpuid, msrs };
  }
  cpuPolicySet(domid: number, cpuid: Uint8Array, msrs: Uint8Array): void {
    checkDomid(domid);
    bytes('cpuid', cpuid, { multiple: this.addon.sizes.cpuidLeaf });
    bytes('msrs', msrs, { multiple: this.addon.sizes.msrEntry });
    this.native.cpuPolicySet(domid, cpuid, msrs);
  }
}

// ---- the mock host ---------------------------------------------------------------------------

export class MockHypervisor extends NativeHypervisor implements MockHost {
  readonly #mock: NativeMock;

  constructor(addon: NativeAddon) {
    super(addon);
    if (!addon.mock) throw new TypeError('the loaded addon has no mock host API');
    this.#mock = addon.mock;
  }

  get dir(): string {
    return this.#mock.host();
  }

  createDomain(opts: { type: DomainType; pages: number; vcpus?: number; populate?: boolean }): number {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
    const { type, pages, vcpus = 1, populate = true } = opts;
    if (type !== 'pv' && type !== 'hvm')
      throw new TypeError(`type must be 'pv' or 'hvm', got ${describe(type)}`);
    integer('pages', pages, 1, MAX_PAGES);
    integer('vcpus', vcpus, 1, MAX_VCPU_ID + 1);
    if (typeof populate !== 'boolean')
      throw new TypeError(`populate must be a boolean, got ${describe(populate)}`);
    return this.#mock.domainCreate(DOMAIN_TYPE_CODE[type], pages, vcpus, populate);
  }

  destroyDomain(domid: number): void {
    this.#mock.domainDestroy(checkDomid(domid));
  }

  /** The most memory the domain may hold (XEN_DOMCTL_max_mem, as a builder sets it), KiB. */
  setMaxMem(domid: number, maxMemKb: number): void {
    checkDomid(domid);
    integer('maxMemKb', maxMemKb, 4, MAX_PAGES * 4);
    this.#mock.setMaxMem(domid, maxMemKb);
  }

  /** The simulated host's domain ids, ascending (xenmig_mock_domain_list). */
  listDomainIds(): number[] {
    return this.#mock.domainList();
  }

  guestWrite(domid: number, pfn: number, offset: number, data: Uint8Array): void {
    checkDomid(domid);
    integer('pfn', pfn, 0, MAX_PAGES - 1);
    integer('offset', offset, 0, PAGE_SIZE - 1);
    bytes('data', data, { min: 1, max: PAGE_SIZE - offset });
    this.#mock.guestWrite(domid, pfn, offset, data);
  }

  workload(
    domid: number,
    opts: { rate: number; hot?: number; seed?: number; durationMs?: number; signal?: AbortSignal },
  ): Promise<number> {
    try {
      checkDomid(domid);
      if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
      const { rate, hot = 0, seed = 0, durationMs = 0, signal } = opts;
      integer('rate', rate, 1, Number.MAX_SAFE_INTEGER);
      integer('hot', hot, 0, MAX_PAGES);
      integer('seed', seed, 0, Number.MAX_SAFE_INTEGER);
      integer('durationMs', durationMs, 0, Number.MAX_SAFE_INTEGER);
      if (signal !== undefined && !(signal instanceof AbortSignal))
        throw new TypeError('signal must be an AbortSignal');
      const [id, done] = this.#mock.workloadStart(domid, rate, hot, seed, durationMs);
      if (signal) {
        const stop = () => this.#mock.workloadStop(id);
        if (signal.aborted) stop();
        else {
          signal.addEventListener('abort', stop, { once: true });
          void done.finally(() => signal.removeEventListener('abort', stop)).catch(() => {});
        }
      }
      return done;
    } catch (e) {
      return Promise.reject(e);
    }
  }

  checksum(domid: number): string {
    return Buffer.from(this.#mock.checksum(checkDomid(domid))).toString('hex');
  }
}

// ---- entry points ----------------------------------------------------------------------------

/** Opens the hypervisor through the addon of the selected flavour (see loader.ts). */
export function openHypervisor(opts: OpenOptions = {}): NativeHypervisor {
  const { addon } = loadAddon(opts);
  return addon.flavour === 'mock' ? new MockHypervisor(addon) : new NativeHypervisor(addon);
}

/**
 * Opens the simulated host in `dir` (default: XENMIG_MOCK_HOST, else /dev/shm/xenmig-mock-<uid>).
 * The mock library keeps one host per process: opening another dir switches every handle to it.
 */
export function openMockHost(dir?: string, opts: Omit<OpenOptions, 'flavour'> = {}): MockHypervisor {
  if (dir !== undefined && typeof dir !== 'string')
    throw new TypeError(`dir must be a string, got ${describe(dir)}`);
  const { addon } = loadAddon({ ...opts, flavour: 'mock' });
  if (!addon.mock) throw new TypeError(`the mock addon has no mock host API`);
  addon.mock.setHost(dir ?? null);
  return new MockHypervisor(addon);
}
