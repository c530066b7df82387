// xenmig verify FILE|- : validate a whole stream; exit 0 when valid, else the first error.
import type { Command } from 'commander';
import {
  StreamReader,
  StreamValidator,
  type StreamFormat,
  type StreamType,
  type ValidationFacts,
} from '../../stream/index.js';
import {
  choice,
  describeError,
  EXIT,
  fmtBytes,
  fmtRate,
  jsonReplacer,
  Progress,
  printError,
  writeOut,
} from '../util.js';

interface VerifyOptions {
  format: StreamFormat;
  streamType: StreamType;
  lenient?: boolean;
  json?: boolean;
  quiet?: boolean;
}

export function register(program: Command): void {
  program
    .command('verify')
    .description('check that a migration stream / save file is valid (- = stdin)')
    .argument('<file>', 'save file or stream, - for stdin')
    .option(
      '--format <fmt>',
      'xl, libxl, libxc or auto',
      choice('format', ['auto', 'xl', 'libxl', 'libxc', 'colo-back'] as const),
      'auto',
    )
    .option(
      '--stream-type <type>',
      'plain, remus, colo, or auto (checkpointed when it has checkpoints)',
      choice('stream-type', ['plain', 'remus', 'colo', 'auto'] as const),
      'auto',
    )
    .option('--lenient', 'non-zero reserved fields and padding are warnings (as libxc restore), not errors')
    .option('--json', 'print the result as JSON')
    .option('-q, --quiet', 'print nothing on success')
    .action(async (file: string, o: VerifyOptions) => {
      process.exitCode = await verify(file, o);
    });
}

const DOMAIN_TYPES: Record<number, string> = { 1: 'x86 PV', 2: 'x86 HVM' };

async function verify(file: string, o: VerifyOptions): Promise<number> {
  const stdin = file === '-';
  const strict = o.lenient ? 'warn' : 'error';
  const reader = new StreamReader(stdin ? 0 : file, {
    format: o.format,
    lazyPageData: true,
    ...(stdin ? { blockingReads: true } : {}),
  });
  const progress = new Progress();
  const t0 = performance.now();
  let v: StreamValidator | null = null;
  const make = () =>
    new StreamValidator({
      streamType: o.streamType,
      reserved: strict,
      padding: strict,
      backChannel: reader.summary.format === 'colo-back',
    });
  try {
    for await (const item of reader) {
      v ??= make();
      v.check(item);
      if (progress.enabled) {
        const s = (performance.now() - t0) / 1000;
        progress.update(
          `${fmtBytes(reader.summary.bytes)}  ${reader.summary.items} records  ${fmtRate(s > 0 ? reader.summary.bytes / s : 0)}`,
        );
      }
    }
    v ??= make();
    const facts = v.finish(reader.summary);
    progress.clear();
    for (const w of v.warnings)
      process.stderr.write(
        `xenmig: warning: ${w.code}: ${w.message}${w.offset !== undefined ? ` [at offset ${w.offset}, #${w.recordIndex} ${w.recordType}]` : ''}\n`,
      );
    for (const [code, n] of Object.entries(v.suppressedWarnings))
      process.stderr.write(`xenmig: warning: ${code}: ${n} more not shown\n`);
    if (o.json)
      await writeOut(
        JSON.stringify(
          {
            valid: true,
            format: reader.summary.format,
            facts,
            warnings: v.warnings,
            suppressedWarnings: v.suppressedWarnings,
            items: reader.summary.items,
          },
          jsonReplacer,
        ) + '\n',
      );
    else if (!o.quiet)
      await writeOut(okLine(reader.summary.format ?? '?', facts, reader.summary.items) + '\n');
    return EXIT.OK;
  } catch (e) {
    progress.clear();
    if (o.json) {
      const x = e as Record<string, unknown>;
      const { code, text } = describeError(e);
      await writeOut(
        JSON.stringify({
          valid: false,
          format: reader.summary.format,
          error: {
            code,
            message: text,
            offset: x.offset,
            recordIndex: x.recordIndex,
            recordType: x.recordType,
            layer: x.layer,
          },
        }) + '\n',
      );
    }
    printError(e);
    return EXIT.FAILED;
  }
}

function okLine(format: string, f: ValidationFacts, items: number): string {
  const parts = [`OK: ${format} stream`];
  if (f.version !== null) parts.push(`libxc v${f.version}`);
  if (f.domainType !== null) parts.push(DOMAIN_TYPES[f.domainType] ?? `type ${f.domainType}`);
  if (f.xenVersion) parts.push(`Xen ${f.xenVersion[0]}.${f.xenVersion[1]}`);
  if (f.guestWidth) parts.push(`guest width ${f.guestWidth}`);
  parts.push(`${items} items`, `${f.pageEntries} page entries (${f.dataPages} with data)`);
  if (f.checkpoints)
    parts.push(`${f.checkpoints} checkpoints${f.partialCheckpoint ? ' (last one partial)' : ''}`);
  parts.push(`${f.bytes} bytes`);
  return parts.join(', ');
}
