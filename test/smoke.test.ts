import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';

describe('cli', () => {
  it('prints its version', () => {
    const r = spawnSync(process.execPath, ['dist/cli/main.js', '--version'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });
});
