// Network output buffering for Remus: what the guest sends is held in the kernel until the backup
// holds the checkpoint that produced it. Two backends behind one interface:
//
//  plug     (as libxl's netbuffer): per vif an IFB device, the vif's ingress (= what the guest sends)
//           redirected to it by a u32 match-all filter with a mirred action, a `plug` qdisc on the
//           IFB. plug(n) inserts a plug (TCQ_PLUG_BUFFER), release(n) lets the closed epoch out
//           (TCQ_PLUG_RELEASE_ONE). Needs sch_plug (CONFIG_NET_SCH_PLUG); any vif.
//  nfqueue  an nf_tables inet table owned by our netlink socket queues (NFQUEUE) every IPv4/IPv6
//           packet entering on a vif, at prerouting; the kernel holds the packets, we read only their
//           ids, and a release is one batch verdict up to the epoch's last id. Needs nft_compat with
//           xt_NFQUEUE; a bridged vif needs br_netfilter (bridge-nf-call-iptables/ip6tables = 1).
//           Other protocols (ARP, ...) are NOT held. Used when sch_plug is missing.
//
// Epochs: output produced before the suspend of checkpoint n (and after the previous one) is epoch
// n; plug(n) closes it inside the pause window, release(n) lets it out once checkpoint n is safe.
// Until the first plug everything passes (no replica exists yet that could take over).
import { readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { isXenError } from '../xen/hypervisor.js';
import { NETLINK_NETFILTER, NETLINK_ROUTE, openNetlink, type NetlinkSocket } from '../xen/netlink.js';
import type { LoadOptions } from '../xen/loader.js';
import {
  filterAddRedirect,
  IFNAME_MAX,
  linkAddIfb,
  linkDel,
  linkGet,
  linkSetUp,
  NF_ACCEPT,
  NFQ_PACKET_TYPE,
  nfqBind,
  nfqPacketId,
  nfqVerdictBatch,
  nftDelTable,
  nftQueueRules,
  parseLink,
  qdiscAddIngress,
  qdiscAddPlug,
  qdiscDelIngress,
  qdiscPlugAction,
  RTM_NEWLINK,
  TCQ_PLUG_BUFFER,
  TCQ_PLUG_RELEASE_INDEFINITE,
  TCQ_PLUG_RELEASE_ONE,
} from './messages.js';

export type NetBufferBackend = 'plug' | 'nfqueue';

/** The output buffer of a replicated guest, as Remus drives it. Every method is synchronous. */
export interface NetBuffer {
  readonly backend: string;
  readonly interfaces: readonly string[];
  /** Creates what buffering needs; on failure removes what it created and throws NetBufferError. */
  setup(): void;
  /** Inside the pause window of checkpoint n: closes epoch n (what was sent before this suspend). */
  plug(n: number): void;
  /** Checkpoint n is safe (ACKed, or written towards a receiver without ACKs): epochs <= n go out. */
  release(n: number): void;
  /** Lets everything held out and stops holding (replication ended, the guest runs on here). */
  releaseAll(): void;
  /** Removes everything setup() created; output still held is dropped. Never throws. */
  teardown(): void;
}

export const NetBufferErrorCode = {
  /** the kernel lacks what the backend needs (sch_plug, nft_compat/NFQUEUE, a bridge) */
  ERR_NET_BUFFER_UNSUPPORTED: 'ERR_NET_BUFFER_UNSUPPORTED',
  /** setting up failed (no such interface, state left by another run, no permission) */
  ERR_NET_BUFFER_SETUP: 'ERR_NET_BUFFER_SETUP',
  /** a per-checkpoint operation failed */
  ERR_NET_BUFFER: 'ERR_NET_BUFFER',
} as const;
export type NetBufferErrorCode = (typeof NetBufferErrorCode)[keyof typeof NetBufferErrorCode];

export class NetBufferError extends Error {
  readonly code: NetBufferErrorCode;
  readonly iface: string | undefined;
  constructor(code: NetBufferErrorCode, message: string, info: { iface?: string; cause?: unknown } = {}) {
    super(message, { cause: info.cause });
    this.name = 'NetBufferError';
    this.code = code;
    this.iface = info.iface;
  }
}

export interface NetBufferOptions extends LoadOptions {
  /** the guest's backend interfaces in dom0 (vifD.N), or their stand-ins */
  interfaces: readonly string[];
  /** plug: byte limit of each IFB's queue (default 16 MiB); beyond it packets are dropped */
  limitBytes?: number;
  /** nfqueue: queue number (default 7000 + pid % 1000) and most packets held (default 65536) */
  queue?: number;
  maxPackets?: number;
  log?: (line: string) => void;
}

const errnoOf = (e: unknown) => (isXenError(e) ? e.errno : 0);
const DEFAULT_LIMIT = 16 * 1024 * 1024;

function checkNames(interfaces: readonly string[]): string[] {
  if (!Array.isArray(interfaces) || interfaces.length === 0)
    throw new TypeError('interfaces must name at least one interface');
  for (const n of interfaces)
    if (typeof n !== 'string' || n.length === 0 || n.length > IFNAME_MAX || /[\s/:\0]/.test(n))
      throw new TypeError(`not an interface name: ${JSON.stringify(n)}`);
  if (new Set(interfaces).size !== interfaces.length)
    throw new TypeError(`interfaces named twice: ${interfaces.join(', ')}`);
  return Array.from(interfaces, String);
}

function lookupLink(rt: NetlinkSocket, name: string): { ifindex: number; master: number } {
  let replies;
  try {
    replies = rt.request(linkGet(name, rt.nextSeq()), 'RTM_GETLINK');
  } catch (e) {
    if (errnoOf(e) === constants.errno.ENODEV || errnoOf(e) === constants.errno.ENOENT)
      throw new NetBufferError(
        NetBufferErrorCode.ERR_NET_BUFFER_SETUP,
        `no network interface ${name} (is the guest's vif up?)`,
        { iface: name, cause: e },
      );
    throw e;
  }
  const m = replies.find((r) => r.type === RTM_NEWLINK);
  if (!m)
    throw new NetBufferError(
      NetBufferErrorCode.ERR_NET_BUFFER_SETUP,
      `no answer describing interface ${name}`,
      { iface: name },
    );
  return parseLink(m.payload);
}

// ---- plug ------------------------------------------------------------------------------------

interface PlugVif {
  name: string;
  ifindex: number;
  ifb: number;
  ifbName: string;
  ingress: boolean;
  buffer: Buffer;
  releaseOne: Buffer;
  releaseAll: Buffer;
}

export class PlugNetBuffer implements NetBuffer {
  readonly backend = 'plug';
  readonly interfaces: readonly string[];
  readonly #opts: NetBufferOptions;
  #rt: NetlinkSocket | null = null;
  readonly #vifs: PlugVif[] = [];
  /** the checkpoint whose epoch is closed and not yet released (sch_plug holds one such epoch) */
  #closed: number | null = null;
  #passthrough = true;

  constructor(opts: NetBufferOptions) {
    this.interfaces = checkNames(opts.interfaces);
    this.#opts = opts;
  }

  setup(): void {
    const { limitBytes = DEFAULT_LIMIT } = this.#opts;
    if (!Number.isInteger(limitBytes) || limitBytes < 65536 || limitBytes > 0xffffffff)
      throw new RangeError(`limitBytes must be in 65536..2^32-1, got ${limitBytes}`);
    const rt = (this.#rt = openNetlink(NETLINK_ROUTE, this.#opts));
    try {
      for (const name of this.interfaces) {
        const { ifindex } = lookupLink(rt, name);
        const ifbName = `xnb${ifindex}`;
        const v: PlugVif = {
          name,
          ifindex,
          ifb: 0,
          ifbName,
          ingress: false,
          buffer: Buffer.alloc(0),
          releaseOne: Buffer.alloc(0),
          releaseAll: Buffer.alloc(0),
        };
        try {
          rt.request(linkAddIfb(ifbName, rt.nextSeq()), 'RTM_NEWLINK');
        } catch (e) {
          if (errnoOf(e) === constants.errno.EEXIST)
            throw new NetBufferError(
              NetBufferErrorCode.ERR_NET_BUFFER_SETUP,
              `${ifbName} exists (left by a run that was killed?): remove it with 'ip link del ${ifbName}' and the ingress qdisc of ${name} with 'tc qdisc del dev ${name} ingress'`,
              { iface: name, cause: e },
            );
          if (errnoOf(e) === constants.errno.EOPNOTSUPP)
            throw new NetBufferError(
              NetBufferErrorCode.ERR_NET_BUFFER_UNSUPPORTED,
              `this kernel has no IFB devices (CONFIG_IFB, module ifb)`,
              { iface: name, cause: e },
            );
          throw e;
        }
        this.#vifs.push(v);
        v.ifb = lookupLink(rt, ifbName).ifindex;
        try {
          rt.request(qdiscAddPlug(v.ifb, limitBytes, rt.nextSeq()), 'RTM_NEWQDISC');
        } catch (e) {
          if (errnoOf(e) === constants.errno.ENOENT || errnoOf(e) === constants.errno.EOPNOTSUPP)
            throw new NetBufferError(
              NetBufferErrorCode.ERR_NET_BUFFER_UNSUPPORTED,
              `this kernel has no plug qdisc (CONFIG_NET_SCH_PLUG; try 'modprobe sch_plug')`,
              { iface: name, cause: e },
            );
          throw e;
        }
        v.buffer = qdiscPlugAction(v.ifb, TCQ_PLUG_BUFFER, 0);
        v.releaseOne = qdiscPlugAction(v.ifb, TCQ_PLUG_RELEASE_ONE, 0);
        v.releaseAll = qdiscPlugAction(v.ifb, TCQ_PLUG_RELEASE_INDEFINITE, 0);
        // until the first checkpoint everything passes; then the IFB comes up and takes the traffic
        rt.requestAck(v.releaseAll, 'TCQ_PLUG_RELEASE_INDEFINITE');
        rt.request(linkSetUp(v.ifb, rt.nextSeq()), 'RTM_NEWLINK');
        try {
          rt.request(qdiscAddIngress(ifindex, rt.nextSeq()), 'RTM_NEWQDISC');
        } catch (e) {
          if (errnoOf(e) === constants.errno.EEXIST)
            throw new NetBufferError(
              NetBufferErrorCode.ERR_NET_BUFFER_SETUP,
              `${name} already has an ingress (or clsact) qdisc: xenmig does not share it; remove it ('tc qdisc del dev ${name} ingress') or replicate with --no-net-buffer`,
              { iface: name, cause: e },
            );
          throw e;
        }
        v.ingress = true;
        rt.request(filterAddRedirect(ifindex, v.ifb, rt.nextSeq()), 'RTM_NEWTFILTER');
      }
    } catch (e) {
      this.teardown();
      if (e instanceof NetBufferError || e instanceof RangeError) throw e;
      throw new NetBufferError(
        NetBufferErrorCode.ERR_NET_BUFFER_SETUP,
        `network buffering setup failed: ${(e as Error).message}`,
        { cause: e },
      );
    }
  }

  #each(what: string, pick: (v: PlugVif) => Buffer): void {
    const rt = this.#rt;
    if (!rt)
      throw new NetBufferError(NetBufferErrorCode.ERR_NET_BUFFER, `${what}: network buffering is not set up`);
    for (const v of this.#vifs) {
      try {
        rt.requestAck(pick(v), what);
      } catch (e) {
        throw new NetBufferError(
          NetBufferErrorCode.ERR_NET_BUFFER,
          `${what} on ${v.ifbName} (${v.name}): ${(e as Error).message}`,
          { iface: v.name, cause: e },
        );
      }
    }
  }

  plug(n: number): void {
    // sch_plug remembers the size of one closed epoch: a second plug before its release would
    // merge the counts and let unacknowledged packets out
    if (this.#closed !== null)
      throw new NetBufferError(
        NetBufferErrorCode.ERR_NET_BUFFER,
        `plug(${n}) while epoch ${this.#closed} is still held: sch_plug holds one closed epoch`,
      );
    this.#each('TCQ_PLUG_BUFFER', (v) => v.buffer);
    this.#closed = n;
    this.#passthrough = false;
  }

  release(n: number): void {
    if (this.#closed === null || this.#closed > n) return; // nothing closed up to n
    this.#each('TCQ_PLUG_RELEASE_ONE', (v) => v.releaseOne);
    this.#closed = null;
  }

  releaseAll(): void {
    if (this.#passthrough) return;
    this.#each('TCQ_PLUG_RELEASE_INDEFINITE', (v) => v.releaseAll);
    this.#closed = null;
    this.#passthrough = true;
  }

  teardown(): void {
    const rt = this.#rt;
    if (!rt) return;
    for (const v of this.#vifs.splice(0).reverse()) {
      // the ingress qdisc goes first (with its filter): the vif's traffic flows directly again
      if (v.ingress)
        tryDo(() => rt.request(qdiscDelIngress(v.ifindex, rt.nextSeq()), 'RTM_DELQDISC'), this.#opts.log);
      if (v.ifb) tryDo(() => rt.request(linkDel(v.ifb, rt.nextSeq()), 'RTM_DELLINK'), this.#opts.log);
      else
        tryDo(
          () => rt.request(linkDel(lookupLink(rt, v.ifbName).ifindex, rt.nextSeq()), 'RTM_DELLINK'),
          this.#opts.log,
        );
    }
    rt.close();
    this.#rt = null;
  }
}

function tryDo(f: () => unknown, log?: (l: string) => void): void {
  try {
    f();
  } catch (e) {
    log?.(`network buffering teardown: ${(e as Error).message}`);
  }
}

// ---- nfqueue ---------------------------------------------------------------------------------

export class NfqueueNetBuffer implements NetBuffer {
  readonly backend = 'nfqueue';
  readonly interfaces: readonly string[];
  readonly #opts: NetBufferOptions;
  readonly #queue: number;
  #nft: NetlinkSocket | null = null;
  #q: NetlinkSocket | null = null;
  #timer: NodeJS.Timeout | null = null;
  /** highest packet id seen queued, id released up to (both u32, -1 = none) */
  #seen = -1;
  #released = -1;
  readonly #epochs: { n: number; last: number }[] = [];
  #passthrough = true;
  /** packets the kernel could not report to us (socket overflow): dropped by the kernel */
  lost = 0;

  constructor(opts: NetBufferOptions) {
    this.interfaces = checkNames(opts.interfaces);
    this.#opts = opts;
    this.#queue = opts.queue ?? 7000 + (process.pid % 1000);
    if (!Number.isInteger(this.#queue) || this.#queue < 0 || this.#queue > 65535)
      throw new RangeError(`queue must be in 0..65535, got ${this.#queue}`);
  }

  setup(): void {
    const { maxPackets = 65536 } = this.#opts;
    if (!Number.isInteger(maxPackets) || maxPackets < 1 || maxPackets > 0x7fffffff)
      throw new RangeError(`maxPackets must be a positive integer, got ${maxPackets}`);
    try {
      const rt = openNetlink(NETLINK_ROUTE, this.#opts);
      try {
        for (const name of this.interfaces) {
          if (!lookupLink(rt, name).master) continue;
          // a bridge port: its IP traffic meets the inet hooks only through br_netfilter
          for (const f of ['bridge-nf-call-iptables', 'bridge-nf-call-ip6tables']) {
            let v = '';
            try {
              v = readFileSync(`/proc/sys/net/bridge/${f}`, 'utf8').trim();
            } catch {
              /* br_netfilter not loaded */
            }
            if (v !== '1')
              throw new NetBufferError(
                NetBufferErrorCode.ERR_NET_BUFFER_UNSUPPORTED,
                `${name} is a bridge port and net.bridge.${f} is not 1: the nfqueue backend would not see its traffic ('modprobe br_netfilter; sysctl -w net.bridge.${f}=1', or load sch_plug)`,
                { iface: name },
              );
          }
        }
      } finally {
        rt.close();
      }
      const q = (this.#q = openNetlink(NETLINK_NETFILTER, { ...this.#opts, rcvbuf: 8 * 1024 * 1024 }));
      q.request(nfqBind(this.#queue, maxPackets, q.nextSeq()), 'NFQNL_CFG_CMD_BIND');
      const nft = (this.#nft = openNetlink(NETLINK_NETFILTER, this.#opts));
      const seq = nft.nextSeq();
      for (let i = 0; i < this.interfaces.length + 3; i++) nft.nextSeq();
      try {
        nft.request(
          nftQueueRules(`xenmig_${process.pid}_${this.#queue}`, this.interfaces, this.#queue, seq),
          'NFT_MSG_NEWRULE',
        );
      } catch (e) {
        if (errnoOf(e) === constants.errno.ENOENT || errnoOf(e) === constants.errno.EOPNOTSUPP)
          throw new NetBufferError(
            NetBufferErrorCode.ERR_NET_BUFFER_UNSUPPORTED,
            `this kernel cannot queue packets to NFQUEUE from nf_tables (CONFIG_NF_TABLES_INET, CONFIG_NFT_COMPAT, CONFIG_NETFILTER_XT_TARGET_NFQUEUE)`,
            { cause: e },
          );
        throw e;
      }
      this.#timer = setInterval(() => {
        try {
          this.#drain();
        } catch (e) {
          this.#opts.log?.(`network buffering: ${(e as Error).message}`);
        }
      }, 5);
      this.#timer.unref();
    } catch (e) {
      this.teardown();
      if (e instanceof NetBufferError || e instanceof RangeError) throw e;
      throw new NetBufferError(
        NetBufferErrorCode.ERR_NET_BUFFER_SETUP,
        `network buffering setup failed: ${(e as Error).message}`,
        { cause: e },
      );
    }
  }

  /** Reads the ids of newly queued packets; while nothing is plugged, lets them straight out. */
  #drain(): void {
    const q = this.#q;
    if (!q) return;
    for (;;) {
      let msgs;
      try {
        msgs = q.pending('recv');
      } catch (e) {
        if (errnoOf(e) === constants.errno.ENOBUFS) {
          this.lost++;
          continue;
        }
        throw e;
      }
      if (msgs.length === 0) break;
      for (const m of msgs) {
        if (m.type !== NFQ_PACKET_TYPE) continue;
        const id = nfqPacketId(m.payload);
        if (id >= 0 && (this.#seen < 0 || ((id - this.#seen) | 0) > 0)) this.#seen = id;
      }
    }
    if (this.#passthrough) this.#verdictUpTo(this.#seen);
  }

  #verdictUpTo(id: number): void {
    if (id < 0 || (this.#released >= 0 && ((id - this.#released) | 0) <= 0)) return;
    const q = this.#q!;
    try {
      q.requestAck(nfqVerdictBatch(this.#queue, id, NF_ACCEPT, 0), 'NFQNL_MSG_VERDICT_BATCH');
    } catch (e) {
      // ENOENT: none of those packets is queued any more (e.g. the interface went down)
      if (errnoOf(e) !== constants.errno.ENOENT)
        throw new NetBufferError(
          NetBufferErrorCode.ERR_NET_BUFFER,
          `NFQUEUE verdict up to packet ${id}: ${(e as Error).message}`,
          { cause: e },
        );
    }
    this.#released = id;
  }

  plug(n: number): void {
    if (!this.#q)
      throw new NetBufferError(NetBufferErrorCode.ERR_NET_BUFFER, 'plug: network buffering is not set up');
    this.#drain();
    this.#passthrough = false;
    this.#epochs.push({ n, last: this.#seen });
  }

  release(n: number): void {
    if (!this.#q)
      throw new NetBufferError(NetBufferErrorCode.ERR_NET_BUFFER, 'release: network buffering is not set up');
    let last = -1;
    while (this.#epochs.length && this.#epochs[0]!.n <= n) last = this.#epochs.shift()!.last;
    if (last >= 0) this.#verdictUpTo(last);
  }

  releaseAll(): void {
    if (!this.#q) return;
    this.#passthrough = true;
    this.#epochs.length = 0;
    this.#drain();
  }

  teardown(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    // the table is owned by the nft socket: closing it removes the rules (also when we are killed);
    // deleting it first makes the removal explicit. Closing the queue socket drops what is held.
    if (this.#nft) {
      const nft = this.#nft;
      const seq = nft.nextSeq();
      nft.nextSeq();
      nft.nextSeq();
      tryDo(
        () => nft.request(nftDelTable(`xenmig_${process.pid}_${this.#queue}`, seq), 'NFT_MSG_DELTABLE'),
        this.#opts.log,
      );
      tryDo(() => nft.close(), this.#opts.log);
      this.#nft = null;
    }
    if (this.#q) {
      tryDo(() => this.#q!.close(), this.#opts.log);
      this.#q = null;
    }
  }
}

/**
 * The plug backend, or (when this kernel has no sch_plug) the nfqueue backend: chosen in setup(),
 * which throws NetBufferError, leaving nothing behind, when neither can work.
 */
export class AutoNetBuffer implements NetBuffer {
  readonly interfaces: readonly string[];
  #chosen: NetBuffer | null = null;
  constructor(private readonly opts: NetBufferOptions) {
    this.interfaces = checkNames(opts.interfaces);
  }
  get backend(): string {
    return this.#chosen?.backend ?? 'auto';
  }
  setup(): void {
    const p = new PlugNetBuffer(this.opts);
    try {
      p.setup();
      this.#chosen = p;
      return;
    } catch (e) {
      if (!(e instanceof NetBufferError) || e.code !== NetBufferErrorCode.ERR_NET_BUFFER_UNSUPPORTED) throw e;
      this.opts.log?.(`network buffering: ${e.message}; using the nfqueue backend`);
      const b = new NfqueueNetBuffer(this.opts);
      try {
        b.setup();
      } catch (e2) {
        if (e2 instanceof NetBufferError)
          throw new NetBufferError(
            e2.code,
            `no network buffering backend works here: plug: ${e.message}; nfqueue: ${e2.message}`,
            { ...(e2.iface ? { iface: e2.iface } : {}), cause: e2 },
          );
        throw e2;
      }
      this.#chosen = b;
    }
  }
  #b(): NetBuffer {
    if (!this.#chosen)
      throw new NetBufferError(NetBufferErrorCode.ERR_NET_BUFFER, 'network buffering is not set up');
    return this.#chosen;
  }
  plug(n: number): void {
    this.#b().plug(n);
  }
  release(n: number): void {
    this.#b().release(n);
  }
  releaseAll(): void {
    this.#chosen?.releaseAll();
  }
  teardown(): void {
    this.#chosen?.teardown();
  }
}

/** A NetBuffer of the given backend ('auto': plug, else nfqueue), not yet set up. */
export function createNetBuffer(opts: NetBufferOptions & { backend?: NetBufferBackend | 'auto' }): NetBuffer {
  const backend = opts.backend ?? 'auto';
  return backend === 'plug'
    ? new PlugNetBuffer(opts)
    : backend === 'nfqueue'
      ? new NfqueueNetBuffer(opts)
      : new AutoNetBuffer(opts);
}

/** createNetBuffer(), set up. */
export function openNetBuffer(opts: NetBufferOptions & { backend?: NetBufferBackend | 'auto' }): NetBuffer {
  const b = createNetBuffer(opts);
  b.setup();
  return b;
}

/** The dom0 backend interfaces of a guest's vifs, from its libxl config (`nics`). */
export function vifInterfaces(json: Record<string, unknown>, domid: number): string[] {
  const nics = json['nics'];
  if (!Array.isArray(nics)) return [];
  return nics.map((nic, i) => {
    const o = (nic && typeof nic === 'object' ? nic : {}) as Record<string, unknown>;
    if (typeof o['ifname'] === 'string' && o['ifname']) return o['ifname'];
    const devid = Number.isInteger(o['devid']) ? (o['devid'] as number) : i;
    return `vif${domid}.${devid}`;
  });
}
