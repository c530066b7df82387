// The NBD server against golden bytes (fixed-newstyle handshake, simple replies), and what it does
// with bad input: typed errors and EINVAL/ENOSPC replies, never a crash.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { serveNbdConnection, type NbdConnectionResult } from '../../src/disk/nbd.js';
import { ReplicatedImage } from '../../src/disk/image.js';

let dir: string;
let img: ReplicatedImage;
let server: Server;
let results: Promise<NbdConnectionResult>[];
const clients: Raw[] = [];
const SIZE = 64 * 1024;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'xenmig-nbd-'));
  const data = Buffer.alloc(SIZE);
  for (let i = 0; i < SIZE; i++) data[i] = i & 0xff;
  writeFileSync(join(dir, 'disk.img'), data);
  img = new ReplicatedImage(join(dir, 'disk.img'), { name: 'disk' });
  results = [];
  server = createServer((s) => results.push(serveNbdConnection(s, img, { maxRequest: 8192 })));
  await new Promise<void>((r) => server.listen(join(dir, 'nbd.sock'), r));
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.s.destroy();
  await new Promise<void>((r) => server.close(() => r()));
  img.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A raw client: send hex, read exactly n bytes back. */
class Raw {
  private buf = Buffer.alloc(0);
  private wake: (() => void) | null = null;
  closed = false;
  constructor(readonly s: Socket) {
    s.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      this.wake?.();
    });
    s.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
  }
  static async open(): Promise<Raw> {
    const s = createConnection(join(dir, 'nbd.sock'));
    await new Promise<void>((r) => s.once('connect', r));
    const c = new Raw(s);
    clients.push(c);
    return c;
  }
  send(hex: string | Buffer): void {
    this.s.write(typeof hex === 'string' ? Buffer.from(hex.replace(/\s+/g, ''), 'hex') : hex);
  }
  async read(n: number): Promise<string> {
    while (this.buf.length < n) {
      if (this.closed)
        throw new Error(`closed after ${this.buf.length} of ${n} bytes: ${this.buf.toString('hex')}`);
      await new Promise<void>((r) => (this.wake = r));
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out.toString('hex');
  }
  async untilClosed(): Promise<void> {
    while (!this.closed) await new Promise<void>((r) => (this.wake = r));
  }
}

const GREETING = '4e42444d41474943' + '49484156454f5054' + '0003';
const OPT = '49484156454f5054';
const REP = '0003e889045565a9';
const u32 = (n: number) => n.toString(16).padStart(8, '0');
const u64 = (n: number) => n.toString(16).padStart(16, '0');
const FLAGS = '006d'; // HAS_FLAGS | SEND_FLUSH | SEND_FUA | SEND_TRIM | SEND_WRITE_ZEROES
const req = (type: number, handle: string, off: number, len: number, flags = 0) =>
  '25609513' +
  flags.toString(16).padStart(4, '0') +
  type.toString(16).padStart(4, '0') +
  handle +
  u64(off) +
  u32(len);

async function go(c: Raw): Promise<void> {
  expect(await c.read(18)).toBe(GREETING);
  c.send('00000003');
  // GO, empty name (the default export), one info request: BLOCK_SIZE
  c.send(OPT + u32(7) + u32(8) + u32(0) + '0001' + '0003');
  expect(await c.read(20 + 12)).toBe(REP + u32(7) + u32(3) + u32(12) + '0000' + u64(SIZE) + FLAGS);
  expect(await c.read(20 + 14)).toBe(
    REP + u32(7) + u32(3) + u32(14) + '0003' + u32(1) + u32(4096) + u32(8192),
  );
  expect(await c.read(20)).toBe(REP + u32(7) + u32(1) + u32(0));
}

describe('nbd: handshake', () => {
  it('greets, answers LIST, INFO for an unknown export, unsupported options, then GO', async () => {
    const c = await Raw.open();
    expect(await c.read(18)).toBe(GREETING);
    c.send('00000001');
    c.send(OPT + u32(3) + u32(0)); // LIST
    const name = Buffer.from('disk').toString('hex');
    expect(await c.read(20 + 8)).toBe(REP + u32(3) + u32(2) + u32(8) + u32(4) + name);
    expect(await c.read(20)).toBe(REP + u32(3) + u32(1) + u32(0));
    c.send(OPT + u32(8) + u32(0)); // STRUCTURED_REPLY: not offered
    expect(await c.read(20)).toBe(REP + u32(8) + '80000001' + u32(0));
    c.send(OPT + u32(6) + u32(4 + 3 + 2) + u32(3) + Buffer.from('xyz').toString('hex') + '0000'); // INFO "xyz"
    const head = await c.read(20);
    expect(head.slice(0, 32)).toBe(REP + u32(6) + '80000006');
    await c.read(parseInt(head.slice(32, 40), 16));
    c.send(OPT + u32(6) + u32(5) + u32(9) + '00'); // INFO with a name longer than its data
    expect(await c.read(20)).toBe(REP + u32(6) + '80000003' + u32(0));
    c.send(OPT + u32(7) + u32(6) + u32(0) + '0000');
    expect(await c.read(20 + 12)).toBe(REP + u32(7) + u32(3) + u32(12) + '0000' + u64(SIZE) + FLAGS);
    expect(await c.read(20)).toBe(REP + u32(7) + u32(1) + u32(0));
    c.send(req(2, '0000000000000000', 0, 0)); // DISC
    await c.untilClosed();
    expect((await results[0])!.reason).toBe('disconnect');
  });

  it('EXPORT_NAME without NO_ZEROES: size, flags and 124 zero bytes', async () => {
    const c = await Raw.open();
    expect(await c.read(18)).toBe(GREETING);
    c.send('00000001');
    c.send(OPT + u32(1) + u32(4) + Buffer.from('disk').toString('hex'));
    expect(await c.read(134)).toBe(u64(SIZE) + FLAGS + '00'.repeat(124));
    c.s.end();
    expect((await results[0])!.reason).toBe('closed');
  });
});

