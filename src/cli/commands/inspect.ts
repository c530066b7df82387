// xenmig inspect FILE|- : one line per stream item (offset, layer, type, length, decoded summary).
import type { Command } from 'commander';
import { StreamReader, type StreamFormat } from '../../stream/index.js';
import { Describer, formatJson, formatText, PageFold, type Described } from '../describe.js';
import { choice, EXIT, fmtBytes, fmtRate, Progress, printError, writeOut } from '../util.js';

export function register(program: Command): void {
  program
    .command('inspect')
    .description('list the items of a migration stream / save file (- = stdin)')
    .argument('<file>', 'save file or stream, - for stdin')
    .option(
      '--format <fmt>',
      'xl, libxl, libxc, colo-back or auto',
      choice('format', ['auto', 'xl', 'libxl', 'libxc', 'colo-back'] as const),
      'auto',
    )
    .option('--no-fold', 'one line per PAGE_DATA record (default: consecutive ones folded)')
    .option('--json', 'JSON lines with the same content')
    .action(async (file: string, o: { format: StreamFormat; fold: boolean; json?: boolean }) => {
      process.exitCode = await inspect(file, o);
    });
}

async function inspect(
  file: string,
  o: { format: StreamFormat; fold: boolean; json?: boolean },
): Promise<number> {
  const stdin = file === '-';
  const reader = new StreamReader(stdin ? 0 : file, {
    format: o.format,
    lazyPageData: true,
    ...(stdin ? { blockingReads: true } : {}),
  });
  const progress = new Progress();
  const t0 = performance.now();
  const describer = new Describer();
  const fmt = o.json ? formatJson : formatText;
  let buf = '';
  const flush = async (force: boolean) => {
    if (buf.length > 65536 || (force && buf)) {
      if (process.stdout.isTTY) progress.clear();
      const s = buf;
      buf = '';
      await writeOut(s);
    }
  };
  const emit = async (d: Described) => {
    buf += fmt(d) + '\n';
    await flush(false);
  };
  let fold: PageFold | null = null;
  try {
    for await (const item of reader) {
      const d = describer.describe(item);
      if (o.fold && d.type === 'PAGE_DATA' && d.layer === 'libxc') {
        fold ??= new PageFold();
        fold.add(d);
      } else {
        if (fold) {
          await emit(fold.result());
          fold = null;
        }
        await emit(d);
      }
      if (progress.enabled) {
        const s = (performance.now() - t0) / 1000;
        progress.update(
          `${fmtBytes(reader.summary.bytes)}  ${reader.summary.items} items  ${fmtRate(s > 0 ? reader.summary.bytes / s : 0)}`,
        );
      }
    }
    if (fold) await emit(fold.result());
    await flush(true);
    progress.clear();
    return EXIT.OK;
  } catch (e) {
    if (fold) await emit(fold.result());
    await flush(true);
    progress.clear();
    printError(e);
    return EXIT.FAILED;
  }
}
