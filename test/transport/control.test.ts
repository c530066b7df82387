import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import net from 'node:net';
import { PassThrough } from 'node:stream';
import {
  CONTROL_MAGIC,
  ControlConnection,
  ControlDecoder,
  encodeMessage,
  readExactly,
  readMessage,
  PeerClosedError,
  PeerReportedError,
  ProtocolError,
  TransportTimeoutError,
  UnexpectedMessageError,
  type ControlMessage,
} from '../../src/transport/index.js';

const samples: ControlMessage[] = [
  { type: 'READY', protocol: 1, version: '0.1.0', capabilities: ['remus', 'colo'] },
  { type: 'DONE' },
  { type: 'RECEIVED' },
  { type: 'CLEARED_TO_UNPAUSE' },
  { type: 'RESULT', status: 0 },
  { type: 'RESULT', status: -3 },
  { type: 'ACK', checkpoint: 123456789012 },
  { type: 'HEARTBEAT', seq: 7 },
  { type: 'ERROR', code: 'EIO', message: 'disk on fire ✓' },
  { type: 'BACKCHANNEL', data: new Uint8Array([1, 2, 3, 4, 5]) },
];

function norm(m: ControlMessage): unknown {
  return m.type === 'BACKCHANNEL' ? { type: m.type, data: Buffer.from(m.data).toString('hex') } : m;
}

describe('control message encoding', () => {
  it('has the documented frame layout', () => {
    const b = encodeMessage({ type: 'RESULT', status: 0x01020304 });
    expect(b.toString('hex')).toBe('584d4347' + '00000005' + '00000004' + '01020304');
    expect(b.readUInt32BE(0)).toBe(CONTROL_MAGIC);
    expect(encodeMessage({ type: 'CLEARED_TO_UNPAUSE' }).toString('hex')).toBe(
      '584d4347000000040000000' + '0',
    );
    const ack = encodeMessage({ type: 'ACK', checkpoint: 5 });
    expect(ack.subarray(12).toString('hex')).toBe('0000000000000005');
  });

  it('round-trips every message type, whole and in 1-byte chunks', () => {
    const all = Buffer.concat(samples.map(encodeMessage));
    const whole = new ControlDecoder().push(all);
    expect(whole.map(norm)).toEqual(samples.map(norm));
    const d = new ControlDecoder();
    const out: ControlMessage[] = [];
    for (let i = 0; i < all.length; i++) out.push(...d.push(all.subarray(i, i + 1)));
    expect(out.map(norm)).toEqual(samples.map(norm));
    expect(d.pending).toBe(0);
  });

  it('round-trips under arbitrary chunking (property)', () => {
    const msgArb: fc.Arbitrary<ControlMessage> = fc.oneof(
      fc.record({
        type: fc.constant('READY' as const),
        protocol: fc.nat(10),
        version: fc.string(),
        capabilities: fc.array(fc.string(), { maxLength: 4 }),
      }),
      fc.constantFrom<ControlMessage>({ type: 'DONE' }, { type: 'RECEIVED' }, { type: 'CLEARED_TO_UNPAUSE' }),
      fc.record({
        type: fc.constant('RESULT' as const),
        status: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
      }),
      fc.record({ type: fc.constant('ACK' as const), checkpoint: fc.nat() }),
      fc.record({ type: fc.constant('HEARTBEAT' as const), seq: fc.nat() }),
      fc.record({ type: fc.constant('ERROR' as const), code: fc.string(), message: fc.string() }),
      fc.uint8Array({ maxLength: 64 }).map((data) => ({ type: 'BACKCHANNEL' as const, data })),
    );
    fc.assert(
      fc.property(
        fc.array(msgArb, { maxLength: 8 }),
        fc.array(fc.integer({ min: 1, max: 17 }), { minLength: 1 }),
        (msgs, cuts) => {
          const all = Buffer.concat(msgs.map(encodeMessage));
          const d = new ControlDecoder();
          const out: ControlMessage[] = [];
          let i = 0;
          let k = 0;
          while (i < all.length) {
            const n = cuts[k++ % cuts.length]!;
            out.push(...d.push(all.subarray(i, i + n)));
            i += n;
          }
          expect(out.map(norm)).toEqual(msgs.map(norm));
        },
      ),
      { numRuns: 200 },
    );
  });

  const garbage: Array<[string, Buffer, string]> = [
    ['bad magic', Buffer.from('xl migration receiver ready, send binary domain data.\n'), 'EBADMAGIC'],
    ['unknown type', Buffer.from('584d4347000000630000000000', 'hex'), 'EBADTYPE'],
    ['oversized JSON', Buffer.from('584d43470000000100100001', 'hex'), 'ETOOLONG'],
    [
      'oversized BACKCHANNEL',
      Buffer.from('584d434700000009' + (128 * 1024 * 1024 + 1).toString(16).padStart(8, '0'), 'hex'),
      'ETOOLONG',
    ],
    ['DONE with a body', Buffer.from('584d4347000000020000000100', 'hex'), 'ETOOLONG'],
    ['RESULT with 3 bytes', Buffer.from('584d434700000005000000030000', 'hex'), 'EBADBODY'],
    [
      'READY with non-JSON',
      Buffer.concat([Buffer.from('584d43470000000100000003', 'hex'), Buffer.from('{x]')]),
      'EBADBODY',
    ],
    [
      'READY missing fields',
      Buffer.concat([Buffer.from('584d43470000000100000002', 'hex'), Buffer.from('{}')]),
      'EBADBODY',
    ],
    [
      'ERROR not an object',
      Buffer.concat([Buffer.from('584d43470000000800000002', 'hex'), Buffer.from('[]')]),
      'EBADBODY',
    ],
  ];
  for (const [name, bytes, code] of garbage) {
    it(`rejects garbage: ${name} (${code}), also byte by byte, and stays poisoned`, () => {
      let err: unknown;
      try {
        new ControlDecoder().push(bytes);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ProtocolError);
      expect((err as ProtocolError).code).toBe(code);
      const d = new ControlDecoder();
      let err2: unknown;
      try {
        for (let i = 0; i < bytes.length; i++) d.push(bytes.subarray(i, i + 1));
      } catch (e) {
        err2 = e;
      }
      expect((err2 as ProtocolError)?.code).toBe(code);
      expect(() => d.push(encodeMessage({ type: 'DONE' }))).toThrow(ProtocolError);
    });
  }
});

