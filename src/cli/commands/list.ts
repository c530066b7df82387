// xenmig list : the host's domains (id, name, type, memory, vCPUs, state), as `xl list` shows them;
// a real host, or a mock host (--host DIR or XENMIG_MOCK_HOST).
import type { Command } from 'commander';
import { openXen } from '../../api.js';
import { listDomains, type DomainListEntry } from '../../toolstack/list.js';
import { addHostOptions, EXIT, printError, writeOut, xenOptions } from '../util.js';

export function table(domains: DomainListEntry[]): string {
  const rows = [['Name', 'ID', 'Mem', 'VCPUs', 'State', 'Type']];
  for (const d of domains)
    rows.push([
      d.name ?? '-',
      String(d.domid),
      String(Math.round(d.memoryMiB)),
      String(d.vcpus),
      d.state,
      d.type,
    ]);
  const width = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  // name left-aligned, numbers right-aligned, as xl
  const cell = (r: string[], c: number) =>
    c === 0 || c >= 4 ? r[c]!.padEnd(width[c]!) : r[c]!.padStart(width[c]!);
  return (
    rows
      .map((r) =>
        r
          .map((_, c) => cell(r, c))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

export function register(program: Command): void {
  addHostOptions(
    program
      .command('list')
      .description("the host's domains: name, id, memory (MiB), vCPUs, state (r b p s c d, as xl list), type")
      .option('--json', 'a JSON array: domid, name, type, memoryMiB, vcpus, state'),
  ).action(async (o: { host?: string; flavour?: 'system' | 'mock'; json?: boolean }) => {
    let xen: ReturnType<typeof openXen>['xen'] | null = null;
    try {
      xen = openXen(xenOptions(o)).xen;
      const domains = await listDomains(xen);
      await writeOut(o.json ? JSON.stringify(domains) + '\n' : table(domains));
      process.exitCode = EXIT.OK;
    } catch (e) {
      printError(e);
      process.exitCode = EXIT.FAILED;
    } finally {
      xen?.close();
    }
  });
}
