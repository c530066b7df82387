// Test helpers for the transport layer: throwaway TLS material (openssl CLI, EC P-256, in a temp
// dir — never committed), a JS build of src/transport for child processes, a fault-injecting TCP
// proxy, and a fake guest "domain" to check who runs the guest after a handshake.

import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import type { Channel } from '../../src/transport/index.js';
import { readExactly, writeAll } from '../../src/transport/index.js';
import { scratchDir, type Scratch } from '../support/hosts.js';
import { makeCa, makeLeaf, type PemFiles } from '../support/pki.js';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));

export function tempDir(prefix = 'xenmig-transport-'): Scratch {
  return scratchDir(prefix);
}

export interface Pem {
  cert: string;
  key: string;
}
export interface TestPki {
  dir: string;
  ca: string;
  server: Pem;
  client: Pem;
  /** a second, unrelated CA and a client certificate it signed */
  otherCa: string;
  otherClient: Pem;
  /** a server certificate signed by the other CA */
  otherServer: Pem;
  cleanup(): void;
}

/** The PEM text of a certificate and key that support/pki wrote. */
function readPem(f: PemFiles): Pem {
  return { cert: readFileSync(f.cert, 'utf8'), key: readFileSync(f.key, 'utf8') };
}

/** CA, server (localhost/127.0.0.1/::1), client; a second CA with its own client and server. */
export function makePki(): TestPki {
  const { dir, cleanup } = tempDir('xenmig-pki-');
  makeCa(dir, 'ca');
  makeCa(dir, 'otherca');
  const server = readPem(makeLeaf(dir, 'server', 'ca', 'serverAuth'));
  const client = readPem(makeLeaf(dir, 'client', 'ca', 'clientAuth'));
  const otherClient = readPem(makeLeaf(dir, 'otherclient', 'otherca', 'clientAuth'));
  const otherServer = readPem(makeLeaf(dir, 'otherserver', 'otherca', 'serverAuth'));
  return {
    dir,
    ca: readFileSync(join(dir, 'ca.crt'), 'utf8'),
    otherCa: readFileSync(join(dir, 'otherca.crt'), 'utf8'),
    server,
    client,
    otherClient,
    otherServer,
    cleanup,
  };
}

/**
 * Transpile src/transport/*.ts to JS in a temp dir so that child processes (fake ssh remote, stdio
 * peer) can import the real transport code with plain `node`.
 */
export function buildTransportForChildren(): { dir: string; cleanup(): void } {
  const t = tempDir('xenmig-transport-js-');
  const src = join(REPO, 'src/transport');
  const out = join(t.dir, 'transport');
  mkdirSync(out);
  for (const f of readdirSync(src).filter((f) => f.endsWith('.ts'))) {
    const js = ts.transpileModule(readFileSync(join(src, f), 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    }).outputText;
    writeFileSync(join(out, f.replace(/\.ts$/, '.js')), js);
  }
  writeFileSync(join(t.dir, 'package.json'), '{"type":"module"}\n');
  return t;
}

export function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

export function randomPayload(n: number): Buffer {
  return randomBytes(n);
}

// ------------------------------------------------------------------------------------------------
// A fake guest for handshake tests: where does it run at the end?

export class FakeGuest {
  sourceRunning = true;
  sourceSuspended = false;
  sourceRenamed = false;
  sourceDestroyed = false;
  destExists = false;
  destRunning = false;
  readonly log: string[] = [];
  readonly payload: Buffer;
  received: Buffer | undefined;

  constructor(payloadBytes = 64 * 1024) {
    this.payload = randomPayload(payloadBytes);
  }

  get runs(): number {
    return (this.sourceRunning ? 1 : 0) + (this.destRunning ? 1 : 0);
  }

