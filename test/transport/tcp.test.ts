// TCP transports: mutual TLS by default; refusals happen before any stream byte reaches the receiver;
// plain TCP only when both ends choose `insecure`.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import tls from 'node:tls';
import {
  connectTcp,
  listen,
  readExactly,
  writeAll,
  ConnectionRefusedError,
  TransportConfigError,
  TransportTimeoutError,
  PeerClosedError,
  TLS_HELLO,
  type Channel,
  type MigrationListener,
} from '../../src/transport/index.js';
import { makePki, randomPayload, sha256, type TestPki } from './helpers.js';

const MiB = 1024 * 1024;
let pki: TestPki;

beforeAll(() => {
  pki = makePki();
});
afterAll(() => pki.cleanup());

const serverTls = () => ({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca });
const clientTls = () => ({ cert: pki.client.cert, key: pki.client.key, ca: pki.ca });

async function transfer(sender: Channel, receiver: Channel, bytes: number): Promise<void> {
  const data = randomPayload(bytes);
  const reply = randomPayload(256 * 1024);
  const [, got] = await Promise.all([
    (async () => {
      for (let i = 0; i < data.length; i += 512 * 1024)
        await writeAll(sender.writable, data.subarray(i, i + 512 * 1024));
    })(),
    readExactly(receiver.readable, data.length, { timeoutMs: 60_000 }),
  ]);
  expect(got.length).toBe(data.length);
  expect(sha256(got)).toBe(sha256(data));
  expect(got.equals(data)).toBe(true);
  const [, back] = await Promise.all([
    writeAll(receiver.writable, reply),
    readExactly(sender.readable, reply.length, { timeoutMs: 60_000 }),
  ]);
  expect(back.equals(reply)).toBe(true);
}

/** accept() must not yield within `ms`: proves no channel (hence no stream byte) reached the receiver */
async function expectNoChannel(l: MigrationListener, ms = 500): Promise<void> {
  await expect(l.accept({ timeoutMs: ms })).rejects.toBeInstanceOf(TransportTimeoutError);
}

