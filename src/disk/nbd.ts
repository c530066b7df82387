// A small NBD server (the fixed-newstyle protocol of the NBD project's proto.md): the handshake
// (EXPORT_NAME, INFO, GO, LIST, ABORT; everything else, structured replies and TLS included,
// answered "unsupported") and the commands READ, WRITE, FLUSH, TRIM, WRITE_ZEROES, CACHE, DISC with
// simple replies. One export per server. All integers are big-endian.
//
// Bad input never crashes the server or grows its memory: option data and requests are bounded
// (`maxRequest`), a request beyond the export gets an EINVAL (read) or ENOSPC (write) reply, a
// broken frame (bad magic, unknown client flags, an oversized write) ends the connection with a
// typed DiskError (code, byte offset) in the result.
import type { Duplex } from 'node:stream';
import { ByteReader, EndOfInput, writeOut } from './bytes.js';
import { DiskError, DiskErrorCode } from './errors.js';

export const NBD_MAGIC = 0x4e42444d41474943n; // "NBDMAGIC"
export const NBD_OPT_MAGIC = 0x49484156454f5054n; // "IHAVEOPT"
export const NBD_REP_MAGIC = 0x3e889045565a9n;
export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;

export const NbdHandshakeFlag = { FIXED_NEWSTYLE: 1, NO_ZEROES: 2 } as const;
export const NbdOpt = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
} as const;
export const NbdRep = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  ERR_UNSUP: 0x80000001,
  ERR_POLICY: 0x80000002,
  ERR_INVALID: 0x80000003,
  ERR_UNKNOWN: 0x80000006,
} as const;
export const NbdInfo = { EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 } as const;
export const NbdFlag = {
  HAS_FLAGS: 1,
  READ_ONLY: 2,
  SEND_FLUSH: 4,
  SEND_FUA: 8,
  SEND_TRIM: 32,
  SEND_WRITE_ZEROES: 64,
} as const;
export const NbdCmd = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, CACHE: 5, WRITE_ZEROES: 6 } as const;
export const NbdCmdFlag = { FUA: 1, NO_HOLE: 2 } as const;
export const NbdErrno = { EPERM: 1, EIO: 5, ENOMEM: 12, EINVAL: 22, ENOSPC: 28, ENOTSUP: 95 } as const;

/** Largest option body the server reads (an INFO/GO names its export; nothing needs more). */
export const MAX_OPTION_LENGTH = 4096 + 6 + 2 * 64;
/** Default largest READ / WRITE / WRITE_ZEROES length (the block-size maximum advertised). */
export const DEFAULT_MAX_REQUEST = 32 << 20;

/** What the server exports. Calls for one connection never overlap (requests are served in order). */
export interface NbdExport {
  readonly name: string;
  readonly size: number;
  readonly readOnly?: boolean;
  /** preferred I/O size advertised to the client (NBD_INFO_BLOCK_SIZE) */
  readonly blockSize?: number;
  read(offset: number, length: number): Buffer | Promise<Buffer>;
  /** resolves once the data is in the image (and, with fua, on stable storage) */
  write(offset: number, data: Buffer, fua: boolean): void | Promise<void>;
  writeZeroes(offset: number, length: number, fua: boolean): void | Promise<void>;
  flush(): void | Promise<void>;
  /** advisory: the data may be discarded (a no-op is correct) */
  trim(offset: number, length: number): void | Promise<void>;
}

export interface NbdConnectionResult {
  /** how the connection ended: the client's DISC or ABORT, its close, or a protocol violation */
  reason: 'disconnect' | 'closed' | 'protocol-error';
  requests: number;
  error?: DiskError;
}

function u64(b: Buffer, at: number): bigint {
  return b.readBigUInt64BE(at);
}

function optReply(option: number, type: number, data: Uint8Array = new Uint8Array(0)): Buffer {
  const b = Buffer.alloc(20 + data.length);
  b.writeBigUInt64BE(NBD_REP_MAGIC, 0);
  b.writeUInt32BE(option, 8);
  b.writeUInt32BE(type, 12);
  b.writeUInt32BE(data.length, 16);
  Buffer.from(data.buffer, data.byteOffset, data.byteLength).copy(b, 20);
  return b;
}

function simpleReply(handle: Buffer, error: number, dataLength = 0): Buffer {
  const b = Buffer.allocUnsafe(16 + dataLength);
  b.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, 0);
  b.writeUInt32BE(error, 4);
  handle.copy(b, 8);
  return b;
}

/** The transmission flags of an export. */
export function transmissionFlags(exp: NbdExport): number {
  let f =
    NbdFlag.HAS_FLAGS | NbdFlag.SEND_FLUSH | NbdFlag.SEND_FUA | NbdFlag.SEND_TRIM | NbdFlag.SEND_WRITE_ZEROES;
  if (exp.readOnly) f |= NbdFlag.READ_ONLY;
  return f;
}

