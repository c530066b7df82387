#!/usr/bin/env node
// xenmig command line: one file per command under src/cli/commands, registered below by one line
// each (every command module exports `register(program)`).
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { describeError, EXIT } from './util.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

type CommandModule = { register(program: Command): void };

export async function buildProgram(argv: string[] = process.argv): Promise<Command> {
  const program = new Command();
  program
    .name('xenmig')
    .description('Save, restore, live-migrate and replicate Xen guests (migration stream v2/v3)')
    .version(pkg.version)
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({
      outputError: (s, write) => write(s.startsWith('error: ') ? `xenmig: ${s.slice(7)}` : s),
    })
    .exitOverride();
  const use = async (m: Promise<CommandModule>) => (await m).register(program);
  // commands (one line each): [names the module registers, loader]
  const modules: [string[], () => Promise<CommandModule>][] = [
    [['inspect'], () => import('./commands/inspect.js')],
    [['verify'], () => import('./commands/verify.js')],
    [['save'], () => import('./commands/save.js')],
    [['restore'], () => import('./commands/restore.js')],
    [['migrate'], () => import('./commands/migrate.js')],
    [['receive'], () => import('./commands/receive.js')],
    [['remus', 'remus-receive'], () => import('./commands/remus.js')],
    [['list'], () => import('./commands/list.js')],
    [['mock'], () => import('./commands/mock.js')],
    [['disk'], () => import('./commands/disk.js')],
    [['demo'], () => import('./commands/demo.js')],
  ];
  // Load only the module of the command being run (start-up time matters for `verify -` in a
  // pipe); everything for help, version and unknown commands.
  const args = argv.slice(2);
  const wanted = args.find((a) => !a.startsWith('-'));
  const only = modules.filter(([names]) => wanted !== undefined && names.includes(wanted));
  // `--version` alone needs no command module
  const versionOnly =
    wanted === undefined && args.length > 0 && args.every((a) => a === '--version' || a === '-V');
  for (const [, load] of only.length === 1 ? only : versionOnly ? [] : modules) await use(load());
  for (const c of program.commands) c.exitOverride();
  return program;
}

async function main(): Promise<number> {
  try {
    const program = await buildProgram(process.argv);
    await program.parseAsync(process.argv);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (
        err.code === 'commander.helpDisplayed' ||
        err.code === 'commander.version' ||
        err.code === 'commander.help'
      )
        return EXIT.OK;
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
