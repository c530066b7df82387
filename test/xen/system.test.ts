// The system flavour: builds against the installed libxen-dev, and without Xen it loads and
// fails open() with a clear ENOENT error, printing nothing.
import { describe, it, expect, beforeAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { openHypervisor, isXenError } from '../../src/xen/index.js';
import { ensureBuilt, hasLibxen, hasXen, probe, root, systemAddonPath } from './helpers.js';

describe('system flavour', () => {
  beforeAll(() => ensureBuilt());

  it.runIf(hasLibxen)('is built when pkg-config finds libxen-dev', () => {
    expect(existsSync(systemAddonPath)).toBe(true);
  });

  it.runIf(hasLibxen)(
    'was configured with the probed libxenctrl API (getinfo vs getinfo_single)',
    async () => {
      const { createRequire } = await import('node:module');
      const addon = createRequire(import.meta.url)(systemAddonPath);
      expect(addon.flavour).toBe('system');
      expect(addon.build.getinfoSingle).toBe(probe('getinfo-single') === '1');
      // Debian 12's libxen-dev is 4.17: xc_domain_getinfo, no xc_domain_getinfo_single.
      const v = spawnSync('pkg-config', ['--modversion', 'xencontrol'], { encoding: 'utf8' }).stdout.trim();
      if (v.startsWith('4.17')) expect(addon.build.getinfoSingle).toBe(false);
      expect(addon.sizes.vcpuContext).toBe(5168);
      expect(addon.sizes.cpuidLeaf).toBe(24);
      expect(addon.sizes.msrEntry).toBe(16);
    },
  );

  it.runIf(hasLibxen && !hasXen)(
    'loads without Xen; open() fails with ENOENT and prints nothing to stderr',
    () => {
      const script = `
      const addon = require(${JSON.stringify(systemAddonPath)});
      let out;
      try { new addon.Interface(); out = { opened: true }; }
      catch (e) { out = { name: e.name, message: e.message, code: e.code, errno: e.errno, syscall: e.syscall }; }
      process.stdout.write(JSON.stringify(out));`;
      const r = spawnSync(process.execPath, ['-e', script], { cwd: root, encoding: 'utf8' });
      expect(r.status).toBe(0);
      expect(r.stderr).toBe('');
      const out = JSON.parse(r.stdout);
      expect(out).toEqual({
        name: 'Error',
        message: 'no Xen hypervisor: /dev/xen/privcmd missing',
        code: 'ENOENT',
        errno: 2,
        syscall: 'xc_interface_open',
      });
    },
  );

  it.runIf(hasLibxen && !hasXen)('openHypervisor({flavour: system}) throws the same XenError', () => {
    let err: unknown;
    try {
      openHypervisor({ flavour: 'system' });
    } catch (e) {
      err = e;
    }
    expect(isXenError(err)).toBe(true);
    expect(err).toMatchObject({ code: 'ENOENT', errno: 2, syscall: 'xc_interface_open' });
    expect((err as Error).message).toBe('no Xen hypervisor: /dev/xen/privcmd missing');
  });

  it.runIf(hasLibxen)('the Xen >= 4.18 branch (xc_domain_getinfo_single) compiles too', () => {
    // libxen-dev here is 4.17, so declare the 4.18 function and compile interface.cc with the macro on
    const dir = mkdtempSync(join(tmpdir(), 'xenmig-418-'));
    try {
      const decl = join(dir, 'getinfo_single.h');
      writeFileSync(
        decl,
        '#include <xenctrl.h>\nextern "C" int xc_domain_getinfo_single(xc_interface *, uint32_t, xc_domaininfo_t *);\n',
      );
      const nodeInclude = join(
        process.env.npm_config_nodedir ?? join(dirname(process.execPath), '..'),
        'include',
        'node',
      );
      const r = spawnSync(
        'g++',
        [
          '-std=gnu++17',
          '-fsyntax-only',
          '-Wall',
          '-Werror',
          '-fexceptions',
          '-DHAVE_XC_DOMAIN_GETINFO_SINGLE=1',
          '-DNAPI_VERSION=8',
          '-DNAPI_CPP_EXCEPTIONS',
          '-include',
          decl,
          `-I${probe('addon-api')}`,
          `-I${nodeInclude}`,
          join(root, 'native', 'src', 'interface.cc'),
        ],
        { cwd: root, encoding: 'utf8' },
      );
      expect(r.status, r.stderr).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
