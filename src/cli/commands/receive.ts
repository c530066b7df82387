// xenmig receive [-] [--listen [HOST:]PORT] : the destination of `xenmig migrate`. With `-` (the
// default) the stream comes on stdin and replies go to stdout (the far end of ssh or a pipe).
import type { Command } from 'commander';
import { receive } from '../../api.js';
import type { HandshakeProtocol } from '../../transport/index.js';
import {
  addHostOptions,
  choice,
  EXIT,
  jsonReplacer,
  Log,
  printError,
  signalAbort,
  signalExit,
  tlsFrom,
  UsageError,
  writeOut,
  xenOptions,
  type LogFormat,
} from '../util.js';
import { InvalidArgumentError } from 'commander';

interface ReceiveCliOptions {
  host?: string;
  flavour?: 'system' | 'mock';
  listen?: { host?: string; port: number };
  cert?: string;
  key?: string;
  ca?: string;
  insecure?: boolean;
  paused?: boolean;
  protocol: HandshakeProtocol;
  json?: boolean;
  logFormat: LogFormat;
  helloTimeoutMs?: number;
  idleTimeoutMs?: number;
}

function parseMs(name: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(n))
      throw new InvalidArgumentError(`${name} takes milliseconds, got "${v}"`);
    return n;
  };
}

function parseListen(s: string): { host?: string; port: number } {
  const m = /^(?:(\[[^\]]+\]|[^:]+):)?(\d+)$/.exec(s);
  if (!m) throw new InvalidArgumentError(`--listen takes [HOST:]PORT, got "${s}"`);
  const port = Number(m[2]);
  if (port > 65535) throw new InvalidArgumentError(`port out of range: ${port}`);
  const host = m[1]?.replace(/^\[(.*)\]$/, '$1');
  return { ...(host ? { host } : {}), port };
}

/** Test hook: XENMIG_DEBUG_DIE_AT=stream|domain|received|unpause kills this process (SIGKILL) there. */
const dieAt = process.env.XENMIG_DEBUG_DIE_AT;

export function register(program: Command): void {
  addHostOptions(
    program
      .command('receive')
      .description('receive a migrating domain on stdin/stdout (-) or on a TCP port (--listen)')
      .argument('[source]', '- (stdin/stdout, default)')
      .option(
        '--listen <[host:]port>',
        'accept one migration on this TCP port (port 0: any; the port is logged)',
        parseListen,
      )
      .option('--cert <file>', 'TLS: our certificate (PEM)')
      .option('--key <file>', 'TLS: its private key (PEM)')
      .option('--ca <file>', 'TLS: CA client certificates must chain to (PEM)')
      .option('--insecure', 'plain TCP without authentication (the sender must use --insecure too)')
      .option(
        '--hello-timeout-ms <ms>',
        'TCP: a client must finish its TLS handshake and hello within MS (default 10000)',
        parseMs('--hello-timeout-ms'),
      )
      .option(
        '--idle-timeout-ms <ms>',
        'TCP: drop the sender after MS without a byte from it, in any phase (default 60000; 0 = never)',
        parseMs('--idle-timeout-ms'),
      )
      .option('--paused', 'leave the received domain paused')
      .option(
        '--protocol <p>',
        'handshake: xenmig or xl',
        choice('protocol', ['xenmig', 'xl'] as const),
        'xenmig',
      )
      .option('--json', 'print the result as JSON (on stderr when stdout carries the replies)')
      .option(
        '--log-format <fmt>',
        'log lines on stderr: text or json',
        choice('log-format', ['text', 'json'] as const),
        'text',
      )
      .option('--remus', 'be the backup of `xenmig remus` (see remus-receive for all replication options)')
      .option('--colo', 'be the COLO secondary of `xenmig remus --colo`')
      .option(
        '--failover-timeout-ms <ms>',
        'with --remus/--colo: no data from the primary for MS = failover',
        (v) => Number(v),
      ),
  ).action(
    async (
      source: string | undefined,
      o: ReceiveCliOptions & { remus?: boolean; colo?: boolean; failoverTimeoutMs?: number },
    ) => {
      if (o.remus || o.colo) {
        const { runReplicaReceive } = await import('./remus.js');
        process.exitCode = await runReplicaReceive({ ...o, ...(o.colo ? { colo: true } : {}) });
        return;
      }
      process.exitCode = await runReceive(source, o);
    },
  );
}

async function runReceive(source: string | undefined, o: ReceiveCliOptions): Promise<number> {
  const log = new Log(o.logFormat);
  const sig = signalAbort();
  const t0 = performance.now();
  let stage: string = 'connect';
  const stdio = !o.listen;
  const jsonOut = stdio ? process.stderr : process.stdout;
  // nothing received yet: an interrupt just ends the command
  const onAbort = () => {
    if (stage === 'connect') {
      log.info(`interrupted by ${sig.received()} before a migration arrived`);
      process.exit(signalExit(sig.received()) ?? EXIT.FAILED);
    }
  };
  sig.signal.addEventListener('abort', onAbort, { once: true });
  try {
    if (source !== undefined && source !== '-')
      throw new UsageError(`receive takes - or --listen, got "${source}"`);
    if (source === '-' && o.listen) throw new UsageError('choose - or --listen, not both');
    const tls = tlsFrom(o);
    if (o.listen && !tls && !o.insecure)
      throw new UsageError('--listen needs --cert, --key and --ca (mutual TLS), or --insecure');
    const r = await receive({
      ...xenOptions(o),
      ...(o.listen ? { listen: o.listen } : {}),
      ...(tls ? { tls } : {}),
      ...(o.insecure ? { insecure: true } : {}),
      paused: o.paused ?? false,
      protocol: o.protocol,
      signal: sig.signal,
      ...(o.helloTimeoutMs !== undefined ? { helloTimeoutMs: o.helloTimeoutMs } : {}),
      ...(o.idleTimeoutMs !== undefined ? { idleTimeoutMs: o.idleTimeoutMs } : {}),
      onRefused: (err, remote) =>
        log.warn(`refused the connection from ${remote}: ${err.message}`, { remote }),
      onListening: (port) => log.info(`listening on ${o.listen?.host ?? '*'}:${port}`, { port }),
      onStage: (s, domid) => {
        stage = s;
        if (s === 'domain') log.info(`receiving into domain ${domid}`);
        if (dieAt === s) process.kill(process.pid, 'SIGKILL');
      },
    });
    const ms = Math.round(performance.now() - t0);
    log.info(`domain ${r.domid} ${o.paused ? 'received (paused)' : 'running'}`, {
      pages: r.stats?.pages,
      ms,
    });
    if (o.json)
      await writeOut(
        JSON.stringify(
          { status: 'completed', domid: r.domid, stats: r.stats, outcome: r.handshake.outcome },
          jsonReplacer,
        ) + '\n',
        jsonOut,
      );
    else if (!stdio) await writeOut(`${r.domid}\n`);
    return EXIT.OK;
  } catch (e) {
    printError(e, log);
    const h = (e as { handshake?: { outcome: string; step: string } }).handshake;
    if (h) log.info(`received copy ${h.outcome}`, { step: h.step });
    if (o.json)
      await writeOut(
        JSON.stringify({
          status: 'failed',
          outcome: h?.outcome ?? null,
          'error-desc': (e as Error).message,
        }) + '\n',
        jsonOut,
      );
    return signalExit(sig.received()) ?? (e instanceof UsageError ? EXIT.USAGE : EXIT.FAILED);
  } finally {
    sig.signal.removeEventListener('abort', onAbort);
    sig.dispose();
  }
}
