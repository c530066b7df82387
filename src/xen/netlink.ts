// Netlink sockets over the addon's generic calls (native/src/netlink.cc), for network output
// buffering (src/netbuf/). Messages are built and parsed here, in TypeScript; the addon only opens
// the socket, sends bytes and hands back what the kernel queued in reply. A kernel error reply
// (NLMSG_ERROR with a negative errno) becomes an Error shaped as every native failure: code (errno
// name), errno (positive), syscall (the request's name), plus the kernel's extended-ACK text.
import { constants } from 'node:os';
import type { XenError } from './types.js';
import { loadAddon, type LoadOptions, type NativeNetlink } from './loader.js';

export const NETLINK_ROUTE = 0;
export const NETLINK_NETFILTER = 12;

export const NLMSG_HDRLEN = 16;
export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
export const NLM_F_ROOT = 0x100;
export const NLM_F_MATCH = 0x200;
export const NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
/** in an NLMSG_ERROR: the echoed request is only its header; extended-ACK attributes follow */
const NLM_F_CAPPED = 0x100;
const NLM_F_ACK_TLVS = 0x200;
const NLMSGERR_ATTR_MSG = 1;

/** Replies are read into a buffer of this size (the addon needs room for a 32 KiB dump chunk). */
export const NETLINK_RECV_BYTES = 256 * 1024;

export interface NetlinkMessage {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  /** the bytes after the 16-byte header (a view into the receive buffer: copy to keep) */
  payload: Buffer;
}

const errnoNames = new Map<number, string>(Object.entries(constants.errno).map(([k, v]) => [v, k]));

/** The Error every failed netlink request throws (same shape as the addon's XenError). */
export function netlinkError(errno: number, syscall: string, detail?: string): XenError {
  const code = errnoNames.get(errno) ?? 'EUNKNOWN';
  const e = new Error(
    `${syscall} failed: ${code} (errno ${errno})${detail ? `: ${detail}` : ''}`,
  ) as XenError;
  e.code = code;
  e.errno = errno;
  e.syscall = syscall;
  return e;
}

/** Splits `len` bytes of `buf` into netlink messages; a malformed length is EBADMSG. */
export function parseMessages(buf: Buffer, len: number): NetlinkMessage[] {
  const out: NetlinkMessage[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= len) {
    const mlen = buf.readUInt32LE(off);
    if (mlen < NLMSG_HDRLEN || off + mlen > len)
      throw netlinkError(constants.errno.EBADMSG, 'recv', `netlink message length ${mlen} at byte ${off}`);
    out.push({
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      pid: buf.readUInt32LE(off + 12),
      payload: buf.subarray(off + NLMSG_HDRLEN, off + mlen),
    });
    off += (mlen + 3) & ~3;
  }
  return out;
}

/** The errno (positive; 0 = ACK) and extended-ACK text of an NLMSG_ERROR message. */
export function parseError(m: NetlinkMessage): { errno: number; seq: number; message?: string } {
  const p = m.payload;
  if (p.length < 4 + NLMSG_HDRLEN) return { errno: constants.errno.EBADMSG, seq: 0 };
  const errno = -p.readInt32LE(0);
  const seq = p.readUInt32LE(4 + 8);
  let off = 4 + (m.flags & NLM_F_CAPPED ? NLMSG_HDRLEN : p.readUInt32LE(4));
  let message: string | undefined;
  if (m.flags & NLM_F_ACK_TLVS) {
    while (off + 4 <= p.length) {
      const alen = p.readUInt16LE(off);
      const atype = p.readUInt16LE(off + 2) & 0x3fff;
      if (alen < 4 || off + alen > p.length) break;
      if (atype === NLMSGERR_ATTR_MSG) message = p.toString('utf8', off + 4, off + alen).replace(/\0+$/, '');
      off += (alen + 3) & ~3;
    }
  }
  return { errno, seq, ...(message ? { message } : {}) };
}

