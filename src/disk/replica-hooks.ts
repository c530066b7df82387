// What receiveReplica (src/checkpoint/backup.ts) needs from disk replication, in one call: READY
// capabilities, the builder that puts each mapped vbd on the backup's image, and the record
// handler of the toolstack restore (apply at CHECKPOINT_END, discard an incomplete checkpoint).
import type { DomainBuilder, ExtraRecordHandler } from '../toolstack/restore.js';
import { DiskError, DiskErrorCode } from './errors.js';
import type { DiskReplicaSet } from './replica.js';

export type { DiskReplicaSet } from './replica.js';

export interface ReplicaDiskHooks {
  capabilities: string[];
  builder(b: DomainBuilder | undefined): DomainBuilder | undefined;
  records: ExtraRecordHandler | null;
}

export function replicaDiskHooks(
  disks: DiskReplicaSet | undefined,
  o: { colo: boolean; xl: boolean; log: (l: string) => void },
): ReplicaDiskHooks {
  if (!disks) return { capabilities: [], builder: (b) => b, records: null };
  if (o.colo)
    throw new DiskError(
      DiskErrorCode.ERR_DISK_SETUP,
      'disk replication is for Remus; COLO needs its own disk handling (not supported)',
    );
  if (o.xl)
    throw new DiskError(
      DiskErrorCode.ERR_DISK_SETUP,
      'an xl primary sends no disk records: --disk-map needs a xenmig primary (xenmig remus --disk)',
    );
  let checkpoint = 0;
  return {
    capabilities: disks.capabilities(),
    builder: (b) =>
      b && {
        ...(b.capabilities ? { capabilities: b.capabilities } : {}),
        create: (config) => b.create(disks.rewriteConfig(config)),
        destroy: (d) => b.destroy(d),
        ...(b.finish ? { finish: (d: number) => b.finish!(d) } : {}),
        ...(b.start ? { start: (d: number) => b.start!(d) } : {}),
      },
    records: {
      take: (type, body, where) => {
        try {
          return disks.take(type, body, where);
        } catch (e) {
          o.log(
            `backup: ${(e as Error).message}${where === 'checkpoint' ? `; checkpoint ${checkpoint + 1} is not applied` : ''}`,
          );
          throw e;
        }
      },
      commit: () => {
        disks.commit();
        checkpoint++;
      },
      discard: () => disks.discard(),
    },
  };
}
