// The disk records of a replication stream: one xenmig-specific record type of the toolstack
// (libxl) layer, XENMIG_DISK, little-endian like the rest of the stream. Bit 31 (optional) is set so
// that xenmig's generic readers (inspect, verify, the validator) pass it through with a warning;
// no backup ignores it: a xenmig backup without disk replication refuses the checkpoint that
// carries one, libxl rejects every unknown record (so xenmig never sends it towards xl).
//
// body: u32 kind, u32 name_length, name (UTF-8, <= 64 bytes), zero padding to 8, then by kind:
//   INFO   (1): u64 image_size, u32 block_size, u32 0         before LIBXC_CONTEXT, once per disk
//   SYNC   (2): u64 offset, data (<= 4 MiB)                    before LIBXC_CONTEXT: the initial copy
//   BLOCKS (3): u32 checkpoint, u32 block_size, u32 count, u32 0, count x u64 block number,
//               count x block_size data                        in checkpoint n's libxl part
import { DiskError, DiskErrorCode } from './errors.js';

export const XENMIG_DISK_RECORD = 0x8000d15c;
export const DiskRecordKind = { INFO: 1, SYNC: 2, BLOCKS: 3 } as const;
export const MAX_DISK_NAME = 64;
export const MAX_SYNC_CHUNK = 4 << 20;
/** Largest BLOCKS record body xenmig writes and accepts (well under the stream's 128 MiB record bound). */
export const MAX_BLOCKS_BODY = 16 << 20;

export type DiskRecord =
  | { kind: 'info'; disk: string; size: number; blockSize: number }
  | { kind: 'sync'; disk: string; offset: number; data: Uint8Array }
  | {
      kind: 'blocks';
      disk: string;
      checkpoint: number;
      blockSize: number;
      blocks: number[];
      data: Uint8Array;
    };

const pad8 = (n: number) => (n + 7) & ~7;

function head(kind: number, disk: string, rest: number): { b: Buffer; at: number } {
  const name = Buffer.from(disk, 'utf8');
  if (name.length === 0 || name.length > MAX_DISK_NAME)
    throw new DiskError(DiskErrorCode.ERR_DISK_RECORD, `disk name "${disk}": 1 to ${MAX_DISK_NAME} bytes`);
  const at = pad8(8 + name.length);
  const b = Buffer.alloc(at + rest);
  b.writeUInt32LE(kind, 0);
  b.writeUInt32LE(name.length, 4);
  name.copy(b, 8);
  return { b, at };
}

export function encodeDiskRecordBody(r: DiskRecord): Buffer {
  switch (r.kind) {
    case 'info': {
      const { b, at } = head(DiskRecordKind.INFO, r.disk, 16);
      b.writeBigUInt64LE(BigInt(r.size), at);
      b.writeUInt32LE(r.blockSize, at + 8);
      return b;
    }
    case 'sync': {
      const { b, at } = head(DiskRecordKind.SYNC, r.disk, 8 + r.data.length);
      b.writeBigUInt64LE(BigInt(r.offset), at);
      b.set(r.data, at + 8);
      return b;
    }
    case 'blocks': {
      const n = r.blocks.length;
      const { b, at } = head(DiskRecordKind.BLOCKS, r.disk, 16 + 8 * n + r.data.length);
      b.writeUInt32LE(r.checkpoint, at);
      b.writeUInt32LE(r.blockSize, at + 4);
      b.writeUInt32LE(n, at + 8);
      for (let i = 0; i < n; i++) b.writeBigUInt64LE(BigInt(r.blocks[i]!), at + 16 + 8 * i);
      b.set(r.data, at + 16 + 8 * n);
      return b;
    }
  }
}

/** Parse a XENMIG_DISK body; every defect is a DiskError with the offset inside the body. */
export function decodeDiskRecordBody(body: Uint8Array): DiskRecord {
  const b = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const bad = (msg: string, at: number) =>
    new DiskError(DiskErrorCode.ERR_DISK_RECORD, `disk record: ${msg}`, { offset: at });
  if (b.length < 8) throw bad(`${b.length} bytes (at least 8)`, 0);
  const kind = b.readUInt32LE(0);
  const nameLen = b.readUInt32LE(4);
  if (nameLen === 0 || nameLen > MAX_DISK_NAME) throw bad(`name length ${nameLen} (1..${MAX_DISK_NAME})`, 4);
  const at = pad8(8 + nameLen);
  if (b.length < at) throw bad('ends inside the name', b.length);
  let disk: string;
  try {
    disk = new TextDecoder('utf-8', { fatal: true }).decode(b.subarray(8, 8 + nameLen));
  } catch {
    throw bad('name is not UTF-8', 8);
  }
  const rest = b.length - at;
  switch (kind) {
    case DiskRecordKind.INFO: {
      if (rest !== 16) throw bad(`INFO of ${rest} bytes after the name (16)`, at);
      const size = b.readBigUInt64LE(at);
      if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`image size ${size}`, at);
      return { kind: 'info', disk, size: Number(size), blockSize: b.readUInt32LE(at + 8) };
    }
    case DiskRecordKind.SYNC: {
      if (rest < 8 || rest - 8 > MAX_SYNC_CHUNK)
        throw bad(`SYNC of ${rest} bytes after the name (8 + at most ${MAX_SYNC_CHUNK})`, at);
      const offset = b.readBigUInt64LE(at);
      if (offset > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`offset ${offset}`, at);
      return { kind: 'sync', disk, offset: Number(offset), data: b.subarray(at + 8) };
    }
    case DiskRecordKind.BLOCKS: {
      if (rest < 16) throw bad(`BLOCKS of ${rest} bytes after the name (at least 16)`, at);
      const checkpoint = b.readUInt32LE(at);
      const blockSize = b.readUInt32LE(at + 4);
      const count = b.readUInt32LE(at + 8);
      if (blockSize < 512 || blockSize > 1 << 20 || (blockSize & (blockSize - 1)) !== 0)
        throw bad(`block size ${blockSize}`, at + 4);
      if (rest !== 16 + count * (8 + blockSize))
        throw bad(
          `${count} blocks of ${blockSize} bytes need ${16 + count * (8 + blockSize)} bytes, got ${rest}`,
          at + 8,
        );
      const blocks: number[] = [];
      for (let i = 0; i < count; i++) {
        const v = b.readBigUInt64LE(at + 16 + 8 * i);
        if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`block number ${v}`, at + 16 + 8 * i);
        blocks.push(Number(v));
      }
      return { kind: 'blocks', disk, checkpoint, blockSize, blocks, data: b.subarray(at + 16 + 8 * count) };
    }
    default:
      throw bad(`unknown kind ${kind}`, 0);
  }
}
