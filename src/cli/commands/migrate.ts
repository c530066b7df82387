// xenmig migrate DOMAIN DEST : live-migrate a domain to `-` (stdio), ssh://[user@]host[:port] or
// tcp://host:port (mutual TLS, or --insecure on both ends). The source is destroyed only after the
// receiver reported the guest running; on any failure before that it is resumed.
import type { Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { migrate, openXen } from '../../api.js';
import { parseDestination, type HandshakeProtocol, type SenderResult } from '../../transport/index.js';
import type { Hypervisor } from '../../xen/types.js';
import { PAGE_SIZE, ShutdownReason } from '../../xen/constants.js';
import { resolveDomain } from '../../toolstack/names.js';
import { checksumAtSuspend } from '../hooks.js';
import { Clock, queryMigrate, summaryLine } from '../stats.js';
import {
  addHostOptions,
  addOutputOptions,
  addTransferOptions,
  choice,
  EXIT,
  DOMAIN_ARG,
  Log,
  parseDomain,
  printError,
  Progress,
  signalAbort,
  signalExit,
  splitWords,
  tlsFrom,
  UsageError,
  writeOut,
  xenOptions,
} from '../util.js';
import { hookStats, transferOptions, type TransferCliOptions } from './save.js';

interface MigrateCliOptions extends TransferCliOptions {
  cert?: string;
  key?: string;
  ca?: string;
  insecure?: boolean;
  sshCommand?: string;
  remoteCommand?: string;
  protocol: HandshakeProtocol;
  live: boolean;
  statsFile?: string;
}

export function register(program: Command): void {
  const cmd = program
    .command('migrate')
    .description(
      'live-migrate a domain to DEST: - (stdin/stdout), ssh://[user@]host[:port] or tcp://host:port',
    )
    .argument('<domain>', DOMAIN_ARG, parseDomain)
    .argument('<dest>', 'destination')
    .option('--cert <file>', 'TLS: our certificate (PEM)')
    .option('--key <file>', 'TLS: its private key (PEM)')
    .option('--ca <file>', 'TLS: CA the receiver’s certificate must chain to (PEM)')
    .option('--insecure', 'plain TCP without authentication (the receiver must use --insecure too)')
    .option('--ssh-command <cmd>', 'ssh program and options (default: ssh)')
    .option('--remote-command <cmd>', 'command run on the ssh host (default: xenmig receive -)')
    .option(
      '--protocol <p>',
      'handshake: xenmig or xl (to/from xl migrate-receive)',
      choice('protocol', ['xenmig', 'xl'] as const),
      'xenmig',
    )
    .option('--no-live', 'suspend first, then copy (no live rounds)')
    .option('--stats-file <file>', 'also write the final JSON statistics to FILE')
    .option('--checksum-at-suspend <file>', 'debug (mock): record the guest checksum once it is suspended');
  addOutputOptions(addTransferOptions(addHostOptions(cmd))).action(
    async (domain: number | string, dest: string, o: MigrateCliOptions) => {
      process.exitCode = await runMigrate(domain, dest, o);
    },
  );
}

/** The source's state as the hypervisor reports it now. */
export function sourceState(xen: Hypervisor | null, domid: number): string {
  if (!xen) return 'in an unknown state (the hypervisor could not be opened)';
  try {
    const i = xen.domainInfo(domid);
    if (i.dying) return 'being destroyed';
    if (i.shutdown)
      return i.shutdownReason === ShutdownReason.SUSPEND
        ? 'suspended'
        : `shut down (reason ${i.shutdownReason})`;
    return i.paused ? 'paused' : 'running';
  } catch (e) {
    if ((e as { code?: string }).code === 'ESRCH') return 'gone (no such domain)';
    return `in an unknown state (${(e as Error).message})`;
  }
}

/** What happened to the source, with its state checked with the hypervisor (never assumed). */
function outcomeText(h: SenderResult | undefined, state: string): string {
  const now = state === 'running' ? 'runs' : `is ${state}`;
  switch (h?.outcome) {
    case 'not-started':
      return `the source was not touched and ${now}`;
    case 'resumed':
      return `the source was resumed and ${now}`;
    case 'in-doubt':
      return `IN DOUBT: the source stays stopped (the receiver may run the guest); resolve by hand (the source ${now})`;
    case 'resume-failed':
      return `the source could NOT be resumed and ${now}`;
    default:
      return '';
  }
}

/** An operation ended by SIGINT/SIGTERM reports ERR_ABORTED, with the way it ended as detail. */
export function abortedBy(signal: NodeJS.Signals, e: unknown): Error & { code: string } {
  const c = e as { code?: string; message?: string };
  if (c?.code === 'ERR_ABORTED') return c as Error & { code: string };
  return Object.assign(
    new Error(`interrupted by ${signal} (${c?.code ? c.code + ': ' : ''}${c?.message ?? String(e)})`),
    { code: 'ERR_ABORTED' },
  );
}

/** One migration's state, as its steps and its failure report see it. */
interface MigrateRun {
  readonly o: MigrateCliOptions;
  readonly log: Log;
  readonly progress: Progress;
  readonly clock: Clock;
  readonly sig: ReturnType<typeof signalAbort>;
  xen: Hypervisor | null;
  /** null until the domain argument named a domain */
  domid: number | null;
  guestBytes: number;
  /** the final JSON statistics: to --stats-file, and with --json to stdout (stderr when stdout is the link) */
  emit(q: object): Promise<void>;
}

/** Refuses, before the domain is touched, a destination it cannot migrate to; the TLS options. */
function checkMigrateTarget(dest: string, o: MigrateCliOptions): ReturnType<typeof tlsFrom> {
  const d = parseDestination(dest);
  if (d.kind === 'file')
    throw new UsageError(`migrate needs -, ssh://… or tcp://… (use xenmig save for files): ${dest}`);
  const tls = tlsFrom(o);
  if (d.kind === 'tcp' && !tls && !o.insecure)
    throw new UsageError('tcp:// needs --cert, --key and --ca (mutual TLS), or --insecure');
  return tls;
}

async function migrateDomain(run: MigrateRun, domain: number | string, dest: string): Promise<number> {
  const { o, log, progress, clock, sig } = run;
  const tls = checkMigrateTarget(dest, o);
  const xen = (run.xen = openXen(xenOptions(o)).xen);
  const domid = (run.domid = await resolveDomain(xen, domain));
  run.guestBytes = xen.domainInfo(domid).totPages * PAGE_SIZE;
  log.info(`migrating domain ${domid} to ${dest}`);
  const hook = o.checksumAtSuspend ? checksumAtSuspend(xen, domid, o.checksumAtSuspend, sig.signal) : null;
  const r = await migrate(domid, dest, {
    xen,
    live: o.live,
    protocol: o.protocol,
    ...(tls ? { tls } : {}),
    ...(o.insecure ? { insecure: true } : {}),
    ...(o.sshCommand ? { sshCommand: splitWords(o.sshCommand) } : {}),
    ...(o.remoteCommand ? { remoteCommand: splitWords(o.remoteCommand) } : {}),
    ...transferOptions(o, { signal: sig.signal, progress, clock, hook }),
  });
  progress.clear();
  const q = queryMigrate({
    clock,
    stats: r.stats,
    guestBytes: run.guestBytes,
    downtimeMs: r.downtimeMs,
    extra: {
      outcome: r.handshake.outcome,
      peer: r.handshake.peer ?? null,
      timings: r.timings,
      ...hookStats(hook),
    },
  });
  log.info(`migrated domain ${domid}: ${summaryLine(q)}`);
  if (r.handshake.error) log.warn(`destroying the source failed: ${r.handshake.error.message}`);
  await run.emit(q);
  return EXIT.OK;
}

/** Says what failed and where the source is now (checked with the hypervisor); the exit code. */
async function migrateFailed(run: MigrateRun, e: unknown): Promise<number> {
  const { log, domid } = run;
  run.progress.clear();
  const signal = run.sig.received();
  const h = (e as { handshake?: SenderResult }).handshake;
  const usage = (e as { code?: string }).code === 'ERR_USAGE';
  printError(signal ? abortedBy(signal, e) : e, log);
  // without a handshake the failure came before it (options, connect, TLS): the domain was not touched
  // a domain that could not even be named was not touched: nothing to say about it
  const text =
    usage || domid === null
      ? ''
      : outcomeText(h ?? ({ outcome: 'not-started' } as SenderResult), sourceState(run.xen, domid));
  if (text) log.info(text, h ? { step: h.step } : {});
  await run.emit(
    queryMigrate({
      clock: run.clock,
      stats: null,
      guestBytes: run.guestBytes,
      downtimeMs: null,
      error: e,
      cancelled: signal !== null,
      extra: { outcome: h?.outcome ?? 'not-started', step: h?.step },
    }),
  );
  if (h && !h.sourceRuns) return EXIT.IN_DOUBT;
  return signalExit(signal) ?? (usage ? EXIT.USAGE : EXIT.FAILED);
}

async function runMigrate(domain: number | string, dest: string, o: MigrateCliOptions): Promise<number> {
  const log = new Log(o.logFormat);
  const progress = new Progress();
  log.setProgressClear(progress.clear);
  const jsonOut = dest === '-' ? process.stderr : process.stdout;
  const run: MigrateRun = {
    o,
    log,
    progress,
    clock: new Clock(),
    sig: signalAbort(),
    xen: null,
    domid: null,
    guestBytes: 0,
    emit: async (q: object) => {
      const s = JSON.stringify(q) + '\n';
      if (o.statsFile) writeFileSync(o.statsFile, s);
      if (o.json) await writeOut(s, jsonOut);
    },
  };
  try {
    return await migrateDomain(run, domain, dest);
  } catch (e) {
    return await migrateFailed(run, e);
  } finally {
    run.sig.dispose();
    run.xen?.close();
  }
}