describe('mutual TLS', () => {
  let l: MigrationListener;
  let port: number;
  beforeAll(async () => {
    l = await listen({ host: '127.0.0.1', port: 0, tls: serverTls() });
    port = l.address().port;
  });
  afterAll(() => l.close());

  it('transfers 6 MiB forward and 256 KiB back byte-exact', async () => {
    const [sender, receiver] = await Promise.all([
      connectTcp({ host: '127.0.0.1', port, tls: clientTls() }),
      l.accept({ timeoutMs: 10_000 }),
    ]);
    expect(sender.kind).toBe('tls');
    expect(sender.role).toBe('sender');
    expect(receiver.role).toBe('receiver');
    // no raw fd over TLS
    expect(sender.readFd).toBeUndefined();
    expect(receiver.readFd).toBeUndefined();
    await transfer(sender, receiver, 6 * MiB + 3);
    await Promise.all([sender.close(), receiver.close()]);
    expect(sender.error).toBeUndefined();
    expect(receiver.error).toBeUndefined();
  });

  it('verifies the server name (localhost) as well', async () => {
    const [sender, receiver] = await Promise.all([
      connectTcp({ host: 'localhost', port, tls: clientTls() }),
      l.accept({ timeoutMs: 10_000 }),
    ]);
    await transfer(sender, receiver, 64 * 1024);
    sender.destroy();
    receiver.destroy();
  });

  // Raw TLS/TCP clients that try to push stream bytes immediately; the receiver must never see them.
  const payload = Buffer.from('Xen saved domain, xl format\n \0 \r' + 'X'.repeat(4096), 'latin1');

  async function rawTlsClient(opts: tls.ConnectionOptions): Promise<string> {
    return new Promise<string>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port, ca: pki.ca, ...opts });
      s.on('secureConnect', () => s.write(payload)); // TLS 1.3: the client believes it is connected
      s.on('data', () => resolve('got data?!'));
      s.on('error', (e) => resolve(`error: ${e.message}`));
      s.on('close', () => resolve('closed'));
    });
  }

  it('refuses a client without a certificate; no channel, no byte delivered', async () => {
    const before = { ...l.stats };
    const acceptP = l.accept({ timeoutMs: 1_500 }).then(
      (c) => c,
      (e: Error) => e,
    );
    const r = await rawTlsClient({});
    expect(r).not.toBe('got data?!');
    // and our own client (no cert) is refused at connect time, not later
    await expect(
      connectTcp({ host: '127.0.0.1', port, tls: { ...clientTls(), cert: '', key: '' } }),
    ).rejects.toBeInstanceOf(TransportConfigError);
    const viaTlsNoCert = await rawTlsClient({});
    expect(viaTlsNoCert).toMatch(/error|closed/);
    const got = await acceptP;
    expect(got).toBeInstanceOf(TransportTimeoutError); // never became a channel
    expect(l.stats.accepted).toBe(before.accepted);
    expect(l.stats.refused).toBeGreaterThanOrEqual(before.refused + 2);
  });

  it('refuses a client whose certificate comes from another CA; connectTcp rejects', async () => {
    const before = { ...l.stats };
    const refusedEvents: Error[] = [];
    const onRefused = (e: Error) => refusedEvents.push(e);
    l.on('refused', onRefused);
    await expect(
      connectTcp({
        host: '127.0.0.1',
        port,
        tls: { cert: pki.otherClient.cert, key: pki.otherClient.key, ca: pki.ca },
      }),
    ).rejects.toBeInstanceOf(ConnectionRefusedError);
    expect(await rawTlsClient({ cert: pki.otherClient.cert, key: pki.otherClient.key })).not.toBe(
      'got data?!',
    );
    await expectNoChannel(l);
    l.off('refused', onRefused);
    expect(l.stats.accepted).toBe(before.accepted);
    expect(l.stats.refused).toBe(before.refused + 2);
    expect(refusedEvents.length).toBe(2);
    expect(refusedEvents.every((e) => e instanceof ConnectionRefusedError)).toBe(true);
  });

  it('refuses a plain-TCP client (insecure) that starts sending a stream; the plain client fails', async () => {
    const before = { ...l.stats };
    // a raw plain client blasting an xl stream at the TLS port
    const raw = await new Promise<string>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => s.write(payload));
      s.on('data', () => undefined);
      s.on('error', (e) => resolve(`error: ${e.message}`));
      s.on('close', () => resolve('closed'));
    });
    expect(raw).toMatch(/error|closed/);
    // our own insecure client cannot connect to a TLS listener
    await expect(
      connectTcp({ host: '127.0.0.1', port, insecure: true, helloTimeoutMs: 3_000 }),
    ).rejects.toBeInstanceOf(ConnectionRefusedError);
    await expectNoChannel(l);
    expect(l.stats.accepted).toBe(before.accepted);
    expect(l.stats.refused).toBe(before.refused + 2);
  });

  it('the client refuses a server whose certificate comes from another CA', async () => {
    const other = await listen({
      host: '127.0.0.1',
      port: 0,
      tls: { cert: pki.otherServer.cert, key: pki.otherServer.key, ca: pki.ca },
    });
    await expect(
      connectTcp({ host: '127.0.0.1', port: other.address().port, tls: clientTls() }),
    ).rejects.toBeInstanceOf(ConnectionRefusedError);
    await expect(other.accept({ timeoutMs: 300 })).rejects.toBeInstanceOf(TransportTimeoutError);
    await other.close();
  });

  it('a peer that vanishes surfaces as an error on pending reads and writes', async () => {
    const [sender, receiver] = await Promise.all([
      connectTcp({ host: '127.0.0.1', port, tls: clientTls() }),
      l.accept({ timeoutMs: 10_000 }),
    ]);
    const pending = readExactly(sender.readable, 10, { timeoutMs: 10_000 });
    receiver.destroy();
    await expect(pending).rejects.toBeInstanceOf(PeerClosedError);
    // writing into a dead TLS connection fails too (possibly after the first write hits the reset)
    const big = randomPayload(4 * MiB);
    await expect(
      (async () => {
        for (let i = 0; i < 20; i++) await writeAll(sender.writable, big, { timeoutMs: 10_000 });
      })(),
    ).rejects.toThrow();
    sender.destroy();
  });

  it('idle timeout destroys a channel whose peer stays silent', async () => {
    const [sender, receiver] = await Promise.all([
      connectTcp({ host: '127.0.0.1', port, tls: clientTls(), idleTimeoutMs: 200 }),
      l.accept({ timeoutMs: 10_000 }),
    ]);
    await sender.closed;
    expect(sender.error).toBeInstanceOf(TransportTimeoutError);
    receiver.destroy();
  });
});

