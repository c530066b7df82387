// The QMP device-model provider against a real QEMU process (QEMU speaks QMP without Xen): the
// commands libxl sends for a save (xen-set-global-dirty-log, stop, xen-save-devices-state, cont),
// the physmap keys from xenstore, and a whole save of a mock HVM domain carrying QEMU's state.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { Qmp, QmpError, qemuDeviceModel } from '../../src/toolstack/qmp.js';
import { parseDomainConfig } from '../../src/toolstack/config.js';
import { openMockHost } from '../../src/xen/index.js';
import { save } from '../../src/api.js';
import { StreamReader } from '../../src/stream/index.js';
import { startFakeXenstored, type FakeXenstored } from './fake-xenstored.js';

const QEMU = 'qemu-system-x86_64';
const DOMID = 5;
let dir: string;
let qemu: ChildProcess;
let xs: FakeXenstored;

async function waitFor(path: string): Promise<void> {
  for (let i = 0; i < 200 && !existsSync(path); i++) await new Promise((r) => setTimeout(r, 50));
  if (!existsSync(path)) throw new Error(`${QEMU} did not create ${path}`);
}

async function status(): Promise<string> {
  const q = await Qmp.connect(join(dir, `qmp-libxl-${DOMID}`));
  try {
    return ((await q.execute('query-status')) as { status: string }).status;
  } finally {
    q.close();
  }
}

beforeAll(async () => {
  // CI installs qemu-system-x86 (.ci/run); a machine without it cannot run these tests
  expect(spawnSync(QEMU, ['--version']).status, `${QEMU} is needed (apt-get install qemu-system-x86)`).toBe(
    0,
  );
  dir = mkdtempSync('/tmp/xenmig-qmp-');
  qemu = spawn(
    QEMU,
    [
      '-machine',
      'pc',
      '-accel',
      'tcg',
      '-nodefaults',
      '-display',
      'none',
      '-m',
      '32',
      '-qmp',
      `unix:${join(dir, `qmp-libxl-${DOMID}`)},server=on,wait=off`,
    ],
    {
      stdio: 'ignore',
    },
  );
  await waitFor(join(dir, `qmp-libxl-${DOMID}`));
  const dm = `/local/domain/0/device-model/${DOMID}/physmap`;
  xs = await startFakeXenstored(dir, {
    [`${dm}/f0000000/start_addr`]: 'f0000000',
    [`${dm}/f0000000/size`]: '800000',
    [`${dm}/f0000000/name`]: 'vga.vram',
  });
});

afterAll(async () => {
  qemu?.kill('SIGKILL');
  await xs?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('QMP', () => {
  it('negotiates, runs commands, reports QMP errors with their class', async () => {
    const q = await Qmp.connect(join(dir, `qmp-libxl-${DOMID}`));
    try {
      expect(q.version?.major).toBeGreaterThanOrEqual(2);
      expect(await q.execute('query-status')).toMatchObject({ status: 'running' });
      await expect(q.execute('no-such-command')).rejects.toThrow(
        expect.objectContaining({ code: 'ERR_QMP', qmpClass: 'CommandNotFound' }),
      );
    } finally {
      q.close();
    }
    await expect(Qmp.connect(join(dir, 'qmp-libxl-99'))).rejects.toThrow(QmpError);
  });

  it('the provider: log-dirty switch, stop + device state + physmap keys, cont', async () => {
    const dm = qemuDeviceModel({ runDir: dir, stateDir: dir, xenstorePath: xs.path });
    expect(dm.present(DOMID)).toBe(true);
    expect(dm.present(DOMID + 1)).toBe(false);
    await dm.switchLogdirty!(DOMID, true);
    await dm.switchLogdirty!(DOMID, false);
    const s = await dm.save(DOMID, { live: true });
    expect(await status()).toBe('paused');
    // QEMU's device-state stream: magic "QEVM", version 3
    expect(Buffer.from(s!.context!.subarray(0, 8)).toString('hex')).toBe('5145564d00000003');
    expect(s!.emulatorId).toBe(2);
    expect(s!.xenstore).toEqual([
      ['physmap/f0000000/start_addr', 'f0000000'],
      ['physmap/f0000000/size', '800000'],
      ['physmap/f0000000/name', 'vga.vram'],
    ]);
    // QEMU's file is not left behind
    expect(readdirSync(dir).filter((f) => f.startsWith('qemu-save'))).toEqual([]);
    await dm.resume!(DOMID);
    expect(await status()).toBe('running');
    await expect(dm.restore(DOMID, s!)).rejects.toThrow(/restore HVM guests with xl restore/);
  });

  it('a save of an HVM guest carries QEMU’s state; --keep-running lets QEMU run again', async () => {
    const host = mkdtempSync('/dev/shm/xenmig-qmp-host-');
    const xen = openMockHost(host);
    try {
      const d = xen.createDomain({ type: 'hvm', pages: 1024, vcpus: 1, populate: true });
      const dm = qemuDeviceModel({ runDir: dir, stateDir: dir, xenstorePath: xs.path });
      const calls: string[] = [];
      // the mock's domid is not QEMU's: route the provider to the running QEMU, recording the calls
      const emulator = {
        save: async (_d: number, o?: { live?: boolean }) => (calls.push('save'), dm.save(DOMID, o)),
        resume: async () => (calls.push('resume'), dm.resume!(DOMID)),
        switchLogdirty: async (_d: number, on: boolean) => (
          calls.push(`logdirty ${on}`),
          dm.switchLogdirty!(DOMID, on)
        ),
        restore: dm.restore,
      };
      const config = parseDomainConfig(
        JSON.stringify({ c_info: { type: 'hvm', name: 'h' }, b_info: { max_vcpus: 1, max_memkb: 4096 } }),
      );
      const out = new PassThrough();
      const chunks: Buffer[] = [];
      out.on('data', (c: Buffer) => chunks.push(c));
      await save(d, out, { xen, config, emulator, keepRunning: true });
      expect(calls).toEqual(['logdirty true', 'save', 'logdirty false', 'resume']);
      expect(await status()).toBe('running');
      const records: string[] = [];
      let context: Uint8Array | null = null;
      for await (const item of new StreamReader(Buffer.concat(chunks))) {
        if (item.kind !== 'record' || item.layer !== 'libxl') continue;
        records.push(item.record.name);
        if (item.record.name === 'EMULATOR_CONTEXT') context = item.record.data;
      }
      expect(records).toEqual(['LIBXC_CONTEXT', 'EMULATOR_XENSTORE_DATA', 'EMULATOR_CONTEXT', 'END']);
      expect(Buffer.from(context!.subarray(0, 4)).toString()).toBe('QEVM');
    } finally {
      xen.close();
      rmSync(host, { recursive: true, force: true });
    }
  });
});
