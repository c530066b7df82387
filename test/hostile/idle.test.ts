// Issue 12 item 6: every phase has an idle timeout. A TCP client that sends nothing is dropped by
// the TLS (and plain) listener and reported as refused; an authenticated peer that stalls after its
// hello (or mid-stream) is timed out by the receiver, which leaves no domain behind; the CLI logs
// refused clients. Short timeouts here; the defaults are documented in the README.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { receive } from '../../src/api.js';
import { connectTcp, listen } from '../../src/transport/index.js';
import { openMockHost, type MockHypervisor } from '../../src/xen/hypervisor.js';
import { startCli, tempHost, until } from '../cli/helpers.js';
import { makePki, type TestPki } from '../transport/helpers.js';

/** Resolves with ms until the server closed a raw TCP connection that never sent a byte. */
function silentClient(port: number, capMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('error', () => undefined);
    s.on('data', () => undefined);
    const cap = setTimeout(() => {
      s.destroy();
      reject(new Error(`the listener kept a silent client open for ${capMs} ms`));
    }, capMs);
    s.on('close', () => {
      clearTimeout(cap);
      resolve(performance.now() - t0);
    });
  });
}

const within = <T>(p: Promise<T>, ms: number, what: string) =>
  Promise.race([
    p,
    new Promise<never>((_, rej) =>
      setTimeout(() => rej(new Error(`${what}: still waiting after ${ms} ms`)), ms),
    ),
  ]);

describe('idle timeouts on the receiving side', () => {
  let pki: TestPki;
  const host = tempHost();
  let xen: MockHypervisor;
  beforeAll(() => {
    pki = makePki();
    xen = openMockHost(host.dir);
  });
  afterAll(() => {
    xen?.close();
    pki?.cleanup();
    host.cleanup();
  });

  for (const mode of ['tls', 'plain'] as const) {
    it(`${mode}: silent TCP clients are dropped after the hello timeout and reported as refused`, async () => {
      const l = await listen({
        port: 0,
        helloTimeoutMs: 300,
        ...(mode === 'tls' ? { tls: { ...pki.server, ca: pki.ca } } : { insecure: true }),
      });
      const refused: string[] = [];
      l.on('refused', (e: Error) => refused.push(e.message));
      try {
        const port = l.address().port;
        const closed = await Promise.all(Array.from({ length: 5 }, () => silentClient(port, 10_000)));
        expect(closed.length).toBe(5);
        await until(async () => refused.length === 5, '5 refusals', 100);
        expect(l.stats.refused).toBe(5);
        expect(refused.join('\n')).toMatch(/tim(ed out|eout)/i);
      } finally {
        await l.close();
      }
    });
  }

  it('an authenticated sender that stalls after its hello is timed out; no domain is left', async () => {
    const before = xen.listDomainIds();
    let port = 0;
    const rx = receive({
      xen,
      listen: { host: '127.0.0.1', port: 0 },
      tls: { ...pki.server, ca: pki.ca },
      idleTimeoutMs: 500,
      onListening: (p) => (port = p),
    });
    rx.catch(() => undefined);
    await until(async () => port > 0, 'the listener');
    const ch = await connectTcp({ host: '127.0.0.1', port, tls: { ...pki.client, ca: pki.ca } });
    try {
      const err = await within(
        rx.then(
          () => null,
          (e: unknown) => e as Error & { code?: string },
        ),
        10_000,
        'receive',
      );
      expect(err, 'receive succeeded').not.toBeNull();
      expect(`${err!.code}: ${err!.message}`).toMatch(/ETIMEDOUT|timed out|idle/i);
      expect(xen.listDomainIds()).toEqual(before);
    } finally {
      ch.destroy();
    }
  });

  it('the CLI logs refused clients and keeps listening for a good one', async () => {
    const r = startCli([
      'receive',
      '--listen',
      '127.0.0.1:0',
      '--insecure',
      '--hello-timeout-ms',
      '300',
      '--host',
      host.dir,
    ]);
    try {
      const line = await r.waitErr(/listening on .*:(\d+)/);
      const port = Number(/listening on .*:(\d+)/.exec(line)![1]);
      await silentClient(port, 10_000);
      await r.waitErr(/refused .*127\.0\.0\.1/);
      expect(r.child.exitCode).toBeNull();
    } finally {
      r.child.kill('SIGTERM');
      await r.done;
    }
  });
});
