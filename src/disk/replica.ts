// Remus backup side of disk replication: the images of --disk-map NAME=IMAGE. The initial copy
// (INFO, SYNC records before LIBXC_CONTEXT) is written as it arrives: before the first checkpoint
// there is no replica to protect. From then on, checkpoint n's BLOCKS records are only buffered;
// commit() at its CHECKPOINT_END writes them (pwrite, fdatasync) before the ACK. A checkpoint that
// never completes is discarded: the image stays at checkpoint n-1, like the memory.
//
// Memory: buffered blocks up to `maxBufferBytes` (default 64 MiB) per checkpoint; beyond it they
// go to a journal file next to the image (IMAGE.xenmig-journal), read back at commit.
import {
  closeSync,
  fdatasyncSync,
  fstatSync,
  ftruncateSync,
  openSync,
  readSync,
  rmSync,
  writeSync,
} from 'node:fs';
import type { DomainConfig } from '../toolstack/config.js';
import { parseDomainConfig } from '../toolstack/config.js';
import { DiskError, DiskErrorCode } from './errors.js';
import { DISK_REPLICATION_CAPABILITY, diskCapability } from './primary.js';
import { decodeDiskRecordBody, XENMIG_DISK_RECORD } from './records.js';

interface Pending {
  block: number;
  mem?: Buffer;
  /** offset in the journal */
  at?: number;
}

interface Image {
  name: string;
  path: string;
  fd: number;
  size: number;
  /** INFO seen (the primary replicates this disk) */
  info: boolean;
  blockSize: number;
  pending: Pending[];
  journal: number | null;
  journalAt: number;
}

export class DiskReplicaSet {
  private images = new Map<string, Image>();
  private buffered = 0;
  private committed = 0;
  private readonly maxBuffer: number;
  /** blocks applied by the last commit */
  lastApplied = 0;

