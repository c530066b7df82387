#!/usr/bin/env node
// Configure-time probes for binding.gyp and CMakeLists.txt (prints one answer on stdout).
//   system          1 if pkg-config finds libxen-dev (xencontrol xenforeignmemory xenguest xentoollog), else 0
//   cflags | libs   pkg-config output for those packages (empty without libxen-dev)
//   getinfo-single  1 if the installed libxenctrl has xc_domain_getinfo_single (Xen >= 4.18), else 0
//   has-mock        1 if docker/mock/src has C sources, else 0
//   mock-sources    the mock library's C sources, one per line, relative to the repository root
//   addon-api       node-addon-api's include directory
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const PKGS = ['xencontrol', 'xenforeignmemory', 'xenguest', 'xentoollog'];

function pkgConfig(...args) {
  const r = spawnSync('pkg-config', [...args, ...PKGS], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

function hasSystem() {
  return pkgConfig('--exists') !== null;
}

// Compile and link a one-line program against libxenctrl: does the function exist?
function probeFunction(decl, call) {
  if (!hasSystem()) return false;
  const dir = mkdtempSync(join(tmpdir(), 'xenmig-probe-'));
  try {
    const src = join(dir, 'probe.c');
    writeFileSync(src, `#include <xenctrl.h>\n${decl}\nint main(void) { ${call}; return 0; }\n`);
    const flags = (pkgConfig('--cflags') ?? '').split(/\s+/).filter(Boolean);
    const libs = (pkgConfig('--libs') ?? '').split(/\s+/).filter(Boolean);
    const cc = process.env.CC || 'cc';
    const r = spawnSync(cc, ['-Werror=implicit-function-declaration', ...flags, src, '-o', join(dir, 'probe'), ...libs], {
      encoding: 'utf8',
    });
    return r.status === 0;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function mockSources() {
  const dir = join(root, 'docker', 'mock', 'src');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.c'))
    .sort()
    .map((f) => relative(root, join(dir, f)));
}

const what = process.argv[2];
switch (what) {
  case 'system':
    console.log(hasSystem() ? 1 : 0);
    break;
  case 'cflags':
    console.log(hasSystem() ? pkgConfig('--cflags') : '');
    break;
  case 'libs':
    console.log(hasSystem() ? pkgConfig('--libs') : '');
    break;
  case 'getinfo-single':
    console.log(
      probeFunction('', 'xc_domaininfo_t info; (void)xc_domain_getinfo_single((xc_interface *)0, 0, &info)') ? 1 : 0,
    );
    break;
  case 'has-mock':
    console.log(mockSources().length ? 1 : 0);
    break;
  case 'mock-sources':
    console.log(mockSources().join('\n'));
    break;
  case 'addon-api':
    console.log(createRequire(join(root, 'package.json'))('node-addon-api').include_dir);
    break;
  default:
    console.error('usage: probe.mjs system|cflags|libs|getinfo-single|has-mock|mock-sources|addon-api');
    process.exit(2);
}
