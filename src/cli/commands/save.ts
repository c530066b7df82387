// xenmig save DOMAIN FILE : save a domain to a file (- = stdout), as `xl save`.
import type { Command } from 'commander';
import { openXen, save } from '../../api.js';
import type { PolicyOptions } from '../../engine/policy.js';
import type { SaveFormat } from '../../toolstack/save.js';
import { resolveDomain } from '../../toolstack/names.js';
import { checksumAtSuspend, type ChecksumHook } from '../hooks.js';
import { Clock, progressHandler, queryMigrate, summaryLine } from '../stats.js';
import {
  addHostOptions,
  addOutputOptions,
  addTransferOptions,
  choice,
  configFrom,
  EXIT,
  DOMAIN_ARG,
  Log,
  parseDomain,
  printError,
  Progress,
  signalAbort,
  signalExit,
  writeOut,
  xenOptions,
  type LogFormat,
} from '../util.js';
import { PAGE_SIZE } from '../../xen/constants.js';

export interface TransferCliOptions {
  host?: string;
  flavour?: 'system' | 'mock';
  bandwidth?: number;
  downtimeMs?: number;
  maxIterations?: number;
  json?: boolean;
  logFormat: LogFormat;
  checksumAtSuspend?: string;
  config?: string;
}

/** The debug hook's time in the statistics: it is inside `downtime`, but no part of the operation. */
export function hookStats(hook: ChecksumHook | null): Record<string, number> {
  const held = hook?.heldMs();
  return held != null ? { 'checksum-at-suspend-ms': Math.round(held) } : {};
}

export function policyFrom(o: TransferCliOptions): PolicyOptions | undefined {
  const p: PolicyOptions = {};
  if (o.downtimeMs !== undefined) p.downtimeMs = o.downtimeMs;
  if (o.maxIterations !== undefined) p.maxIterations = o.maxIterations;
  return Object.keys(p).length ? p : undefined;
}

/** The options save and migrate pass alike: config, abort, progress, debug hook, precopy policy, bandwidth. */
export function transferOptions(
  o: TransferCliOptions,
  a: { signal: AbortSignal; progress: Progress; clock: Clock; hook: ChecksumHook | null },
) {
  const policy = policyFrom(o);
  const config = configFrom(o);
  return {
    ...(config ? { config } : {}),
    signal: a.signal,
    onProgress: progressHandler(a.progress, a.clock),
    ...(a.hook ? { callbacks: a.hook.callbacks } : {}),
    ...(policy ? { policy } : {}),
    ...(o.bandwidth ? { bandwidth: o.bandwidth } : {}),
  };
}

export function register(program: Command): void {
  const cmd = program
    .command('save')
    .description('save a domain to a file (- = stdout); the domain is destroyed unless --keep-running')
    .argument('<domain>', DOMAIN_ARG, parseDomain)
    .argument('<file>', 'output file, - for stdout')
    .option('--live', 'live rounds with log-dirty before the suspend')
    .option('--keep-running', 'resume the guest after the save instead of destroying it')
    .option(
      '--format <fmt>',
      'xl (as xl save), libxl or libxc',
      choice('format', ['xl', 'libxl', 'libxc'] as const),
      'xl',
    )
    .option('--checksum-at-suspend <file>', 'debug (mock): record the guest checksum once it is suspended');
  addOutputOptions(addTransferOptions(addHostOptions(cmd))).action(
    async (
      domain: number | string,
      file: string,
      o: TransferCliOptions & { live?: boolean; keepRunning?: boolean; format: SaveFormat },
    ) => {
      process.exitCode = await runSave(domain, file, o);
    },
  );
}

async function runSave(
  domain: number | string,
  file: string,
  o: TransferCliOptions & { live?: boolean; keepRunning?: boolean; format: SaveFormat },
): Promise<number> {
  const log = new Log(o.logFormat);
  const progress = new Progress();
  log.setProgressClear(progress.clear);
  const clock = new Clock();
  const sig = signalAbort();
  let xen: ReturnType<typeof openXen>['xen'] | null = null;
  let guestBytes = 0;
  let domid = -1;
  const toStdout = file === '-';
  const jsonOut = toStdout ? process.stderr : process.stdout;
  try {
    xen = openXen(xenOptions(o)).xen;
    domid = await resolveDomain(xen, domain);
    const info = xen.domainInfo(domid);
    guestBytes = info.totPages * PAGE_SIZE;
    const hook = o.checksumAtSuspend ? checksumAtSuspend(xen, domid, o.checksumAtSuspend, sig.signal) : null;
    const r = await save(domid, toStdout ? 1 : file, {
      xen,
      live: o.live ?? false,
      keepRunning: o.keepRunning ?? false,
      format: o.format,
      ...transferOptions(o, { signal: sig.signal, progress, clock, hook }),
    });
    progress.clear();
    const q = queryMigrate({
      clock,
      stats: r.stats,
      guestBytes,
      downtimeMs: r.stats.suspendedMs,
      extra: { source: r.source, format: o.format, ...hookStats(hook) },
    });
    log.info(`saved domain ${domid}: ${summaryLine(q)}; source ${r.source}`);
    if (o.json) await writeOut(JSON.stringify(q) + '\n', jsonOut);
    return EXIT.OK;
  } catch (e) {
    progress.clear();
    const signal = sig.received();
    const resumed = (e as { guestResumed?: boolean }).guestResumed;
    printError(
      signal && (e as { code?: string }).code !== 'ERR_ABORTED'
        ? Object.assign(new Error(`interrupted by ${signal} (${(e as Error).message})`), {
            code: 'ERR_ABORTED',
          })
        : e,
      log,
    );
    if (resumed !== undefined)
      log.info(resumed ? `domain ${domid} resumed` : `domain ${domid} could NOT be resumed`);
    if (o.json)
      await writeOut(
        JSON.stringify(
          queryMigrate({
            clock,
            stats: null,
            guestBytes,
            downtimeMs: null,
            error: e,
            cancelled: signal !== null,
          }),
        ) + '\n',
        jsonOut,
      );
    return signalExit(signal) ?? ((e as { code?: string }).code === 'ERR_USAGE' ? EXIT.USAGE : EXIT.FAILED);
  } finally {
    sig.dispose();
    xen?.close();
  }
}
