// The seam between the libxc layer (this engine) and the toolstack layer: callbacks, as in Xen's
// struct save_callbacks, plus the per-domain-type operations table (Xen's save_ops).
import type { LibxcRecord } from '../../stream/index.js';
import type { DomainInfo, Hypervisor } from '../../xen/types.js';
import type { PrecopyPolicy } from '../policy.js';

export type StreamType = 'plain' | 'remus' | 'colo';

export interface SaveCallbacks {
  /** Suspend the guest (shutdown-suspend, pause, ...). Called once per checkpoint / at the end. */
  suspend(): Promise<void>;
  /** Checkpointed streams: the checkpoint's data is captured; resume the guest. */
  postcopy?(): Promise<void>;
  /**
   * Checkpointed streams: the libxc CHECKPOINT record is written; the toolstack writes its own
   * records (emulator state, CHECKPOINT_END), waits for the backup's acknowledgement and answers
   * 'again' for another checkpoint or 'stop' to end replication. `round` is the checkpoint's own.
   */
  checkpoint?(round: RoundStats): Promise<'again' | 'stop'>;
  /** COLO: wait until the next checkpoint is due (divergence or timer); `round` as for checkpoint. */
  waitCheckpoint?(round: RoundStats): Promise<'again' | 'stop'>;
  /** COLO: the secondary's dirty pfns for this checkpoint (read from the back channel). */
  secondaryDirtyPfns?(): Promise<ArrayLike<number | bigint>>;
  /**
   * HVM: the device model must track its own writes to guest memory in the dirty log — on (true)
   * at the engine's setup, off (false) at its cleanup (libxc's switch_qemu_logdirty).
   */
  switchQemuLogdirty?(enable: boolean): Promise<void>;
  /** Live phase: decide after each round (libxc's built-in policy when absent). */
  precopyPolicy?: PrecopyPolicy;
  /** Progress, at most every 1024 pages and at each phase change. */
  progress?(p: SaveProgress): void;
}

export type SavePhase = 'setup' | 'live' | 'suspend' | 'final' | 'checkpoint' | 'done';

export interface SaveProgress {
  phase: SavePhase;
  /** live iteration (0 = first full pass) or checkpoint number */
  iteration: number;
  /** pages in the current round's dirty set */
  roundPages: number;
  /** pages of the current round already sent */
  roundSent: number;
  /** bytes written to the stream so far */
  bytes: number;
  /** measured throughput of the live phase, bytes/s */
  bytesPerSecond: number;
  /** expected downtime for the current dirty set at the measured rate, ms */
  expectedDowntimeMs: number;
}

export interface RoundStats {
  iteration: number;
  /** 'live' rounds precede the suspend; 'final' is the stop-and-copy round (or a checkpoint) */
  kind: 'live' | 'final' | 'checkpoint';
  /**
   * The dirty set the round started from: what the hypervisor's log-dirty CLEAN reported before it
   * (for the first live round and a non-live save: every pfn), before deferred and secondary pages
   */
  dirtyPages: number;
  pages: number;
  bytes: number;
  ms: number;
}

export interface SaveStats {
  domid: number;
  domainType: 'hvm' | 'pv';
  streamType: StreamType;
  live: boolean;
  rounds: RoundStats[];
  /** page entries walked, all rounds (holes and pfns without a frame included; an HVM guest's holes are walked, not sent) */
  pages: number;
  /** of those, pages sent with their contents */
  dataPages: number;
  /** bytes written by the libxc layer */
  bytes: number;
  totalMs: number;
  /** from the suspend callback to the end of the libxc stream (the toolstack adds its part) */
  suspendedMs: number;
  checkpoints: number;
  /**
   * With XENMIG_TRACE_PHASES=1 in the environment: milliseconds spent per phase of the page walk,
   * all rounds (where a sender's time goes on a given host; off by default, it costs a clock read
   * per phase and batch)
   */
  phases?: Record<string, number>;
}

/** What the ops may use: the engine's view of the domain being saved. */
export interface SaveContext {
  readonly xen: Hypervisor;
  readonly domid: number;
  readonly info: DomainInfo;
  readonly live: boolean;
  readonly streamType: StreamType;
  /** true while the guest is known to be suspended (final pass / checkpoint) */
  readonly suspended: boolean;
}

/** Result of normalising one page for the stream (PV page tables: mfn -> pfn). */
export type NormaliseResult = 'ok' | 'defer';

export interface SaveOps {
  /** libxc domain header type: 1 = x86 PV, 2 = x86 HVM */
  readonly domainHeaderType: 1 | 2;
  /** Determine sizes, map what the type needs (PV: p2m, m2p, shared info). */
  setup(ctx: SaveContext): Promise<void> | void;
  /** pfns 0..p2mSize-1 are considered for sending (valid after setup) */
  readonly p2mSize: number;
  /** Records before STATIC_DATA_END (PV: X86_PV_INFO; both: CPU policy). */
  staticData(ctx: SaveContext): LibxcRecord[];
  /** Once per stream, after STATIC_DATA_END (PV: X86_PV_P2M_FRAMES). */
  startOfStream(ctx: SaveContext): LibxcRecord[];
  /** Before each checkpoint's memory (PV: the p2m must not have changed while live). */
  checkVmState(ctx: SaveContext): void;
  /** The frame to map for a pfn (HVM: the gfn itself; PV: its mfn), or -1 when it has none. */
  pfnToFrame(pfn: number): number;
  /**
   * Rewrite a page for the stream from `src` into `dst` (PV page tables: mfns to pfns; HVM: a copy).
   * SaveEngine's page loop calls it for a PV guest's page tables.
   */
  normalisePage(ctx: SaveContext, type: number, src: Uint8Array, dst: Uint8Array): NormaliseResult;
  /** Register state at the end of each checkpoint (TSC, HVM context + params | PV vCPUs...). */
  endOfCheckpoint(ctx: SaveContext): LibxcRecord[];
  cleanup(ctx: SaveContext): void;
}
