// xenmig restore FILE|- [DOMAIN] : restore a saved domain (as `xl restore`); prints the domid.
import type { Command } from 'commander';
import { openXen, restore } from '../../api.js';
import { resolveDomain } from '../../toolstack/names.js';
import type { Hypervisor } from '../../xen/types.js';
import {
  addHostOptions,
  choice,
  EXIT,
  jsonReplacer,
  Log,
  parseDomain,
  printError,
  signalAbort,
  signalExit,
  writeOut,
  xenOptions,
  type LogFormat,
} from '../util.js';

interface RestoreCliOptions {
  host?: string;
  flavour?: 'system' | 'mock';
  paused?: boolean;
  onFailure: 'destroy' | 'pause';
  lenient?: boolean;
  json?: boolean;
  logFormat: LogFormat;
}

export function register(program: Command): void {
  addHostOptions(
    program
      .command('restore')
      .description('restore a domain from a save file (- = stdin); prints the new domain id')
      .argument('<file>', 'save file, - for stdin')
      .argument(
        '[domain]',
        'restore into this existing, empty domain, id or name (default: a new one)',
        parseDomain,
      )
      .option('--paused', 'leave the restored domain paused')
      .option(
        '--on-failure <what>',
        'a half-restored domain is destroyed or left paused',
        choice('on-failure', ['destroy', 'pause'] as const),
        'destroy',
      )
      .option('--lenient', 'accept non-zero reserved fields and padding (as libxc restore)')
      .option('--json', 'print the result as JSON')
      .option(
        '--log-format <fmt>',
        'log lines on stderr: text or json',
        choice('log-format', ['text', 'json'] as const),
        'text',
      ),
  ).action(async (file: string, domain: number | string | undefined, o: RestoreCliOptions) => {
    process.exitCode = await runRestore(file, domain, o);
  });
}

async function runRestore(
  file: string,
  domain: number | string | undefined,
  o: RestoreCliOptions,
): Promise<number> {
  const log = new Log(o.logFormat);
  const sig = signalAbort();
  let xen: Hypervisor | null = null;
  try {
    // a target domain given by name is looked up on the host the restore goes to
    if (typeof domain === 'string') xen = openXen(xenOptions(o)).xen;
    const domid =
      xen && domain !== undefined ? await resolveDomain(xen, domain) : (domain as number | undefined);
    // stdin as a stream, not fd 0: a thread-pool read blocked on a silent pipe would keep the
    // process from exiting after an interrupt
    const r = await restore(file === '-' ? process.stdin : file, {
      ...xenOptions(o),
      ...(xen ? { xen } : {}),
      ...(domid !== undefined ? { domid } : {}),
      paused: o.paused ?? false,
      onFailure: o.onFailure,
      signal: sig.signal,
      ...(o.lenient ? { strictness: 'warn' as const } : {}),
    });
    for (const w of r.warnings)
      log.warn(`${w.code}: ${w.message}`, { offset: w.offset, record: w.recordType });
    if (o.json)
      await writeOut(
        JSON.stringify(
          {
            domid: r.domid,
            stats: r.stats,
            warnings: r.warnings,
            config: r.config
              ? {
                  kind: r.config.kind,
                  name: r.config.name,
                  maxMemKb: r.config.maxMemKb,
                  maxVcpus: r.config.maxVcpus,
                }
              : null,
          },
          jsonReplacer,
        ) + '\n',
      );
    else await writeOut(`${r.domid}\n`);
    log.info(`restored domain ${r.domid}${o.paused ? ' (paused)' : ''}`, {
      pages: r.stats.pages,
      records: r.stats.records,
      ms: Math.round(r.stats.totalMs),
    });
    return EXIT.OK;
  } catch (e) {
    printError(e, log);
    const d = (e as { destination?: string; domid?: number }).destination;
    const dd = (e as { domid?: number }).domid;
    if (d?.startsWith('gone')) log.info(`domain ${dd} no longer exists`);
    else if (d === 'not paused') log.info(`the half-restored domain ${dd} could NOT be paused`);
    else if (d) log.info(`the half-restored domain ${dd} was ${d}`);
    return signalExit(sig.received()) ?? EXIT.FAILED;
  } finally {
    sig.dispose();
    xen?.close();
  }
}
