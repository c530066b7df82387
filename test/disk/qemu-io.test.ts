// A real NBD client (QEMU's, through qemu-io from Debian's qemu-utils) against `xenmig disk serve`
// in a process of its own: writes and reads through the server, and the blocks it wrote are the
// epoch the control socket hands out.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Proc, requireFreshBuild } from '../checkpoint/helpers.js';
import { DiskControlClient } from '../../src/disk/control.js';
import { findProgram } from '../../src/toolstack/devices.js';

const MAIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
let dir: string;
let daemon: Proc;

beforeAll(async () => {
  requireFreshBuild();
  if (!findProgram('qemu-io'))
    throw new Error('qemu-io is missing: apt-get install qemu-utils (CI installs it in .ci/run)');
  dir = mkdtempSync(join(tmpdir(), 'xenmig-qemu-io-'));
  writeFileSync(join(dir, 'disk.img'), Buffer.alloc(1 << 20));
  daemon = new Proc(MAIN, [
    'disk',
    'serve',
    join(dir, 'disk.img'),
    '--socket',
    join(dir, 'nbd.sock'),
    '--control',
    join(dir, 'ctl.sock'),
    '--json',
  ]);
  await daemon.waitFor((j) => j.serving !== undefined, 'the disk daemon');
});

afterAll(async () => {
  daemon?.kill();
  await daemon?.exited;
  rmSync(dir, { recursive: true, force: true });
});

const qemuIo = (...cmds: string[]) =>
  execFileSync(
    'qemu-io',
    ['-f', 'raw', `nbd+unix:///?socket=${join(dir, 'nbd.sock')}`, ...cmds.flatMap((c) => ['-c', c])],
    { encoding: 'utf8', stdio: 'pipe' },
  );

describe('qemu-io against xenmig disk serve', () => {
  it('writes, reads back (pattern-checked by qemu-io), zeroes, flushes; the image holds the data', () => {
    const out = qemuIo(
      'write -P 0xab 4096 8192',
      'read -P 0xab 4096 8192',
      'read -P 0 0 4096',
      'write -z 8192 4096',
      'read -P 0 8192 4096',
      'flush',
      'discard 0 4096',
      'aio_write -P 0x5c 65536 65536',
      'aio_flush',
    );
    expect(out).toMatch(/wrote 8192\/8192 bytes at offset 4096/);
    expect(out).toMatch(/read 8192\/8192 bytes at offset 4096/);
    expect(out).not.toMatch(/Pattern verification failed|error/i);
    const img = readFileSync(join(dir, 'disk.img'));
    expect(img.subarray(4096, 8192).every((b) => b === 0xab)).toBe(true);
    expect(img.subarray(8192, 12288).every((b) => b === 0)).toBe(true);
    expect(img.subarray(65536, 131072).every((b) => b === 0x5c)).toBe(true);
    // a read beyond the end is refused by qemu itself (it knows the size from the handshake)
    expect(() => qemuIo('read 1048576 4096')).toThrow();
  });

  it('an epoch holds exactly the blocks qemu-io wrote, with the data they had at rotate', async () => {
    const ctl = await DiskControlClient.connect(join(dir, 'ctl.sock'));
    try {
      expect(await ctl.hello()).toMatchObject({ size: 1 << 20, blockSize: 4096, epoch: 0 });
      await ctl.start();
      qemuIo('write -P 0x11 40960 4096', 'write -P 0x22 0 512', 'write -P 0x33 200704 12288');
      expect(await ctl.rotate(1)).toBe(5);
      qemuIo('write -P 0x44 40960 4096'); // after rotate: epoch 1 still sends 0x11
      const got = new Map<number, number>();
      await ctl.fetch(1, 2, 4096, async (blocks, data) =>
        blocks.forEach((b, i) => got.set(b, data[i * 4096]!)),
      );
      expect([...got]).toEqual([
        [0, 0x22],
        [10, 0x11],
        [49, 0x33],
        [50, 0x33],
        [51, 0x33],
      ]);
      expect(await ctl.rotate(2)).toBe(1);
    } finally {
      ctl.close();
    }
  });
});
