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

/** One connection's state: what both phases (options, then transmission) read and count. */
interface NbdConnection {
  readonly sock: Duplex;
  readonly exp: NbdExport;
  readonly rd: ByteReader;
  readonly maxRequest: number;
  readonly log: ((l: string) => void) | undefined;
  requests: number;
}

/** One transmission request, decoded; `offset` is -1 when the range is not inside the export. */
interface NbdRequest {
  readonly at: number;
  readonly type: number;
  readonly handle: Buffer;
  readonly off64: bigint;
  readonly length: number;
  readonly inside: boolean;
  readonly offset: number;
  readonly fua: boolean;
}

/** What an option handler tells the negotiation loop: read the next option, start transmission, or end. */
type OptionOutcome = 'next' | 'transmit' | NbdConnectionResult;

function violation(msg: string, at: number): DiskError {
  return new DiskError(DiskErrorCode.ERR_NBD_PROTOCOL, `NBD: ${msg}`, { offset: at });
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
  const c: NbdConnection = {
    sock,
    exp,
    rd: new ByteReader(sock, 2 * maxRequest + 64),
    maxRequest,
    log: opts.log,
    requests: 0,
  };
  try {
    const ended = await negotiate(c);
    if (ended) return ended;
    while (await serveRequest(c));
    return { reason: 'disconnect', requests: c.requests };
  } catch (e) {
    if (e instanceof EndOfInput) return { reason: 'closed', requests: c.requests };
    if (e instanceof DiskError) {
      c.log?.(`nbd: ${e.message} (byte ${e.offset}); connection closed`);
      return { reason: 'protocol-error', requests: c.requests, error: e };
    }
    // the socket failed under a write: the client is gone
    c.log?.(`nbd: connection ended: ${(e as Error).message}`);
    return { reason: 'closed', requests: c.requests };
  } finally {
    sock.destroy();
  }
}

/** The handshake: greeting, client flags, then options until EXPORT_NAME or a successful GO. */
async function negotiate(c: NbdConnection): Promise<NbdConnectionResult | undefined> {
  const { rd } = c;
  await writeOut(c.sock, greeting());
  const cflags = (await rd.read(4)).readUInt32BE(0);
  if (cflags & ~(NbdHandshakeFlag.FIXED_NEWSTYLE | NbdHandshakeFlag.NO_ZEROES))
    throw violation(`unknown client flags 0x${cflags.toString(16)}`, rd.position - 4);
  const noZeroes = (cflags & NbdHandshakeFlag.NO_ZEROES) !== 0;
  for (;;) {
    const at = rd.position;
    const h = await rd.read(16);
    if (u64(h, 0) !== NBD_OPT_MAGIC) throw violation(`bad option magic 0x${u64(h, 0).toString(16)}`, at);
    const option = h.readUInt32BE(8);
    const len = h.readUInt32BE(12);
    if (len > MAX_OPTION_LENGTH)
      throw violation(`option ${option} with ${len} bytes of data (at most ${MAX_OPTION_LENGTH})`, at + 12);
    const data = await rd.read(len);
    const outcome = await handleOption(c, option, data, at, noZeroes);
    if (outcome === 'transmit') return undefined;
    if (outcome !== 'next') return outcome;
  }
}

async function handleOption(
  c: NbdConnection,
  option: number,
  data: Buffer,
  at: number,
  noZeroes: boolean,
): Promise<OptionOutcome> {
  switch (option) {
    case NbdOpt.EXPORT_NAME:
      return optExportName(c, data, at, noZeroes);
    case NbdOpt.ABORT:
      await writeOut(c.sock, optReply(option, NbdRep.ACK)).catch(() => undefined);
      return { reason: 'disconnect', requests: c.requests };
    case NbdOpt.LIST:
      await optList(c, data);
      return 'next';
    case NbdOpt.INFO:
    case NbdOpt.GO:
      return optInfoOrGo(c, option, data);
    default:
      // STARTTLS, STRUCTURED_REPLY, META_CONTEXT, anything newer: not offered
      await writeOut(c.sock, optReply(option, NbdRep.ERR_UNSUP));
      return 'next';
  }
}

