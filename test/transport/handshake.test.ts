// The migration handshake state machines (xenmig control protocol and xl's strings), run for real:
// both sides over TCP sockets through a fault-injecting proxy that cuts the link before or after
// each handshake message, plus failing domain actions, garbage and timeouts. Every case checks
// where the guest runs at the end: exactly one copy, or — only in the documented in-doubt window
// after CLEARED_TO_UNPAUSE left the sender — at most one.
import { describe, expect, it } from 'vitest';
import net from 'node:net';
import {
  connectTcp,
  listen,
  encodeMessage,
  readExactly,
  readMessage,
  receiverHandshake,
  senderHandshake,
  writeAll,
  writeMessage,
  PeerReportedError,
  ProtocolError,
  TransportTimeoutError,
  XL_MIGRATE_PERMISSION_TO_GO,
  XL_MIGRATE_RECEIVER_BANNER,
  XL_MIGRATE_RECEIVER_READY,
  XL_MIGRATE_REPORT,
  type Channel,
  type HandshakeProtocol,
  type HandshakeTimeouts,
  type ReceiverCallbacks,
  type ReceiverResult,
  type SenderCallbacks,
  type SenderResult,
} from '../../src/transport/index.js';
import { FakeGuest, FaultProxy, type FaultRule } from './helpers.js';

const T: Partial<HandshakeTimeouts> = {
  ready: 8_000,
  received: 8_000,
  done: 8_000,
  cleared: 8_000,
  result: 8_000,
  clearedBack: 8_000,
  bestEffort: 500,
};

async function channelPair(
  proxyRule?: FaultRule,
): Promise<{ sch: Channel; rch: Channel; done(): Promise<void> }> {
  const l = await listen({ host: '127.0.0.1', port: 0, insecure: true });
  const proxy = new FaultProxy(l.address().port, proxyRule);
  await proxy.start();
  const [sch, rch] = await Promise.all([
    connectTcp({ host: '127.0.0.1', port: proxy.port, insecure: true }),
    l.accept({ timeoutMs: 10_000 }),
  ]);
  return {
    sch,
    rch,
    async done() {
      sch.destroy();
      rch.destroy();
      await proxy.close();
      await l.close();
    },
  };
}

interface PairOpts {
  protocol: HandshakeProtocol;
  rule?: FaultRule;
  sender?: (g: FakeGuest) => Partial<SenderCallbacks>;
  receiver?: (g: FakeGuest) => Partial<ReceiverCallbacks>;
  timeouts?: Partial<HandshakeTimeouts>;
}

async function runPair(
  o: PairOpts,
): Promise<{ s: SenderResult; r: ReceiverResult; g: FakeGuest; ms: number }> {
  const g = new FakeGuest();
  const { sch, rch, done } = await channelPair(o.rule);
  const t0 = Date.now();
  const timeouts = { ...T, ...o.timeouts };
  const [s, r] = await Promise.all([
    senderHandshake(sch, g.sender(o.sender?.(g)), { protocol: o.protocol, timeouts }),
    receiverHandshake(rch, g.receiver(o.receiver?.(g)), {
      protocol: o.protocol,
      timeouts,
      version: 't',
      capabilities: [],
    }),
  ]);
  const ms = Date.now() - t0;
  await done();
  // the results agree with the fake domain's state
  expect(s.sourceRuns).toBe(g.sourceRunning);
  expect(r.guestRuns).toBe(g.destRunning);
  if (r.outcome === 'discarded') expect(g.destExists).toBe(false);
  if (s.outcome === 'handed-over') expect(g.sourceDestroyed).toBe(true);
  if (s.outcome === 'in-doubt') {
    expect(g.sourceRunning).toBe(false);
    expect(g.sourceRenamed).toBe(true);
    expect(g.log).toContain('S:in-doubt');
  }
  // never two
  expect(g.runs).toBeLessThanOrEqual(1);
  return { s, r, g, ms };
}

