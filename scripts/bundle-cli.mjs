#!/usr/bin/env node
// Bundles the CLI after `tsc`: dist/cli/main.js and everything it imports (its command modules, the
// library, commander) become one file, written over dist/cli/main.js. Why: start-up. Node resolves,
// reads and compiles every ES module apart; under an emulated CPU (a dom0 under QEMU TCG) that was
// seconds per command run, and a migration runs the CLI at both ends. The library's own modules in
// dist/ stay as tsc wrote them.
//
// The bundle sits where main.js was, so `import.meta.url`-relative paths (package.json, the addon
// loader's package root) resolve as before. Without the bundler (e.g. a platform rolldown has no
// binary for) the unbundled CLI stays, and works the same, only slower to start.
import { renameSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const entry = join(root, 'dist', 'cli', 'main.js');
const tmpDir = join(root, 'dist', 'cli', '.bundle');

let rolldown;
try {
  ({ rolldown } = await import('rolldown'));
} catch (e) {
  console.error(`bundle-cli: rolldown not available (${e.message}); dist/cli/main.js stays unbundled`);
  process.exit(0);
}
const bundle = await rolldown({
  input: entry,
  platform: 'node',
  // the addon is loaded at run time by path (src/xen/loader.ts), never bundled
  external: [/\.node$/],
  logLevel: 'warn',
});
try {
  await bundle.write({
    dir: tmpDir,
    format: 'esm',
    codeSplitting: false,
    entryFileNames: 'main.js',
  });
} finally {
  await bundle.close();
}
const out = join(tmpDir, 'main.js');
const size = statSync(out).size;
renameSync(out, entry);
// the source map tsc wrote is for the unbundled file
rmSync(`${entry}.map`, { force: true });
rmSync(tmpDir, { recursive: true, force: true });
console.error(`bundle-cli: dist/cli/main.js bundled (${Math.round(size / 1024)} KiB)`);
