// Continuous replication (Remus, COLO): the shapes shared by the primary (remus.ts) and the backup
// (backup.ts).

/** One checkpoint as the primary saw it. */
export interface CheckpointStat {
  /** 1 = the first checkpoint (the end of the initial live phase) */
  checkpoint: number;
  /** pages in this checkpoint's dirty set (COLO: including the secondary's) */
  dirtyPages: number;
  /** bytes of the stream for this checkpoint (libxc + libxl records) */
  bytes: number;
  /** guest paused: suspend requested → guest resumed */
  pauseMs: number;
  /**
   * the part of pauseMs spent waiting for the guest to suspend itself (suspend requested → domain
   * shut down for suspend); the rest is xenmig's own work while the guest is stopped
   */
  suspendMs: number;
  /** CHECKPOINT_END written → ACK(n) received (0 with --blackhole / without a back channel) */
  ackMs: number;
  /** ms since replication started */
  atMs: number;
  /** disk replication: blocks sent with this checkpoint (all disks) */
  diskBlocks?: number;
}

/**
 * Device hooks of the primary (all async, all optional; no-op defaults). Disk replication and
 * network output buffering plug in here, as libxl's remus devices do.
 */
export interface ReplicationHooks {
  /** The guest is suspended for checkpoint n: start a new disk epoch / output buffer. */
  postsuspend?(n: number): Promise<void>;
  /** Checkpoint n is captured; the guest is about to run again. */
  preresume?(n: number): Promise<void>;
  /** The backup acknowledged checkpoint n: release the output buffered up to it, commit the disk. */
  commit?(n: number): Promise<void>;
  /** Replication stopped (backup lost or stop()); held output is the hook's to release or drop. */
  stopped?(reason: string, lastAcked: number): Promise<void>;
}

/**
 * COLO output comparator: resolves when the primary's and the secondary's output diverged (a
 * checkpoint is due) — the pluggable role of colo-proxy. Aborted when a checkpoint is taken anyway.
 */
export type OutputComparator = (signal: AbortSignal) => Promise<void>;

export type Logger = (line: string) => void;