// whole frames, so that "after" delivers the complete message (the receiver announces version 't')
const F = {
  READY: encodeMessage({ type: 'READY', protocol: 1, version: 't', capabilities: [] }),
  DONE: encodeMessage({ type: 'DONE' }),
  RECEIVED: encodeMessage({ type: 'RECEIVED' }),
  CLEARED: encodeMessage({ type: 'CLEARED_TO_UNPAUSE' }),
  RESULT: encodeMessage({ type: 'RESULT', status: 0 }),
};

type Row = [
  label: string,
  rule: FaultRule | undefined,
  sOutcome: SenderResult['outcome'],
  rOutcome: ReceiverResult['outcome'],
  runs: 'source' | 'destination' | 'none',
];

// A slow rename (100 ms) makes sure a cut right after RECEIVED is visible before CLEARED is sent,
// as it would be in reality (renaming a domain takes a xenstore transaction).
const slowRename = (g: FakeGuest): Partial<SenderCallbacks> => ({
  prepareHandover: async () => {
    await new Promise((r) => setTimeout(r, 100));
    g.sourceRenamed = true;
    g.log.push('S:rename-away');
  },
});
const failUnpause = (g: FakeGuest): Partial<ReceiverCallbacks> => ({
  unpause: async () => {
    g.log.push('R:unpause-failed');
    return 1;
  },
});

function checkRuns(g: FakeGuest, runs: Row[4]) {
  expect({ source: g.sourceRunning, destination: g.destRunning }).toEqual({
    source: runs === 'source',
    destination: runs === 'destination',
  });
}

const xenmigRows: Row[] = [
  ['no fault', undefined, 'handed-over', 'running', 'destination'],
  [
    'cut before READY',
    { direction: 'reverse', match: F.READY, when: 'before' },
    'not-started',
    'discarded',
    'source',
  ],
  [
    'cut after READY',
    { direction: 'reverse', match: F.READY, when: 'after' },
    'resumed',
    'discarded',
    'source',
  ],
  [
    'cut before DONE',
    { direction: 'forward', match: F.DONE, when: 'before' },
    'resumed',
    'discarded',
    'source',
  ],
  [
    'cut after DONE',
    { direction: 'forward', match: F.DONE, when: 'after' },
    'resumed',
    'discarded',
    'source',
  ],
  [
    'cut before RECEIVED',
    { direction: 'reverse', match: F.RECEIVED, when: 'before' },
    'resumed',
    'discarded',
    'source',
  ],
  [
    'cut after RECEIVED',
    { direction: 'reverse', match: F.RECEIVED, when: 'after' },
    'resumed',
    'discarded',
    'source',
  ],
  [
    'cut before CLEARED (the in-doubt window)',
    { direction: 'forward', match: F.CLEARED, when: 'before' },
    'in-doubt',
    'discarded',
    'none',
  ],
  [
    'cut after CLEARED',
    { direction: 'forward', match: F.CLEARED, when: 'after' },
    'in-doubt',
    'running',
    'destination',
  ],
  [
    'cut before RESULT',
    { direction: 'reverse', match: F.RESULT, when: 'before' },
    'in-doubt',
    'running',
    'destination',
  ],
  [
    'cut after RESULT',
    { direction: 'reverse', match: F.RESULT, when: 'after' },
    'handed-over',
    'running',
    'destination',
  ],
];

const xlRows: Row[] = [
  ['no fault', undefined, 'handed-over', 'running', 'destination'],
  [
    'cut before banner',
    { direction: 'reverse', match: XL_MIGRATE_RECEIVER_BANNER, when: 'before' },
    'not-started',
    'discarded',
    'source',
  ],
  [
    'cut after banner',
    { direction: 'reverse', match: XL_MIGRATE_RECEIVER_BANNER, when: 'after' },
    'resumed',
    'discarded',
    'source',
  ],
  [
    'cut before "ready to unpause"',
    { direction: 'reverse', match: XL_MIGRATE_RECEIVER_READY, when: 'before' },
    'resumed',
    'discarded',
    'source',
  ],
  [
    'cut after "ready to unpause"',
    { direction: 'reverse', match: XL_MIGRATE_RECEIVER_READY, when: 'after' },
    'resumed',
    'discarded',
    'source',
  ],
  [
    'cut before GO (the in-doubt window)',
    { direction: 'forward', match: XL_MIGRATE_PERMISSION_TO_GO, when: 'before' },
    'in-doubt',
    'discarded',
    'none',
  ],
  [
    'cut after GO',
    { direction: 'forward', match: XL_MIGRATE_PERMISSION_TO_GO, when: 'after' },
    'in-doubt',
    'running',
    'destination',
  ],
  [
    'cut before report',
    { direction: 'reverse', match: XL_MIGRATE_REPORT, when: 'before' },
    'in-doubt',
    'running',
    'destination',
  ],
];

