// Migration benchmark (issue 4): live migration of a 1 GiB mock HVM domain (every page written)
// from mock host A to mock host B over a local pipe: the sender process runs migrate() over
// spawnChannel([receiver]) — the receiver is a second node process running receive() on its
// stdin/stdout, exactly as `xenmig receive -` at the end of an ssh pipe.
//   idle       no guest activity; throughput = stream bytes / wall time of the sender process (from
//              its start to its exit: includes node start-up, the handshake, the restore finishing
//              on B, closing). Baseline: `head -c BYTES FILE | cat > /dev/null` of the same number of
//              bytes, measured right before each run. Goal >= 0.6x. Second baseline: the C loop
//              (bench/cloop.c send | cloop.c recv: the same pages through the same mock mappings, the
//              receiver populating, mapping and reading straight into the mapping), timed right
//              before each run; engine/C-loop = wall-time ratio (goal <= 1.25x).
//   dirtying   a third process runs the mock workload on the source domain at 1,000 page writes/s
//              (random pages); reported: precopy rounds, total time, downtime. Goal: < 30 ms.
//              Twice: with libxc's default precopy policy, and with xenmig's downtime target.
//
// Downtime, as measured: from the moment the sender's suspend callback starts (before the guest is
// asked to suspend) to the moment the sender reads the receiver's RECEIVED message, which the
// receiver sends only after its restore consumed the whole stream (every page applied, HVM context
// and params loaded): i.e. until the destination holds the complete state. Both instants are taken
// on the sender's clock (MigrateResult.timings.receivedMs), so it includes the final dirty round,
// the end-of-checkpoint records, the libxl trailer, the transit through the pipe, the receiver's
// processing and the RECEIVED message's way back. Not included: CLEARED_TO_UNPAUSE + the unpause on
// B (another round trip on the same pipe). Also printed: the libxc engine's own suspendedMs
// (suspend -> end of the libxc stream), the suspend call itself, the final round, and the API's
// downtimeMs (suspend -> handshake returned, which includes closing the channel and waiting for the
// receiver process to exit). Peak RSS is the largest process of the tree; on the mock it includes
// the guest memory the receiver has written (the mock maps a domain's whole memory file), so it
// grows with the domain size there, unlike on Xen.
//
//   node bench/migrate.bench.mjs                    the benchmark (XENMIG_BENCH_BYTES, _RUNS)
//   node bench/migrate.bench.mjs --sender HOSTA DOMID HOSTB [POLICY]  child: prints a JSON result
//   node bench/migrate.bench.mjs --receiver HOSTB                 child: receive() on stdio
//   node bench/migrate.bench.mjs --workload HOSTA DOMID RATE      child: dirty pages until killed
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import {
  GiB,
  MiB,
  RUNS,
  scratchDir,
  timeShell,
  fmtRate,
  median,
  percentile,
  nodeCmd,
  q,
  preferShm,
  machineLoad,
  createFilledHvm,
  writeBaselineFile,
  cloopBinary,
} from './lib.mjs';

const self = fileURLToPath(import.meta.url);
const dist = (p) => new URL(`../dist/${p}`, import.meta.url).href;
const mode = process.argv[2];