  /** sender callbacks; `over` replaces some of them */
  sender(
    over: Partial<import('../../src/transport/index.js').SenderCallbacks> = {},
  ): import('../../src/transport/index.js').SenderCallbacks {
    return {
      sendStream: async (ch: Channel) => {
        this.log.push('S:stream');
        this.sourceRunning = false; // live migration suspends the guest in the last round
        this.sourceSuspended = true;
        const len = Buffer.alloc(8);
        len.writeBigUInt64BE(BigInt(this.payload.length));
        await writeAll(ch.writable, len);
        await writeAll(ch.writable, this.payload);
      },
      prepareHandover: async () => {
        this.log.push('S:rename-away');
        this.sourceRenamed = true;
      },
      resumeSource: async () => {
        this.log.push('S:resume');
        this.sourceRenamed = false;
        this.sourceSuspended = false;
        this.sourceRunning = true;
      },
      destroySource: async () => {
        this.log.push('S:destroy');
        this.sourceDestroyed = true;
      },
      onInDoubt: () => {
        this.log.push('S:in-doubt');
      },
      ...over,
    };
  }

  receiver(
    over: Partial<import('../../src/transport/index.js').ReceiverCallbacks> = {},
  ): import('../../src/transport/index.js').ReceiverCallbacks {
    return {
      receiveStream: async (ch: Channel) => {
        this.log.push('R:stream');
        this.destExists = true;
        const len = Number((await readExactly(ch.readable, 8)).readBigUInt64BE());
        this.received = await readExactly(ch.readable, len);
      },
      unpause: async () => {
        this.log.push('R:unpause');
        this.destRunning = true;
        return 0;
      },
      discard: async () => {
        this.log.push('R:discard');
        this.destExists = false;
        this.destRunning = false;
      },
      ...over,
    };
  }
}

// ------------------------------------------------------------------------------------------------
// Fault-injecting TCP proxy: forwards bytes both ways; when `match` shows up in `direction`, the
// link is cut either before the matching bytes are delivered ('before') or right after ('after').

export interface FaultRule {
  /** 'forward' = client → server (sender → receiver), 'reverse' = server → client */
  direction: 'forward' | 'reverse';
  match: Buffer;
  when: 'before' | 'after';
  /** cut at the n-th occurrence (default 1) */
  occurrence?: number;
}

export class FaultProxy {
  readonly server: net.Server;
  port = 0;
  cut = false;
  #pairs: Array<[net.Socket, net.Socket]> = [];

  constructor(targetPort: number, rule?: FaultRule) {
    this.server = net.createServer((client) => {
      const upstream = net.connect({ host: '127.0.0.1', port: targetPort });
      this.#pairs.push([client, upstream]);
      client.on('error', () => undefined);
      upstream.on('error', () => undefined);
      const pipe = (src: net.Socket, dst: net.Socket, dir: 'forward' | 'reverse') => {
        let tail = Buffer.alloc(0);
        let seen = 0;
        src.on('data', (chunk: Buffer) => {
          if (this.cut) return;
          if (!rule || rule.direction !== dir) {
            dst.write(chunk);
            return;
          }
          const hay = Buffer.concat([tail, chunk]);
          let from = 0;
          for (;;) {
            const i = hay.indexOf(rule.match, from);
            if (i < 0) break;
            seen++;
            if (seen >= (rule.occurrence ?? 1)) {
              // bytes of `hay` before `tail.length` were already forwarded
              const upto = rule.when === 'before' ? i : i + rule.match.length;
              if (upto > tail.length) dst.write(hay.subarray(tail.length, upto));
              this.cutNow(dst);
              return;
            }
            from = i + 1;
          }
          dst.write(chunk);
          tail = hay.subarray(Math.max(0, hay.length - (rule.match.length - 1)));
        });
        src.on('end', () => dst.end());
      };
      pipe(client, upstream, 'forward');
      pipe(upstream, client, 'reverse');
    });
  }

  async start(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  /** Cut every connection: the side that should still get its last bytes gets them, then FIN. */
  cutNow(flush?: net.Socket): void {
    this.cut = true;
    for (const [a, b] of this.#pairs) {
      for (const s of [a, b]) {
        if (s === flush) s.end(() => s.destroy());
        else s.destroy();
      }
    }
  }

  close(): Promise<void> {
    for (const [a, b] of this.#pairs) {
      a.destroy();
      b.destroy();
    }
    return new Promise((r) => this.server.close(() => r()));
  }
}