for (const [protocol, rows] of [
  ['xenmig', xenmigRows],
  ['xl', xlRows],
] as const) {
  describe(`${protocol} handshake: link cut at every message`, () => {
    for (const [label, rule, sOut, rOut, runs] of rows) {
      it(`${label} → sender ${sOut}, receiver ${rOut}, guest runs on ${runs}`, async () => {
        const { s, r, g, ms } = await runPair({ protocol, rule, sender: slowRename });
        expect({ s: s.outcome, r: r.outcome }).toEqual({ s: sOut, r: rOut });
        checkRuns(g, runs);
        // a vanished peer is noticed by EOF/reset, not by waiting for a timeout
        expect(ms).toBeLessThan(5_000);
        if (rule === undefined) {
          expect(g.received?.equals(g.payload)).toBe(true);
          expect(s.status).toBe(0);
          expect(g.log.filter((x) => x.startsWith('S:'))).toEqual(['S:stream', 'S:rename-away', 'S:destroy']);
        }
      });
    }
  });

  describe(`${protocol} handshake: the receiver fails to start the guest`, () => {
    it('unpause returns non-zero → receiver discards and grants permission back → sender resumes', async () => {
      const { s, r, g } = await runPair({ protocol, receiver: failUnpause });
      expect({ s: s.outcome, r: r.outcome }).toEqual({ s: 'resumed', r: 'discarded' });
      expect(s.status).not.toBe(0);
      checkRuns(g, 'source');
      expect(g.log).toEqual(expect.arrayContaining(['R:unpause-failed', 'R:discard', 'S:resume']));
      // order: the receiver's copy is gone before the source resumes
      expect(g.log.indexOf('R:discard')).toBeLessThan(g.log.indexOf('S:resume'));
    });

    it('unpause throws → same as a failure status', async () => {
      const { s, r, g } = await runPair({
        protocol,
        receiver: () => ({
          unpause: async () => {
            throw new Error('libxl_domain_unpause failed');
          },
        }),
      });
      expect({ s: s.outcome, r: r.outcome }).toEqual({ s: 'resumed', r: 'discarded' });
      checkRuns(g, 'source');
    });

    const back = protocol === 'xenmig' ? F.CLEARED : XL_MIGRATE_PERMISSION_TO_GO;
    it('link cut before the permission comes back → sender in doubt, nobody runs (double failure)', async () => {
      const { s, r, g } = await runPair({
        protocol,
        receiver: failUnpause,
        rule: { direction: 'reverse', match: back, when: 'before' },
      });
      expect({ s: s.outcome, r: r.outcome }).toEqual({ s: 'in-doubt', r: 'discarded' });
      checkRuns(g, 'none');
    });

    it('link cut right after the permission came back → sender resumes', async () => {
      const { s, r, g } = await runPair({
        protocol,
        receiver: failUnpause,
        rule: { direction: 'reverse', match: back, when: 'after' },
      });
      expect({ s: s.outcome, r: r.outcome }).toEqual({ s: 'resumed', r: 'discarded' });
      checkRuns(g, 'source');
    });

    it('discard fails too → no permission back → sender in doubt, nobody runs', async () => {
      const { s, r, g } = await runPair({
        protocol,
        receiver: (g) => ({
          ...failUnpause(g),
          discard: async () => {
            throw new Error('destroy failed');
          },
        }),
      });
      expect({ s: s.outcome, r: r.outcome }).toEqual({ s: 'in-doubt', r: 'discard-failed' });
      checkRuns(g, 'none');
    });
  });

  describe(`${protocol} handshake: failing domain actions`, () => {
    it('sendStream fails half-way → source resumed, receiver discards', async () => {
      const { s, r, g } = await runPair({
        protocol,
        sender: (g) => ({
          sendStream: async (ch) => {
            g.sourceRunning = false;
            await writeAll(ch.writable, Buffer.from([0, 0, 0, 0, 0, 1, 0, 0]));
            await writeAll(ch.writable, Buffer.alloc(1000));
            throw new Error('xc_map_foreign failed');
          },
        }),
      });
      expect({ s: s.outcome, r: r.outcome }).toEqual({ s: 'resumed', r: 'discarded' });
      expect(s.step).toBe('stream');
      checkRuns(g, 'source');
    });

    it('receiveStream fails → sender aborts its stream at once and resumes', async () => {
      const { s, r, g, ms } = await runPair({
        protocol,
        receiver: () => ({
          receiveStream: async () => {
            throw Object.assign(new Error('bad image header'), { code: 'EBADIMG' });
          },
        }),
        sender: (g) => ({
          // a long stream: the receiver stops reading; the sender must not block until a timeout
          sendStream: async (ch, signal) => {
            g.sourceRunning = false;
            const chunk = Buffer.alloc(1 << 20);
            for (let i = 0; i < 256 && !signal.aborted; i++) await writeAll(ch.writable, chunk, { signal });
          },
        }),
      });
      expect({ s: s.outcome, r: r.outcome }).toEqual({ s: 'resumed', r: 'discarded' });
      if (protocol === 'xenmig') {
        expect(s.error).toBeInstanceOf(PeerReportedError);
        expect((s.error as PeerReportedError).peerCode).toBe('EBADIMG');
      }
      expect(ms).toBeLessThan(5_000);
      checkRuns(g, 'source');
    });

    it('prepareHandover (rename) fails → source resumed, receiver not cleared', async () => {
      const { s, r, g } = await runPair({
        protocol,
        sender: () => ({
          prepareHandover: async () => {
            throw new Error('rename failed');
          },
        }),
      });
      expect({ s: s.outcome, r: r.outcome }).toEqual({ s: 'resumed', r: 'discarded' });
      expect(s.step).toBe('prepare');
      checkRuns(g, 'source');
    });

    it('resumeSource fails → reported as resume-failed (nobody runs, no lie)', async () => {
      const { s, g } = await runPair({
        protocol,
        sender: () => ({
          prepareHandover: async () => {
            throw new Error('rename failed');
          },
          resumeSource: async () => {
            throw new Error('resume failed');
          },
        }),
      });
      expect(s.outcome).toBe('resume-failed');
      expect(s.sourceRuns).toBe(false);
      checkRuns(g, 'none');
    });
  });

  describe(`${protocol} handshake: timeouts`, () => {
    it('receiver not cleared in time → RESULT≠0 + permission back → late sender resumes', async () => {
      const { s, r, g } = await runPair({
        protocol,
        timeouts: { cleared: 150 },
        sender: (g) => ({
          prepareHandover: async () => {
            await new Promise((res) => setTimeout(res, 600));
            g.sourceRenamed = true;
          },
        }),
      });
      expect({ s: s.outcome, r: r.outcome }).toEqual({ s: 'resumed', r: 'discarded' });
      expect(r.error).toBeInstanceOf(TransportTimeoutError);
      checkRuns(g, 'source');
    });

    it('sender gets no RECEIVED in time → resumes; the receiver discards', async () => {
      const { s, r, g } = await runPair({
        protocol,
        timeouts: { received: 150 },
        receiver: (g) => ({
          receiveStream: async (ch) => {
            g.destExists = true;
            const len = Number((await readExactly(ch.readable, 8)).readBigUInt64BE());
            await readExactly(ch.readable, len);
            await new Promise((res) => setTimeout(res, 600)); // slow restore
          },
        }),
      });
      expect({ s: s.outcome, r: r.outcome }).toEqual({ s: 'resumed', r: 'discarded' });
      expect(s.error).toBeInstanceOf(TransportTimeoutError);
      checkRuns(g, 'source');
    });

    it('sender gets no RESULT in time → in doubt, the receiver runs it (exactly one)', async () => {
      const { s, r, g } = await runPair({
        protocol,
        timeouts: { result: 150 },
        receiver: (g) => ({
          unpause: async () => {
            await new Promise((res) => setTimeout(res, 600));
            g.destRunning = true;
            return 0;
          },
        }),
      });
      expect({ s: s.outcome, r: r.outcome }).toEqual({ s: 'in-doubt', r: 'running' });
      checkRuns(g, 'destination');
    });
  });
}

