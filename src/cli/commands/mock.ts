// xenmig mock …: drive the simulated Xen host (a directory; --host or XENMIG_MOCK_HOST).
import type { Command } from 'commander';
import { openXen } from '../../api.js';
import type { MockHypervisor } from '../../xen/hypervisor.js';
import type { DomainInfo } from '../../xen/types.js';
import { PAGE_SIZE, ShutdownReason } from '../../xen/constants.js';
import { checkDomainName, mockNames, resolveDomain } from '../../toolstack/names.js';
import { domainExists } from '../../toolstack/destroy.js';
import { domainState } from '../state.js';
import {
  addHostOptions,
  choice,
  DOMAIN_ARG,
  EXIT,
  Log,
  parseDomain,
  parseIntArg,
  parseSize,
  printError,
  signalAbort,
  UsageError,
  writeOut,
  xenOptions,
} from '../util.js';

type HostOpts = { host?: string; flavour?: 'system' | 'mock' };
type CreateOpts = HostOpts & {
  type: 'hvm' | 'pv';
  memory: number;
  vcpus: number;
  empty?: boolean;
  name?: string;
};

/** The names kept in the mock host's directory (names/<domid>). */
function namesOf(h: MockHypervisor) {
  return mockNames(h.dir, (d) => domainExists(h, d));
}

function openMock(o: HostOpts): MockHypervisor {
  const { xen } = openXen({ ...xenOptions(o), flavour: 'mock' });
  return xen as MockHypervisor;
}

async function withHost(o: HostOpts, f: (h: MockHypervisor) => Promise<number> | number): Promise<number> {
  let h: MockHypervisor | null = null;
  try {
    h = openMock(o);
    return await f(h);
  } catch (e) {
    printError(e);
    return EXIT.FAILED;
  } finally {
    h?.close();
  }
}

function stateWord(i: DomainInfo): string {
  if (i.dying) return 'dying';
  if (i.shutdown)
    return i.shutdownReason === ShutdownReason.SUSPEND ? 'suspended' : `shutdown(${i.shutdownReason})`;
  if (i.paused) return 'paused';
  return 'running';
}

export function infoJson(i: DomainInfo): Record<string, unknown> {
  return {
    domid: i.domid,
    type: i.type,
    state: stateWord(i),
    paused: i.paused,
    shutdown: i.shutdown,
    shutdownReason: i.shutdownReason,
    pages: i.totPages,
    maxPages: i.maxPages,
    vcpus: i.maxVcpuId + 1,
  };
}

export function register(program: Command): void {
  const mock = program
    .command('mock')
    .description('the simulated Xen host (a directory shared between processes)');
  registerCreate(mock);
  registerList(mock);
  registerDestroy(mock);
  registerWorkload(mock);
  registerChecksum(mock);
  registerState(mock);
}

function registerCreate(mock: Command): void {
  addHostOptions(
    mock
      .command('create')
      .description('create a domain (running, memory populated); prints its domid')
      .requiredOption('--type <type>', 'hvm or pv', choice('type', ['hvm', 'pv'] as const))
      .requiredOption('--memory <size>', 'memory size (e.g. 64M)', (s) => parseSize(s, 'memory'))
      .option('--vcpus <n>', 'vCPUs', parseIntArg('vcpus', 1, 512), 1)
      .option(
        '--empty',
        'an empty domain that never ran (paused, no memory): a target for restore FILE DOMID',
      )
      .option('--name <name>', 'its name (unique on the host; commands then take it in place of the domid)'),
  ).action(async (o: CreateOpts) => {
    process.exitCode = await withHost(o, (h) => createDomain(h, o));
  });
}

async function createDomain(h: MockHypervisor, o: CreateOpts): Promise<number> {
  if (o.memory % PAGE_SIZE) throw new UsageError('--memory must be a multiple of 4 KiB');
  if (o.name !== undefined) {
    try {
      checkDomainName(o.name);
    } catch (e) {
      throw new UsageError(`--name: ${(e as Error).message}`);
    }
    // refused before the domain exists when another domain has the name
    const other = await namesOf(h).holder(o.name);
    if (other !== null) throw new UsageError(`--name ${o.name}: domain ${other} has that name`);
  }
  const domid = h.createDomain({
    type: o.type,
    pages: o.memory / PAGE_SIZE,
    vcpus: o.vcpus,
    populate: !o.empty,
  });
  if (o.name !== undefined) {
    try {
      await namesOf(h).rename(domid, o.name);
    } catch (e) {
      h.destroyDomain(domid);
      throw e;
    }
  }
  await writeOut(`${domid}\n`);
  return EXIT.OK;
}

