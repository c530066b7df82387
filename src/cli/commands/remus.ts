// xenmig remus DOMAIN DEST : continuous replication of a running domain (Remus; --colo for COLO),
// as `xl remus`. The backup side is `xenmig remus-receive` (also reachable as `receive --remus` /
// `receive --colo` through addReplicaReceiveOptions / runReplicaReceive below).
import { appendFileSync } from 'node:fs';
import type { Command } from 'commander';
import { openXen } from '../../api.js';
import { remus, receiveReplica, type CheckpointStat } from '../../checkpoint/index.js';
import type { Hypervisor, MockHost } from '../../xen/types.js';
import { createNetBuffer, vifInterfaces, type NetBuffer } from '../../netbuf/index.js';
import type { DomainConfig } from '../../toolstack/config.js';
import { libxlStoredConfig } from '../../toolstack/libxl-config.js';
import { resolveDomain } from '../../toolstack/names.js';
import { parseDestination } from '../../transport/index.js';
import { DiskReplication, parseDiskMapping } from '../../disk/primary.js';
import { DiskReplicaSet } from '../../disk/replica.js';
import {
  addConfigOption,
  addHostOptions,
  choice,
  configFrom,
  EXIT,
  DOMAIN_ARG,
  Log,
  parseDomain,
  parseIntArg,
  printError,
  Progress,
  signalAbort,
  signalExit,
  tlsFrom,
  UsageError,
  writeOut,
  xenOptions,
  type LogFormat,
} from '../util.js';

interface RemusCli {
  host?: string;
  config?: string;
  flavour?: 'system' | 'mock';
  intervalMs: number;
  blackhole?: boolean;
  json?: boolean;
  colo?: boolean;
  ackTimeoutMs?: number;
  onBackupLoss: 'pause' | 'continue';
  maxCheckpoints?: number;
  insecure?: boolean;
  cert?: string;
  key?: string;
  ca?: string;
  logFormat: LogFormat;
  checksumLog?: string;
  protocol?: 'xenmig' | 'xl';
  persistentMappings?: boolean;
  netBuffer?: boolean;
  unsafe?: boolean;
  netBufferInterfaces?: string;
  netBufferBackend?: 'auto' | 'plug' | 'nfqueue';
  disk?: string[];
  diskReplication?: boolean;
}