/** EXPORT_NAME: the old way in; an unknown name cannot be answered, the protocol says close. */
async function optExportName(
  c: NbdConnection,
  data: Buffer,
  at: number,
  noZeroes: boolean,
): Promise<OptionOutcome> {
  const name = data.toString('utf8');
  if (name !== '' && name !== c.exp.name)
    return {
      reason: 'protocol-error',
      requests: c.requests,
      error: violation(`unknown export "${name}"`, at + 16),
    };
  const b = Buffer.alloc(noZeroes ? 10 : 134);
  b.writeBigUInt64BE(BigInt(c.exp.size), 0);
  b.writeUInt16BE(transmissionFlags(c.exp), 8);
  await writeOut(c.sock, b);
  return 'transmit';
}

/** LIST: the one export's name, then ACK. */
async function optList(c: NbdConnection, data: Buffer): Promise<void> {
  if (data.length !== 0) return writeOut(c.sock, optReply(NbdOpt.LIST, NbdRep.ERR_INVALID));
  const name = Buffer.from(c.exp.name, 'utf8');
  const d = Buffer.alloc(4 + name.length);
  d.writeUInt32BE(name.length, 0);
  name.copy(d, 4);
  await writeOut(
    c.sock,
    Buffer.concat([optReply(NbdOpt.LIST, NbdRep.SERVER, d), optReply(NbdOpt.LIST, NbdRep.ACK)]),
  );
}

/** INFO / GO: the export's size and flags, the name and block sizes when asked; GO then transmits. */
async function optInfoOrGo(c: NbdConnection, option: number, data: Buffer): Promise<OptionOutcome> {
  const len = data.length;
  const nameLen = len >= 4 ? data.readUInt32BE(0) : -1;
  const nreq = nameLen >= 0 && len >= 6 + nameLen ? data.readUInt16BE(4 + nameLen) : -1;
  if (nameLen < 0 || nreq < 0 || len !== 6 + nameLen + 2 * nreq) {
    await writeOut(c.sock, optReply(option, NbdRep.ERR_INVALID));
    return 'next';
  }
  const name = data.subarray(4, 4 + nameLen).toString('utf8');
  if (name !== '' && name !== c.exp.name) {
    await writeOut(c.sock, optReply(option, NbdRep.ERR_UNKNOWN, Buffer.from(`no export "${name}"`)));
    return 'next';
  }
  const wanted = new Set<number>();
  for (let i = 0; i < nreq; i++) wanted.add(data.readUInt16BE(6 + nameLen + 2 * i));
  const replies = infoReplies(c, option, wanted);
  replies.push(optReply(option, NbdRep.ACK));
  await writeOut(c.sock, Buffer.concat(replies));
  return option === NbdOpt.GO ? 'transmit' : 'next';
}

function infoReplies(c: NbdConnection, option: number, wanted: Set<number>): Buffer[] {
  const { exp } = c;
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
    bs.writeUInt32BE(c.maxRequest, 10);
    replies.push(optReply(option, NbdRep.INFO, bs));
  }
  return replies;
}

/** Reads and answers one transmission request; false after DISC. */
async function serveRequest(c: NbdConnection): Promise<boolean> {
  const at = c.rd.position;
  const q = await c.rd.read(28);
  if (q.readUInt32BE(0) !== NBD_REQUEST_MAGIC)
    throw violation(`bad request magic 0x${q.readUInt32BE(0).toString(16)}`, at);
  const off64 = u64(q, 16);
  const length = q.readUInt32BE(24);
  c.requests++;
  // inside the export: [offset, offset + length) within [0, size]
  const inside = off64 + BigInt(length) <= BigInt(c.exp.size);
  const req: NbdRequest = {
    at,
    type: q.readUInt16BE(6),
    handle: Buffer.from(q.subarray(8, 16)),
    off64,
    length,
    inside,
    offset: inside ? Number(off64) : -1,
    fua: (q.readUInt16BE(4) & NbdCmdFlag.FUA) !== 0,
  };
  if (req.type === NbdCmd.DISC) return false;
  await (commandHandlers[req.type] ?? cmdUnknown)(c, req);
  return true;
}

