// The typed hypervisor interface: what the engines may ask of Xen (real or mock).
// Implemented over the native addon by src/xen/hypervisor.ts; the loader picks system or mock.
// Argument checking (domid range, pfn bounds, buffer sizes) happens in TypeScript before native
// code runs; native failures are XenError (code = errno name, errno, syscall = libxenctrl function).

export type DomainType = 'hvm' | 'pv';

export interface DomainInfo {
  domid: number;
  type: DomainType;
  dying: boolean;
  paused: boolean;
  running: boolean;
  blocked: boolean;
  shutdown: boolean;
  /** SHUTDOWN_* reason when shutdown is true (2 = suspend), else null */
  shutdownReason: number | null;
  hap: boolean;
  totPages: number;
  maxPages: number;
  sharedInfoFrame: number;
  maxVcpuId: number;
  onlineVcpus: number;
  /** xc_domain_nr_gpfns - 1 (HVM) / the guest's max pfn (PV, from shared info) */
  maxPfn: number;
  /** 4 or 8 for PV guests (xc_domain_get_guest_width); 8 for HVM */
  guestWidth: number;
  /** the domain handle as a uuid (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx; all zeros when none was given) */
  uuid?: string;
  /** ns of CPU time used by its vCPUs: 0 = it never ran */
  cpuTime?: number;
}

export interface XenError extends Error {
  code: string; // errno name, e.g. 'ESRCH'
  errno: number; // positive errno value
  syscall: string; // libxenctrl/libxenforeignmemory function that failed
}

export type Prot = 'r' | 'rw';

/** One foreign mapping of a batch of frames: ONE ArrayBuffer of pages*4096 bytes. */
export interface Mapping extends Disposable {
  readonly domid: number;
  readonly pages: number;
  /** the mapped bytes; detached (length 0) after unmap() */
  readonly bytes: Uint8Array;
  /** per-page errno (0 = mapped); pages with an error read as zeros and must not be used */
  readonly errors: Int32Array;
  readonly mapped: boolean;
  unmap(): void;
}

export interface TscInfo {
  mode: number;
  elapsedNsec: bigint;
  gtscKhz: number;
  incarnation: number;
}

export interface LogDirtyStats {
  faultCount: number;
  dirtyCount: number;
}

export interface Hypervisor {
  readonly flavour: 'system' | 'mock';
  close(): void;

  /** major << 16 | minor */
  version(): { major: number; minor: number };
  domainInfo(domid: number): DomainInfo;
  listDomains(): DomainInfo[];
  pause(domid: number): void;
  unpause(domid: number): void;
  /** xc_domain_resume: fast = cooperative resume (the guest's suspend hypercall returns 1) */
  resume(domid: number, fast: boolean): void;
  shutdown(domid: number, reason: number): void;
  destroy(domid: number): void;

  /** number of gpfns (max gpfn + 1) */
  nrGpfns(domid: number): number;
  maxGpfn(domid: number): number;

  logDirtyEnable(domid: number): void;
  logDirtyOff(domid: number): void;
  /** CLEAN: copies the bitmap (LSB-first 64-bit words, bit p = pfn p) into `bitmap` and clears it */
  logDirtyClean(domid: number, bitmap: Uint8Array, pages: number, final?: boolean): LogDirtyStats;
  /** PEEK: as CLEAN without clearing */
  logDirtyPeek(domid: number, bitmap: Uint8Array, pages: number): LogDirtyStats;

  /** Map frames (gfns for HVM, mfns for PV) read-only or read-write; per-page errors in `errors`. */
  map(domid: number, frames: BigUint64Array, prot: Prot): Mapping;
  /** writev(fd, [header, pages of m at indices...]) until all is written; off the main thread. */
  writePages(fd: number, header: Uint8Array, m: Mapping, indices: Uint32Array): Promise<number>;
  /** readv(fd, [pages of m at indices...]) until all is read (EOF before that is an error). */
  readPages(fd: number, m: Mapping, indices: Uint32Array): Promise<number>;

  /** PV: frames in, XEN_DOMCTL_PFINFO_* types (bits 31-28) out, in place */
  pfnTypes(domid: number, frames: BigUint64Array): void;
  /** populate the given gfns; for PV the array is replaced by the allocated mfns */
  populatePhysmap(domid: number, gfns: BigUint64Array): void;
  /** PV: the machine-to-phys table (read-only mapping as a BigUint64Array view) and max mfn */
  mapM2p(): { table: BigUint64Array; maxMfn: number; unmap(): void };
  /** PV: pin page tables (xc_mmuext_op MMUEXT_PIN_L<level>_TABLE), one batch of at most 1024 */
  pinTables(domid: number, mfns: BigUint64Array, levels: Uint8Array): void;

  vcpuContextGet(domid: number, vcpu: number): Uint8Array;
  vcpuContextSet(domid: number, vcpu: number, ctx: Uint8Array): void;
  vcpuExtendedGet(domid: number, vcpu: number): Uint8Array;
  vcpuExtendedSet(domid: number, vcpu: number, ctx: Uint8Array): void;
  vcpuXsaveGet(domid: number, vcpu: number): Uint8Array;
  vcpuXsaveSet(domid: number, vcpu: number, ctx: Uint8Array): void;
  vcpuMsrsGet(domid: number, vcpu: number): Uint8Array;
  vcpuMsrsSet(domid: number, vcpu: number, msrs: Uint8Array): void;
  vcpuOnline(domid: number, vcpu: number): boolean;

  hvmContextGet(domid: number): Uint8Array;
  hvmContextSet(domid: number, ctx: Uint8Array): void;
  hvmParamGet(domid: number, index: number): bigint;
  hvmParamSet(domid: number, index: number, value: bigint): void;
  tscInfoGet(domid: number): TscInfo;
  tscInfoSet(domid: number, tsc: TscInfo): void;
  /** CPU policy as the stream carries it: xen_cpuid_leaf_t[] and xen_msr_entry_t[] bytes */
  cpuPolicyGet(domid: number): { cpuid: Uint8Array; msrs: Uint8Array };
  cpuPolicySet(domid: number, cpuid: Uint8Array, msrs: Uint8Array): void;
}

/** Only the mock flavour has these (the simulated host's control API, xenmig_mock.h). */
export interface MockHost {
  readonly dir: string;
  createDomain(opts: { type: DomainType; pages: number; vcpus?: number; populate?: boolean }): number;
  destroyDomain(domid: number): void;
  /** the host's domain ids, ascending (named apart from Hypervisor.listDomains, which returns DomainInfo[]) */
  listDomainIds(): number[];
  guestWrite(domid: number, pfn: number, offset: number, data: Uint8Array): void;
  /** runs off the main thread; resolves with the number of page writes */
  workload(
    domid: number,
    opts: { rate: number; hot?: number; seed?: number; durationMs?: number; signal?: AbortSignal },
  ): Promise<number>;
  /** hex SHA-256 of memory + state, machine-independent (see xenmig_mock.h) */
  checksum(domid: number): string;
}
