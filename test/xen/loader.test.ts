import { describe, it, expect, beforeAll, afterEach } from 'vitest';
import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  candidatePaths,
  loadAddon,
  missingNativeMethods,
  selectFlavour,
  type NativeAddon,
} from '../../src/xen/loader.js';
import { ensureBuilt, hasLibxen, hasXen, root, systemAddonPath } from './helpers.js';

const saved = { ...process.env };
afterEach(() => {
  for (const k of ['XENMIG_FLAVOUR', 'XENMIG_ADDON_PATH']) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
});

describe('flavour selection', () => {
  it('defaults to system iff /dev/xen/privcmd exists', () => {
    delete process.env.XENMIG_FLAVOUR;
    expect(selectFlavour()).toBe(hasXen ? 'system' : 'mock');
  });
  it('XENMIG_FLAVOUR overrides the default, the option overrides both', () => {
    process.env.XENMIG_FLAVOUR = 'system';
    expect(selectFlavour()).toBe('system');
    process.env.XENMIG_FLAVOUR = 'mock';
    expect(selectFlavour()).toBe('mock');
    expect(selectFlavour('system')).toBe('system');
  });
  it('rejects unknown flavours', () => {
    process.env.XENMIG_FLAVOUR = 'kvm';
    expect(() => selectFlavour()).toThrow(/XENMIG_FLAVOUR must be 'system' or 'mock', got "kvm"/);
    expect(() => selectFlavour('qemu' as never)).toThrow(TypeError);
  });
});

describe('loadAddon', () => {
  beforeAll(() => ensureBuilt());

  it('searches the option path, XENMIG_ADDON_PATH, then build/Release, build/Debug, build/cmake', () => {
    process.env.XENMIG_ADDON_PATH = '/nonexistent/env';
    const paths = candidatePaths('mock', { path: '/nonexistent/opt/x.node' });
    expect(paths).toEqual([
      '/nonexistent/opt/x.node',
      '/nonexistent/env/xenmig_mock.node',
      join(root, 'build/Release/xenmig_mock.node'),
      join(root, 'build/Debug/xenmig_mock.node'),
      join(root, 'build/cmake/Release/xenmig_mock.node'),
      join(root, 'build/cmake/Debug/xenmig_mock.node'),
    ]);
  });

  it('names every path it tried and why when nothing loads', async () => {
    // the loader in a package root where nothing is built: every candidate is examined and named
    const pkg = mkdtempSync(join(tmpdir(), 'xenmig-loader-pkg-'));
    mkdirSync(join(pkg, 'dist', 'xen'), { recursive: true });
    copyFileSync(join(root, 'dist', 'xen', 'loader.js'), join(pkg, 'dist', 'xen', 'loader.js'));
    const isolated = (await import(
      pathToFileURL(join(pkg, 'dist', 'xen', 'loader.js')).href
    )) as typeof import('../../src/xen/loader.js');
    const dir = mkdtempSync(join(tmpdir(), 'xenmig-loader-'));
    const bogus = join(dir, 'xenmig_system.node');
    writeFileSync(bogus, 'not an ELF file');
    process.env.XENMIG_ADDON_PATH = dir;
    let err: unknown;
    try {
      isolated.loadAddon({ flavour: 'system', path: '/nonexistent/xenmig.node' });
    } catch (e) {
      err = e;
    }
    expect(err, 'nothing can load here').toBeInstanceOf(isolated.AddonLoadError);
    const msg = (err as Error).message;
    expect(msg).toContain("flavour 'system'");
    expect(msg).toContain('/nonexistent/xenmig.node: not found');
    expect(msg).toMatch(new RegExp(`${bogus}: load failed: .*`));
    for (const d of ['build/Release', 'build/Debug', 'build/cmake/Release', 'build/cmake/Debug'])
      expect(msg).toContain(`${join(pkg, d, 'xenmig_system.node')}: not found`);
    expect(msg).toContain("build it with 'npm run build:native'");
  });

  // without libxen-dev there is no system addon to find (the README says when this skips)
  it.runIf(hasLibxen)('skips a bogus XENMIG_ADDON_PATH and reports it, then finds build/Release', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xenmig-loader-'));
    writeFileSync(join(dir, 'xenmig_system.node'), 'garbage');
    process.env.XENMIG_ADDON_PATH = dir;
    const r = loadAddon({ flavour: 'system' });
    expect(r.path).toBe(systemAddonPath);
    expect(r.addon.flavour).toBe('system');
  });

  it.runIf(hasLibxen)('refuses a file of the other flavour', () => {
    let err: unknown;
    try {
      loadAddon({ flavour: 'mock', path: systemAddonPath });
    } catch (e) {
      err = e;
    }
    // the mock may still load from build/Release afterwards; if not, the reason is listed
    if (err)
      expect((err as Error).message).toContain(`${systemAddonPath}: is the 'system' flavour, not 'mock'`);
    else expect(loadAddon({ flavour: 'mock', path: systemAddonPath }).path).not.toBe(systemAddonPath);
  });
});

describe('the native surface', () => {
  beforeAll(() => ensureBuilt());

  it("the mock addon's Interface has every method NativeInterface types", () => {
    expect(missingNativeMethods(loadAddon({ flavour: 'mock' }).addon)).toEqual([]);
  });

  // without libxen-dev there is no system addon (the README says when this skips)
  it.runIf(hasLibxen)(
    "the system addon's Interface has every method NativeInterface types, and the builder calls",
    () => {
      const { addon } = loadAddon({ flavour: 'system' });
      expect(missingNativeMethods(addon)).toEqual([]);
      expect(Object.keys(addon.builder ?? {}).sort()).toEqual([
        'createDomain',
        'evtchnAllocUnbound',
        'gnttabSeed',
        'setMaxMem',
        'setMaxVcpus',
        'setMemmapLimit',
      ]);
    },
  );

  it('names the methods an older build lacks', () => {
    const real = loadAddon({ flavour: 'mock' }).addon.Interface;
    class Older extends real {}
    for (const m of ['hvmParamSet', 'cpuPolicyGet'])
      Object.defineProperty(Older.prototype, m, { value: undefined, configurable: true });
    expect(missingNativeMethods({ Interface: Older } as Pick<NativeAddon, 'Interface'>)).toEqual([
      'hvmParamSet',
      'cpuPolicyGet',
    ]);
  });
});