/** a connected pair of real TCP sockets on loopback */
async function socketPair(): Promise<[net.Socket, net.Socket]> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  const accepted = new Promise<net.Socket>((r) => srv.once('connection', r));
  const c = net.connect(port, '127.0.0.1');
  await new Promise<void>((r) => c.once('connect', r));
  const s = await accepted;
  srv.close();
  c.setNoDelay(true);
  s.setNoDelay(true);
  return [c, s];
}

describe('readMessage over a real socket', () => {
  it('decodes messages written one byte per TCP segment, and leaves following bytes unread', async () => {
    const [a, b] = await socketPair();
    const frames = Buffer.concat([
      encodeMessage(samples[0]!),
      encodeMessage({ type: 'ACK', checkpoint: 42 }),
    ]);
    const trailer = Buffer.from('RAW-STREAM-BYTES');
    const all = Buffer.concat([frames, trailer]);
    const writer = (async () => {
      for (let i = 0; i < all.length; i++) {
        a.write(all.subarray(i, i + 1));
        await new Promise((r) => setTimeout(r, 1));
      }
    })();
    const m1 = await readMessage(b, { timeoutMs: 10_000 });
    const m2 = await readMessage(b, { timeoutMs: 10_000 });
    expect(m1).toEqual(samples[0]);
    expect(m2).toEqual({ type: 'ACK', checkpoint: 42 });
    // nothing past the second frame was consumed: the trailer is still there, intact
    expect((await readExactly(b, trailer.length, { timeoutMs: 10_000 })).toString()).toBe('RAW-STREAM-BYTES');
    await writer;
    a.destroy();
    b.destroy();
  });

  it('reports EOF mid-message as PeerClosedError, not a hang', async () => {
    const [a, b] = await socketPair();
    a.end(encodeMessage({ type: 'READY', protocol: 1, version: 'x', capabilities: [] }).subarray(0, 15));
    await expect(readMessage(b, { timeoutMs: 10_000 })).rejects.toBeInstanceOf(PeerClosedError);
    b.destroy();
  });

  it('times out on a silent peer', async () => {
    const [a, b] = await socketPair();
    const t0 = Date.now();
    await expect(readMessage(b, { timeoutMs: 150 })).rejects.toBeInstanceOf(TransportTimeoutError);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    a.destroy();
    b.destroy();
  });

  it('reports a reset connection as PeerClosedError', async () => {
    const [a, b] = await socketPair();
    const p = readMessage(b, { timeoutMs: 10_000 });
    a.resetAndDestroy();
    await expect(p).rejects.toBeInstanceOf(PeerClosedError);
  });
});