function registerList(mock: Command): void {
  addHostOptions(
    mock.command('list').description('list the host’s domains').option('--json', 'JSON array'),
  ).action(async (o: HostOpts & { json?: boolean }) => {
    process.exitCode = await withHost(o, (h) => listDomains(h, o.json === true));
  });
}

async function listDomains(h: MockHypervisor, json: boolean): Promise<number> {
  const infos: DomainInfo[] = [];
  for (const d of h.listDomainIds()) {
    try {
      infos.push(h.domainInfo(d));
    } catch {
      /* destroyed meanwhile */
    }
  }
  const names = await namesOf(h).all();
  const named = (i: DomainInfo) => ({ ...infoJson(i), name: names.get(i.domid) ?? null });
  if (json) await writeOut(JSON.stringify(infos.map(named)) + '\n');
  else {
    const line = (i: DomainInfo) =>
      `${i.domid}\t${i.type}\t${stateWord(i)}\t${(i.totPages * 4) / 1024} MiB\t${i.maxVcpuId + 1} vCPUs` +
      (names.has(i.domid) ? `\t${names.get(i.domid)}` : '');
    await writeOut(infos.map(line).join('\n') + (infos.length ? '\n' : ''));
  }
  return EXIT.OK;
}

function registerDestroy(mock: Command): void {
  addHostOptions(
    mock.command('destroy').description('destroy a domain').argument('<domain>', DOMAIN_ARG, parseDomain),
  ).action(async (domain: number | string, o: HostOpts) => {
    process.exitCode = await withHost(o, async (h) => {
      const domid = await resolveDomain(h, domain);
      h.destroyDomain(domid);
      namesOf(h).remove(domid);
      return EXIT.OK;
    });
  });
}

type WorkloadOpts = HostOpts & { rate: number; hot: number; duration: number; seed: number };

function registerWorkload(mock: Command): void {
  addHostOptions(
    mock
      .command('workload')
      .description('dirty guest memory until --duration ends, SIGINT/SIGTERM, or the domain is destroyed')
      .argument('<domain>', DOMAIN_ARG, parseDomain)
      .requiredOption('--rate <pages>', 'page writes per second', parseIntArg('rate', 1))
      .option(
        '--hot <pages>',
        'write among the first PAGES data pages only (default all)',
        parseIntArg('hot', 0),
        0,
      )
      .option(
        '--duration <s>',
        'stop after S seconds (default: run until stopped)',
        parseIntArg('duration', 0),
        0,
      )
      .option('--seed <n>', 'seed of the deterministic write pattern', parseIntArg('seed', 0), 0),
  ).action(async (domain: number | string, o: WorkloadOpts) => {
    const sig = signalAbort();
    process.exitCode = await withHost(o, (h) => runWorkload(h, domain, o, sig));
    sig.dispose();
  });
}

async function runWorkload(
  h: MockHypervisor,
  domain: number | string,
  o: WorkloadOpts,
  sig: ReturnType<typeof signalAbort>,
): Promise<number> {
  const log = new Log();
  const domid = await resolveDomain(h, domain);
  h.domainInfo(domid); // fails clearly for a missing domain
  log.info(`workload running on domain ${domid}`, {
    rate: o.rate,
    hot: o.hot || undefined,
    seed: o.seed,
  });
  const writes = await h.workload(domid, {
    rate: o.rate,
    hot: o.hot,
    seed: o.seed,
    durationMs: o.duration * 1000,
    signal: sig.signal,
  });
  let gone = false;
  try {
    h.domainInfo(domid);
  } catch {
    gone = true;
  }
  log.info(`workload stopped`, {
    writes,
    reason: sig.received() ?? (gone ? 'domain gone' : 'duration'),
  });
  await writeOut(`${writes}\n`);
  return EXIT.OK;
}

function registerChecksum(mock: Command): void {
  addHostOptions(
    mock
      .command('checksum')
      .description('SHA-256 of the guest’s memory and state')
      .argument('<domain>', DOMAIN_ARG, parseDomain),
  ).action(async (domain: number | string, o: HostOpts) => {
    process.exitCode = await withHost(o, async (h) => {
      await writeOut(h.checksum(await resolveDomain(h, domain)) + '\n');
      return EXIT.OK;
    });
  });
}

function registerState(mock: Command): void {
  addHostOptions(
    mock
      .command('state')
      .description('register state summary as JSON (vCPUs, HVM context/params, TSC)')
      .argument('<domain>', DOMAIN_ARG, parseDomain),
  ).action(async (domain: number | string, o: HostOpts) => {
    process.exitCode = await withHost(o, async (h) => {
      await writeOut(JSON.stringify(domainState(h, await resolveDomain(h, domain))) + '\n');
      return EXIT.OK;
    });
  });
}