if (mode === '--receiver') {
  const { receive } = await import(dist('api.js'));
  const r = await receive({ flavour: 'mock', host: process.argv[3] });
  process.stderr.write(`received domain ${r.domid}: ${r.stats?.pages} pages\n`);
  process.exit(0);
}
if (mode === '--sender') {
  const { migrate } = await import(dist('api.js'));
  const { spawnChannel } = await import(dist('transport/index.js'));
  const [hostA, domid, hostB] = [process.argv[3], Number(process.argv[4]), process.argv[5]];
  const policy = process.argv[6] ? JSON.parse(process.argv[6]) : undefined;
  const t0 = performance.now();
  const channel = await spawnChannel([process.execPath, self, '--receiver', hostB], {
    forwardStderr: true,
    label: 'receiver',
  });
  // the default suspend (SHUTDOWN_suspend + wait), timed: the first part of the downtime
  const { suspendDomain } = await import(dist('toolstack/save.js'));
  const { openMockHost } = await import(dist('xen/index.js'));
  let suspendMs = 0;
  const xen = openMockHost(hostA);
  const suspend = async () => {
    const t = performance.now();
    await suspendDomain(xen, domid);
    suspendMs = performance.now() - t;
  };
  const r = await migrate(domid, '-', {
    channel,
    xen,
    live: true,
    callbacks: { suspend },
    ...(policy ? { policy } : {}),
  });
  const s = r.stats;
  process.stdout.write(
    JSON.stringify({
      ms: performance.now() - t0,
      bytes: s.bytes,
      rounds: s.rounds.map((x) => ({ kind: x.kind, pages: x.pages, ms: Math.round(x.ms * 10) / 10 })),
      suspendedMs: s.suspendedMs,
      suspendMs,
      totalMs: s.totalMs,
      downtimeMs: r.downtimeMs,
      timings: r.timings,
    }) + '\n',
  );
  process.exit(0);
}
if (mode === '--workload') {
  const { openMockHost } = await import(dist('xen/index.js'));
  const hv = openMockHost(process.argv[3]);
  const ac = new AbortController();
  process.on('SIGTERM', () => ac.abort());
  process.stdout.write('running\n');
  try {
    await hv.workload(Number(process.argv[4]), {
      rate: Number(process.argv[5]),
      signal: ac.signal,
      durationMs: 10 * 60_000,
    });
  } catch {
    /* aborted, or the domain went away (migrated) */
  }
  process.exit(0);
}

// ---- the benchmark
const size = Number(process.env.XENMIG_BENCH_BYTES ?? GiB);
preferShm(4 * size + 256 * MiB); // source, destination (twice, while one is torn down), baseline file
const dir = scratchDir('xenmig-migrate-bench-');
const hostA = join(dir, 'hostA');
const { openMockHost } = await import(dist('xen/index.js'));
// one mock host per process (the addon's current host): this process only ever opens host A; each
// run receives into a fresh host B directory, removed after the run
const hvA = openMockHost(hostA);
let runNo = 0;

function freshSource() {
  const domid = createFilledHvm(hvA, size);
  hvA.unpause(domid);
  return domid;
}
function runMigration(domid, policy) {
  const hostB = join(dir, `hostB-${++runNo}`);
  try {
    const t = timeShell(
      `exec ${nodeCmd(self, '--sender', hostA, String(domid), hostB, ...(policy ? [JSON.stringify(policy)] : []))}`,
    );
    const line = t.stdout.trim().split('\n').pop();
    return { ...t, ...JSON.parse(line) };
  } finally {
    rmSync(hostB, { recursive: true, force: true });
  }
}

const baseFile = join(dir, 'baseline.bin');
writeBaselineFile(baseFile, size + 8 * MiB);
console.log(
  `migration of a ${(size / MiB).toFixed(0)} MiB HVM mock domain (all pages written) over a pipe; ${RUNS} run(s); ${machineLoad()}`,
);

