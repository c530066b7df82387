// Start-up: the built CLI is one bundled file (scripts/bundle-cli.mjs); `--version` alone loads no
// command module; every command is still there for --help.
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

  it('the built CLI is one file: it imports no module of its own apart', () => {
    const main = readFileSync(join(REPO, 'dist', 'cli', 'main.js'), 'utf8');
    expect(main.startsWith('#!/usr/bin/env node')).toBe(true);
    // tsc's output imports './util.js' and loads './commands/*.js' lazily; the bundle inlines them
    expect(main).not.toMatch(/^\s*(import|export)\b[^\n]*\bfrom\s*["']\.{1,2}\//m);
    expect(main).not.toMatch(/import\(\s*["']\.\/commands\//);
    expect(main).toContain('Save, restore, live-migrate and replicate Xen guests');
  });
});
