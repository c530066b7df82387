// xenmig demo : two temporary mock hosts, an HVM guest with a running workload on the first, live
// migration to the second through a pipe between two real processes (sender | receiver), and the
// proof: the guest's checksum at suspend equals the destination's checksum.
import type { Command } from 'commander';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openMockHost, type MockHypervisor } from '../../xen/hypervisor.js';
import { packageRoot } from '../../xen/loader.js';
import { EXIT, fmtBytes, parseIntArg, parseSize, writeOut } from '../util.js';
import type { QueryMigrate } from '../stats.js';
import { PAGE_SIZE } from '../../xen/constants.js';

// the CLI's entry, dist/cli/main.js (a bundle of this module too: resolved from the package root)
const CLI = join(packageRoot, 'dist', 'cli', 'main.js');

export function register(program: Command): void {
  program
    .command('demo')
    .description('live-migrate a busy HVM guest between two temporary mock hosts and check its memory')
    .option('--memory <size>', 'guest memory', (s) => parseSize(s, 'memory'), 256 * 1024 * 1024)
    .option('--rate <pages>', 'workload page writes per second', parseIntArg('rate', 1), 1000)
    .option('--keep', 'keep the temporary hosts (their directories are printed)')
    .option(
      '--json',
      'print the result as one JSON object (downtimeMs: the migration; checksumMs: the demonstration)',
    )
    .action(async (o: DemoOpts) => {
      process.exitCode = await demo(o);
    });
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
}

function exited(c: ChildProcess): Promise<Exit> {
  let stdout = '';
  c.stdout?.setEncoding('utf8');
  c.stdout?.on('data', (d: string) => (stdout += d));
  return new Promise((resolve, reject) => {
    c.once('error', reject);
    c.once('close', (code, signal) => resolve({ code, signal, stdout }));
  });
}

type DemoOpts = { memory: number; rate: number; keep?: boolean; json?: boolean };

/** One demonstration's state: its two host directories, its child processes, where it prints. */
interface DemoRun {
  readonly o: DemoOpts;
  readonly base: string;
  readonly hostA: string;
  readonly hostB: string;
  readonly children: ChildProcess[];
  readonly say: (s: string) => Promise<void>;
}

/** What the demonstration found after the migration: the two hosts' domains and the sender's statistics. */
interface DemoOutcome {
  domid: number;
  writes: string;
  atSuspend: { checksum: string; suspended: boolean };
  q: QueryMigrate;
  sources: number[];
  dest: { domid: number; state: string };
  destSum: string;
}

async function demo(o: DemoOpts): Promise<number> {
  const base = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'xenmig-demo-'));
  const run: DemoRun = {
    o,
    base,
    hostA: join(base, 'host-a'),
    hostB: join(base, 'host-b'),
    children: [],
    say: (s: string) => (o.json ? Promise.resolve() : writeOut(s + '\n')),
  };
  mkdirSync(run.hostA);
  mkdirSync(run.hostB);
  const onSignal = (sig: NodeJS.Signals) => {
    for (const c of run.children) if (c.exitCode === null && c.pid) c.kill('SIGTERM');
    if (!o.keep) rmSync(base, { recursive: true, force: true });
    process.exit(sig === 'SIGINT' ? EXIT.SIGINT : EXIT.SIGTERM);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const outcome = await migrateBusyGuest(run);
    if (outcome === null) return EXIT.FAILED;
    const equal = await report(run, outcome);
    return equal && outcome.atSuspend.suspended ? EXIT.OK : EXIT.FAILED;
  } catch (e) {
    process.stderr.write(`xenmig: demo failed: ${(e as Error).message}\n`);
    return EXIT.FAILED;
  } finally {
    for (const c of run.children)
      if (c.exitCode === null && c.signalCode === null && c.pid) c.kill('SIGTERM');
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (o.keep) await run.say(`kept ${base}`);
    else rmSync(base, { recursive: true, force: true });
  }
}

/**
 * Host bookkeeping in this process (the mock switches its one host per process on open); the workload,
 * the sender and the receiver are separate processes.
 */
function onHost<T>(dir: string, f: (h: MockHypervisor) => T): T {
  const h = openMockHost(dir);
  try {
    return f(h);
  } finally {
    h.close();
  }
}

/** Creates the guest, starts its workload, migrates it; null (said on stderr) when the migration failed. */
async function migrateBusyGuest(run: DemoRun): Promise<DemoOutcome | null> {
  const { o, hostA, say } = run;
  await say(`hosts: ${hostA} -> ${run.hostB}`);
  const pages = Math.ceil(o.memory / PAGE_SIZE);
  const domid = onHost(hostA, (h) => h.createDomain({ type: 'hvm', pages, vcpus: 2 }));
  await say(`created HVM domain ${domid} (${fmtBytes(pages * PAGE_SIZE)}, 2 vCPUs) on host A`);
  const workload = await startWorkload(run, domid);
  await say(`workload running: ${o.rate} page writes/s`);
  const suspendFile = join(run.base, 'at-suspend.json');
  const statsFile = join(run.base, 'stats.json');
  const [s, r] = await migrateThroughPipes(run, domid, suspendFile, statsFile);
  if (s.code !== 0 || r.code !== 0) {
    const how = `sender exit ${s.code ?? s.signal}, receiver exit ${r.code ?? r.signal}`;
    process.stderr.write(`xenmig: demo: migration failed: ${how}\n`);
    return null;
  }
  const writes = await stopWorkload(workload);
  const atSuspend = JSON.parse(readFileSync(suspendFile, 'utf8')) as DemoOutcome['atSuspend'];
  const q = JSON.parse(readFileSync(statsFile, 'utf8')) as QueryMigrate;
  const sources = onHost(hostA, (h) => h.listDomainIds());
  const { dest, destSum } = onHost(run.hostB, (h) => {
    const ids = h.listDomainIds();
    if (ids.length !== 1) throw new Error(`expected one domain on host B, found ${ids.length}`);
    const info = h.domainInfo(ids[0]!);
    const state = info.shutdown ? 'shut down' : info.paused ? 'paused' : 'running';
    return { dest: { domid: ids[0]!, state }, destSum: h.checksum(ids[0]!) };
  });
  return { domid, writes, atSuspend, q, sources, dest, destSum };
}

