// Every netlink message of network output buffering against golden bytes. The rtnetlink goldens
// are what iproute2 sends for the same operation (captured with `strace -e trace=sendmsg -xx` of
// `tc` / `ip`, same sequence number and ifindexes); the nfnetlink goldens are written by hand from
// the UAPI layouts (nfnetlink.h, nf_tables.h, nf_tables_compat.h, nfnetlink_queue.h, xt_NFQUEUE.h).
import { describe, expect, it } from 'vitest';
import { messages as M } from '../../src/netbuf/index.js';
import { parseError, parseMessages } from '../../src/xen/netlink.js';

const hex = (s: string) => Buffer.from(s.replace(/#.*$/gm, '').replace(/\s+/g, ''), 'hex');
const SEQ = 1796292788; // b440116b little endian

describe('rtnetlink messages (golden bytes from tc / ip)', () => {
  it('ip link add ifb7 type ifb', () => {
    expect(M.linkAddIfb('ifb7', SEQ)).toEqual(
      hex(`38000000 1000 0506 b440116b 00000000   # nlmsghdr: 56, RTM_NEWLINK, REQUEST|ACK|EXCL|CREATE
           00 00 0000 00000000 00000000 00000000 # ifinfomsg
           0900 0300 69666237 00 000000          # IFLA_IFNAME "ifb7"
           0c00 1200 0700 0100 696662 00         # IFLA_LINKINFO { IFLA_INFO_KIND "ifb" }`),
    );
  });

  it('tc qdisc add dev ifb9 root handle 1: plug limit 10000', () => {
    expect(M.qdiscAddPlug(5, 10000, SEQ)).toEqual(
      hex(`3c000000 2400 0506 b440116b 00000000   # 60, RTM_NEWQDISC, REQUEST|ACK|EXCL|CREATE
           00 00 0000 05000000 00000100 ffffffff 00000000  # tcmsg: ifindex 5, handle 1:0, parent root
           0900 0100 706c7567 00 000000          # TCA_KIND "plug"
           0c00 0200 03000000 10270000           # TCA_OPTIONS tc_plug_qopt { TCQ_PLUG_LIMIT, 10000 }`),
    );
  });

  it.each([
    ['block', M.TCQ_PLUG_BUFFER, '00000000'],
    ['release', M.TCQ_PLUG_RELEASE_ONE, '01000000'],
    ['release_indefinite', M.TCQ_PLUG_RELEASE_INDEFINITE, '02000000'],
  ])('tc qdisc change dev ifb9 root plug %s', (_name, action, code) => {
    expect(M.qdiscPlugAction(5, action, SEQ)).toEqual(
      hex(`3c000000 2400 0500 b440116b 00000000   # 60, RTM_NEWQDISC, REQUEST|ACK
           00 00 0000 05000000 00000000 ffffffff 00000000
           0900 0100 706c7567 00 000000
           0c00 0200 ${code} 00000000`),
    );
  });

  it('tc qdisc add dev v0 ingress / del', () => {
    const body = `00 00 0000 03000000 0000ffff f1ffffff 00000000  # tcmsg: ifindex 3, handle ffff:, parent ingress
                  0c00 0100 696e6772657373 00      # TCA_KIND "ingress"`;
    expect(M.qdiscAddIngress(3, SEQ)).toEqual(hex(`30000000 2400 0506 b440116b 00000000 ${body}`));
    expect(M.qdiscDelIngress(3, SEQ)).toEqual(hex(`30000000 2500 0500 b440116b 00000000 ${body}`));
  });

  it('tc filter add dev v0 parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev ifb9', () => {
    expect(M.filterAddRedirect(3, 4, SEQ)).toEqual(
      hex(`8c000000 2c00 0506 b440116b 00000000   # 140, RTM_NEWTFILTER, REQUEST|ACK|EXCL|CREATE
           00 00 0000 03000000 00000000 0000ffff 00030100  # tcmsg: parent ffff:, info prio 1 | htons(ETH_P_ALL)
           0800 0100 75333200                    # TCA_KIND "u32"
           6000 0200                             # TCA_OPTIONS
             3800 0700                           #   TCA_U32_ACT
               3400 0100                         #     action 1
                 0b00 0100 6d697272656400 00     #       TCA_ACT_KIND "mirred"
                 2400 0280                       #       TCA_ACT_OPTIONS (nested)
                   2000 0200 00000000 00000000 04000000 00000000 00000000 01000000 04000000
                                                 #         TCA_MIRRED_PARMS: STOLEN, EGRESS_REDIR, ifindex 4
             2400 0500 01 00 01 00 0000 0000 0000 0000 00000000   # TCA_U32_SEL: TERMINAL, 1 key
                       00000000 00000000 00000000 00000000        #   key: mask 0, val 0 (all)`),
    );
  });

  it('ip link set up / del / RTM_GETLINK by name', () => {
    expect(M.linkSetUp(7, 9)).toEqual(
      hex('20000000 1000 0500 09000000 00000000  00 00 0000 07000000 01000000 01000000'),
    );
    expect(M.linkDel(7, 9)).toEqual(
      hex('20000000 1100 0500 09000000 00000000  00 00 0000 07000000 00000000 00000000'),
    );
    expect(M.linkGet('v0', 9)).toEqual(
      hex('28000000 1200 0100 09000000 00000000  00 00 0000 00000000 00000000 00000000  0700 0300 763000 00'),
    );
  });
});

describe('nfnetlink messages (golden bytes from the UAPI layouts)', () => {
  it('nf_tables transaction: inet table owned by the socket, prerouting chain, iifname v0 -> NFQUEUE 5', () => {
    expect(M.nftQueueRules('t', ['v0'], 5, 1)).toEqual(
      hex(`14000000 1000 0100 01000000 00000000 00 00 000a   # NFNL_MSG_BATCH_BEGIN, res_id NFTABLES
           24000000 000a 0504 02000000 00000000 01 00 0000   # NFT_MSG_NEWTABLE inet, REQUEST|ACK|CREATE
             0600 0100 7400 0000                             #   NFTA_TABLE_NAME "t"
             0800 0200 00000002                              #   NFTA_TABLE_FLAGS OWNER
           4c000000 030a 0504 03000000 00000000 01 00 0000   # NFT_MSG_NEWCHAIN
             0600 0100 7400 0000                             #   NFTA_CHAIN_TABLE
             0800 0300 6f757400                              #   NFTA_CHAIN_NAME "out"
             1400 0480 0800 0100 00000000 0800 0200 fffffed4 #   NFTA_CHAIN_HOOK { PRE_ROUTING, -300 }
             0800 0500 00000001                              #   NFTA_CHAIN_POLICY ACCEPT
             0b00 0700 66696c74657200 00                     #   NFTA_CHAIN_TYPE "filter"
           b8000000 060a 050c 04000000 00000000 01 00 0000   # NFT_MSG_NEWRULE, REQUEST|ACK|CREATE|APPEND
             0600 0100 7400 0000                             #   NFTA_RULE_TABLE
             0800 0200 6f757400                              #   NFTA_RULE_CHAIN
             9400 0480                                       #   NFTA_RULE_EXPRESSIONS
               2400 0180 0900 0100 6d65746100 000000         #     meta
                 1400 0280 0800 0200 00000006 0800 0100 00000001          # KEY IIFNAME, DREG 1
               3800 0180 0800 0100 636d7000                  #     cmp
                 2c00 0280 0800 0100 00000001 0800 0200 00000000          # SREG 1, OP EQ
                   1800 0380 1400 0100 76300000 00000000 00000000 00000000 # DATA "v0" (IFNAMSIZ)
               3400 0180 0b00 0100 74617267657400 00         #     target
                 2400 0280 0c00 0100 4e4651554555450 0       #       NAME "NFQUEUE"
                   0800 0200 00000003                        #       REV 3
                   0a00 0300 0500 0100 0000 0000             #       INFO xt_NFQ_info_v3 { 5, 1, 0 }
           14000000 1100 0100 05000000 00000000 00 00 000a   # NFNL_MSG_BATCH_END`),
    );
  });

  it('nf_tables: delete the table', () => {
    expect(M.nftDelTable('t', 1)).toEqual(
      hex(`14000000 1000 0100 01000000 00000000 00 00 000a
           1c000000 020a 0500 02000000 00000000 01 00 0000 0600 0100 7400 0000
           14000000 1100 0100 03000000 00000000 00 00 000a`),
    );
  });

  it('nfnetlink_queue: bind (metadata only, maxlen) and batch verdict', () => {
    expect(M.nfqBind(5, 65536, 7)).toEqual(
      hex(`30000000 0203 0500 07000000 00000000 00 00 0005   # NFQNL_MSG_CONFIG, queue 5
           0800 0100 01 00 0000                               # NFQA_CFG_CMD BIND
           0900 0200 00000000 01 000000                       # NFQA_CFG_PARAMS range 0, COPY_META
           0800 0300 00010000                                 # NFQA_CFG_QUEUE_MAXLEN 65536`),
    );
    expect(M.nfqVerdictBatch(5, 0x01020304, M.NF_ACCEPT, 8)).toEqual(
      hex(`20000000 0303 0500 08000000 00000000 00 00 0005   # NFQNL_MSG_VERDICT_BATCH, queue 5
           0c00 0200 00000001 01020304                        # NFQA_VERDICT_HDR ACCEPT up to id`),
    );
  });

  it('parses a packet notification id, a link reply, and an error with its extended-ACK text', () => {
    const pkt = hex(
      '24000000 0003 0000 00000000 00000000 00 00 0005  0b00 0100 0000002a 0800 03 00  0800 0500 03000000',
    );
    const [m] = parseMessages(pkt, pkt.length);
    expect(m!.type).toBe(M.NFQ_PACKET_TYPE);
    expect(M.nfqPacketId(m!.payload)).toBe(42);
    const link = hex('00 00 0000 07000000 00000000 00000000  0700 0300 763000 00  0800 0a00 02000000');
    expect(M.parseLink(link)).toEqual({ ifindex: 7, master: 2, name: 'v0' });
    const err = hex(`38000000 0200 0003 09000000 00000000  feffffff  20000000 2400 0506 09000000 00000000
                     1200 0100 6e6f2073756368207164697363 00 0000`);
    const [e] = parseMessages(err, err.length);
    expect(parseError(e!)).toEqual({ errno: 2, seq: 9, message: 'no such qdisc' });
  });
});