// ------------------------------------------------------------------------------------------------
// Scripted peers: garbage, protocol versions, silence.

async function rawPair(): Promise<
  { ch: Channel; raw: net.Socket; role: 'sender' | 'receiver'; done(): Promise<void> }[]
> {
  const out = [];
  for (const role of ['sender', 'receiver'] as const) {
    const l = await listen({ host: '127.0.0.1', port: 0, insecure: true, role });
    const accepted = l.accept({ timeoutMs: 10_000 });
    const raw = net.connect(l.address().port, '127.0.0.1');
    raw.on('error', () => undefined);
    await new Promise<void>((r) => raw.once('connect', r));
    const { PLAIN_HELLO } = await import('../../src/transport/index.js');
    raw.write(PLAIN_HELLO);
    await readExactly(raw, PLAIN_HELLO.length);
    const ch = await accepted;
    out.push({ ch, raw, role, done: async () => (raw.destroy(), ch.destroy(), l.close()) });
  }
  return out;
}

async function scriptedReceiver(
  script: (raw: net.Socket) => Promise<void>,
  protocol: HandshakeProtocol,
  timeouts: Partial<HandshakeTimeouts> = {},
) {
  const [sender] = await rawPair();
  const g = new FakeGuest();
  const [res] = await Promise.all([
    senderHandshake(sender!.ch, g.sender(), { protocol, timeouts: { ...T, ...timeouts } }),
    script(sender!.raw).catch(() => undefined),
  ]);
  await sender!.done();
  return { res, g };
}

