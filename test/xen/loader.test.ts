import { describe, it, expect, beforeAll, afterEach } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AddonLoadError, candidatePaths, loadAddon, selectFlavour } from '../../src/xen/loader.js';
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

  it('names every path it tried and why when nothing loads', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xenmig-loader-'));
    const bogus = join(dir, 'xenmig_system.node');
    writeFileSync(bogus, 'not an ELF file');
    process.env.XENMIG_ADDON_PATH = dir;
    let err: unknown;
    try {
      // a flavour name no build produces, so every candidate is examined
      loadAddon({ flavour: 'system', path: '/nonexistent/xenmig.node' });
    } catch (e) {
      err = e;
    }
    if (err === undefined) {
      // a built system addon in build/Release legitimately loads after the bogus ones
      expect(hasLibxen).toBe(true);
      return;
    }
    expect(err).toBeInstanceOf(AddonLoadError);
    const msg = (err as Error).message;
    expect(msg).toContain("flavour 'system'");
    expect(msg).toContain('/nonexistent/xenmig.node: not found');
    expect(msg).toMatch(new RegExp(`${bogus}: load failed: .*`));
    expect(msg).toContain(join(root, 'build/cmake/Debug/xenmig_system.node'));
  });

  it('skips a bogus XENMIG_ADDON_PATH and reports it, then finds build/Release', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xenmig-loader-'));
    writeFileSync(join(dir, 'xenmig_system.node'), 'garbage');
    process.env.XENMIG_ADDON_PATH = dir;
    if (!hasLibxen) return;
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
    if (err) expect((err as Error).message).toContain(`${systemAddonPath}: is the 'system' flavour, not 'mock'`);
    else expect(loadAddon({ flavour: 'mock', path: systemAddonPath }).path).not.toBe(systemAddonPath);
  });
});