/** One netlink socket of one protocol; requests are synchronous (the kernel answers inside sendmsg). */
export class NetlinkSocket {
  readonly #native: NativeNetlink;
  #fd: number;
  readonly #buf = Buffer.alloc(NETLINK_RECV_BYTES);
  #seq = 1;

  constructor(
    native: NativeNetlink,
    readonly protocol: number,
    rcvbuf = 0,
  ) {
    if (!Number.isInteger(protocol) || protocol < 0 || protocol > 31)
      throw new RangeError(`protocol must be in 0..31, got ${protocol}`);
    if (!Number.isInteger(rcvbuf) || rcvbuf < 0 || rcvbuf > 0x7fffffff)
      throw new RangeError(`rcvbuf must be in 0..2^31-1, got ${rcvbuf}`);
    this.#native = native;
    this.#fd = native.open(protocol, rcvbuf);
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  /** A fresh sequence number for the next request. */
  nextSeq(): number {
    this.#seq = (this.#seq + 1) >>> 0 || 1;
    return this.#seq;
  }

  #fdOrThrow(what: string): number {
    if (this.#fd < 0) throw netlinkError(constants.errno.EBADF, what, 'the netlink socket is closed');
    return this.#fd;
  }

  /**
   * Sends `message` and returns the replies. An NLMSG_ERROR with an errno throws (syscall = `what`);
   * ACKs (errno 0) are dropped from the result.
   */
  request(message: Uint8Array, what: string): NetlinkMessage[] {
    const n = this.#native.request(this.#fdOrThrow(what), message, this.#buf);
    const out: NetlinkMessage[] = [];
    for (const m of parseMessages(this.#buf, n)) {
      if (m.type === NLMSG_ERROR) {
        const e = parseError(m);
        if (e.errno !== 0) throw netlinkError(e.errno, what, e.message);
        continue;
      }
      out.push(m);
    }
    return out;
  }

  /**
   * The per-checkpoint path: sends a message that asked for an ACK and checks the ACK without
   * allocating. Anything else than a single ACK takes the general path of request().
   */
  requestAck(message: Uint8Array, what: string): void {
    const b = this.#buf;
    const n = this.#native.request(this.#fdOrThrow(what), message, b);
    if (n >= 36 && b.readUInt16LE(4) === NLMSG_ERROR && b.readInt32LE(16) === 0 && b.readUInt32LE(0) === n)
      return;
    if (n === 0) throw netlinkError(constants.errno.ENOMSG, what, 'no acknowledgement from the kernel');
    for (const m of parseMessages(b, n)) {
      if (m.type !== NLMSG_ERROR) continue;
      const e = parseError(m);
      if (e.errno !== 0) throw netlinkError(e.errno, what, e.message);
    }
  }

  /** Sends without reading anything back (a request without NLM_F_ACK). */
  send(message: Uint8Array, what: string): void {
    this.#native.request(this.#fdOrThrow(what), message, EMPTY);
  }

  /** What the kernel queued on this socket (notifications), without blocking. */
  pending(what = 'recv'): NetlinkMessage[] {
    const n = this.#native.recv(this.#fdOrThrow(what), this.#buf);
    return parseMessages(this.#buf, n);
  }

  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    this.#native.close(fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

const EMPTY = new Uint8Array(0);

/** Opens a netlink socket through the addon (either flavour: netlink does not depend on Xen). */
export function openNetlink(protocol: number, opts: LoadOptions & { rcvbuf?: number } = {}): NetlinkSocket {
  const { rcvbuf, ...load } = opts;
  const { addon, path } = loadAddon(load);
  if (!addon.netlink)
    throw Object.assign(
      new Error(`the xenmig addon at ${path} has no netlink calls (rebuild native/: npm run build:native)`),
      {
        code: 'ERR_XENMIG_ADDON',
      },
    );
  return new NetlinkSocket(addon.netlink, protocol, rcvbuf ?? 0);
}
