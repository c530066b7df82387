// What remus() (src/checkpoint/remus.ts) needs from disk replication, in one object: set up before
// the guest is touched, the backup's READY checked, tracking started before the stream, the
// initial copy before LIBXC_CONTEXT, rotate in the pause, the epoch's blocks before CHECKPOINT_END,
// stop at the end.
import type { StreamWriter } from '../stream/index.js';
import { MigrationError, MigrationErrorCode } from '../engine/errors.js';
import { DiskError, DiskErrorCode } from './errors.js';
import type { DiskReplication } from './primary.js';

export interface PrimaryDiskHooks {
  setup(): Promise<void>;
  checkBackup(capabilities: readonly string[]): void;
  start(): Promise<void>;
  beforeLibxc(w: StreamWriter): Promise<void>;
  rotate(n: number): Promise<void>;
  checkpointRecords(n: number, w: StreamWriter): Promise<void>;
  stop(): Promise<void>;
}

export function primaryDiskHooks(
  d: DiskReplication | undefined,
  o: { colo?: boolean; protocol?: 'xenmig' | 'xl'; blackhole?: boolean },
): PrimaryDiskHooks | null {
  if (!d || d.targets.length === 0) return null;
  return {
    setup: async () => {
      if (o.colo)
        throw new DiskError(DiskErrorCode.ERR_DISK_SETUP, 'disk replication is for Remus, not COLO');
      // libxl rejects every record it does not know: an xl backup would fail at the first disk record
      if (o.protocol === 'xl')
        throw new DiskError(
          DiskErrorCode.ERR_DISK_SETUP,
          'an xl backup (--protocol xl) cannot apply disk records; replicate the disks with a xenmig backup, or give --no-disk-replication',
        );
      await d.connect();
    },
    checkBackup: (caps) => {
      const missing = d.missingOn(caps);
      if (missing.length)
        throw new MigrationError(
          MigrationErrorCode.ERR_UNSUPPORTED_DEVICE,
          `the backup cannot replicate the guest's disks: ${missing.join('; ')}`,
        );
    },
    start: () => d.start(),
    beforeLibxc: (w) => d.writeInitial(w),
    rotate: (n) => d.rotate(n),
    checkpointRecords: (n, w) => d.writeEpoch(n, w),
    stop: () => d.stop(),
  };
}
