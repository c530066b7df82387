// The netlink messages of network output buffering, built byte for byte from the kernel's UAPI
// layouts (linux/netlink.h, rtnetlink.h, if_link.h, pkt_sched.h, pkt_cls.h, tc_act/tc_mirred.h,
// netfilter/nfnetlink.h, nf_tables.h, nf_tables_compat.h, nfnetlink_queue.h, xt_NFQUEUE.h).
// Every builder is a pure function of its arguments (sequence number included), so the unit tests
// compare whole messages against golden bytes.
import { NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST } from '../xen/netlink.js';

const NLA_F_NESTED = 0x8000;
const NLM_F_APPEND = 0x800;

/** A netlink message under construction: nlmsghdr, a fixed header, attributes (4-byte aligned). */
export class NlWriter {
  #buf = Buffer.alloc(256);
  #len = 0;
  readonly #open: number[] = [];

  constructor(type: number, flags: number, seq: number, pid = 0) {
    this.#reserve(16);
    this.#buf.writeUInt16LE(type, 4);
    this.#buf.writeUInt16LE(flags, 6);
    this.#buf.writeUInt32LE(seq >>> 0, 8);
    this.#buf.writeUInt32LE(pid >>> 0, 12);
    this.#len = 16;
  }

  #reserve(n: number): void {
    if (this.#len + n + 4 <= this.#buf.length) return;
    const b = Buffer.alloc(Math.max(this.#buf.length * 2, this.#len + n + 4));
    this.#buf.copy(b, 0, 0, this.#len);
    this.#buf = b;
  }

  #pad(): void {
    const p = (4 - (this.#len & 3)) & 3;
    this.#reserve(p);
    this.#buf.fill(0, this.#len, this.#len + p);
    this.#len += p;
  }

  /** raw bytes (a fixed header such as ifinfomsg / tcmsg / nfgenmsg), padded to 4 */
  bytes(b: Uint8Array): this {
    this.#reserve(b.length);
    this.#buf.set(b, this.#len);
    this.#len += b.length;
    this.#pad();
    return this;
  }

  attr(type: number, data: Uint8Array): this {
    this.#reserve(4 + data.length);
    this.#buf.writeUInt16LE(4 + data.length, this.#len);
    this.#buf.writeUInt16LE(type, this.#len + 2);
    this.#buf.set(data, this.#len + 4);
    this.#len += 4 + data.length;
    this.#pad();
    return this;
  }

  /** a NUL-terminated string attribute (`nul: false`: the bare bytes, as iproute2 writes some kinds) */
  str(type: number, s: string, nul = true): this {
    return this.attr(type, Buffer.from(nul ? s + '\0' : s, 'latin1'));
  }

  u32(type: number, v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    return this.attr(type, b);
  }

  be32(type: number, v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v >>> 0);
    return this.attr(type, b);
  }

  /** opens a nested attribute; `flag` sets NLA_F_NESTED (nf_tables) or not (iproute2's tc/ip do not) */
  nest(type: number, flag = false): this {
    this.#reserve(4);
    this.#open.push(this.#len);
    this.#buf.writeUInt16LE(0, this.#len);
    this.#buf.writeUInt16LE(type | (flag ? NLA_F_NESTED : 0), this.#len + 2);
    this.#len += 4;
    return this;
  }

  end(): this {
    const at = this.#open.pop();
    if (at === undefined) throw new Error('NlWriter.end() without nest()');
    this.#buf.writeUInt16LE(this.#len - at, at);
    return this;
  }

  /** the finished message (nlmsg_len set) */
  finish(): Buffer {
    if (this.#open.length) throw new Error('NlWriter.finish() with an open nested attribute');
    this.#buf.writeUInt32LE(this.#len, 0);
    return Buffer.from(this.#buf.subarray(0, this.#len));
  }
}

// ---- rtnetlink: links ------------------------------------------------------------------------

export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_NEWQDISC = 36;
export const RTM_DELQDISC = 37;
export const RTM_NEWTFILTER = 44;
export const IFLA_IFNAME = 3;
export const IFLA_MASTER = 10;
export const IFLA_LINKINFO = 18;
export const IFLA_INFO_KIND = 1;
const IFF_UP = 1;
/** IFNAMSIZ - 1 */
export const IFNAME_MAX = 15;

/** struct ifinfomsg (16 bytes): family, pad, type, index, flags, change */
function ifinfomsg(index: number, flags = 0, change = 0): Buffer {
  const b = Buffer.alloc(16);
  b.writeInt32LE(index, 4);
  b.writeUInt32LE(flags, 8);
  b.writeUInt32LE(change, 12);
  return b;
}

/** `ip link add NAME type ifb` */
export function linkAddIfb(name: string, seq: number): Buffer {
  return new NlWriter(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE, seq)
    .bytes(ifinfomsg(0))
    .str(IFLA_IFNAME, name)
    .nest(IFLA_LINKINFO)
    .str(IFLA_INFO_KIND, 'ifb', false)
    .end()
    .finish();
}

/** `ip link set dev (ifindex) up` */
export function linkSetUp(ifindex: number, seq: number): Buffer {
  return new NlWriter(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq)
    .bytes(ifinfomsg(ifindex, IFF_UP, IFF_UP))
    .finish();
}

/** `ip link del dev (ifindex)` */
export function linkDel(ifindex: number, seq: number): Buffer {
  return new NlWriter(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, seq).bytes(ifinfomsg(ifindex)).finish();
}

/** RTM_GETLINK of one interface by name (the reply is an RTM_NEWLINK) */
export function linkGet(name: string, seq: number): Buffer {
  return new NlWriter(RTM_GETLINK, NLM_F_REQUEST, seq).bytes(ifinfomsg(0)).str(IFLA_IFNAME, name).finish();
}

/** ifindex and IFLA_MASTER (bridge, 0 = none) of an RTM_NEWLINK payload */
export function parseLink(payload: Buffer): { ifindex: number; master: number; name: string | null } {
  const ifindex = payload.readInt32LE(4);
  let master = 0;
  let name: string | null = null;
  for (let off = 16; off + 4 <= payload.length;) {
    const len = payload.readUInt16LE(off);
    const type = payload.readUInt16LE(off + 2) & 0x3fff;
    if (len < 4 || off + len > payload.length) break;
    if (type === IFLA_MASTER && len >= 8) master = payload.readUInt32LE(off + 4);
    if (type === IFLA_IFNAME) name = payload.toString('latin1', off + 4, off + len).replace(/\0+$/, '');
    off += (len + 3) & ~3;
  }
  return { ifindex, master, name };
}

// ---- rtnetlink: traffic control --------------------------------------------------------------

const TCA_KIND = 1;
const TCA_OPTIONS = 2;
export const TC_H_ROOT = 0xffffffff;
export const TC_H_INGRESS = 0xfffffff1;
const INGRESS_HANDLE = 0xffff0000;
const PLUG_HANDLE = 0x00010000;
const ETH_P_ALL = 0x0003;
const TCA_U32_SEL = 5;
const TCA_U32_ACT = 7;
const TC_U32_TERMINAL = 1;
const TCA_ACT_KIND = 1;
const TCA_ACT_OPTIONS = 2;
const TCA_MIRRED_PARMS = 2;
const TCA_EGRESS_REDIR = 1;
const TC_ACT_STOLEN = 4;

export const TCQ_PLUG_BUFFER = 0;
export const TCQ_PLUG_RELEASE_ONE = 1;
export const TCQ_PLUG_RELEASE_INDEFINITE = 2;
export const TCQ_PLUG_LIMIT = 3;

/** struct tcmsg (20 bytes): family, pad, pad, ifindex, handle, parent, info */
function tcmsg(ifindex: number, handle: number, parent: number, info = 0): Buffer {
  const b = Buffer.alloc(20);
  b.writeInt32LE(ifindex, 4);
  b.writeUInt32LE(handle >>> 0, 8);
  b.writeUInt32LE(parent >>> 0, 12);
  b.writeUInt32LE(info >>> 0, 16);
  return b;
}

/** `tc qdisc add dev (ifindex) ingress` */
export function qdiscAddIngress(ifindex: number, seq: number): Buffer {
  return new NlWriter(RTM_NEWQDISC, NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE, seq)
    .bytes(tcmsg(ifindex, INGRESS_HANDLE, TC_H_INGRESS))
    .str(TCA_KIND, 'ingress')
    .finish();
}

/** `tc qdisc del dev (ifindex) ingress` (its filters go with it) */
export function qdiscDelIngress(ifindex: number, seq: number): Buffer {
  return new NlWriter(RTM_DELQDISC, NLM_F_REQUEST | NLM_F_ACK, seq)
    .bytes(tcmsg(ifindex, INGRESS_HANDLE, TC_H_INGRESS))
    .str(TCA_KIND, 'ingress')
    .finish();
}

/**
 * `tc filter add dev (ifindex) parent ffff: protocol all prio 1 u32 match u32 0 0
 *  action mirred egress redirect dev (target)`: every frame the interface receives (= every frame
 * the guest sends, whatever its protocol) goes to the target's egress (the IFB's qdisc).
 */
export function filterAddRedirect(ifindex: number, target: number, seq: number): Buffer {
  const mirred = Buffer.alloc(28); // struct tc_mirred: tc_gen (index, capab, action, refcnt, bindcnt), eaction, ifindex
  mirred.writeInt32LE(TC_ACT_STOLEN, 8);
  mirred.writeInt32LE(TCA_EGRESS_REDIR, 20);
  mirred.writeUInt32LE(target, 24);
  const sel = Buffer.alloc(32); // struct tc_u32_sel with one struct tc_u32_key (mask 0, val 0: matches all)
  sel.writeUInt8(TC_U32_TERMINAL, 0);
  sel.writeUInt8(1, 2); // nkeys
  return new NlWriter(RTM_NEWTFILTER, NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE, seq)
    .bytes(tcmsg(ifindex, 0, INGRESS_HANDLE, (1 << 16) | ((ETH_P_ALL >> 8) | ((ETH_P_ALL & 0xff) << 8))))
    .str(TCA_KIND, 'u32')
    .nest(TCA_OPTIONS)
    .nest(TCA_U32_ACT)
    .nest(1) // action priority 1
    .str(TCA_ACT_KIND, 'mirred')
    .nest(TCA_ACT_OPTIONS, true)
    .attr(TCA_MIRRED_PARMS, mirred)
    .end()
    .end()
    .end()
    .attr(TCA_U32_SEL, sel)
    .end()
    .finish();
}

/** struct tc_plug_qopt: int action, __u32 limit */
function plugQopt(action: number, limit: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeInt32LE(action, 0);
  b.writeUInt32LE(limit >>> 0, 4);
  return b;
}

/** `tc qdisc add dev (ifindex) root handle 1: plug limit BYTES` (starts buffering: throttled) */
export function qdiscAddPlug(ifindex: number, limitBytes: number, seq: number): Buffer {
  return new NlWriter(RTM_NEWQDISC, NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE, seq)
    .bytes(tcmsg(ifindex, PLUG_HANDLE, TC_H_ROOT))
    .str(TCA_KIND, 'plug')
    .attr(TCA_OPTIONS, plugQopt(TCQ_PLUG_LIMIT, limitBytes))
    .finish();
}

/** `tc qdisc change dev (ifindex) root plug block|release|release_indefinite` */
export function qdiscPlugAction(ifindex: number, action: number, seq: number): Buffer {
  return new NlWriter(RTM_NEWQDISC, NLM_F_REQUEST | NLM_F_ACK, seq)
    .bytes(tcmsg(ifindex, 0, TC_H_ROOT))
    .str(TCA_KIND, 'plug')
    .attr(TCA_OPTIONS, plugQopt(action, 0))
    .finish();
}

// ---- nfnetlink: nf_tables (the NFQUEUE backend's rule) -----------------------------------------

const NFNL_MSG_BATCH_BEGIN = 16;
const NFNL_MSG_BATCH_END = 17;
const NFNL_SUBSYS_QUEUE = 3;
const NFNL_SUBSYS_NFTABLES = 10;
const NFT_MSG_NEWTABLE = 0;
const NFT_MSG_DELTABLE = 2;
const NFT_MSG_NEWCHAIN = 3;
const NFT_MSG_NEWRULE = 6;
const NFTA_TABLE_NAME = 1;
const NFTA_TABLE_FLAGS = 2;
const NFT_TABLE_F_OWNER = 2;
const NFTA_CHAIN_TABLE = 1;
const NFTA_CHAIN_NAME = 3;
const NFTA_CHAIN_HOOK = 4;
const NFTA_CHAIN_POLICY = 5;
const NFTA_CHAIN_TYPE = 7;
const NFTA_HOOK_HOOKNUM = 1;
const NFTA_HOOK_PRIORITY = 2;
const NFTA_RULE_TABLE = 1;
const NFTA_RULE_CHAIN = 2;
const NFTA_RULE_EXPRESSIONS = 4;
const NFTA_LIST_ELEM = 1;
const NFTA_EXPR_NAME = 1;
const NFTA_EXPR_DATA = 2;
const NFTA_META_DREG = 1;
const NFTA_META_KEY = 2;
const NFT_META_IIFNAME = 6;
const NFT_REG_1 = 1;
const NFTA_CMP_SREG = 1;
const NFTA_CMP_OP = 2;
const NFTA_CMP_DATA = 3;
const NFT_CMP_EQ = 0;
const NFTA_DATA_VALUE = 1;
const NFTA_TARGET_NAME = 1;
const NFTA_TARGET_REV = 2;
const NFTA_TARGET_INFO = 3;
export const NFPROTO_INET = 1;
const NF_INET_PRE_ROUTING = 0;
/** NF_IP_PRI_RAW: before connection tracking */
const PREROUTING_PRIORITY = -300;
export const NF_ACCEPT = 1;

/** struct nfgenmsg: family, version (NFNETLINK_V0), res_id (big endian) */
function nfgenmsg(family: number, resId: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt8(family, 0);
  b.writeUInt16BE(resId, 2);
  return b;
}

const nftType = (msg: number) => (NFNL_SUBSYS_NFTABLES << 8) | msg;

/**
 * One nf_tables transaction: an inet table owned by this socket (the kernel removes it when the
 * socket closes, whatever ends the process), a prerouting chain, and per interface one rule
 * `iifname IF queue num Q` (the xt NFQUEUE target, revision 3, through nft_compat: this kernel
 * family has no nft `queue` expression everywhere). IPv4 and IPv6 only: nft_compat refuses NFQUEUE
 * in the bridge family, and the netdev family cannot queue (no way to reinject).
 */
export function nftQueueRules(
  table: string,
  interfaces: readonly string[],
  queue: number,
  seq: number,
): Buffer {
  const parts: Buffer[] = [];
  let s = seq;
  parts.push(
    new NlWriter(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, s++).bytes(nfgenmsg(0, NFNL_SUBSYS_NFTABLES)).finish(),
  );
  parts.push(
    new NlWriter(nftType(NFT_MSG_NEWTABLE), NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE, s++)
      .bytes(nfgenmsg(NFPROTO_INET, 0))
      .str(NFTA_TABLE_NAME, table)
      .be32(NFTA_TABLE_FLAGS, NFT_TABLE_F_OWNER)
      .finish(),
  );
  parts.push(
    new NlWriter(nftType(NFT_MSG_NEWCHAIN), NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE, s++)
      .bytes(nfgenmsg(NFPROTO_INET, 0))
      .str(NFTA_CHAIN_TABLE, table)
      .str(NFTA_CHAIN_NAME, 'out')
      .nest(NFTA_CHAIN_HOOK, true)
      .be32(NFTA_HOOK_HOOKNUM, NF_INET_PRE_ROUTING)
      .be32(NFTA_HOOK_PRIORITY, PREROUTING_PRIORITY)
      .end()
      .be32(NFTA_CHAIN_POLICY, NF_ACCEPT)
      .str(NFTA_CHAIN_TYPE, 'filter')
      .finish(),
  );
  const info = Buffer.alloc(6); // struct xt_NFQ_info_v3: queuenum, queues_total, flags (host order)
  info.writeUInt16LE(queue, 0);
  info.writeUInt16LE(1, 2);
  for (const ifname of interfaces) {
    const name = Buffer.alloc(16); // IFNAMSIZ, zero padded: an exact match
    name.write(ifname, 'latin1');
    parts.push(
      new NlWriter(nftType(NFT_MSG_NEWRULE), NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND, s++)
        .bytes(nfgenmsg(NFPROTO_INET, 0))
        .str(NFTA_RULE_TABLE, table)
        .str(NFTA_RULE_CHAIN, 'out')
        .nest(NFTA_RULE_EXPRESSIONS, true)
        .nest(NFTA_LIST_ELEM, true)
        .str(NFTA_EXPR_NAME, 'meta')
        .nest(NFTA_EXPR_DATA, true)
        .be32(NFTA_META_KEY, NFT_META_IIFNAME)
        .be32(NFTA_META_DREG, NFT_REG_1)
        .end()
        .end()
        .nest(NFTA_LIST_ELEM, true)
        .str(NFTA_EXPR_NAME, 'cmp')
        .nest(NFTA_EXPR_DATA, true)
        .be32(NFTA_CMP_SREG, NFT_REG_1)
        .be32(NFTA_CMP_OP, NFT_CMP_EQ)
        .nest(NFTA_CMP_DATA, true)
        .attr(NFTA_DATA_VALUE, name)
        .end()
        .end()
        .end()
        .nest(NFTA_LIST_ELEM, true)
        .str(NFTA_EXPR_NAME, 'target')
        .nest(NFTA_EXPR_DATA, true)
        .str(NFTA_TARGET_NAME, 'NFQUEUE')
        .be32(NFTA_TARGET_REV, 3)
        .attr(NFTA_TARGET_INFO, info)
        .end()
        .end()
        .end()
        .finish(),
    );
  }
  parts.push(
    new NlWriter(NFNL_MSG_BATCH_END, NLM_F_REQUEST, s++).bytes(nfgenmsg(0, NFNL_SUBSYS_NFTABLES)).finish(),
  );
  return Buffer.concat(parts);
}

/** One nf_tables transaction deleting the (inet) table, its chain and rules */
export function nftDelTable(table: string, seq: number): Buffer {
  return Buffer.concat([
    new NlWriter(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq).bytes(nfgenmsg(0, NFNL_SUBSYS_NFTABLES)).finish(),
    new NlWriter(nftType(NFT_MSG_DELTABLE), NLM_F_REQUEST | NLM_F_ACK, seq + 1)
      .bytes(nfgenmsg(NFPROTO_INET, 0))
      .str(NFTA_TABLE_NAME, table)
      .finish(),
    new NlWriter(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq + 2)
      .bytes(nfgenmsg(0, NFNL_SUBSYS_NFTABLES))
      .finish(),
  ]);
}

// ---- nfnetlink_queue --------------------------------------------------------------------------

const NFQNL_MSG_PACKET = 0;
const NFQNL_MSG_CONFIG = 2;
const NFQNL_MSG_VERDICT_BATCH = 3;
const NFQA_PACKET_HDR = 1;
const NFQA_VERDICT_HDR = 2;
const NFQA_CFG_CMD = 1;
const NFQA_CFG_PARAMS = 2;
const NFQA_CFG_QUEUE_MAXLEN = 3;
const NFQNL_CFG_CMD_BIND = 1;
const NFQNL_COPY_META = 1;
export const NFQ_PACKET_TYPE = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET;

/** bind queue `queue` to this socket, metadata only (no payload copied), at most maxlen packets */
export function nfqBind(queue: number, maxlen: number, seq: number): Buffer {
  const cmd = Buffer.alloc(4); // struct nfqnl_msg_config_cmd: command, pad, pf (be16)
  cmd.writeUInt8(NFQNL_CFG_CMD_BIND, 0);
  const params = Buffer.alloc(5); // struct nfqnl_msg_config_params (packed): copy_range (be32), copy_mode
  params.writeUInt8(NFQNL_COPY_META, 4);
  return new NlWriter((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, seq)
    .bytes(nfgenmsg(0, queue))
    .attr(NFQA_CFG_CMD, cmd)
    .attr(NFQA_CFG_PARAMS, params)
    .be32(NFQA_CFG_QUEUE_MAXLEN, maxlen)
    .finish();
}

/** verdict `verdict` for every packet of `queue` with an id up to `id` (one message per release) */
export function nfqVerdictBatch(queue: number, id: number, verdict: number, seq: number): Buffer {
  const hdr = Buffer.alloc(8); // struct nfqnl_msg_verdict_hdr: verdict, id (both be32)
  hdr.writeUInt32BE(verdict >>> 0, 0);
  hdr.writeUInt32BE(id >>> 0, 4);
  return new NlWriter((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_VERDICT_BATCH, NLM_F_REQUEST | NLM_F_ACK, seq)
    .bytes(nfgenmsg(0, queue))
    .attr(NFQA_VERDICT_HDR, hdr)
    .finish();
}

/** the packet id of an NFQNL_MSG_PACKET payload (nfgenmsg, then attributes), or -1 */
export function nfqPacketId(payload: Buffer): number {
  for (let off = 4; off + 4 <= payload.length;) {
    const len = payload.readUInt16LE(off);
    const type = payload.readUInt16LE(off + 2) & 0x3fff;
    if (len < 4 || off + len > payload.length) break;
    if (type === NFQA_PACKET_HDR && len >= 8) return payload.readUInt32BE(off + 4);
    off += (len + 3) & ~3;
  }
  return -1;
}