async function scriptedSender(
  script: (raw: net.Socket) => Promise<void>,
  protocol: HandshakeProtocol,
  timeouts: Partial<HandshakeTimeouts> = {},
) {
  const [, receiver] = await rawPair();
  const g = new FakeGuest();
  const [res] = await Promise.all([
    receiverHandshake(receiver!.ch, g.receiver(), { protocol, timeouts: { ...T, ...timeouts } }),
    script(receiver!.raw).catch(() => undefined),
  ]);
  await receiver!.done();
  return { res, g };
}

describe('scripted peers (garbage, versions, silence)', () => {
  it('xenmig: garbage instead of READY → not started, typed error', async () => {
    const { res, g } = await scriptedReceiver(
      async (raw) => void raw.write('HTTP/1.1 400 Bad Request\r\n\r\n'),
      'xenmig',
    );
    expect(res.outcome).toBe('not-started');
    expect(res.error).toBeInstanceOf(ProtocolError);
    expect((res.error as ProtocolError).code).toBe('EBADMAGIC');
    checkRuns(g, 'source');
  });

  it('xenmig: READY of another protocol version → not started, ERROR sent to the receiver', async () => {
    let answer: unknown;
    const { res } = await scriptedReceiver(async (raw) => {
      raw.write(encodeMessage({ type: 'READY', protocol: 2, version: 'future', capabilities: [] }));
      answer = await readMessage(raw, { timeoutMs: 5_000 });
    }, 'xenmig');
    expect(res.outcome).toBe('not-started');
    expect((res.error as ProtocolError).code).toBe('EPROTONOSUPPORT');
    expect(answer).toMatchObject({ type: 'ERROR', code: 'EPROTONOSUPPORT' });
  });

  it('xenmig: required capability missing → not started', async () => {
    const [sender] = await rawPair();
    const g = new FakeGuest();
    sender!.raw.write(encodeMessage({ type: 'READY', protocol: 1, version: 'x', capabilities: ['remus'] }));
    const res = await senderHandshake(sender!.ch, g.sender(), {
      requiredCapabilities: ['colo'],
      timeouts: T,
    });
    await sender!.done();
    expect(res.outcome).toBe('not-started');
    expect((res.error as ProtocolError).code).toBe('ENOTSUP');
  });

  it('xl: a wrong banner → not started', async () => {
    const { res } = await scriptedReceiver(
      async (raw) => void raw.write('xl migration receiver ready, send binary domain data!\n'),
      'xl',
    );
    expect(res.outcome).toBe('not-started');
    expect((res.error as ProtocolError).code).toBe('EBADMSG');
  });

  for (const protocol of ['xenmig', 'xl'] as const) {
    it(`${protocol}: silent receiver → not started after the READY timeout`, async () => {
      const t0 = Date.now();
      const { res } = await scriptedReceiver(async () => undefined, protocol, { ready: 200 });
      expect(res.outcome).toBe('not-started');
      expect(res.error).toBeInstanceOf(TransportTimeoutError);
      expect(Date.now() - t0).toBeLessThan(3_000);
    });

    it(`${protocol}: garbage instead of CLEARED → receiver discards and grants the sender permission back`, async () => {
      const seen: Buffer[] = [];
      const { res, g } = await scriptedSender(async (raw) => {
        raw.on('data', (d: Buffer) => seen.push(d));
        const len = Buffer.alloc(8);
        len.writeBigUInt64BE(4n);
        raw.write(Buffer.concat([len, Buffer.from('abcd')]));
        if (protocol === 'xenmig') raw.write(encodeMessage({ type: 'DONE' }));
        await new Promise((r) => setTimeout(r, 100));
        raw.write(Buffer.alloc(protocol === 'xenmig' ? 12 : XL_MIGRATE_PERMISSION_TO_GO.length, 0x41));
        await new Promise((r) => setTimeout(r, 600));
      }, protocol);
      expect(res.outcome).toBe('discarded');
      expect(res.error).toBeInstanceOf(ProtocolError);
      expect(g.destRunning).toBe(false); // (the scripted sender has no real source)
      const wire = Buffer.concat(seen);
      if (protocol === 'xl') {
        const expected = Buffer.concat([
          XL_MIGRATE_RECEIVER_BANNER,
          XL_MIGRATE_RECEIVER_READY,
          XL_MIGRATE_REPORT,
          Buffer.from([0xff]),
          XL_MIGRATE_PERMISSION_TO_GO,
        ]);
        expect(wire.toString('latin1')).toBe(expected.toString('latin1'));
      } else {
        const { ControlDecoder } = await import('../../src/transport/index.js');
        const msgs = new ControlDecoder().push(wire).map((m) => m.type);
        expect(msgs).toEqual(['READY', 'RECEIVED', 'RESULT', 'CLEARED_TO_UNPAUSE']);
      }
    });

    it(`${protocol}: sender vanishes mid-stream → receiver discards promptly`, async () => {
      const t0 = Date.now();
      const { res, g } = await scriptedSender(async (raw) => {
        const len = Buffer.alloc(8);
        len.writeBigUInt64BE(1_000_000n);
        raw.write(Buffer.concat([len, Buffer.alloc(5000)]));
        await new Promise((r) => setTimeout(r, 50));
        raw.destroy();
      }, protocol);
      expect(res.outcome).toBe('discarded');
      expect(res.step).toBe('stream');
      expect(g.log).toContain('R:discard');
      expect(Date.now() - t0).toBeLessThan(3_000);
    });
  }
});