describe('nbd: commands', () => {
  it('WRITE, READ, FLUSH, WRITE_ZEROES, TRIM with simple replies; writes reach the image', async () => {
    const c = await Raw.open();
    await go(c);
    c.send(req(1, '0102030405060708', 4096, 4) + 'deadbeef');
    expect(await c.read(16)).toBe('67446698' + u32(0) + '0102030405060708');
    c.send(req(0, 'aaaaaaaaaaaaaaaa', 4094, 8));
    expect(await c.read(16 + 8)).toBe(
      '67446698' + u32(0) + 'aaaaaaaaaaaaaaaa' + 'feff' + 'deadbeef' + '0405',
    );
    c.send(req(3, '0000000000000001', 0, 0));
    expect(await c.read(16)).toBe('67446698' + u32(0) + '0000000000000001');
    c.send(req(6, '0000000000000002', 8192, 16, 1)); // WRITE_ZEROES, FUA
    expect(await c.read(16)).toBe('67446698' + u32(0) + '0000000000000002');
    c.send(req(4, '0000000000000003', 0, 4096));
    expect(await c.read(16)).toBe('67446698' + u32(0) + '0000000000000003');
    c.send(req(2, '0000000000000000', 0, 0));
    await c.untilClosed();
    const disk = readFileSync(join(dir, 'disk.img'));
    expect(disk.subarray(4096, 4100).toString('hex')).toBe('deadbeef');
    expect(disk.subarray(8192, 8208).every((b) => b === 0)).toBe(true);
    expect(disk[0]).toBe(0); // TRIM is advisory: data kept
    expect(disk[1]).toBe(1);
  });

  it('beyond the export: READ and TRIM get EINVAL, WRITE and WRITE_ZEROES ENOSPC; an over-long READ EINVAL; the connection goes on', async () => {
    const c = await Raw.open();
    await go(c);
    c.send(req(0, '0000000000000011', SIZE - 4, 8));
    expect(await c.read(16)).toBe('67446698' + u32(22) + '0000000000000011');
    c.send(req(0, '0000000000000012', 0xffffffffffff0, 1));
    expect(await c.read(16)).toBe('67446698' + u32(22) + '0000000000000012');
    c.send(req(1, '0000000000000013', SIZE, 4) + '01020304');
    expect(await c.read(16)).toBe('67446698' + u32(28) + '0000000000000013');
    c.send(req(6, '0000000000000014', SIZE - 1, 2));
    expect(await c.read(16)).toBe('67446698' + u32(28) + '0000000000000014');
    c.send(req(4, '0000000000000015', SIZE, 1));
    expect(await c.read(16)).toBe('67446698' + u32(22) + '0000000000000015');
    c.send(req(0, '0000000000000016', 0, 8193)); // over maxRequest
    expect(await c.read(16)).toBe('67446698' + u32(22) + '0000000000000016');
    c.send(req(9, '0000000000000017', 0, 0)); // unknown command
    expect(await c.read(16)).toBe('67446698' + u32(22) + '0000000000000017');
    c.send(req(0, '0000000000000018', 0, 2));
    expect(await c.read(18)).toBe('67446698' + u32(0) + '0000000000000018' + '0001');
    c.s.end();
    expect((await results[0])!.reason).toBe('closed');
  });

  it("protocol violations end the connection with a typed error and its offset in the client's bytes", async () => {
    const cases: [string, (c: Raw) => Promise<void>, RegExp, number][] = [
      ['unknown client flags', async (c) => c.send('00000004'), /unknown client flags/, 0],
      [
        'bad option magic',
        async (c) => c.send('00000003' + '0000000000000000' + u32(3) + u32(0)),
        /bad option magic/,
        4,
      ],
      [
        'oversized option',
        async (c) => c.send('00000003' + OPT + u32(7) + u32(1 << 20)),
        /option 7 with 1048576 bytes/,
        16,
      ],
      [
        'bad request magic',
        async (c) => (await go(c), c.send('12345678' + '00'.repeat(24))),
        /bad request magic/,
        4 + 16 + 8,
      ],
      [
        'oversized write',
        async (c) => (await go(c), c.send(req(1, '0000000000000021', 0, 1 << 20))),
        /write of 1048576 bytes/,
        4 + 16 + 8 + 24,
      ],
    ];
    for (const [what, send, msg, offset] of cases) {
      const n = results.length;
      const c = await Raw.open();
      if (what.startsWith('unknown') || what.startsWith('bad option') || what.startsWith('oversized option'))
        expect(await c.read(18)).toBe(GREETING);
      await send(c);
      await c.untilClosed();
      while (results.length <= n) await new Promise((r) => setTimeout(r, 5));
      const r = await results[n]!;
      expect(r.reason, what).toBe('protocol-error');
      expect(r.error?.code, what).toBe('ERR_NBD_PROTOCOL');
      expect(r.error?.message, what).toMatch(msg);
      expect(r.error?.offset, what).toBe(offset);
    }
    // the server still serves
    const c = await Raw.open();
    await go(c);
  });
});
