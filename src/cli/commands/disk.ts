// xenmig disk serve IMAGE --socket NBD.sock --control CTL.sock : the disk daemon of Remus disk
// replication (src/disk/). Serves IMAGE over NBD (dom0: `nbd-client -unix NBD.sock /dev/nbdN`, the
// guest's vbd is phy:/dev/nbdN) and answers `xenmig remus --disk NAME=CTL.sock`. Runs until
// SIGINT/SIGTERM; start it before the guest boots.
import type { Command } from 'commander';
import { serveDisk } from '../../disk/daemon.js';
import {
  choice,
  EXIT,
  Log,
  parseIntArg,
  printError,
  signalAbort,
  writeOut,
  type LogFormat,
} from '../util.js';

interface ServeCli {
  socket: string;
  control: string;
  blockSize: number;
  maxPreservedMib: number;
  maxRequestMib: number;
  snapshotDir?: string;
  snapshotKeep?: number;
  json?: boolean;
  logFormat: LogFormat;
}

export function register(program: Command): void {
  const disk = program.command('disk').description('Remus disk replication: the disk daemon');
  disk
    .command('serve')
    .description(
      'serve IMAGE over NBD on a unix socket, tracking writes per checkpoint epoch for xenmig remus --disk',
    )
    .argument('<image>', 'the guest disk image (a raw file)')
    .requiredOption('--socket <path>', 'NBD unix socket (dom0: nbd-client -unix PATH /dev/nbdN)')
    .requiredOption('--control <path>', 'control unix socket (xenmig remus --disk NAME=PATH)')
    .option('--block-size <bytes>', 'replication granularity', parseIntArg('block-size', 512, 1 << 20), 4096)
    .option(
      '--max-preserved-mib <n>',
      'old block contents kept while an epoch is sent; beyond it guest writes wait',
      parseIntArg('max-preserved-mib', 1, 1 << 20),
      64,
    )
    .option(
      '--max-request-mib <n>',
      'largest NBD read/write request',
      parseIntArg('max-request-mib', 1, 256),
      32,
    )
    .option('--snapshot-dir <dir>', 'debug/tests: copy the image to DIR/epoch-N.img at each checkpoint N')
    .option(
      '--snapshot-keep <n>',
      'with --snapshot-dir: keep the last N copies (default 8)',
      parseIntArg('snapshot-keep', 1),
    )
    .option('--json', 'one JSON line on stdout once serving')
    .option(
      '--log-format <fmt>',
      'log lines on stderr: text or json',
      choice('log-format', ['text', 'json'] as const),
      'text',
    )
    .action(async (image: string, o: ServeCli) => {
      process.exitCode = await runServe(image, o);
    });
}

async function runServe(image: string, o: ServeCli): Promise<number> {
  const log = new Log(o.logFormat);
  const sig = signalAbort();
  try {
    const server = await serveDisk(image, {
      socket: o.socket,
      control: o.control,
      blockSize: o.blockSize,
      maxPreservedBytes: o.maxPreservedMib << 20,
      maxRequest: o.maxRequestMib << 20,
      ...(o.snapshotDir ? { snapshotDir: o.snapshotDir } : {}),
      ...(o.snapshotKeep ? { snapshotKeep: o.snapshotKeep } : {}),
      log: (l) => log.info(l),
    });
    if (o.json)
      await writeOut(
        JSON.stringify({
          serving: image,
          size: server.image.size,
          blockSize: server.image.blockSize,
          socket: o.socket,
          control: o.control,
        }) + '\n',
      );
    await new Promise<void>((r) => sig.signal.addEventListener('abort', () => r(), { once: true }));
    await server.close();
    // a signal is how a daemon is stopped: not a failure
    log.info(`disk: stopped serving ${image} (${sig.received()})`);
    return EXIT.OK;
  } catch (e) {
    printError(e, log);
    return EXIT.FAILED;
  } finally {
    sig.dispose();
  }
}
