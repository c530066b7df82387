#!/usr/bin/env node
// xenmig command line: one file per command under src/cli/commands, registered here.
import { Command } from 'commander';
import { readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('xenmig')
    .description('Save, restore, live-migrate and replicate Xen guests (migration stream v2/v3)')
    .version(pkg.version);
  // commands register themselves below (one line each)
  return program;
}

const program = buildProgram();
program.parseAsync(process.argv).catch((err: unknown) => {
  const e = err as { code?: string; message?: string };
  process.stderr.write(`xenmig: ${e.code ? e.code + ': ' : ''}${e.message ?? String(err)}\n`);
  process.exitCode = process.exitCode || 1;
});
