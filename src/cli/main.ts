#!/usr/bin/env node
// xenmig command line: one file per command under src/cli/commands, registered below by one line
// each (every command module exports `register(program)`).
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { describeError, EXIT } from './util.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

type CommandModule = { register(program: Command): void };

export async function buildProgram(): Promise<Command> {
  const program = new Command();
  program
    .name('xenmig')
    .description('Save, restore, live-migrate and replicate Xen guests (migration stream v2/v3)')
    .version(pkg.version)
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ outputError: (s, write) => write(s.startsWith('error: ') ? `xenmig: ${s.slice(7)}` : s) })
    .exitOverride();
  const use = async (m: Promise<CommandModule>) => (await m).register(program);
  // commands (one line each)
  await use(import('./commands/inspect.js'));
  await use(import('./commands/verify.js'));
  await use(import('./commands/save.js'));
  await use(import('./commands/restore.js'));
  await use(import('./commands/migrate.js'));
  await use(import('./commands/receive.js'));
  await use(import('./commands/remus.js'));
  await use(import('./commands/mock.js'));
  await use(import('./commands/demo.js'));
  for (const c of program.commands) c.exitOverride();
  return program;
}

async function main(): Promise<number> {
  try {
    const program = await buildProgram();
    await program.parseAsync(process.argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return EXIT.OK;
      return EXIT.USAGE;
    }
    const code = (err as { code?: unknown })?.code;
    process.stderr.write(`xenmig: ${describeError(err).text}\n`);
    return code === 'ERR_USAGE' ? EXIT.USAGE : EXIT.FAILED;
  }
}

// Exit explicitly: channels over stdio, workload threads and listeners must not keep a finished
// command alive. stdout/stderr are synchronous for files and pipes on Linux.
const status = await main();
process.exit(status);
