#!/usr/bin/env node
// Builds the native addon. Used by `npm install` / `npm ci` (the "install" script), by
// `npm run build:native` and, with --cmake, by `npm run build:cmake`.
//
//   node native/build.mjs                 node-gyp: reconfigure only when a probe answer, the mock's
//                                         source list or binding.gyp changed, then an incremental build
//   node native/build.mjs --rebuild       node-gyp rebuild from scratch
//   node native/build.mjs --cmake [--out DIR]   cmake-js, into DIR (default build/cmake)
//
// Offline: node-gyp and cmake-js are pointed at local Node headers (npm's nodedir, or the headers
// installed beside the running node) so nothing is downloaded.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
const args = process.argv.slice(2);
const jobs = process.env.XENMIG_BUILD_JOBS ?? '2';

function run(cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, { cwd: root, stdio: 'inherit', ...opts });
  if (r.error) throw r.error;
  if (r.status !== 0) process.exit(r.status ?? 1);
}

function probe(what) {
  const r = spawnSync(process.execPath, [join(root, 'native', 'probe.mjs'), what], { cwd: root, encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : `error:${r.status}`;
}

function nodedir() {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  const prefix = resolve(dirname(process.execPath), '..');
  if (existsSync(join(prefix, 'include', 'node', 'common.gypi'))) return prefix;
  return undefined;
}

function nodeGyp() {
  if (process.env.npm_config_node_gyp && existsSync(process.env.npm_config_node_gyp))
    return [process.execPath, process.env.npm_config_node_gyp];
  try {
    return [process.execPath, require.resolve('node-gyp/bin/node-gyp.js')];
  } catch {
    return ['npx', 'node-gyp'];
  }
}

function buildGyp(rebuild) {
  const [cmd, ...pre] = nodeGyp();
  const nd = nodedir();
  const common = nd ? [`--nodedir=${nd}`] : [];
  const key = createHash('sha256')
    .update(
      JSON.stringify({
        system: probe('system'),
        single: probe('getinfo-single'),
        mock: probe('mock-sources'),
        cflags: probe('cflags'),
        libs: probe('libs'),
        gyp: readFileSync(join(root, 'binding.gyp'), 'utf8'),
        node: process.version,
        nd,
      }),
    )
    .digest('hex');
  const stamp = join(root, 'build', 'xenmig-configure.stamp');
  const configured =
    !rebuild && existsSync(join(root, 'build', 'Makefile')) && existsSync(stamp) && readFileSync(stamp, 'utf8') === key;
  if (!configured) {
    run(cmd, [...pre, 'configure', ...common]);
    mkdirSync(join(root, 'build'), { recursive: true });
    writeFileSync(stamp, key);
  }
  run(cmd, [...pre, 'build', `--jobs=${jobs}`, ...common]);
}

function buildCmake() {
  const i = args.indexOf('--out');
  const out = resolve(i >= 0 ? args[i + 1] : join(root, 'build', 'cmake'));
  let cmakeJs;
  try {
    cmakeJs = [process.execPath, require.resolve('cmake-js/bin/cmake-js')];
  } catch {
    cmakeJs = ['npx', 'cmake-js'];
  }
  const [cmd, ...pre] = cmakeJs;
  run(cmd, [...pre, 'build', '--directory', join(root, 'native'), '--out', out, '--parallel', jobs], {
    env: { ...process.env, ...(nodedir() ? { npm_config_nodedir: nodedir() } : {}) },
  });
}

// One build at a time per checkout (parallel test files, npm scripts): re-run under flock(1).
function underLock() {
  if (process.env.XENMIG_BUILD_LOCKED === root) return false;
  const probeFlock = spawnSync('flock', ['--version'], { stdio: 'ignore' });
  if (probeFlock.status !== 0) return false;
  const lock = join(tmpdir(), `xenmig-build-${createHash('sha256').update(root).digest('hex').slice(0, 16)}.lock`);
  const r = spawnSync('flock', [lock, process.execPath, fileURLToPath(import.meta.url), ...args], {
    stdio: 'inherit',
    env: { ...process.env, XENMIG_BUILD_LOCKED: root },
  });
  process.exit(r.status ?? 1);
}

if (!args.includes('--cmake')) underLock();
if (args.includes('--cmake')) buildCmake();
else buildGyp(args.includes('--rebuild'));