// idle
const idle = [];
for (let r = 0; r < RUNS; r++) {
  const domid = freshSource();
  // the same number of bytes as the stream (known after the first run; the stream size is stable)
  const n = idle[0]?.bytes ?? size + 4 * MiB;
  const b = timeShell(`head -c ${n} ${q(baseFile)} | cat > /dev/null`);
  const hostC = join(dir, `hostC-${r}`);
  const cl = q(cloopBinary());
  let c;
  try {
    c = timeShell(`${cl} send ${q(hostA)} ${domid} | ${cl} recv ${q(hostC)} ${size / 4096}`);
  } finally {
    rmSync(hostC, { recursive: true, force: true });
  }
  const m = runMigration(domid);
  idle.push({
    ...m,
    ratio: m.bytes / m.seconds / (n / b.seconds),
    baseRate: n / b.seconds,
    cSeconds: c.seconds,
    cRss: c.maxRssBytes,
  });
}
{
  const ratio = median(idle.map((x) => x.ratio));
  const rate = median(idle.map((x) => x.bytes / x.seconds));
  const rss = Math.max(...idle.map((x) => x.maxRssBytes));
  console.log(
    `idle live migration: ${fmtRate(rate)} = ${ratio.toFixed(2)}x baseline (head -c N | cat, median ${fmtRate(median(idle.map((x) => x.baseRate)))}; ratios ${idle
      .map((x) => x.ratio.toFixed(2))
      .join(
        ', ',
      )}), wall ${median(idle.map((x) => x.seconds)).toFixed(2)} s, CPU ${median(idle.map((x) => x.cpuSeconds)).toFixed(1)} s (both processes), rounds ${idle[0].rounds.length}, ` +
      `downtime (suspend -> RECEIVED) median ${median(idle.map((x) => x.timings.receivedMs)).toFixed(1)} ms, peak RSS ${(rss / MiB).toFixed(0)} MiB (sender tree), goal >= 0.6x${ratio >= 0.6 ? ' [goal met]' : ' [BELOW GOAL]'}; ` +
      `engine/C-loop ${median(idle.map((x) => x.seconds / x.cSeconds)).toFixed(2)}x (runs ${idle.map((x) => (x.seconds / x.cSeconds).toFixed(2)).join(', ')}; ` +
      `C loop median ${median(idle.map((x) => x.cSeconds)).toFixed(2)} s, peak RSS ${(Math.max(...idle.map((x) => x.cRss)) / MiB).toFixed(0)} MiB; goal <= 1.25x)`,
  );
}

// dirtying 1,000 pages/s
const RATE = Number(process.env.XENMIG_BENCH_DIRTY_RATE ?? 1000);
async function dirtying(label, policy) {
  const busy = [];
  for (let r = 0; r < RUNS; r++) {
    const domid = freshSource();
    const w = spawn(process.execPath, [self, '--workload', hostA, String(domid), String(RATE)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise((res) => w.stdout.once('data', res));
    await new Promise((res) => setTimeout(res, 500)); // let it dirty for a while before we start
    let m;
    try {
      m = runMigration(domid, policy);
    } finally {
      w.kill('SIGTERM');
      await new Promise((res) => (w.exitCode !== null ? res() : w.once('exit', res)));
    }
    busy.push(m);
  }
  {
    const dt = busy.map((x) => x.timings.receivedMs);
    console.log(`live migration while dirtying ${RATE} pages/s, ${label}:`);
    for (const [i, x] of busy.entries()) {
      console.log(
        `  run ${i + 1}: ${x.rounds.length} rounds (${x.rounds.map((r) => `${r.kind[0]}${r.pages}`).join(' ')}), total ${x.seconds.toFixed(2)} s wall / ${(x.totalMs / 1000).toFixed(2)} s engine, ` +
          `downtime ${x.timings.receivedMs.toFixed(1)} ms (suspend call ${x.suspendMs.toFixed(1)} ms, final round ${x.rounds.at(-1).ms} ms, libxc stream end ${x.suspendedMs.toFixed(1)} ms, ` +
          `whole stream written ${x.timings.streamEndMs.toFixed(1)} ms, RECEIVED ${x.timings.receivedMs.toFixed(1)} ms; handshake returned ${x.timings.handshakeDoneMs.toFixed(1)} ms), ` +
          `CPU ${x.cpuSeconds.toFixed(1)} s, peak RSS ${(x.maxRssBytes / MiB).toFixed(0)} MiB`,
      );
    }
    const med = median(dt);
    console.log(
      `dirtying (${label}): median downtime (suspend -> destination has the complete state) ${med.toFixed(1)} ms (max ${percentile(dt, 100).toFixed(1)}), median rounds ${median(busy.map((x) => x.rounds.length))}, median total ${median(busy.map((x) => x.seconds)).toFixed(2)} s, goal < 30 ms${med < 30 ? ' [goal met]' : ' [BELOW GOAL]'}`,
    );
  }
}
await dirtying('libxc default precopy policy (< 50 dirty pages or 5 live rounds)');
await dirtying('xenmig downtime target 20 ms (policy { downtimeMs: 20, maxIterations: 30 })', {
  downtimeMs: 20,
  maxIterations: 30,
});
for (const d of hvA.listDomainIds()) hvA.destroyDomain(d);
hvA.close();