describe('ControlConnection', () => {
  it('expect() skips heartbeats, maps ERROR and unexpected types to typed errors', async () => {
    const fwd = new PassThrough();
    const conn = new ControlConnection(fwd, new PassThrough());
    fwd.write(encodeMessage({ type: 'HEARTBEAT', seq: 1 }));
    fwd.write(encodeMessage({ type: 'HEARTBEAT', seq: 2 }));
    fwd.write(encodeMessage({ type: 'ACK', checkpoint: 3 }));
    expect(await conn.expect('ACK')).toEqual({ type: 'ACK', checkpoint: 3 });
    fwd.write(encodeMessage({ type: 'ERROR', code: 'ENOSPC', message: 'full' }));
    const e = await conn.expect('RESULT').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PeerReportedError);
    expect((e as PeerReportedError).peerCode).toBe('ENOSPC');
    fwd.write(encodeMessage({ type: 'DONE' }));
    await expect(conn.expect('RESULT')).rejects.toBeInstanceOf(UnexpectedMessageError);
  });

  it('heartbeats flow and stop', async () => {
    const [a, b] = await socketPair();
    const sender = new ControlConnection(new PassThrough(), a);
    const hb = sender.startHeartbeat(10);
    const recv = new ControlConnection(b, new PassThrough());
    const seen: number[] = [];
    for (let i = 0; i < 3; i++) {
      const m = await recv.receive({ skipHeartbeats: false, timeoutMs: 5_000 });
      expect(m.type).toBe('HEARTBEAT');
      seen.push((m as { seq: number }).seq);
    }
    expect(seen).toEqual([1, 2, 3]);
    hb.stop();
    a.destroy();
    b.destroy();
  });
});

describe('Remus-style heartbeats and acknowledgements', () => {
  it('each heartbeat restarts the watchdog; a silent peer trips it', async () => {
    const [a, b] = await socketPair();
    const primary = new ControlConnection(new PassThrough(), a);
    const secondary = new ControlConnection(b, new PassThrough());
    const hb = primary.startHeartbeat(20);
    // ACKs flow between heartbeats; the 100 ms watchdog never fires while heartbeats arrive
    const t0 = Date.now();
    setTimeout(() => void primary.send({ type: 'ACK', checkpoint: 1 }), 300);
    expect(await secondary.expect('ACK', { timeoutMs: 100 })).toEqual({ type: 'ACK', checkpoint: 1 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    hb.stop();
    await expect(secondary.receive({ timeoutMs: 100 })).rejects.toBeInstanceOf(TransportTimeoutError);
    a.destroy();
    b.destroy();
  });

  it('a heartbeat sender notices a dead peer', async () => {
    const [a, b] = await socketPair();
    const primary = new ControlConnection(new PassThrough(), a);
    a.on('error', () => undefined);
    const failed = new Promise<Error>((resolve) => primary.startHeartbeat(10, resolve));
    b.resetAndDestroy();
    expect(await failed).toBeInstanceOf(PeerClosedError);
    a.destroy();
  });
});