  constructor(map: ReadonlyMap<string, string>, opts: { maxBufferBytes?: number } = {}) {
    this.maxBuffer = opts.maxBufferBytes ?? 64 << 20;
    try {
      for (const [name, path] of map) {
        let fd: number;
        try {
          fd = openSync(path, 'r+');
        } catch (e) {
          throw new DiskError(
            DiskErrorCode.ERR_DISK_SETUP,
            `--disk-map ${name}=${path}: ${(e as Error).message}`,
            { disk: name, cause: e },
          );
        }
        const st = fstatSync(fd);
        if (!st.isFile()) {
          closeSync(fd);
          throw new DiskError(
            DiskErrorCode.ERR_DISK_SETUP,
            `--disk-map ${name}=${path}: not a regular file`,
            { disk: name },
          );
        }
        this.images.set(name, {
          name,
          path,
          fd,
          size: st.size,
          info: false,
          blockSize: 0,
          pending: [],
          journal: null,
          journalAt: 0,
        });
      }
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** READY capabilities: disk replication, and each mapped disk with its image size. */
  capabilities(): string[] {
    return [
      DISK_REPLICATION_CAPABILITY,
      ...[...this.images.values()].map((i) => diskCapability(i.name, i.size)),
    ];
  }

  /** The guest's config as the replica uses it: each mapped vbd on the backup's image. */
  rewriteConfig(config: DomainConfig): DomainConfig {
    const disks = config.json['disks'];
    if (
      !Array.isArray(disks) ||
      !disks.some((d) => this.images.has((d as Record<string, unknown>)['vdev'] as string))
    )
      return config;
    const json = structuredClone(config.json);
    json['disks'] = (json['disks'] as Record<string, unknown>[]).map((d) => {
      const img = this.images.get(d['vdev'] as string);
      return img ? { ...d, pdev_path: img.path } : d;
    });
    return parseDomainConfig(JSON.stringify(json, null, 4) + '\n');
  }

  /**
   * A libxl record the toolstack does not know: true when it is a disk record (handled), false for
   * anything else. 'head' = before LIBXC_CONTEXT (initial copy, written at once), 'checkpoint' =
   * inside a checkpoint's libxl part (buffered). Throws DiskError for a record it cannot apply.
   */
  take(type: number, body: Uint8Array, where: 'head' | 'checkpoint'): boolean {
    if (type !== XENMIG_DISK_RECORD) return false;
    const r = decodeDiskRecordBody(body);
    const img = this.images.get(r.disk);
    if (!img)
      throw new DiskError(
        DiskErrorCode.ERR_DISK_RECORD,
        `disk record for ${r.disk}, which has no --disk-map here`,
        { disk: r.disk },
      );
    const bad = (msg: string) =>
      new DiskError(DiskErrorCode.ERR_DISK_RECORD, `disk ${r.disk}: ${msg}`, { disk: r.disk });
    if (r.kind !== 'blocks' && where !== 'head')
      throw bad(`${r.kind.toUpperCase()} record after the initial copy`);
    if (r.kind === 'blocks' && where !== 'checkpoint') throw bad('BLOCKS record outside a checkpoint');
    switch (r.kind) {
      case 'info':
        if (r.size !== img.size)
          throw bad(`the primary's image is ${r.size} bytes, ${img.path} is ${img.size}`);
        img.info = true;
        img.blockSize = r.blockSize;
        return true;
      case 'sync':
        if (!img.info) throw bad('SYNC before INFO');
        if (r.offset + r.data.length > img.size)
          throw bad(`SYNC at ${r.offset} +${r.data.length} beyond the image (${img.size} bytes)`);
        pwriteAll(img.fd, r.data, r.offset);
        return true;
      case 'blocks': {
        if (!img.info) throw bad('BLOCKS without the initial copy');
        if (r.blockSize !== img.blockSize) throw bad(`block size ${r.blockSize}, INFO said ${img.blockSize}`);
        const bs = r.blockSize;
        for (let i = 0; i < r.blocks.length; i++) {
          const b = r.blocks[i]!;
          if (b * bs >= img.size) throw bad(`block ${b} beyond the image (${img.size} bytes)`);
          const data = Buffer.from(r.data.buffer, r.data.byteOffset + i * bs, bs);
          if (this.buffered + bs <= this.maxBuffer) {
            img.pending.push({ block: b, mem: Buffer.from(data) });
            this.buffered += bs;
          } else {
            if (img.journal === null) img.journal = openSync(img.path + '.xenmig-journal', 'w+');
            pwriteAll(img.journal, data, img.journalAt);
            img.pending.push({ block: b, at: img.journalAt });
            img.journalAt += bs;
          }
        }
        return true;
      }
    }
  }

  /** CHECKPOINT_END: write the checkpoint's blocks into the images, on stable storage. */
  commit(): void {
    let n = 0;
    for (const img of this.images.values()) {
      if (!img.info)
        throw new DiskError(
          DiskErrorCode.ERR_DISK_RECORD,
          `disk ${img.name}: the primary does not replicate it (no initial copy); its image would be stale at failover`,
          { disk: img.name },
        );
      const bs = img.blockSize;
      const tmp = Buffer.alloc(bs);
      for (const p of img.pending) {
        const data = p.mem ?? (readSync(img.journal!, tmp, 0, bs, p.at!), tmp);
        pwriteAll(img.fd, data.subarray(0, Math.min(bs, img.size - p.block * bs)), p.block * bs);
        n++;
      }
      fdatasyncSync(img.fd);
    }
    this.committed++;
    this.lastApplied = n;
    this.discard();
  }

  /** A checkpoint that did not complete: its blocks are dropped, the images stay as committed. */
  discard(): void {
    for (const img of this.images.values()) {
      img.pending = [];
      if (img.journal !== null) ftruncateSync(img.journal, 0);
      img.journalAt = 0;
    }
    this.buffered = 0;
  }

  close(): void {
    for (const img of this.images.values()) {
      closeSync(img.fd);
      if (img.journal !== null) {
        closeSync(img.journal);
        rmSync(img.path + '.xenmig-journal', { force: true });
      }
    }
    this.images.clear();
  }
}

function pwriteAll(fd: number, data: Uint8Array, at: number): void {
  let o = 0;
  while (o < data.length) o += writeSync(fd, data, o, data.length - o, at + o);
}