function reply(c: NbdConnection, req: NbdRequest, error: number): Promise<void> {
  return writeOut(c.sock, simpleReply(req.handle, error));
}

/** Runs an export call and answers 0, or EIO (logged) when it throws. */
async function runAndReply(c: NbdConnection, req: NbdRequest, f: () => void | Promise<void>): Promise<void> {
  try {
    await f();
    await reply(c, req, 0);
  } catch (e) {
    c.log?.(`nbd: request ${req.type} at ${req.off64} (+${req.length}) failed: ${(e as Error).message}`);
    await reply(c, req, NbdErrno.EIO);
  }
}

type CommandHandler = (c: NbdConnection, req: NbdRequest) => Promise<void>;

async function cmdRead(c: NbdConnection, req: NbdRequest): Promise<void> {
  const { offset, length } = req;
  if (length > c.maxRequest || !req.inside) return reply(c, req, NbdErrno.EINVAL);
  let data: Buffer;
  try {
    data = await c.exp.read(offset, length);
  } catch (e) {
    c.log?.(`nbd: read at ${offset} (+${length}) failed: ${(e as Error).message}`);
    return reply(c, req, NbdErrno.EIO);
  }
  const b = simpleReply(req.handle, 0, length);
  data.copy(b, 16, 0, length);
  await writeOut(c.sock, b);
}

async function cmdWrite(c: NbdConnection, req: NbdRequest): Promise<void> {
  if (req.length > c.maxRequest) {
    // the payload cannot be skipped safely at any size: answer, then end the connection
    await reply(c, req, NbdErrno.EINVAL).catch(() => undefined);
    throw violation(`write of ${req.length} bytes (at most ${c.maxRequest})`, req.at + 24);
  }
  const data = await c.rd.read(req.length);
  if (c.exp.readOnly) await reply(c, req, NbdErrno.EPERM);
  else if (!req.inside) await reply(c, req, NbdErrno.ENOSPC);
  else await runAndReply(c, req, () => c.exp.write(req.offset, data, req.fua));
}

async function cmdWriteZeroes(c: NbdConnection, req: NbdRequest): Promise<void> {
  if (c.exp.readOnly) await reply(c, req, NbdErrno.EPERM);
  else if (!req.inside) await reply(c, req, NbdErrno.ENOSPC);
  else if (req.length > c.maxRequest) await reply(c, req, NbdErrno.EINVAL);
  else await runAndReply(c, req, () => c.exp.writeZeroes(req.offset, req.length, req.fua));
}

async function cmdTrim(c: NbdConnection, req: NbdRequest): Promise<void> {
  if (c.exp.readOnly) await reply(c, req, NbdErrno.EPERM);
  else if (!req.inside) await reply(c, req, NbdErrno.EINVAL);
  else await runAndReply(c, req, () => c.exp.trim(req.offset, req.length));
}

const cmdFlush: CommandHandler = (c, req) => runAndReply(c, req, () => c.exp.flush());
const cmdCache: CommandHandler = (c, req) => reply(c, req, req.inside ? 0 : NbdErrno.EINVAL);
const cmdUnknown: CommandHandler = (c, req) => reply(c, req, NbdErrno.EINVAL);

/** The per-command handlers of the transmission phase (DISC ends the loop before them). */
const commandHandlers: Partial<Record<number, CommandHandler>> = {
  [NbdCmd.READ]: cmdRead,
  [NbdCmd.WRITE]: cmdWrite,
  [NbdCmd.WRITE_ZEROES]: cmdWriteZeroes,
  [NbdCmd.TRIM]: cmdTrim,
  [NbdCmd.FLUSH]: cmdFlush,
  [NbdCmd.CACHE]: cmdCache,
};