/** The server's greeting: NBDMAGIC, IHAVEOPT, handshake flags (fixed newstyle, no zeroes). */
export function greeting(): Buffer {
  const b = Buffer.alloc(18);
  b.writeBigUInt64BE(NBD_MAGIC, 0);
  b.writeBigUInt64BE(NBD_OPT_MAGIC, 8);
  b.writeUInt16BE(NbdHandshakeFlag.FIXED_NEWSTYLE | NbdHandshakeFlag.NO_ZEROES, 16);
  return b;
}

/**
 * Serve one client on `sock` until it disconnects or breaks the protocol. Never throws: the result
 * says how it ended. The socket is destroyed at the end.
 */
export async function serveNbdConnection(
  sock: Duplex,
  exp: NbdExport,
  opts: { maxRequest?: number; log?: (l: string) => void } = {},
): Promise<NbdConnectionResult> {
  const maxRequest = opts.maxRequest ?? DEFAULT_MAX_REQUEST;
  const rd = new ByteReader(sock, 2 * maxRequest + 64);
  let requests = 0;
  const violation = (msg: string, at: number) =>
    new DiskError(DiskErrorCode.ERR_NBD_PROTOCOL, `NBD: ${msg}`, { offset: at });
  try {
    await writeOut(sock, greeting());
    const cflags = (await rd.read(4)).readUInt32BE(0);
    if (cflags & ~(NbdHandshakeFlag.FIXED_NEWSTYLE | NbdHandshakeFlag.NO_ZEROES))
      throw violation(`unknown client flags 0x${cflags.toString(16)}`, rd.position - 4);
    const noZeroes = (cflags & NbdHandshakeFlag.NO_ZEROES) !== 0;
    // options until EXPORT_NAME or a successful GO
    for (;;) {
      const at = rd.position;
      const h = await rd.read(16);
      if (u64(h, 0) !== NBD_OPT_MAGIC) throw violation(`bad option magic 0x${u64(h, 0).toString(16)}`, at);
      const option = h.readUInt32BE(8);
      const len = h.readUInt32BE(12);
      if (len > MAX_OPTION_LENGTH)
        throw violation(`option ${option} with ${len} bytes of data (at most ${MAX_OPTION_LENGTH})`, at + 12);
      const data = await rd.read(len);
      if (option === NbdOpt.EXPORT_NAME) {
        const name = data.toString('utf8');
        // no way to say "unknown" here: the protocol says close
        if (name !== '' && name !== exp.name)
          return {
            reason: 'protocol-error',
            requests,
            error: violation(`unknown export "${name}"`, at + 16),
          };
        const b = Buffer.alloc(noZeroes ? 10 : 134);
        b.writeBigUInt64BE(BigInt(exp.size), 0);
        b.writeUInt16BE(transmissionFlags(exp), 8);
        await writeOut(sock, b);
        break;
      }
      if (option === NbdOpt.ABORT) {
        await writeOut(sock, optReply(option, NbdRep.ACK)).catch(() => undefined);
        return { reason: 'disconnect', requests };
      }
      if (option === NbdOpt.LIST) {
        if (len !== 0) {
          await writeOut(sock, optReply(option, NbdRep.ERR_INVALID));
          continue;
        }
        const name = Buffer.from(exp.name, 'utf8');
        const d = Buffer.alloc(4 + name.length);
        d.writeUInt32BE(name.length, 0);
        name.copy(d, 4);
        await writeOut(
          sock,
          Buffer.concat([optReply(option, NbdRep.SERVER, d), optReply(option, NbdRep.ACK)]),
        );
        continue;
      }
      if (option === NbdOpt.INFO || option === NbdOpt.GO) {
        const nameLen = len >= 4 ? data.readUInt32BE(0) : -1;
        const nreq = nameLen >= 0 && len >= 6 + nameLen ? data.readUInt16BE(4 + nameLen) : -1;
        if (nameLen < 0 || nreq < 0 || len !== 6 + nameLen + 2 * nreq) {
          await writeOut(sock, optReply(option, NbdRep.ERR_INVALID));
          continue;
        }
        const name = data.subarray(4, 4 + nameLen).toString('utf8');
        if (name !== '' && name !== exp.name) {
          await writeOut(sock, optReply(option, NbdRep.ERR_UNKNOWN, Buffer.from(`no export "${name}"`)));
          continue;
        }
        const wanted = new Set<number>();
        for (let i = 0; i < nreq; i++) wanted.add(data.readUInt16BE(6 + nameLen + 2 * i));
        const replies: Buffer[] = [];
        const info = Buffer.alloc(12);
        info.writeUInt16BE(NbdInfo.EXPORT, 0);
        info.writeBigUInt64BE(BigInt(exp.size), 2);
        info.writeUInt16BE(transmissionFlags(exp), 10);
        replies.push(optReply(option, NbdRep.INFO, info));
        if (wanted.has(NbdInfo.NAME)) {
          const n = Buffer.from(exp.name, 'utf8');
          replies.push(optReply(option, NbdRep.INFO, Buffer.concat([Buffer.from([0, NbdInfo.NAME]), n])));
        }
        if (wanted.has(NbdInfo.BLOCK_SIZE)) {
          const bs = Buffer.alloc(14);
          bs.writeUInt16BE(NbdInfo.BLOCK_SIZE, 0);
          bs.writeUInt32BE(1, 2);
          bs.writeUInt32BE(exp.blockSize ?? 4096, 6);
          bs.writeUInt32BE(maxRequest, 10);
          replies.push(optReply(option, NbdRep.INFO, bs));
        }
        replies.push(optReply(option, NbdRep.ACK));
        await writeOut(sock, Buffer.concat(replies));
        if (option === NbdOpt.GO) break;
        continue;
      }
      // STARTTLS, STRUCTURED_REPLY, META_CONTEXT, anything newer: not offered
      await writeOut(sock, optReply(option, NbdRep.ERR_UNSUP));
    }

    // transmission
    for (;;) {
      const at = rd.position;
      const q = await rd.read(28);
      if (q.readUInt32BE(0) !== NBD_REQUEST_MAGIC)
        throw violation(`bad request magic 0x${q.readUInt32BE(0).toString(16)}`, at);
      const flags = q.readUInt16BE(4);
      const type = q.readUInt16BE(6);
      const handle = Buffer.from(q.subarray(8, 16));
      const off64 = u64(q, 16);
      const length = q.readUInt32BE(24);
      requests++;
      // inside the export: [offset, offset + length) within [0, size]
      const inside = off64 + BigInt(length) <= BigInt(exp.size);
      const offset = inside ? Number(off64) : -1;
      const fua = (flags & NbdCmdFlag.FUA) !== 0;
      const reply = async (error: number) => writeOut(sock, simpleReply(handle, error));
      const run = async (f: () => void | Promise<void>) => {
        try {
          await f();
          await reply(0);
        } catch (e) {
          opts.log?.(`nbd: request ${type} at ${off64} (+${length}) failed: ${(e as Error).message}`);
          await reply(NbdErrno.EIO);
        }
      };
      switch (type) {
        case NbdCmd.READ: {
          if (length > maxRequest || !inside) {
            await reply(NbdErrno.EINVAL);
            break;
          }
          let data: Buffer;
          try {
            data = await exp.read(offset, length);
          } catch (e) {
            opts.log?.(`nbd: read at ${offset} (+${length}) failed: ${(e as Error).message}`);
            await reply(NbdErrno.EIO);
            break;
          }
          const b = simpleReply(handle, 0, length);
          data.copy(b, 16, 0, length);
          await writeOut(sock, b);
          break;
        }
        case NbdCmd.WRITE: {
          if (length > maxRequest) {
            // the payload cannot be skipped safely at any size: answer, then end the connection
            await reply(NbdErrno.EINVAL).catch(() => undefined);
            throw violation(`write of ${length} bytes (at most ${maxRequest})`, at + 24);
          }
          const data = await rd.read(length);
          if (exp.readOnly) await reply(NbdErrno.EPERM);
          else if (!inside) await reply(NbdErrno.ENOSPC);
          else await run(() => exp.write(offset, data, fua));
          break;
        }
        case NbdCmd.WRITE_ZEROES:
          if (exp.readOnly) await reply(NbdErrno.EPERM);
          else if (!inside) await reply(NbdErrno.ENOSPC);
          else if (length > maxRequest) await reply(NbdErrno.EINVAL);
          else await run(() => exp.writeZeroes(offset, length, fua));
          break;
        case NbdCmd.TRIM:
          if (exp.readOnly) await reply(NbdErrno.EPERM);
          else if (!inside) await reply(NbdErrno.EINVAL);
          else await run(() => exp.trim(offset, length));
          break;
        case NbdCmd.FLUSH:
          await run(() => exp.flush());
          break;
        case NbdCmd.CACHE:
          await reply(inside ? 0 : NbdErrno.EINVAL);
          break;
        case NbdCmd.DISC:
          return { reason: 'disconnect', requests };
        default:
          await reply(NbdErrno.EINVAL);
      }
    }
  } catch (e) {
    if (e instanceof EndOfInput) return { reason: 'closed', requests };
    if (e instanceof DiskError) {
      opts.log?.(`nbd: ${e.message} (byte ${e.offset}); connection closed`);
      return { reason: 'protocol-error', requests, error: e };
    }
    // the socket failed under a write: the client is gone
    opts.log?.(`nbd: connection ended: ${(e as Error).message}`);
    return { reason: 'closed', requests };
  } finally {
    sock.destroy();
  }
}
