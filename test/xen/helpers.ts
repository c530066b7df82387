// Shared helpers for the addon tests.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../src/xen/loader.js';

export const root = packageRoot;

export function probe(what: string): string {
  const r = spawnSync(process.execPath, [join(root, 'native', 'probe.mjs'), what], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`probe ${what} failed: ${r.stderr}`);
  return r.stdout.trim();
}

export const hasLibxen = probe('system') === '1';
export const hasMockSources = probe('has-mock') === '1';
export const hasXen = existsSync('/dev/xen/privcmd');

export const systemAddonPath = join(root, 'build', 'Release', 'xenmig_system.node');
export const mockAddonPath = join(root, 'build', 'Release', 'xenmig_mock.node');

/** Builds the addon (incremental) once per test file that needs it. */
export function ensureBuilt(): void {
  const r = spawnSync(process.execPath, [join(root, 'native', 'build.mjs')], { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`native build failed:\n${r.stdout}\n${r.stderr}`);
}
