// Process helpers for the replication tests: the primary, the backup and the workload each run in
// a process of their own (fixtures/*.mjs over the built library), on two mock host directories.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = fileURLToPath(new URL('./fixtures/cli.mjs', import.meta.url));
export const WORKLOAD = fileURLToPath(new URL('./fixtures/workload.mjs', import.meta.url));

/** The fixtures run dist/: refuse to test a stale build. */
export function requireFreshBuild(): void {
  for (const f of [
    'checkpoint/remus',
    'checkpoint/backup',
    'cli/commands/remus',
    'engine/restore/restore',
    'engine/save/save',
  ]) {
    const js = join(REPO, 'dist', f + '.js');
    const ts = join(REPO, 'src', f + '.ts');
    if (!existsSync(js) || statSync(js).mtimeMs < statSync(ts).mtimeMs)
      throw new Error(`dist/${f}.js is missing or older than src: run npm run build`);
  }
}

export { hostDirs, scratchMockHost } from '../support/hosts.js';
export { listeningPort, Proc } from '../support/processes.js';

/** JSON lines of a --checksum-log file. */
export function checksumLog(path: string): Record<string, unknown>[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Deterministic PRNG (mulberry32) for reproducible random kill points. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
