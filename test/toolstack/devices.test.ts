// A guest's devices from its libxl config: what xl is asked to attach, and everything refused up
// front (by the sender, or by a destination that cannot recreate it).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDomainConfig, type DomainConfig } from '../../src/toolstack/config.js';
import {
  attachDevices,
  checkDestinationDevices,
  checkSourceDevices,
  findProgram,
  guestDevices,
  requiredDeviceCapabilities,
  type DeviceHost,
} from '../../src/toolstack/devices.js';
import { xenstoreResume } from '../../src/toolstack/xenstore.js';
import { defaultEmulator, emulatorRefusal } from '../../src/toolstack/save.js';
import { noEmulator } from '../../src/toolstack/emulator.js';
import type { Hypervisor } from '../../src/xen/types.js';
import { startFakeXenstored } from './fake-xenstored.js';

/** A PVH guest's config with a disk and a NIC, as libxl stores it (xl list -l). */
function guest(extra: Record<string, unknown> = {}, type = 'pvh'): DomainConfig {
  return parseDomainConfig(
    JSON.stringify({
      c_info: { type, name: 'g', uuid: '7c3d1a52-0f43-4c4c-9d55-3a1f2b6c8e01' },
      b_info: { max_vcpus: 1, max_memkb: 131072, target_memkb: 131072 },
      disks: [
        {
          pdev_path: '/var/lib/g.img',
          vdev: 'xvda',
          backend: 'phy',
          format: 'raw',
          readwrite: 1,
          discard_enable: 'True',
        },
      ],
      nics: [{ devid: 0, mac: '00:16:3e:5a:00:12', bridge: 'xenbr0', nictype: 'vif' }],
      ...extra,
    }),
  );
}

const everything: DeviceHost = { kinds: ['vbd', 'vif'], pathExists: () => true, bridgeExists: () => true };

describe('guestDevices', () => {
  it('turns disks and NICs into the xl block-attach / network-attach arguments that recreate them', () => {
    const d = guestDevices(guest());
    expect(d.unsupported).toEqual([]);
    expect(d.disks).toEqual([
      {
        vdev: 'xvda',
        target: '/var/lib/g.img',
        spec: ['format=raw', 'vdev=xvda', 'access=rw', 'backendtype=phy', 'discard', 'target=/var/lib/g.img'],
      },
    ]);
    expect(d.nics).toEqual([
      {
        devid: 0,
        mac: '00:16:3e:5a:00:12',
        bridge: 'xenbr0',
        spec: ['mac=00:16:3e:5a:00:12', 'bridge=xenbr0'],
      },
    ]);
    expect(requiredDeviceCapabilities(guest())).toEqual(['device-vbd', 'device-vif']);
    // a full HVM guest needs a receiver that starts its device model (no xenmig receiver offers it)
    expect(requiredDeviceCapabilities(guest({}, 'hvm'))).toEqual([
      'device-vbd',
      'device-vif',
      'device-model-qemu',
    ]);
  });

  it('keeps read-only disks read-only, a target with commas whole, and NIC settings', () => {
    const d = guestDevices(
      guest({
        disks: [
          {
            pdev_path: '/srv/a,b.img',
            vdev: 'xvdb',
            backend: 'unknown',
            readwrite: 0,
            script: 'block',
            trusted: 'False',
          },
        ],
        nics: [
          { devid: 1, bridge: 'br1', script: 'vif-bridge', ip: '10.0.0.2 10.0.0.3', ifname: 'web1' },
          { devid: 0, mac: '00:16:3e:00:00:01' },
        ],
      }),
    );
    expect(d.unsupported).toEqual([]);
    expect(d.disks[0]!.spec).toEqual([
      'format=raw',
      'vdev=xvdb',
      'access=ro',
      'backendtype=phy',
      'script=block',
      'untrusted',
      'target=/srv/a,b.img',
    ]);
    // attached in devid order (libxl numbers them as they come)
    expect(d.nics.map((n) => n.devid)).toEqual([0, 1]);
    expect(d.nics[0]!.spec).toEqual(['mac=00:16:3e:00:00:01', 'bridge=xenbr0']);
    expect(d.nics[1]!.spec).toEqual([
      'bridge=br1',
      'script=vif-bridge',
      'ip=10.0.0.2 10.0.0.3',
      'vifname=web1',
    ]);
  });

  it('names every device it cannot recreate', () => {
    const d = guestDevices(
      guest({
        disks: [
          { pdev_path: '/a.qcow2', vdev: 'xvda', backend: 'qdisk', format: 'qcow2' },
          { pdev_path: '/b.img', vdev: 'xvdb', backend: 'phy', backend_domid: 3 },
          { vdev: 'hdc', is_cdrom: 1 },
        ],
        nics: [{ devid: 0 }, { devid: 2 }, { devid: 3, nictype: 'vif_ioemu' }],
        vfbs: [{}],
        vkbs: [{}, {}],
        pcidevs: [{ bus: 1 }],
      }),
    );
    expect(d.pci).toBe(1);
    const text = d.unsupported.join('\n');
    expect(text).toMatch(/disk xvda: backend "qdisk"/);
    expect(text).toMatch(/disk xvdb: its backend is in a driver domain/);
    expect(text).toMatch(/disk hdc: removable\/CD-ROM/);
    expect(text).toMatch(/vif 3: type "vif_ioemu"/);
    expect(text).toMatch(/vif 2: vif devids must be 0\.\.1/);
    expect(text).toMatch(/1 virtual framebuffer/);
    expect(text).toMatch(/2 virtual keyboard \(vkb\)s/);
    expect(text).toMatch(/1 PCI passthrough device/);
  });
});

