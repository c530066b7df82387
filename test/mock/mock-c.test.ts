// Runs the mock libxenctrl's own C tests (docker/mock/test) so CI covers them:
// `make -C docker/mock test OUT=<tmp>` builds the library and the tests into a private
// directory and runs them against private host directories.
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

describe('mock libxenctrl (C tests)', () => {
  it('make -C docker/mock test passes', () => {
    const out = mkdtempSync(join(tmpdir(), 'xenmig-mock-c-'));
    try {
      const r = spawnSync('make', ['-C', join(root, 'docker', 'mock'), 'test', `OUT=${out}`], {
        encoding: 'utf8',
        timeout: 240_000,
      });
      if (r.status !== 0) {
        console.error(r.stdout);
        console.error(r.stderr);
      }
      expect(r.error).toBeUndefined();
      expect(r.status).toBe(0);
      expect(r.stdout).toContain('mock: all C tests passed');
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 240_000);
});
