// Errors of disk replication (src/disk/): NBD protocol violations by a client, control-protocol
// failures between the primary and the disk daemon, and disk records the backup cannot apply.

export const DiskErrorCode = {
  /** the NBD client broke the protocol (bad magic, unknown flags, an oversized request) */
  ERR_NBD_PROTOCOL: 'ERR_NBD_PROTOCOL',
  /** the control connection to a disk daemon failed or answered something unexpected */
  ERR_DISK_CONTROL: 'ERR_DISK_CONTROL',
  /** a disk record of the stream is malformed or does not fit the backup's image */
  ERR_DISK_RECORD: 'ERR_DISK_RECORD',
  /** disk replication cannot be set up as asked (refused before the guest is touched) */
  ERR_DISK_SETUP: 'ERR_DISK_SETUP',
} as const;
export type DiskErrorCode = (typeof DiskErrorCode)[keyof typeof DiskErrorCode];

export class DiskError extends Error {
  readonly code: DiskErrorCode;
  /** byte offset in the NBD connection or in the record body, when it applies */
  readonly offset: number | undefined;
  /** the disk's name (its vdev), when it applies */
  readonly disk: string | undefined;
  constructor(
    code: DiskErrorCode,
    message: string,
    info: { offset?: number; disk?: string; cause?: unknown } = {},
  ) {
    super(message, { cause: info.cause });
    this.name = 'DiskError';
    this.code = code;
    this.offset = info.offset;
    this.disk = info.disk;
  }
}
