// File, fd and stdio channels: byte-exact round trips of several MiB through real files, pipes and
// child processes; raw fd access; a vanished peer surfaces as an error.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import {
  fdChannel,
  fileChannel,
  readExactly,
  writeAll,
  PeerClosedError,
  TransportConfigError,
  ChildExitError,
  spawnChannel,
  type Channel,
} from '../../src/transport/index.js';
import { buildTransportForChildren, randomPayload, sha256, tempDir } from './helpers.js';

const MiB = 1024 * 1024;
let tmp: ReturnType<typeof tempDir>;
let built: ReturnType<typeof buildTransportForChildren>;
const PEER = new URL('./fixtures/peer.mjs', import.meta.url).pathname;

beforeAll(() => {
  tmp = tempDir();
  built = buildTransportForChildren();
});
afterAll(() => {
  tmp.cleanup();
  built.cleanup();
});

async function writeInChunks(ch: Channel, data: Buffer, chunk = 256 * 1024): Promise<void> {
  for (let i = 0; i < data.length; i += chunk) await writeAll(ch.writable, data.subarray(i, i + chunk));
}

async function readAll(ch: Channel): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of ch.readable) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describe('file channel', () => {
  it('saves and restores 6 MiB byte-exact', async () => {
    const path = join(tmp.dir, 'save.bin');
    const data = randomPayload(6 * MiB + 123);
    const w = fileChannel(path, { role: 'sender' });
    expect(w.kind).toBe('file');
    expect(typeof w.writeFd).toBe('number');
    await writeInChunks(w, data);
    await w.close();
    expect(w.error).toBeUndefined();
    expect(sha256(readFileSync(path))).toBe(sha256(data));

    const r = fileChannel(path, { role: 'receiver' });
    expect(typeof r.readFd).toBe('number');
    const got = await readAll(r);
    await r.close();
    expect(got.length).toBe(data.length);
    expect(got.equals(data)).toBe(true);
  });

  it('exposes the raw fd: writev-style raw writes before the stream is created, reads via fd', async () => {
    const path = join(tmp.dir, 'raw.bin');
    const data = randomPayload(3 * MiB);
    const w = fileChannel(path, { role: 'sender' });
    // raw writes as a native addon would do (nothing else touches the fd yet: streams are lazy)
    let off = 0;
    while (off < data.length) off += writeSync(w.writeFd!, data, off, Math.min(MiB, data.length - off));
    // then continue through the Node stream: it appends at the current file position
    const tail = Buffer.from('TAIL');
    await writeAll(w.writable, tail);
    await w.close();
    const r = fileChannel(path, { role: 'receiver' });
    const head = Buffer.alloc(data.length);
    let got = 0;
    while (got < head.length) {
      const n = readSync(r.readFd!, head, got, head.length - got, null);
      if (n === 0) break;
      got += n;
    }
    expect(head.equals(data)).toBe(true);
    expect((await readExactly(r.readable, 4)).toString()).toBe('TAIL');
    await r.close();
  });

  it('has no reverse direction: the sender reads EOF, the receiver cannot write', async () => {
    const path = join(tmp.dir, 'norev.bin');
    const w = fileChannel(path, { role: 'sender' });
    await expect(readExactly(w.readable, 1)).rejects.toBeInstanceOf(PeerClosedError);
    w.destroy();
    const r = fileChannel(path, { role: 'receiver' });
    await expect(writeAll(r.writable, Buffer.from('x'))).rejects.toThrow();
    r.destroy();
  });

  it('close without ever touching the streams closes the fd', async () => {
    const path = join(tmp.dir, 'lazy.bin');
    const w = fileChannel(path, { role: 'sender' });
    const fd = w.writeFd!;
    await w.close();
    expect(() => writeSync(fd, 'x')).toThrow(/EBADF/);
  });
});

describe('pipes to a child process (stdio transport on the far end)', () => {
  function spawnPeer(...args: string[]) {
    return spawnChannel([process.execPath, PEER, built.dir, ...args], {
      role: 'sender',
      forwardStderr: true,
    });
  }

  it('round-trips 5 MiB forward and back through a child using stdioChannel', async () => {
    const ch = await spawnPeer('echo');
    expect(typeof ch.readFd).toBe('number');
    expect(typeof ch.writeFd).toBe('number');
    const data = randomPayload(5 * MiB + 7);
    const [, got] = await Promise.all([
      (async () => {
        await writeInChunks(ch, data, 300_000);
        ch.writable.end();
      })(),
      readAll(ch),
    ]);
    expect(got.length).toBe(data.length);
    expect(got.equals(data)).toBe(true);
    await ch.close();
    expect(ch.error).toBeUndefined();
  });

  it('fdChannel over a FIFO pair: 4 MiB exact, both directions', async () => {
    // two named pipes give us real pipe fds owned by the channel (no child_process streams involved)
    const { execFileSync } = await import('node:child_process');
    const f1 = join(tmp.dir, 'fifo-fwd');
    const f2 = join(tmp.dir, 'fifo-rev');
    execFileSync('mkfifo', [f1, f2]);
    // open both ends non-blockingly in the right order: O_RDWR on a FIFO never blocks on Linux
    const sendFwd = openSync(f1, 'r+');
    const recvFwd = openSync(f1, 'r+');
    const recvRev = openSync(f2, 'r+');
    const sendRev = openSync(f2, 'r+');
    const sender = fdChannel({ role: 'sender', writeFd: sendFwd, readFd: sendRev });
    const receiver = fdChannel({ role: 'receiver', readFd: recvFwd, writeFd: recvRev });
    expect(sender.writeFd).toBe(sendFwd);
    expect(receiver.readFd).toBe(recvFwd);
    const data = randomPayload(4 * MiB + 5);
    const reply = randomPayload(64 * 1024);
    const [, got] = await Promise.all([
      writeInChunks(sender, data),
      readExactly(receiver.readable, data.length, { timeoutMs: 30_000 }),
    ]);
    expect(got.equals(data)).toBe(true);
    const [, back] = await Promise.all([
      writeAll(receiver.writable, reply),
      readExactly(sender.readable, reply.length, { timeoutMs: 30_000 }),
    ]);
    expect(back.equals(reply)).toBe(true);
    sender.destroy();
    receiver.destroy();
    await Promise.all([sender.closed, receiver.closed]);
  });

  it('a child that dies mid-stream surfaces as an error on reads and writes, never a hang', async () => {
    const ch = await spawnPeer('die-after', String(1024 * 1024));
    const data = randomPayload(8 * MiB);
    // writes beyond what the child reads must fail (EPIPE / child exit) once it is gone
    await expect(writeInChunks(ch, data)).rejects.toBeInstanceOf(PeerClosedError);
    await expect(readExactly(ch.readable, 1, { timeoutMs: 20_000 })).rejects.toBeInstanceOf(PeerClosedError);
    await ch.closed;
    expect(ch.error).toBeInstanceOf(ChildExitError);
    expect((ch.error as ChildExitError).exitCode).toBe(3);
  });

  it('refuses a terminal as a channel', () => {
    // /dev/tty may not exist in CI; use a pty only if available
    let fd: number | undefined;
    try {
      fd = openSync('/dev/ptmx', 'r+');
    } catch {
      return;
    }
    const ch = fdChannel({ role: 'receiver', readFd: fd, autoClose: true });
    expect(() => ch.readable).toThrow(TransportConfigError);
    ch.destroy();
    try {
      closeSync(fd);
    } catch {
      /* closed by destroy */
    }
  });
});
