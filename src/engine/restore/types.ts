// Restore-side seam (Xen's struct restore_callbacks) and per-domain-type operations (restore_ops).
import type { LibxcRecord } from '../../stream/index.js';
import type { DomainInfo, Hypervisor } from '../../xen/types.js';

export type RestoreStreamType = 'plain' | 'remus' | 'colo';

export type CheckpointResult = 'success' | 'failover' | 'error';

export interface RestoreCallbacks {
  /**
   * A libxc CHECKPOINT arrived: the toolstack reads (and buffers) its records up to
   * CHECKPOINT_END. 'failover' = the channel broke while it was reading.
   */
  checkpoint?(): Promise<CheckpointResult>;
  /** A checkpoint was applied completely (Remus: acknowledge it to the primary). */
  checkpointApplied?(n: number): Promise<void>;
  /** COLO secondary hooks (each may answer 'failover'). */
  postcopy?(): Promise<'ok' | 'failover'>;
  waitCheckpoint?(): Promise<'ok' | 'failover'>;
  suspend?(): Promise<'ok' | 'failover'>;
  /** COLO: send this checkpoint's dirty pfns of the secondary on the back channel. */
  sendDirtyPfns?(pfns: Float64Array): Promise<void>;
  /** CPU policy records applied (or missing) at STATIC_DATA_END. */
  staticDataDone?(missing: { cpuid: boolean; msr: boolean }): void;
  progress?(p: RestoreProgress): void;
}

export interface RestoreProgress {
  records: number;
  pages: number;
  bytes: number;
  checkpoints: number;
}

export interface RestoreStats {
  domid: number;
  domainType: 'hvm' | 'pv';
  streamType: RestoreStreamType;
  records: number;
  /** pages written into guest memory */
  pages: number;
  /** PAGE_DATA entries without data (XTAB, BROKEN, XALLOC) */
  holes: number;
  checkpoints: number;
  /** how the stream ended: END, or failover to the last complete checkpoint */
  endedBy: 'END' | 'failover';
  /** verify mode: pages that differed */
  verifyMismatches: number;
  totalMs: number;
}

export interface RestoreContext {
  readonly xen: Hypervisor;
  readonly domid: number;
  readonly info: DomainInfo;
  readonly streamType: RestoreStreamType;
}

export interface RestoreOps {
  /** libxc domain header type this ops table restores (1 PV, 2 HVM) */
  readonly domainHeaderType: 1 | 2;
  setup(ctx: RestoreContext): Promise<void> | void;
  /** Largest pfn the stream may name for this domain. */
  maxPfn(ctx: RestoreContext): number;
  /** Back the given pfns with RAM (only pfns not yet populated are passed). */
  populate(ctx: RestoreContext, pfns: number[]): void;
  /** Frame to map for a populated pfn (HVM gfn, PV mfn). */
  pfnToFrame(pfn: number): number;
  /** The stream's page type of a pfn (PV: pinned at the end; HVM: nothing to keep). */
  setPageType(pfn: number, type: number): void;
  /** A page-table page as written into guest memory (PV: pfns to mfns; HVM: nothing to do). */
  localisePage(ctx: RestoreContext, type: number, page: Uint8Array, pfn: number): void;
  /** Type-specific records; return false for a record this type does not handle. */
  processRecord(ctx: RestoreContext, rec: LibxcRecord): Promise<boolean> | boolean;
  /** STATIC_DATA_END (seen or implied for v2 streams): apply the CPU policy. */
  staticDataComplete(ctx: RestoreContext): { cpuid: boolean; msr: boolean };
  /** Apply the stashed register state (vCPUs, HVM context, p2m, pinning). */
  streamComplete(ctx: RestoreContext): Promise<void> | void;
  cleanup(ctx: RestoreContext): void;
}