describe('refusals', () => {
  it('sender: PCI passthrough, and an HVM guest without a device-model state provider', () => {
    expect(() => checkSourceDevices(guest({ pcidevs: [{ bus: 1 }] }), { emulator: false, domid: 4 })).toThrow(
      expect.objectContaining({
        code: 'ERR_UNSUPPORTED_DEVICE',
        message: expect.stringMatching(/1 PCI passthrough device .*\(domain 4\)/),
      }),
    );
    expect(() => checkSourceDevices(guest({}, 'hvm'), { emulator: false })).toThrow(
      /device model \(QEMU\) state cannot be captured/,
    );
    expect(() => checkSourceDevices(guest({}, 'hvm'), { emulator: false, why: 'no QMP socket' })).toThrow(
      /cannot be captured \(no QMP socket\); use xl save/,
    );
    expect(() => checkSourceDevices(guest({}, 'hvm'), { emulator: true })).not.toThrow();
    // disks and NICs themselves are no reason for the sender to refuse: the destination decides
    expect(() => checkSourceDevices(guest(), { emulator: false })).not.toThrow();
  });

  it('sender: the default device model provider and why there is none', () => {
    const real = { flavour: 'system' } as unknown as Hypervisor;
    const mock = { flavour: 'mock' } as unknown as Hypervisor;
    const hvm = guest({}, 'hvm');
    // PV/PVH and the mock host: no device model, and no refusal for PVH
    expect(defaultEmulator(real, 7, guest())).toBe(noEmulator);
    expect(defaultEmulator(mock, 7, hvm)).toBe(noEmulator);
    expect(emulatorRefusal(mock, 7)).toMatch(/mock\) runs no device model/);
    // no QEMU answering on libxl's socket for this domain: named in the refusal
    const none = 2 ** 31 - 7;
    expect(defaultEmulator(real, none, hvm)).toBe(noEmulator);
    expect(emulatorRefusal(real, none)).toContain(`/var/run/xen/qmp-libxl-${none}`);
    // Remus/COLO of HVM: opt-in only
    const before = process.env.XENMIG_HVM_QMP;
    delete process.env.XENMIG_HVM_QMP;
    try {
      expect(defaultEmulator(real, none, hvm, 'remus')).toBe(noEmulator);
      expect(emulatorRefusal(real, none, 'remus')).toMatch(/Remus\/COLO of an HVM guest .* not yet proven/);
      process.env.XENMIG_HVM_QMP = '1';
      expect(emulatorRefusal(real, none, 'remus')).toContain('qmp-libxl-');
    } finally {
      if (before === undefined) delete process.env.XENMIG_HVM_QMP;
      else process.env.XENMIG_HVM_QMP = before;
    }
  });

  it('destination: a host without device support, a missing image or bridge, an unsupported device', () => {
    expect(checkDestinationDevices(guest(), everything).disks).toHaveLength(1);
    expect(() => checkDestinationDevices(guest(), { kinds: [], whyNone: 'no xl here' })).toThrow(
      /1 disk: no xl here; 1 network interface: no xl here/,
    );
    expect(() =>
      checkDestinationDevices(guest(), { ...everything, pathExists: (p) => p !== '/var/lib/g.img' }),
    ).toThrow(/disk xvda: \/var\/lib\/g\.img does not exist on this host/);
    expect(() => checkDestinationDevices(guest(), { ...everything, bridgeExists: () => false })).toThrow(
      /vif 0: bridge xenbr0 does not exist on this host/,
    );
    expect(() => checkDestinationDevices(guest({ vtpms: [{}] }), everything)).toThrow(
      expect.objectContaining({ code: 'ERR_UNSUPPORTED_DEVICE' }),
    );
    // a console-only guest needs nothing
    expect(() => checkDestinationDevices(guest({ disks: [], nics: [] }), { kinds: [] })).not.toThrow();
  });
});