/** The workload: a separate process dirtying guest memory until the domain leaves host A. */
async function startWorkload(
  run: DemoRun,
  domid: number,
): Promise<{ proc: ChildProcess; done: Promise<Exit> }> {
  const workload = spawn(
    process.execPath,
    [CLI, 'mock', 'workload', String(domid), '--rate', String(run.o.rate), '--host', run.hostA],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  run.children.push(workload);
  const done = exited(workload);
  await new Promise<void>((resolve, reject) => {
    let err = '';
    workload.stderr!.setEncoding('utf8');
    workload.stderr!.on('data', (d: string) => {
      err += d;
      if (err.includes('workload running')) resolve();
    });
    workload.once('close', () => reject(new Error(`workload exited early: ${err.trim()}`)));
  });
  return { proc: workload, done };
}

/** The workload's page-write count; it ends by itself when the domain left, else after 5 s on SIGINT. */
async function stopWorkload(workload: { proc: ChildProcess; done: Promise<Exit> }): Promise<string> {
  const w = await Promise.race([
    workload.done,
    new Promise<null>((res) => setTimeout(() => res(null), 5000).unref()),
  ]);
  if (w === null) workload.proc.kill('SIGINT');
  return (w ?? (await workload.done)).stdout.trim();
}

/** Receiver and sender, their stdin/stdout joined directly (sender stdout -> receiver stdin, and back). */
async function migrateThroughPipes(
  run: DemoRun,
  domid: number,
  suspendFile: string,
  statsFile: string,
): Promise<[Exit, Exit]> {
  const progressEnv = { ...process.env, ...(process.stderr.isTTY ? { XENMIG_PROGRESS: '1' } : {}) };
  const receiver = spawn(process.execPath, [CLI, 'receive', '-', '--host', run.hostB], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  run.children.push(receiver);
  const sender = spawn(
    process.execPath,
    [
      CLI,
      'migrate',
      String(domid),
      '-',
      '--host',
      run.hostA,
      '--checksum-at-suspend',
      suspendFile,
      '--stats-file',
      statsFile,
    ],
    { stdio: [receiver.stdout!, receiver.stdin!, 'inherit'], env: progressEnv },
  );
  run.children.push(sender);
  // the pipes now belong to the two processes: drop our copies so each sees the other's EOF
  receiver.stdin!.destroy();
  receiver.stdout!.destroy();
  return Promise.all([exited(sender), exited(receiver)]);
}

/** Prints (or, with --json, writes as one object) what the demonstration found; true when the checksums match. */
async function report(run: DemoRun, out: DemoOutcome): Promise<boolean> {
  const { say, hostA, hostB } = run;
  const { q, atSuspend, dest, destSum, sources, writes } = out;
  const equal = destSum === atSuspend.checksum;
  const rounds = (q.xenmig.rounds as { kind: string; pages: number }[]) ?? [];
  const live = rounds.filter((x) => x.kind === 'live').length;
  await say(
    `migrated: domain ${out.domid} on host A -> domain ${dest.domid} on host B (${dest.state}); ${sources.length} domains left on host A`,
  );
  await say(`workload page writes on host A: ${writes}`);
  await say(
    `rounds: ${rounds.length} (${live} live + ${rounds.length - live} final), pages sent: ${q.ram?.normal}, bytes: ${fmtBytes(q.ram?.transferred ?? 0)}`,
  );
  // The checksum at suspend is the demonstration's, not the migration's: the sender computes it
  // while the guest is stopped, so the measured downtime contains it; the headline leaves it out.
  const guestDowntime = q.downtime ?? 0;
  const held = Math.min(guestDowntime, Number(q.xenmig['checksum-at-suspend-ms'] ?? 0));
  const downtime = guestDowntime - held;
  await say(`total time: ${q['total-time']} ms, downtime: ${downtime} ms, throughput: ${q.ram?.mbps} Mbit/s`);
  await say(
    `checksum at suspend took ${held} ms (demonstration only: the guest was stopped ${guestDowntime} ms in all)`,
  );
  await say(`checksum at suspend (host A): ${atSuspend.checksum}`);
  await say(`checksum on host B:           ${destSum}`);
  await say(equal ? 'checksums match' : 'CHECKSUMS DIFFER');
  if (run.o.json) {
    const result = {
      match: equal,
      source: { host: hostA, domid: out.domid, left: sources.length },
      destination: { host: hostB, ...dest },
      workloadWrites: Number(writes),
      rounds: rounds.length,
      liveRounds: live,
      pagesSent: q.ram?.normal ?? 0,
      bytes: q.ram?.transferred ?? 0,
      totalTimeMs: q['total-time'],
      downtimeMs: downtime,
      checksumMs: held,
      guestDowntimeMs: guestDowntime,
      checksumAtSuspend: atSuspend.checksum,
      checksumOnDestination: destSum,
    };
    await writeOut(JSON.stringify(result) + '\n');
  }
  return equal;
}
