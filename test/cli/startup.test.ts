// Start-up: `--version` alone loads no command module; every command is still there for --help.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ok, REPO } from './helpers.js';

const version = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;

describe('xenmig start-up', () => {
  it('--version and -V print the package version', async () => {
    expect(await ok(['--version'])).toBe(version);
    expect(await ok(['-V'])).toBe(version);
  });

  it('--help still lists every command', async () => {
    const help = await ok(['--help']);
    for (const c of [
      'inspect',
      'verify',
      'save',
      'restore',
      'migrate',
      'receive',
      'remus',
      'remus-receive',
      'mock',
      'demo',
    ])
      expect(help).toMatch(new RegExp(`^\\s+${c}\\b`, 'm'));
  });
});