describe('configuration', () => {
  it('TCP without TLS material and without insecure is refused', async () => {
    await expect(listen({ port: 0 })).rejects.toBeInstanceOf(TransportConfigError);
    await expect(connectTcp({ host: '127.0.0.1', port: 1 })).rejects.toBeInstanceOf(TransportConfigError);
    await expect(
      listen({ port: 0, insecure: true, tls: { cert: 'a', key: 'b', ca: 'c' } }),
    ).rejects.toBeInstanceOf(TransportConfigError);
    await expect(
      connectTcp({ host: '127.0.0.1', port: 1, tls: { cert: 'a', key: '', ca: 'c' } }),
    ).rejects.toBeInstanceOf(TransportConfigError);
  });
});

describe('insecure plain TCP', () => {
  it('works when both sides choose it; the fd is exposed', async () => {
    const l = await listen({ host: '127.0.0.1', port: 0, insecure: true });
    const [sender, receiver] = await Promise.all([
      connectTcp({ host: '127.0.0.1', port: l.address().port, insecure: true }),
      l.accept({ timeoutMs: 10_000 }),
    ]);
    expect(sender.kind).toBe('tcp');
    expect(typeof sender.writeFd).toBe('number');
    expect(typeof receiver.readFd).toBe('number');
    await transfer(sender, receiver, 3 * MiB);
    await Promise.all([sender.close(), receiver.close()]);
    await l.close();
  });

  it('pauseReading hands the raw fd over: read-ahead bytes + raw reads = the exact stream', async () => {
    const l = await listen({ host: '127.0.0.1', port: 0, insecure: true });
    const [sender, receiver] = await Promise.all([
      connectTcp({ host: '127.0.0.1', port: l.address().port, insecure: true }),
      l.accept({ timeoutMs: 10_000 }),
    ]);
    const data = randomPayload(2 * MiB);
    const writing = (async () => {
      for (let i = 0; i < data.length; i += 64 * 1024)
        await writeAll(sender.writable, data.subarray(i, i + 64 * 1024));
    })();
    // the engine reads a record header through the stream ...
    const head = await readExactly(receiver.readable, 16, { timeoutMs: 10_000 });
    // ... then switches to the fd (as the native addon's readv would)
    const leftover = receiver.pauseReading();
    const rest = Buffer.alloc(data.length - 16 - leftover.length);
    const { readSync } = await import('node:fs');
    let got = 0;
    const deadline = Date.now() + 20_000;
    while (got < rest.length && Date.now() < deadline) {
      try {
        const n = readSync(receiver.readFd!, rest, got, rest.length - got, null);
        if (n === 0) break;
        got += n;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e; // the fd is non-blocking
        await new Promise((r) => setTimeout(r, 2));
      }
    }
    await writing;
    expect(Buffer.concat([head, leftover, rest]).equals(data)).toBe(true);
    sender.destroy();
    receiver.destroy();
    await l.close();
  });

  it('a TLS client cannot connect to an insecure listener, and the listener yields no channel', async () => {
    const l = await listen({ host: '127.0.0.1', port: 0, insecure: true });
    await expect(
      connectTcp({ host: '127.0.0.1', port: l.address().port, tls: clientTls(), helloTimeoutMs: 3_000 }),
    ).rejects.toBeInstanceOf(ConnectionRefusedError);
    await expectNoChannel(l);
    expect(l.stats).toEqual({ accepted: 0, refused: 1 });
    await l.close();
  });

  it('a client that sends a stream without the plain hello is refused', async () => {
    const l = await listen({ host: '127.0.0.1', port: 0, insecure: true });
    await new Promise<void>((resolve) => {
      const s = net.connect(l.address().port, '127.0.0.1', () =>
        s.write(Buffer.concat([TLS_HELLO, Buffer.alloc(1024)])),
      );
      s.on('data', () => undefined);
      s.on('error', () => resolve());
      s.on('close', () => resolve());
    });
    await expectNoChannel(l, 300);
    expect(l.stats).toEqual({ accepted: 0, refused: 1 });
    await l.close();
  });

  it('serves several connections in server mode', async () => {
    const l = await listen({ host: '127.0.0.1', port: 0, insecure: true });
    const got: string[] = [];
    const server = (async () => {
      for await (const ch of l) {
        got.push((await readExactly(ch.readable, 5)).toString());
        ch.destroy();
        if (got.length === 3) break;
      }
    })();
    for (const word of ['one__', 'two__', 'three']) {
      const c = await connectTcp({ host: '127.0.0.1', port: l.address().port, insecure: true });
      await writeAll(c.writable, Buffer.from(word));
      await c.close({ timeoutMs: 2_000 });
    }
    await server;
    expect(got.sort()).toEqual(['one__', 'three', 'two__']);
    await l.close();
  });
});