describe('attachDevices (through xl)', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'xenmig-fake-xl-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** An xl that logs its argv (one line each) and fails on the command named in $FAIL_ON. */
  function fakeXl(failOn = ''): { xl: string; log: string } {
    const xl = join(dir, `xl-${failOn || 'ok'}`);
    const log = `${xl}.log`;
    writeFileSync(
      xl,
      `#!/bin/sh\necho "$*" >> ${log}\nif [ "$1" = "${failOn}" ]; then echo "libxl: error: hotplug script failed" >&2; exit 3; fi\n`,
    );
    chmodSync(xl, 0o755);
    return { xl, log };
  }

  it('attaches the disks, then the NICs in devid order, to the paused domain', async () => {
    const { xl, log } = fakeXl();
    const done = await attachDevices(
      9,
      guestDevices(
        guest({
          nics: [
            { devid: 1, bridge: 'b1' },
            { devid: 0, bridge: 'b0' },
          ],
        }),
      ),
      { xl },
    );
    expect(done).toEqual(['disk xvda (/var/lib/g.img)', 'vif 0 (bridge b0)', 'vif 1 (bridge b1)']);
    expect(readFileSync(log, 'utf8').trim().split('\n')).toEqual([
      'block-attach 9 format=raw vdev=xvda access=rw backendtype=phy discard target=/var/lib/g.img',
      'network-attach 9 bridge=b0',
      'network-attach 9 bridge=b1',
    ]);
  });

  it('stops at the first device xl cannot attach, naming it with what xl said', async () => {
    const { xl, log } = fakeXl('network-attach');
    await expect(attachDevices(9, guestDevices(guest()), { xl })).rejects.toThrow(
      expect.objectContaining({
        code: 'ERR_DEVICE',
        message: expect.stringMatching(
          /attaching vif 0 \(bridge xenbr0\) failed: .* exited 3: libxl: error: hotplug script failed/,
        ),
      }),
    );
    expect(readFileSync(log, 'utf8').trim().split('\n')).toHaveLength(2);
    await expect(attachDevices(9, guestDevices(guest()), { xl: join(dir, 'missing-xl') })).rejects.toThrow(
      /did not run or timed out/,
    );
  });

  it('findProgram looks along PATH', () => {
    const { xl } = fakeXl();
    expect(findProgram('xl-ok', dir)).toBe(xl);
    expect(findProgram('xl-ok', '/nonexistent')).toBeNull();
  });
});

describe('XS_RESUME', () => {
  it('tells xenstored that a resumed domain runs again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'xenmig-xs-'));
    const xs = await startFakeXenstored(dir);
    try {
      await xenstoreResume(7, xs.path);
      expect(xs.log).toEqual(['RESUME 7']);
    } finally {
      await xs.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
