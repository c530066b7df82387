// The same native sources build with cmake-js (npm run build:cmake) into a fresh directory,
// and the products load: system (ENOENT without Xen), mock (a working simulated host).
import { describe, it, expect, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hasLibxen, hasMockSources, hasXen, root } from './helpers.js';

describe('cmake-js build', () => {
  const out = mkdtempSync(join(tmpdir(), 'xenmig-cmake-'));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('builds the addon flavours from native/CMakeLists.txt', () => {
    const r = spawnSync(process.execPath, [join(root, 'native', 'build.mjs'), '--cmake', '--out', out], {
      cwd: root,
      encoding: 'utf8',
    });
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    if (hasLibxen) expect(existsSync(join(out, 'Release', 'xenmig_system.node'))).toBe(true);
    if (hasMockSources) expect(existsSync(join(out, 'Release', 'xenmig_mock.node'))).toBe(true);
    expect(hasLibxen || hasMockSources).toBe(true);
  }, 300_000);

  it.runIf(hasLibxen && !hasXen)(
    'the cmake system addon loads and fails open() with ENOENT, silently',
    () => {
      const script = `
      const a = require(${JSON.stringify(join(out, 'Release', 'xenmig_system.node'))});
      try { new a.Interface(); console.log('opened'); } catch (e) { console.log(a.flavour, e.code, e.syscall, e.message); }`;
      const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe(
        'system ENOENT xc_interface_open no Xen hypervisor: /dev/xen/privcmd missing',
      );
    },
  );

  it.runIf(hasMockSources)(
    'the cmake mock addon finds its libxenctrl beside it ($ORIGIN) and runs a host',
    () => {
      const host = mkdtempSync(join(tmpdir(), 'xenmig-cmake-host-'));
      try {
        const script = `
        const a = require(${JSON.stringify(join(out, 'Release', 'xenmig_mock.node'))});
        a.mock.setHost(${JSON.stringify(host)});
        const d = a.mock.domainCreate(a.mock.DOMAIN_HVM, 16, 1, true);
        const h = new a.Interface();
        const info = h.domainInfo(d);
        console.log(a.flavour, info.domid === d, info.hvm, h.nrGpfns(d));`;
        const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
        expect(r.stderr).toBe('');
        expect(r.stdout.trim()).toBe('mock true true 16');
      } finally {
        rmSync(host, { recursive: true, force: true });
      }
    },
  );
});