export interface ReplicaReceiveCli {
  host?: string;
  flavour?: 'system' | 'mock';
  colo?: boolean;
  listen?: string | { host?: string; port: number };
  insecure?: boolean;
  cert?: string;
  key?: string;
  ca?: string;
  failoverTimeoutMs?: number;
  heartbeatMs?: number;
  paused?: boolean;
  json?: boolean;
  logFormat: LogFormat;
  checksumLog?: string;
  protocol?: 'xenmig' | 'xl';
  diskMap?: string[];
  diskBufferMib?: number;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** NAME=PATH of --disk / --disk-map, a usage error when malformed. */
function diskMapping(s: string, what: string): { name: string; path: string } {
  try {
    return parseDiskMapping(s, what);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Debug (mock): one JSON line per event with the guest's checksum, written synchronously. */
function checksumLogger(path: string | undefined, xen: Hypervisor) {
  if (!path) return null;
  if (xen.flavour !== 'mock') throw new Error('--checksum-log needs the mock hypervisor');
  const mock = xen as unknown as MockHost;
  return (event: Record<string, unknown>, domid: number) => {
    appendFileSync(path, JSON.stringify({ ...event, checksum: mock.checksum(domid) }) + '\n');
  };
}

function parseHostPort(s: string): { host?: string; port: number } {
  const i = s.lastIndexOf(':');
  const port = Number(i >= 0 ? s.slice(i + 1) : s);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`--listen needs [host:]port, got "${s}"`);
  const host = i > 0 ? s.slice(0, i).replace(/^\[|\]$/g, '') : undefined;
  return { ...(host ? { host } : {}), port };
}

export function register(program: Command): void {
  const cmd = program
    .command('remus')
    .description('replicate a running domain continuously to a backup (Remus; --colo for COLO)')
    .argument('<domain>', DOMAIN_ARG, parseDomain)
    .argument(
      '[dest]',
      'tcp://host:port, ssh://host, - (stdio), or a file (no acknowledgements); none with --blackhole',
    );
  addCheckpointOptions(cmd);
  addLinkOptions(cmd);
  addOutputOptions(cmd);
  addDeviceOptions(cmd);
  addConfigOption(addHostOptions(cmd)).action(
    async (domain: number | string, dest: string | undefined, o: RemusCli) => {
      process.exitCode = await runRemus(domain, dest, o);
    },
  );

  const rcv = program
    .command('remus-receive')
    .description('receive a Remus / COLO replica (backup side; same as receive --remus / --colo)')
    .option(
      '--protocol <p>',
      'xenmig (ACKs, heartbeats) or xl (as xl migrate-receive -r)',
      choice('protocol', ['xenmig', 'xl'] as const),
      'xenmig',
    );
  addReplicaReceiveOptions(rcv).action(async (o: ReplicaReceiveCli) => {
    process.exitCode = await runReplicaReceive(o);
  });
}

/** remus: how often and how long it replicates, and what a lost backup does. */
function addCheckpointOptions(cmd: Command): void {
  cmd
    .option('-i, --interval-ms <ms>', 'checkpoint interval', parseIntArg('interval-ms', 1, 3_600_000), 200)
    .option('-b, --blackhole', 'discard the stream (measure the overhead; no backup)')
    .option('--colo', 'COLO: the secondary runs too; checkpoint on divergence or the interval')
    .option(
      '--ack-timeout-ms <ms>',
      'backup lost when ACK(n) does not come within MS (default max(2000, 10 x interval))',
      parseIntArg('ack-timeout-ms', 1),
    )
    .option(
      '--on-backup-loss <what>',
      'after the first ACK: pause the guest (default) or let it continue unreplicated',
      choice('on-backup-loss', ['pause', 'continue'] as const),
      'pause',
    )
    .option('--max-checkpoints <n>', 'stop after N checkpoints', parseIntArg('max-checkpoints', 1));
}

/** remus: the link to the backup (TLS or plain TCP, protocol) and how guest memory is mapped. */
function addLinkOptions(cmd: Command): void {
  cmd
    .option('--insecure', 'plain TCP (both ends must say so)')
    .option('--cert <file>', 'TLS certificate')
    .option('--key <file>', 'TLS key')
    .option('--ca <file>', 'TLS CA')
    .option(
      '--protocol <p>',
      'xenmig (ACKs, heartbeats) or xl (as xl remus: banner, no ACKs)',
      choice('protocol', ['xenmig', 'xl'] as const),
      'xenmig',
    )
    .option(
      '--persistent-mappings',
      'HVM guests that never balloon: keep guest mappings across checkpoints (shorter pauses)',
    );
}

/** remus: what it prints and logs. */
function addOutputOptions(cmd: Command): void {
  cmd
    .option('--json', 'one JSON line per checkpoint on stdout')
    .option(
      '--log-format <fmt>',
      'log lines on stderr: text or json',
      choice('log-format', ['text', 'json'] as const),
      'text',
    )
    .option(
      '--checksum-log <file>',
      'debug (mock): append the guest checksum taken while suspended for each checkpoint',
    );
}

/** remus: the guest's network output buffering and disk replication. */
function addDeviceOptions(cmd: Command): void {
  cmd
    .option(
      '--no-net-buffer',
      'replicate a guest with vifs without holding its network output (unsafe: clients may see output the replica never produced)',
    )
    .option(
      '--unsafe',
      'replicate without network buffering and without replicating vbds that have no --disk (as xl remus -n -d)',
    )
    .option(
      '--disk <name=ctl>',
      'replicate the vbd NAME (its vdev) served by `xenmig disk serve --control CTL` (repeat per vbd)',
      collect,
    )
    .option(
      '--no-disk-replication',
      "replicate a guest with vbds without replicating its disks (unsafe: the replica's disks are whatever the backup's images hold)",
    )
    .option(
      '--net-buffer-interfaces <if,...>',
      "buffer these dom0 interfaces instead of the config's vifs (vifD.N)",
    )
    .option(
      '--net-buffer-backend <b>',
      'auto (plug, else nfqueue when the kernel has no sch_plug), plug or nfqueue',
      choice('net-buffer-backend', ['auto', 'plug', 'nfqueue'] as const),
      'auto',
    );
}

/** The backup-side options, for `remus-receive` and for `receive --remus/--colo`. */
export function addReplicaReceiveOptions(cmd: Command, withColo = true): Command {
  if (withColo) cmd.option('--colo', 'COLO secondary (runs between checkpoints)');
  cmd
    .option('--listen <[host:]port>', 'listen for the primary on TCP (default: stdin/stdout)')
    .option('--insecure', 'plain TCP (both ends must say so)')
    .option('--cert <file>', 'TLS certificate')
    .option('--key <file>', 'TLS key')
    .option('--ca <file>', 'TLS CA')
    .option(
      '--failover-timeout-ms <ms>',
      'no data from the primary for MS = failover; never take over sooner (default 5000)',
      parseIntArg('failover-timeout-ms', 1),
    )
    .option(
      '--heartbeat-ms <ms>',
      'heartbeat period towards the primary (default 250)',
      parseIntArg('heartbeat-ms', 1),
    )
    .option('--paused', 'leave the replica paused after a failover')
    .option(
      '--json',
      'JSON lines (listening port, each applied checkpoint, result) on stdout; on stderr when stdout is the link (no --listen)',
    )
    .option(
      '--log-format <fmt>',
      'log lines on stderr: text or json',
      choice('log-format', ['text', 'json'] as const),
      'text',
    )
    .option(
      '--checksum-log <file>',
      'debug (mock): append the replica checksum after each applied checkpoint and at failover',
    )
    .option(
      '--disk-map <name=image>',
      "apply the primary's disk NAME to IMAGE (a raw file of the same size) at each checkpoint (repeat per disk)",
      collect,
    )
    .option(
      '--disk-buffer-mib <n>',
      "a checkpoint's disk blocks kept in memory before they spill to IMAGE.xenmig-journal (default 64)",
      parseIntArg('disk-buffer-mib', 1),
    );
  return addHostOptions(cmd);
}

function fmtStat(s: CheckpointStat): string {
  return `checkpoint ${s.checkpoint}: ${s.dirtyPages} pages, ${(s.bytes / 1024).toFixed(0)} KiB, pause ${s.pauseMs.toFixed(2)} ms (guest suspending ${s.suspendMs.toFixed(2)} ms), ack ${s.ackMs < 0 ? 'lost' : s.ackMs.toFixed(2) + ' ms'}`;
}

/** Refuses, before the domain is touched, a replication that cannot connect. */
function checkRemusTarget(dest: string | undefined, o: RemusCli, tls: ReturnType<typeof tlsFrom>): void {
  if (dest === undefined && !o.blackhole)
    throw new UsageError('remus needs a destination (or --blackhole, as xl remus -b)');
  if (dest !== undefined && o.blackhole)
    throw new UsageError('--blackhole discards the stream: give no destination');
  if (dest !== undefined && parseDestination(dest).kind === 'tcp' && !tls && !o.insecure)
    throw new UsageError('tcp:// needs --cert, --key and --ca (mutual TLS), or --insecure (on both ends)');
}

/** Starts the replication: its devices (disks before the network) and the options remus() takes. */
function startRemus(
  xen: Hypervisor,
  domid: number,
  dest: string | undefined,
  o: RemusCli,
  tls: ReturnType<typeof tlsFrom>,
  log: Log,
) {
  const ck = checksumLogger(o.checksumLog, xen);
  // the stream carries --config when given; else remus() takes the domain's stored config under
  // its live name (an xl Remus replica's stored config can still say "<name>--incoming")
  const given = configFrom(o);
  const config = given ?? remusConfig(xen, domid);
  // disks before the network: a refusal here must not leave an IFB behind
  const disks = remusDisks(domid, config ?? null, o, log);
  const netBuffer = remusNetBuffer(domid, config, o, log);
  return remus(domid, dest ?? '/dev/null', {
    ...(netBuffer ? { netBuffer } : {}),
    ...(disks ? { disks } : {}),
    xen,
    ...(given ? { config: given } : {}),
    intervalMs: o.intervalMs,
    ...(o.blackhole ? { blackhole: true } : {}),
    ...(o.colo ? { colo: true } : {}),
    ...(o.ackTimeoutMs ? { ackTimeoutMs: o.ackTimeoutMs } : {}),
    onBackupLoss: o.onBackupLoss,
    ...(o.maxCheckpoints ? { maxCheckpoints: o.maxCheckpoints } : {}),
    ...(o.protocol ? { protocol: o.protocol } : {}),
    ...(o.persistentMappings ? { persistentMappings: true } : {}),
    ...(o.insecure ? { insecure: true } : {}),
    ...(tls ? { tls } : {}),
    log: (l) => log.info(l),
    ...(ck
      ? { onSuspended: (n: number, _x: Hypervisor, d: number) => ck({ side: 'primary', checkpoint: n }, d) }
      : {}),
  });
}

type RemusResult = Awaited<ReturnType<typeof remus>['done']>;

/** The exit code of an ended replication; a refusal says which option would let it through. */
function remusExit(r: RemusResult, log: Log, received: NodeJS.Signals | null): number {
  if (r.reason === 'refused' && (r.error as { code?: string } | undefined)?.code?.startsWith('ERR_DISK')) {
    log.warn(
      `replication refused, guest untouched: ${r.error?.message}; to replicate without its disks give --no-disk-replication (or --unsafe)`,
    );
    return EXIT.FAILED;
  }
  if (r.reason === 'refused') {
    log.warn(
      `replication refused, guest untouched: ${r.error?.message}; to replicate without holding its network output give --no-net-buffer (or --unsafe)`,
    );
    return EXIT.FAILED;
  }
  if (r.error) {
    log.warn(`replication ended: ${r.error.message}`, {
      checkpoint: r.checkpoints,
      lastAcked: r.lastAcked,
      guest: r.guest,
    });
    return EXIT.FAILED;
  }
  return signalExit(received) ?? EXIT.OK;
}

async function runRemus(domain: number | string, dest: string | undefined, o: RemusCli): Promise<number> {
  const log = new Log(o.logFormat);
  const progress = new Progress();
  log.setProgressClear(progress.clear);
  const sig = signalAbort();
  let xen: Hypervisor | null = null;
  try {
    // options first: a replication that cannot connect is refused before the domain is touched
    const tls = tlsFrom(o);
    checkRemusTarget(dest, o, tls);
    xen = openXen(xenOptions(o)).xen;
    const domid = await resolveDomain(xen, domain);
    const h = startRemus(xen, domid, dest, o, tls, log);
    sig.signal.addEventListener('abort', () => void h.stop(), { once: true });
    for await (const s of h) {
      if (o.json) await writeOut(JSON.stringify(s) + '\n');
      else progress.update(fmtStat(s));
    }
    const r = await h.done;
    progress.clear();
    if (o.json) {
      const { reason: result, checkpoints, lastAcked, guest } = r;
      await writeOut(
        JSON.stringify({ result, checkpoints, lastAcked, guest, error: r.error?.message }) + '\n',
      );
    }
    return remusExit(r, log, sig.received());
  } catch (e) {
    progress.clear();
    printError(e, log);
    return (e as { code?: string }).code === 'ERR_USAGE' ? EXIT.USAGE : EXIT.FAILED;
  } finally {
    sig.dispose();
    xen?.close();
  }
}

/** libxl's stored config of the replicated guest on a real host (its vifs are buffered). */
function remusConfig(xen: Hypervisor, domid: number): DomainConfig | null {
  return xen.flavour === 'system' ? libxlStoredConfig(domid, xen.domainInfo(domid)) : null;
}

/**
 * Network buffering for the guest's vifs (or --net-buffer-interfaces), set up by remus() before it
 * touches the guest; none when the guest has no vif, for COLO, or when the operator said
 * --no-net-buffer / --unsafe (logged as unsafe).
 */
function remusNetBuffer(domid: number, config: DomainConfig | null, o: RemusCli, log: Log): NetBuffer | null {
  const explicit = o.netBufferInterfaces
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const vifs = explicit ?? (config ? vifInterfaces(config.json, domid) : []);
  if (vifs.length === 0 || o.colo) return null;
  if (o.netBuffer === false || o.unsafe) {
    log.warn(
      `replicating without network buffering (${o.unsafe ? '--unsafe' : '--no-net-buffer'}): output of ${vifs.join(', ')} leaves before the backup holds the checkpoint that produced it`,
    );
    return null;
  }
  return createNetBuffer({
    interfaces: vifs,
    backend: o.netBufferBackend ?? 'auto',
    log: (l) => log.info(l),
    ...(o.flavour ? { flavour: o.flavour } : {}),
  });
}

/**
 * Disk replication for the guest's vbds: every vbd of the config needs a --disk NAME=CTL (NAME = its
 * vdev), or an explicit --no-disk-replication / --unsafe (logged as unsafe). Refused up front,
 * before the guest is touched: a --disk the guest has no vbd for, --disk with --protocol xl (xl's
 * receiver rejects the records) or COLO.
 */
function remusDisks(
  domid: number,
  config: DomainConfig | null,
  o: RemusCli,
  log: Log,
): DiskReplication | null {
  const targets = (o.disk ?? [])
    .map((s) => diskMapping(s, '--disk'))
    .map(({ name, path }) => ({ name, control: path }));
  const vbds = config ? guestVbds(config) : [];
  const skip = o.diskReplication === false || o.unsafe;
  if (targets.length) {
    if (o.diskReplication === false)
      throw new UsageError('--disk and --no-disk-replication contradict each other');
    if (o.colo) throw new UsageError('--disk: disk replication is for Remus, not COLO');
    if (o.protocol === 'xl')
      throw new UsageError(
        "--disk needs a xenmig backup: xl's receiver rejects the disk records (give --no-disk-replication to replicate to xl without the disks)",
      );
    const unknown = targets.filter((t) => vbds.length && !vbds.includes(t.name)).map((t) => t.name);
    if (unknown.length)
      throw new UsageError(
        `--disk ${unknown.join(', ')}: domain ${domid} has no such vbd (its vbds: ${vbds.join(', ')})`,
      );
  }
  const uncovered = vbds.filter((v) => !targets.some((t) => t.name === v));
  if (uncovered.length && !o.colo) {
    if (!skip)
      throw new UsageError(
        `domain ${domid} has vbds without disk replication (${uncovered.join(', ')}): serve each disk with \`xenmig disk serve IMAGE --socket NBD.sock --control CTL.sock\` ` +
          `(the vbd on the NBD device) and give --disk NAME=CTL.sock, or replicate without them: --no-disk-replication (or --unsafe)`,
      );
    log.warn(
      `replicating without disk replication (${o.unsafe ? '--unsafe' : '--no-disk-replication'}): after a failover the replica's ${uncovered.join(', ')} hold whatever the backup's images hold`,
    );
  }
  return targets.length ? new DiskReplication(targets, { log: (l) => log.info(l) }) : null;
}

/** The vdevs of the config's vbds (all of them, also those the builder could not recreate). */
function guestVbds(config: DomainConfig): string[] {
  const disks = config.json['disks'];
  if (!Array.isArray(disks)) return [];
  return disks.map((d, i) => {
    const v = (d as Record<string, unknown> | null)?.['vdev'];
    return typeof v === 'string' && v ? v : `#${i}`;
  });
}

export async function runReplicaReceive(o: ReplicaReceiveCli): Promise<number> {
  const log = new Log(o.logFormat);
  const sig = signalAbort();
  let xen: Hypervisor | null = null;
  let disks: DiskReplicaSet | null = null;
  try {
    if (o.diskMap?.length) {
      if (o.colo) throw new UsageError('--disk-map: disk replication is for Remus, not COLO');
      if (o.protocol === 'xl')
        throw new UsageError('--disk-map needs a xenmig primary (an xl primary sends no disk records)');
      const map = new Map<string, string>();
      for (const m of o.diskMap.map((s) => diskMapping(s, '--disk-map'))) {
        if (map.has(m.name)) throw new UsageError(`--disk-map ${m.name} given twice`);
        map.set(m.name, m.path);
      }
      disks = new DiskReplicaSet(map, {
        ...(o.diskBufferMib ? { maxBufferBytes: o.diskBufferMib << 20 } : {}),
      });
    }
    xen = openXen(xenOptions(o)).xen;
    const ck = checksumLogger(o.checksumLog, xen);
    const tls = tlsFrom(o);
    // on stdin/stdout, stdout is the link to the primary: JSON lines go to stderr (as receive's)
    const jsonOut = o.listen ? process.stdout : process.stderr;
    const r = await receiveReplica({
      xen,
      ...(o.colo ? { colo: true } : {}),
      ...(o.listen ? { listen: typeof o.listen === 'string' ? parseHostPort(o.listen) : o.listen } : {}),
      ...(o.insecure ? { insecure: true } : {}),
      ...(tls ? { tls } : {}),
      ...(o.failoverTimeoutMs ? { failoverTimeoutMs: o.failoverTimeoutMs } : {}),
      ...(o.heartbeatMs ? { heartbeatMs: o.heartbeatMs } : {}),
      ...(o.paused ? { paused: true } : {}),
      ...(o.protocol ? { protocol: o.protocol } : {}),
      ...(disks ? { disks } : {}),
      signal: sig.signal,
      log: (l) => log.info(l),
      onListening: (port) => {
        if (o.json) void writeOut(JSON.stringify({ listening: port }) + '\n');
        else log.info(`listening on port ${port}`);
      },
      onCheckpoint: async (n: number, _x: Hypervisor, d: number) => {
        ck?.({ side: 'backup', checkpoint: n }, d);
        if (o.json) await writeOut(JSON.stringify({ applied: n, domid: d }) + '\n', jsonOut);
      },
      ...(ck
        ? { onFailover: (n: number, _x: Hypervisor, d: number) => ck({ side: 'backup', failover: n }, d) }
        : {}),
    });
    if (o.json)
      await writeOut(
        JSON.stringify({
          result: r.outcome,
          domid: r.domid,
          checkpoint: r.checkpoint,
          guest: r.guest,
          cause: r.cause?.message,
        }) + '\n',
        jsonOut,
      );
    return r.outcome === 'failed' ? EXIT.FAILED : EXIT.OK;
  } catch (e) {
    printError(e, log);
    return (e as { code?: string }).code === 'ERR_USAGE' ? EXIT.USAGE : EXIT.FAILED;
  } finally {
    disks?.close();
    sig.dispose();
    xen?.close();
  }
}
