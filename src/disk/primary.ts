// Remus primary side of disk replication: one control connection per disk daemon. Before the
// memory stream: START (epoch 1 open), then the whole image as SYNC records (the guest runs and
// writes on; those writes are in epoch 1). In each checkpoint's pause: ROTATE(n), one message per
// disk. After the resume, in checkpoint n's libxl part: epoch n's blocks as BLOCKS records.
import { encodeLibxlRecord, type StreamWriter } from '../stream/index.js';
import { DiskControlClient, MAX_READ, type HelloInfo } from './control.js';
import { DiskError, DiskErrorCode } from './errors.js';
import {
  encodeDiskRecordBody,
  MAX_BLOCKS_BODY,
  MAX_SYNC_CHUNK,
  XENMIG_DISK_RECORD,
  type DiskRecord,
} from './records.js';

export interface DiskTarget {
  /** the disk's name as the backup's --disk-map knows it (the vbd's vdev, e.g. xvda) */
  name: string;
  /** the daemon's control socket */
  control: string;
}

/** READY capability of a backup that applies disk records; plus one `disk:NAME:SIZE` per mapped disk. */
export const DISK_REPLICATION_CAPABILITY = 'disk-replication';

export function diskCapability(name: string, size: number): string {
  return `disk:${name}:${size}`;
}

export function diskRecord(r: DiskRecord): Uint8Array {
  return encodeLibxlRecord({ name: 'UNKNOWN', type: XENMIG_DISK_RECORD, body: encodeDiskRecordBody(r) });
}

/** Parse `NAME=PATH` (the CLI's --disk and --disk-map). */
export function parseDiskMapping(s: string, what: string): { name: string; path: string } {
  const i = s.indexOf('=');
  const name = i > 0 ? s.slice(0, i) : '';
  const path = i > 0 ? s.slice(i + 1) : '';
  if (!name || !path || !/^[A-Za-z0-9_.:-]{1,64}$/.test(name))
    throw new DiskError(
      DiskErrorCode.ERR_DISK_SETUP,
      `${what} takes NAME=PATH (NAME: the vbd's vdev, e.g. xvda), got "${s}"`,
    );
  return { name, path };
}

interface Disk extends DiskTarget {
  client: DiskControlClient;
  info: HelloInfo;
}

export class DiskReplication {
  private disks: Disk[] = [];
  /** blocks sent per disk with the last checkpoint, and the last rotate's duration (ms) */
  readonly last = { blocks: 0, rotateMs: 0 };

  constructor(
    readonly targets: readonly DiskTarget[],
    private readonly opts: { log?: (l: string) => void; chunkBlocks?: number } = {},
  ) {
    const names = new Set<string>();
    for (const t of targets) {
      if (names.has(t.name))
        throw new DiskError(DiskErrorCode.ERR_DISK_SETUP, `disk ${t.name} given twice`, { disk: t.name });
      names.add(t.name);
    }
  }

  get names(): string[] {
    return this.targets.map((t) => t.name);
  }

  /** Connect to every daemon and ask what it serves; nothing is started. Refuses a daemon that replicates already. */
  async connect(): Promise<void> {
    try {
      for (const t of this.targets) {
        const client = await DiskControlClient.connect(t.control);
        this.disks.push({ ...t, client, info: null as unknown as HelloInfo });
        const info = await client.hello();
        this.disks.at(-1)!.info = info;
        if (info.epoch !== 0)
          throw new DiskError(
            DiskErrorCode.ERR_DISK_SETUP,
            `disk ${t.name}: the daemon at ${t.control} is replicating for another primary`,
            { disk: t.name },
          );
      }
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** What the backup lacks (from its READY capabilities): one reason per disk. */
  missingOn(capabilities: readonly string[]): string[] {
    if (!capabilities.includes(DISK_REPLICATION_CAPABILITY))
      return [
        'the backup does not apply disk records (an older xenmig, or remus-receive without --disk-map)',
      ];
    const out: string[] = [];
    for (const d of this.disks) {
      const c = capabilities.find((x) => x.startsWith(`disk:${d.name}:`));
      if (!c) out.push(`disk ${d.name}: the backup has no --disk-map ${d.name}=IMAGE`);
      else if (c !== diskCapability(d.name, d.info.size))
        out.push(
          `disk ${d.name}: the backup's image is ${c.slice(c.lastIndexOf(':') + 1)} bytes, the primary's ${d.info.size}`,
        );
    }
    // a mapped disk this primary never sends would stay stale on the replica
    for (const c of capabilities) {
      const name = /^disk:(.+):\d+$/.exec(c)?.[1];
      if (name && !this.disks.some((d) => d.name === name))
        out.push(
          `the backup maps disk ${name}, which this primary does not replicate (no --disk ${name}=CTL)`,
        );
    }
    return out;
  }

  /** Track writes from now on (epoch 1). */
  async start(): Promise<void> {
    for (const d of this.disks) await d.client.start();
  }

  /** The initial copy, before LIBXC_CONTEXT: INFO, then SYNC records over the whole image. */
  async writeInitial(w: StreamWriter): Promise<void> {
    const chunk = Math.min(MAX_READ, MAX_SYNC_CHUNK, 1 << 20);
    for (const d of this.disks) {
      await w.writeRaw(
        diskRecord({ kind: 'info', disk: d.name, size: d.info.size, blockSize: d.info.blockSize }),
      );
      for (let off = 0; off < d.info.size; off += chunk) {
        const len = Math.min(chunk, d.info.size - off);
        const data = await d.client.read(off, len);
        await w.writeRaw(diskRecord({ kind: 'sync', disk: d.name, offset: off, data }));
      }
      this.opts.log?.(`primary: disk ${d.name}: initial copy of ${d.info.size} bytes sent`);
    }
  }

  /** Inside the pause of checkpoint n: close epoch n on every disk. */
  async rotate(n: number): Promise<void> {
    const t = performance.now();
    await Promise.all(this.disks.map((d) => d.client.rotate(n)));
    this.last.rotateMs = performance.now() - t;
  }

  /** Checkpoint n's libxl part: epoch n's blocks of every disk. */
  async writeEpoch(n: number, w: StreamWriter): Promise<void> {
    let total = 0;
    for (const d of this.disks) {
      const bs = d.info.blockSize;
      const per = Math.max(
        1,
        Math.min(this.opts.chunkBlocks ?? 256, Math.floor((MAX_BLOCKS_BODY - 256) / (8 + bs))),
      );
      total += await d.client.fetch(n, per, bs, (blocks, data) =>
        w.writeRaw(diskRecord({ kind: 'blocks', disk: d.name, checkpoint: n, blockSize: bs, blocks, data })),
      );
    }
    this.last.blocks = total;
  }

  /** End of replication: the daemons stop tracking. */
  async stop(): Promise<void> {
    await Promise.all(this.disks.map((d) => d.client.stop().catch(() => undefined)));
    this.close();
  }

  close(): void {
    for (const d of this.disks) d.client.close();
    this.disks = [];
  }
}
