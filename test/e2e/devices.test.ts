// Guests with devices, end to end through the CLI in separate processes on mock hosts: what cannot
// be carried over is refused before the guest is touched, and the guest runs on untouched. (The
// mock simulates a hypervisor, not device backends: its builder refuses disks and NICs, as a real
// host's builder does when it cannot attach them. Attaching them is proven on real Xen:
// test/realxen, steps 0.2 to 8.xl.)
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  checksum,
  cli,
  createDomain,
  listDomains,
  ok,
  startCli,
  tempDir,
  tempHost,
  type Running,
} from './helpers.js';

const tmp = tempDir('xenmig-devices-');
const cleanups: (() => void)[] = [];
const procs: Running[] = [];
afterEach(() => {
  for (const p of procs.splice(0))
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  for (const c of cleanups.splice(0)) c();
});
afterAll(() => tmp.cleanup());

let n = 0;
/** A libxl config (xl list -l shape) for a 16 MiB guest of the given kind, with extra device lists. */
function configFile(extra: Record<string, unknown>, type = 'pvh'): string {
  const f = join(tmp.dir, `config-${++n}.json`);
  const config = {
    c_info: { type, name: `g${n}` },
    b_info: { max_vcpus: 1, max_memkb: 16384, target_memkb: 16384 },
    ...extra,
  };
  writeFileSync(f, JSON.stringify([{ domid: 1, config }], null, 2));
  return f;
}

const DISK = {
  disks: [
    { pdev_path: '/var/lib/xen/images/g.img', vdev: 'xvda', backend: 'phy', format: 'raw', readwrite: 1 },
  ],
};
const VIF = { nics: [{ devid: 0, mac: '00:16:3e:00:00:07', bridge: 'xenbr0', nictype: 'vif' }] };

async function host(): Promise<{ dir: string; domid: number; sum: string }> {
  const h = tempHost();
  cleanups.push(h.cleanup);
  const domid = await createDomain(h.dir, 'hvm', '16M');
  return { dir: h.dir, domid, sum: await checksum(h.dir, domid) };
}

/** The domain runs as before: not paused, not shut down, memory unchanged (nothing touched it). */
async function untouched(h: { dir: string; domid: number; sum: string }): Promise<void> {
  const d = (await listDomains(h.dir)).find((x) => x.domid === h.domid);
  expect(d, 'the domain still exists').toBeDefined();
  expect({ state: d!.state, paused: d!.paused, shutdown: d!.shutdown }).toEqual({
    state: 'running',
    paused: false,
    shutdown: false,
  });
  expect(await checksum(h.dir, h.domid)).toBe(h.sum);
}

describe('refused before the guest is touched', () => {
  it('save of a guest with a PCI passthrough device: exit 1, ERR_UNSUPPORTED_DEVICE, no stream written', async () => {
    const h = await host();
    const out = join(tmp.dir, 'pci.save');
    const r = await cli([
      'save',
      String(h.domid),
      out,
      '--host',
      h.dir,
      '--config',
      configFile({ pcidevs: [{ domain: 0, bus: 3, dev: 0, func: 0 }] }),
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ERR_UNSUPPORTED_DEVICE.*1 PCI passthrough device/);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(existsSync(out) ? statSync(out).size : 0).toBe(0);
    await untouched(h);
  });

  it('save of an HVM guest (device model) when no emulator state can be captured', async () => {
    const h = await host();
    const out = join(tmp.dir, 'hvm.save');
    const r = await cli(['save', String(h.domid), out, '--host', h.dir, '--config', configFile({}, 'hvm')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ERR_UNSUPPORTED_DEVICE.*device model \(QEMU\) state cannot be captured/);
    expect(existsSync(out) ? statSync(out).size : 0).toBe(0);
    await untouched(h);
  });

  it('migrate of a guest with a NIC to a xenmig receiver that cannot attach one: refused at READY, before any page', async () => {
    const src = await host();
    const dst = tempHost();
    cleanups.push(dst.cleanup);
    const receiver = startCli(['receive', '-', '--host', dst.dir], {
      stdio: ['pipe', 'pipe', 'pipe'],
      rawStdout: true,
    });
    procs.push(receiver);
    const sender = startCli(
      ['migrate', String(src.domid), '-', '--host', src.dir, '--config', configFile(VIF)],
      {
        stdio: [receiver.child.stdout!, receiver.child.stdin!, 'pipe'],
      },
    );
    procs.push(sender);
    receiver.child.stdin!.destroy();
    receiver.child.stdout!.destroy();
    const s = await sender.done;
    await receiver.done;
    expect(s.code).toBe(1);
    expect(s.stderr).toMatch(/device-vif/);
    expect(s.stderr).toMatch(/the source was not touched and runs/);
    expect(await listDomains(dst.dir)).toEqual([]);
    await untouched(src);
  });

  it('restore of a stream whose guest has a disk, on a host that cannot attach it: nothing is built', async () => {
    const src = await host();
    const file = join(tmp.dir, 'disk.save');
    // the sender has no reason to refuse a disk (xl restore would attach it); this host's builder does
    await ok([
      'save',
      String(src.domid),
      file,
      '--keep-running',
      '--host',
      src.dir,
      '--config',
      configFile(DISK),
    ]);
    const dst = tempHost();
    cleanups.push(dst.cleanup);
    const r = await cli(['restore', file, '--host', dst.dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ERR_UNSUPPORTED_DEVICE.*1 disk: the mock host simulates no device backends/);
    expect(await listDomains(dst.dir)).toEqual([]);
  });

  it('a config that is not JSON is a usage error (exit 2)', async () => {
    const h = await host();
    const bad = join(tmp.dir, 'bad.json');
    writeFileSync(bad, 'name = "g"\n');
    const r = await cli(['save', String(h.domid), join(tmp.dir, 'x.save'), '--host', h.dir, '--config', bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--config .*bad\.json/);
    await untouched(h);
  });
});