describe('xl wire compatibility, byte-exact (scripted xl peers)', () => {
  it('the four strings are those of tools/xl/xl.h, with/without NUL as xl_migrate.c sends them', () => {
    expect(XL_MIGRATE_RECEIVER_BANNER.toString('latin1')).toBe(
      'xl migration receiver ready, send binary domain data.\n',
    );
    expect(XL_MIGRATE_RECEIVER_BANNER.includes(0)).toBe(false);
    expect(XL_MIGRATE_RECEIVER_READY.toString('latin1')).toBe('domain received, ready to unpause\0');
    expect(XL_MIGRATE_PERMISSION_TO_GO.toString('latin1')).toBe(
      'domain is yours, you are cleared to unpause\0',
    );
    expect(XL_MIGRATE_REPORT.toString('latin1')).toBe('my copy unpause results are as follows\0');
  });

  it('as receiver of `xl migrate`: exact bytes both ways on success', async () => {
    const seen: Buffer[] = [];
    const { res, g } = await scriptedSender(async (raw) => {
      raw.on('data', (d: Buffer) => seen.push(d));
      await new Promise((r) => setTimeout(r, 50));
      // xl migrate: read banner, send stream, read ready, send GO, read report + status
      const len = Buffer.alloc(8);
      len.writeBigUInt64BE(3n);
      raw.write(Buffer.concat([len, Buffer.from('xyz')]));
      await new Promise((r) => setTimeout(r, 100));
      raw.write(XL_MIGRATE_PERMISSION_TO_GO);
      await new Promise((r) => setTimeout(r, 200));
    }, 'xl');
    expect(res.outcome).toBe('running');
    expect(g.destRunning).toBe(true);
    expect(Buffer.concat(seen).toString('latin1')).toBe(
      Buffer.concat([
        XL_MIGRATE_RECEIVER_BANNER,
        XL_MIGRATE_RECEIVER_READY,
        XL_MIGRATE_REPORT,
        Buffer.from([0]),
      ]).toString('latin1'),
    );
  });

  it('as sender to `xl migrate-receive` that fails to start the domain: reads status 3 and the GO back, resumes', async () => {
    const forward: Buffer[] = [];
    const { res, g } = await scriptedReceiver(async (raw) => {
      raw.on('data', (d: Buffer) => forward.push(d));
      raw.write(XL_MIGRATE_RECEIVER_BANNER);
      await new Promise((r) => setTimeout(r, 200)); // stream arrives
      raw.write(XL_MIGRATE_RECEIVER_READY);
      await new Promise((r) => setTimeout(r, 200)); // GO arrives
      raw.write(Buffer.concat([XL_MIGRATE_REPORT, Buffer.from([3]), XL_MIGRATE_PERMISSION_TO_GO]));
      await new Promise((r) => setTimeout(r, 200));
    }, 'xl');
    expect(res.outcome).toBe('resumed');
    expect(res.status).toBe(3);
    checkRuns(g, 'source');
    const fwd = Buffer.concat(forward);
    // forward direction: the stream, then exactly the GO string, nothing else
    expect(
      fwd.subarray(fwd.length - XL_MIGRATE_PERMISSION_TO_GO.length).equals(XL_MIGRATE_PERMISSION_TO_GO),
    ).toBe(true);
    expect(fwd.length).toBe(8 + g.payload.length + XL_MIGRATE_PERMISSION_TO_GO.length);
  });

  it('xenmig: the wire of a successful migration is exactly the documented message sequence', async () => {
    const { ControlDecoder } = await import('../../src/transport/index.js');
    const fwd: Buffer[] = [];
    const { res } = await scriptedReceiver(async (raw) => {
      raw.on('data', (d: Buffer) => fwd.push(d));
      await writeMessage(raw, { type: 'READY', protocol: 1, version: 'x', capabilities: [] });
      await new Promise((r) => setTimeout(r, 200));
      await writeMessage(raw, { type: 'RECEIVED' });
      await new Promise((r) => setTimeout(r, 200));
      await writeMessage(raw, { type: 'RESULT', status: 0 });
      await new Promise((r) => setTimeout(r, 100));
    }, 'xenmig');
    expect(res.outcome).toBe('handed-over');
    const all = Buffer.concat(fwd);
    const afterStream = all.subarray(8 + 64 * 1024);
    expect(new ControlDecoder().push(afterStream).map((m) => m.type)).toEqual(['DONE', 'CLEARED_TO_UNPAUSE']);
  });
});
