// The real-Xen benchmark (RIG_MODE=bench, `npm run bench:realxen`), run by node inside dom0 instead of
// the scenario: in one boot, the same live migration of the same PVH guest with xl at both ends,
// xenmig at both ends and each mixed pair, rounds interleaved; then Remus with xl and with xenmig at
// the same interval. Every process is the real CLI, connected through two FIFOs (as ssh would connect
// them), timed by busybox `time`. The guest-visible pause is measured from outside the guest: the guest
// (g-bench) prints a tick every 20 ms; a poller records when each tick reaches xenconsoled's log and
// when each of its UDP datagrams reaches dom0; the pause is the largest gap less one tick interval.
// One JSON line per run in OUT/bench.jsonl; bench-report.mjs turns them into the table.
// Usage: node bench.mjs OUTDIR   Env: BENCH_ROUNDS (3), BENCH_REMUS_ROUNDS (2), BENCH_REMUS_SECONDS (30),
// BENCH_REMUS_INTERVAL_MS (1000), BENCH_PROFILE (0), BENCH_ONLY (what to run, e.g. xenmig>xenmig,remus:xenmig;
// startup: the start-up probes; save:xl,save:xenmig[:NODEFLAG]: the sender alone, a save to /dev/null,
// opt-in; walk: the page walk's hypercalls alone, opt-in)
import {
  appendFileSync,
  mkdirSync,
  existsSync,
  openSync,
  readSync,
  closeSync,
  fstatSync,
  readdirSync,
  readFileSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { spawn } from 'node:child_process';
import { openHypervisor } from '../../dist/xen/index.js';
import { createSocket } from 'node:dgram';
import {
  xl,
  domidOf,
  xlList,
  sleep,
  uptime,
  errInfo,
  CONSOLE_DIR,
  UDP_PORT,
  run,
  DISK_DIR,
  diskCounter,
  diskMatchesMemory,
  serveNbdDisk,
} from './helpers.mjs';

const OUT = process.argv[2] ?? '/out';
const NAME = 'g-bench';
const TICK_MS = 20;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const REMUS_ROUNDS = Number(process.env.BENCH_REMUS_ROUNDS ?? 2);
const REMUS_SECONDS = Number(process.env.BENCH_REMUS_SECONDS ?? 30);
const REMUS_INTERVAL_MS = Number(process.env.BENCH_REMUS_INTERVAL_MS ?? 1000);
// BENCH_PROFILE=1: every xenmig process writes a V8 CPU profile into OUT/prof (copied out with the results)
const XENMIG =
  process.env.BENCH_PROFILE === '1'
    ? `node --cpu-prof --cpu-prof-dir=${OUT}/prof /opt/xenmig/dist/cli/main.js`
    : 'node /opt/xenmig/dist/cli/main.js';
const log = (s) => console.log(`RIG BENCH ${s} t=${uptime()}`);
const record = (r) => {
  appendFileSync(`${OUT}/bench.jsonl`, JSON.stringify(r) + '\n');
  console.log(`RIG BENCHJSON ${JSON.stringify(r)}`);
};

// ---- arrivals of the guest's ticks, seen from dom0 ------------------------------------------------
/** Console: every 10 ms, the new bytes of the guest's console logs (any name starting with g-bench:
 * the incoming copy has a temporary name); UDP: every datagram. Each arrival is [ms, counter]. */
class Arrivals {
  constructor() {
    this.console = [];
    this.udp = [];
    this.off = new Map();
    this.partial = new Map();
  }
  async start() {
    this.sock = createSocket('udp4');
    this.sock.on('message', (m) => {
      const g = /XENMIG_UDP bench (\d+)/.exec(m.toString('latin1'));
      if (g) this.udp.push([performance.now(), Number(g[1])]);
    });
    await new Promise((res, rej) => {
      this.sock.once('error', rej);
      this.sock.bind(UDP_PORT, '0.0.0.0', res);
    });
    this.timer = setInterval(() => this.poll(), 10);
  }
  poll() {
    if (!existsSync(CONSOLE_DIR)) return;
    const now = performance.now();
    for (const f of readdirSync(CONSOLE_DIR)) {
      if (!f.startsWith(`guest-${NAME}`)) continue;
      const path = `${CONSOLE_DIR}/${f}`;
      let fd;
      try {
        fd = openSync(path, 'r');
        const size = fstatSync(fd).size;
        const off = this.off.get(path) ?? 0;
        if (size <= off) continue;
        const buf = Buffer.alloc(size - off);
        readSync(fd, buf, 0, buf.length, off);
        this.off.set(path, size);
        const text = (this.partial.get(path) ?? '') + buf.toString('latin1');
        const lines = text.split('\n');
        this.partial.set(path, lines.pop());
        for (const l of lines) {
          const m = /GUEST_TICK (\d+)/.exec(l);
          if (m) this.console.push([now, Number(m[1])]);
        }
      } catch {
        // a log that went away between readdir and open
      } finally {
        if (fd !== undefined) closeSync(fd);
      }
    }
  }
  last(kind) {
    const a = this[kind];
    return a.length ? a[a.length - 1][1] : 0;
  }
  /** Largest gap between consecutive arrivals (of new, higher counters) within [t0, t1], less one tick. */
  maxPause(kind, t0, t1) {
    let prev = null;
    let best = 0;
    let hi = 0;
    for (const [t, n] of this[kind]) {
      if (n <= hi) continue; // a repeated counter (a replica resuming from a checkpoint) is no progress
      hi = n;
      if (t < t0 || t > t1) {
        if (t < t0) prev = t;
        continue;
      }
      if (prev !== null) best = Math.max(best, t - prev);
      prev = t;
    }
    return Math.max(0, best - TICK_MS);
  }
  /** Gaps between consecutive arrivals within [t0, t1], less one tick, for gaps above 1.5 ticks. */
  pauses(kind, t0, t1) {
    const out = [];
    let prev = null;
    for (const [t] of this[kind]) {
      if (t < t0 || t > t1) continue;
      if (prev !== null && t - prev > 1.5 * TICK_MS) out.push(t - prev - TICK_MS);
      prev = t;
    }
    return out;
  }
}

/** The lines of `text` that parse as JSON (a CLI's --json output among its log lines). */
function jsonLines(text) {
  return text.split('\n').flatMap((l) => {
    try {
      return [JSON.parse(l)];
    } catch {
      return [];
    }
  });
}

const median = (a) => {
  if (!a.length) return null;
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function waitArrival(arr, kind, above, timeoutMs) {
  const t0 = Date.now();
  while (arr.last(kind) <= above) {
    if (Date.now() - t0 > timeoutMs)
      throw new Error(`no ${kind} tick above ${above} within ${timeoutMs} ms (last ${arr.last(kind)})`);
    await sleep(50);
  }
}

const readTime = (f) => {
  // busybox time -f '%e %U %S %M': elapsed, user and system seconds, peak resident size. Debian 12's
  // busybox prints ru_maxrss (KiB) multiplied by 4 (it takes it for pages): measured against node's own
  // process.resourceUsage().maxRSS (40084 KiB vs 160864 for `node -e 1`), hence the division.
  const m = existsSync(f) ? /([\d.]+) ([\d.]+) ([\d.]+) (\d+)/.exec(readFileSync(f, 'utf8')) : null;
  return m
    ? {
        wallS: Number(m[1]),
        cpuS: Number((Number(m[2]) + Number(m[3])).toFixed(2)),
        userS: Number(m[2]),
        sysS: Number(m[3]),
        peakMiB: Math.round(Number(m[4]) / 4 / 1024),
      }
    : null;
};

/** Every process a run starts, killed when the run fails (a stuck replicator would hold the guest). */
const live = new Set();
function track(p) {
  live.add(p);
  p.on('close', () => live.delete(p));
  return p;
}
function killAll() {
  for (const p of live) p.kill('SIGKILL');
  live.clear();
}

/** While a run lasts: every 120 s what dom0 is doing on the serial console (to diagnose a run that
 * does not end); after limitMs the run's processes are killed (the run then fails). */
function watchdog(what, limitMs = 1_200_000) {
  const t0 = Date.now();
  const tail = (f) =>
    existsSync(f) ? readFileSync(f, 'utf8').trim().split('\n').slice(-3).join(' | ') : '-';
  const timer = setInterval(async () => {
    const ps = await run(['ps', '-o', 'pid,time,args'], { timeoutMs: 20_000 });
    const l = await xlList().catch(() => []);
    console.log(
      `RIG BENCH WAIT ${what} ${Math.round((Date.now() - t0) / 1000)} s; xl list: ${l.map((r) => `${r.name}:${r.domid}:${r.state}`).join(' ')}`,
    );
    console.log(
      `RIG BENCH WAIT ps: ${ps.out
        .split('\n')
        .filter((x) => /node|xl|sh -c|hotplug|block|vif|losetup/.test(x))
        .join(' ;; ')
        .slice(0, 1500)}`,
    );
    console.log(
      `RIG BENCH WAIT logs: tx ${tail('/tmp/b-tx.log')} rx ${tail('/tmp/b-rx.log')} pr ${tail('/tmp/b-pr.log')} bk ${tail('/tmp/b-bk.log')}`,
    );
    if (Date.now() - t0 > limitMs) {
      console.log(`RIG BENCH WAIT ${what}: over ${limitMs / 1000} s, killing its processes`);
      killAll();
    }
  }, 120_000);
  return () => clearInterval(timer);
}

function sh(cmd, logFile) {
  const p = track(spawn('sh', ['-c', cmd], { stdio: ['ignore', 'ignore', 'ignore'] }));
  const exited = new Promise((res) => p.on('close', (code, sig) => res(code ?? (sig ? 128 : 0))));
  return { p, exited, logFile };
}

const T = (f) => `time -o ${f} -f '%e %U %S %M'`;

// ---- live migration -------------------------------------------------------------------------------
const RECEIVERS = {
  xl: 'xl migrate-receive',
  xenmig: `${XENMIG} receive --protocol xl --json -`,
};

/** One live migration of g-bench on this host, sender -> receiver ('xl' | 'xenmig'). */
async function migration(arr, sender, receiver, round) {
  const src = await domidOf(NAME);
  if (src === null) throw new Error(`${NAME} does not exist`);
  for (const f of [
    '/tmp/b-tx.time',
    '/tmp/b-rx.time',
    '/tmp/b-tx.log',
    '/tmp/b-rx.log',
    '/tmp/b-stats.json',
    '/tmp/b-a',
    '/tmp/b-b',
  ])
    if (existsSync(f)) unlinkSync(f);
  const tick0 = arr.last('console');
  const udp0 = arr.last('udp');
  const t0 = performance.now();
  let rc;
  if (sender === 'xl') {
    // xl runs its transport as `sh -c RUNE`; with -s "" the RUNE is the host argument itself
    const rx = receiver === 'xl' ? RECEIVERS.xl : `${XENMIG} receive --protocol xl --json -`;
    const s = sh(
      `${T('/tmp/b-tx.time')} xl migrate -s '' ${NAME} "exec ${T('/tmp/b-rx.time')} ${rx} 2>>/tmp/b-rx.log" 2>>/tmp/b-tx.log`,
    );
    rc = { tx: await s.exited, rx: 0 };
  } else {
    // xenmig's CLI on its stdio, connected to the receiver through two FIFOs: /tmp/b-a carries the
    // sender's stream, /tmp/b-b the receiver's replies (opened in an order that cannot deadlock)
    await run(['mkfifo', '/tmp/b-a', '/tmp/b-b']);
    const rxCmd = receiver === 'xl' ? 'xl migrate-receive' : `${XENMIG} receive --json -`;
    const proto = receiver === 'xl' ? '--protocol xl ' : '';
    const r = sh(`exec ${T('/tmp/b-rx.time')} ${rxCmd} >/tmp/b-b </tmp/b-a 2>>/tmp/b-rx.log`);
    const s = sh(
      `exec ${T('/tmp/b-tx.time')} ${XENMIG} migrate ${proto}--stats-file /tmp/b-stats.json ${src} - </tmp/b-b >/tmp/b-a 2>>/tmp/b-tx.log`,
    );
    rc = { tx: await s.exited, rx: await r.exited };
  }
  const t1 = performance.now();
  const txLog = existsSync('/tmp/b-tx.log') ? readFileSync('/tmp/b-tx.log', 'utf8') : '';
  const rxLog = existsSync('/tmp/b-rx.log') ? readFileSync('/tmp/b-rx.log', 'utf8') : '';
  writeFileSync(
    `${OUT}/bench-${sender}-${receiver}-${round}.log`,
    `== sender\n${txLog}\n== receiver\n${rxLog}\n`,
  );
  if (rc.tx !== 0 || rc.rx !== 0)
    throw new Error(
      `rc sender ${rc.tx} receiver ${rc.rx}: ${txLog.trim().slice(-300)} | ${rxLog.trim().slice(-300)}`,
    );
  // the guest runs at the destination: its console and its network continue
  await waitArrival(arr, 'console', tick0, 120_000);
  await waitArrival(arr, 'udp', Math.max(udp0, arr.last('console') - 1), 120_000);
  await sleep(1000);
  const dst = await domidOf(NAME);
  if (dst === null || dst === src)
    throw new Error(`after the migration ${NAME} is domid ${dst} (source ${src})`);
  const tx = readTime('/tmp/b-tx.time');
  const rx = readTime('/tmp/b-rx.time');
  let xenmigStats;
  try {
    xenmigStats = JSON.parse(readFileSync('/tmp/b-stats.json', 'utf8'));
  } catch {}
  return {
    kind: 'migrate',
    sender,
    receiver,
    round,
    src,
    dst,
    wallMs: Math.round(t1 - t0),
    // xl runs its receiver as its own child (the transport rune), and time(1) counts waited-for
    // children: the sender's own CPU is then its total less the receiver's
    senderWallS: tx?.wallS,
    senderCpuS: tx && sender === 'xl' && rx ? Number((tx.cpuS - rx.cpuS).toFixed(2)) : tx?.cpuS,
    senderPeakMiB: tx?.peakMiB,
    receiverWallS: rx?.wallS,
    receiverCpuS: rx?.cpuS,
    receiverPeakMiB: rx?.peakMiB,
    // user / system split (an xl sender's includes its receiver child's)
    senderUserS: tx?.userS,
    senderSysS: tx?.sysS,
    receiverUserS: rx?.userS,
    receiverSysS: rx?.sysS,
    pauseConsoleMs: Math.round(arr.maxPause('console', t0, performance.now())),
    pauseUdpMs: Math.round(arr.maxPause('udp', t0, performance.now())),
    xenmigDowntimeMs: xenmigStats?.downtime,
    xenmigTotalMs: xenmigStats?.['total-time'],
    xenmigSetupMs: xenmigStats?.['setup-time'],
    // per round: kind, pages sent, ms (where the sender's time went)
    xenmigRounds: xenmigStats?.xenmig?.rounds?.map((x) => [x.kind, x.pages, Math.round(x.ms)]),
  };
}

// ---- start-up and the sender alone ----------------------------------------------------------------
/** How long a process takes to start in this dom0 (TCG): node itself, and the xenmig CLI. */
async function startupProbes() {
  const probes = [
    ['node -e 0', 'node -e 0'],
    ['xenmig --version', `${XENMIG} --version`],
    ['xenmig save --help', `${XENMIG} save --help`],
    ['xl info', 'xl info'],
  ];
  for (const [name, cmd] of probes)
    for (let i = 1; i <= 3; i++) {
      if (existsSync('/tmp/b-p.time')) unlinkSync('/tmp/b-p.time');
      const rc = await sh(`${T('/tmp/b-p.time')} ${cmd} >/dev/null 2>&1`).exited;
      record({ kind: 'startup', name, i, rc, ...readTime('/tmp/b-p.time') });
    }
}

/**
 * The hypervisor calls of a save's page walk alone, from this node process through the addon: the
 * page types of every gfn in batches of 1024 (as libxc and xenmig ask), then one mapping and unmapping
 * of each batch's data pages. Tells the hypercalls' cost apart from the engine's around them.
 */
async function walkProbe() {
  const dom = await domidOf(NAME);
  const xen = openHypervisor({ flavour: 'system' });
  try {
    const size = xen.maxGpfn(dom) + 1;
    const ru0 = process.resourceUsage();
    const t0 = performance.now();
    let data = 0;
    let typesMs = 0;
    let mapMs = 0;
    // filled and read through 32-bit halves (little-endian dom0): no BigInt per gfn
    const frames = new BigUint64Array(1024);
    const w = new Uint32Array(frames.buffer);
    const want = new BigUint64Array(1024);
    const ww = new Uint32Array(want.buffer);
    for (let p = 0; p < size; p += 1024) {
      const n = Math.min(1024, size - p);
      const q = frames.subarray(0, n);
      for (let i = 0; i < n; i++) {
        w[2 * i] = p + i;
        w[2 * i + 1] = 0;
      }
      const a = performance.now();
      xen.pfnTypes(dom, q);
      const b = performance.now();
      typesMs += b - a;
      let k = 0;
      for (let i = 0; i < n; i++)
        // XEN_DOMCTL_PFINFO_* type: bits 31-28 of the word's low half; 0xf: XTAB (a hole)
        if (w[2 * i] >>> 28 !== 0xf) {
          ww[2 * k] = p + i;
          ww[2 * k++ + 1] = 0;
        }
      if (k) {
        const m = xen.map(dom, want.slice(0, k), 'r');
        m.unmap();
        data += k;
      }
      mapMs += performance.now() - b;
    }
    const ru1 = process.resourceUsage();
    // one call's cost by its size: xencall keeps 1-page hypercall buffers for reuse, anything larger
    // is mapped and unmapped per call (512 entries are one page, 1024 two)
    const perCall = {};
    for (const n of [1, 512, 1024]) {
      const q = frames.subarray(0, n);
      const a = performance.now();
      for (let k = 0; k < 200; k++) {
        for (let i = 0; i < n; i++) {
          w[2 * i] = i;
          w[2 * i + 1] = 0;
        }
        xen.pfnTypes(dom, q);
      }
      perCall[`pfnTypes${n}Ms`] = Number(((performance.now() - a) / 200).toFixed(3));
    }
    {
      const a = performance.now();
      for (let k = 0; k < 200; k++) xen.domainInfo(dom);
      perCall.domainInfoMs = Number(((performance.now() - a) / 200).toFixed(3));
    }
    record({
      kind: 'walk',
      ...perCall,
      gfns: size,
      dataPages: data,
      ms: Math.round(performance.now() - t0),
      typesMs: Math.round(typesMs),
      mapMs: Math.round(mapMs),
      userS: (ru1.userCPUTime - ru0.userCPUTime) / 1e6,
      sysS: (ru1.systemCPUTime - ru0.systemCPUTime) / 1e6,
    });
  } finally {
    xen.close?.();
  }
}

/**
 * The sender alone, with no receiver to wait for: a non-live save of g-bench to /dev/null that leaves
 * the guest running, `xl save -c` against `xenmig save --keep-running`, each several times interleaved;
 * xenmig with XENMIG_TRACE_PHASES=1 (its page walk's time per phase, in the JSON line).
 */
async function saveRun(arr, tool, round) {
  const dom = await domidOf(NAME);
  if (dom === null) throw new Error(`${NAME} does not exist`);
  for (const f of ['/tmp/b-s.time', '/tmp/b-s.log', '/tmp/b-s.json']) if (existsSync(f)) unlinkSync(f);
  const tick0 = arr.last('console');
  const t0 = performance.now();
  // 'xenmig:FLAG' runs the CLI under `node FLAG` (an A/B of node's own options in this dom0)
  const flag = tool.startsWith('xenmig:') ? tool.slice('xenmig:'.length) : '';
  const cli = flag ? XENMIG.replace(/^node /, `node ${flag} `) : XENMIG;
  const cmd =
    tool === 'xl'
      ? `xl save -c ${NAME} /dev/null`
      : `env XENMIG_TRACE_PHASES=1 ${cli} save --keep-running --json ${dom} /dev/null >/tmp/b-s.json`;
  const rc = await sh(`${T('/tmp/b-s.time')} ${cmd} 2>>/tmp/b-s.log`).exited;
  const t1 = performance.now();
  const errLog = existsSync('/tmp/b-s.log') ? readFileSync('/tmp/b-s.log', 'utf8') : '';
  if (rc !== 0) throw new Error(`${tool} save rc ${rc}: ${errLog.trim().slice(-400)}`);
  await waitArrival(arr, 'console', tick0, 120_000);
  let q;
  try {
    q = JSON.parse(readFileSync('/tmp/b-s.json', 'utf8'));
  } catch {}
  return {
    kind: 'save',
    tool,
    round,
    wallMs: Math.round(t1 - t0),
    ...readTime('/tmp/b-s.time'),
    pauseConsoleMs: Math.round(arr.maxPause('console', t0, performance.now())),
    xenmigTotalMs: q?.['total-time'],
    xenmigRounds: q?.xenmig?.rounds?.map((x) => [x.kind, x.pages, Math.round(x.ms)]),
    phases: q?.xenmig?.phases,
  };
}

// ---- Remus ----------------------------------------------------------------------------------------
/** A xenmig Remus pair on this host: `remus-receive` on a TCP port of 127.0.0.1 (waits until it
 * listens), then `remus --json` towards it, network output buffered or not (--no-net-buffer); both
 * --no-disk-replication (one host, one image), or with `disk` ({ctl, backup}) the vbd replicated
 * (`--disk xvda=CTL` → `--disk-map xvda=BACKUP`, the replica left paused at failover). Their stdout
 * so far: backupOut(), primaryOut(). */
async function startXenmigRemus(src, buffered, disk = null) {
  let backupOut = '';
  const bk = track(
    spawn(
      'sh',
      [
        '-c',
        `exec ${XENMIG} remus-receive --listen 127.0.0.1:0 --insecure --json --failover-timeout-ms 30000${disk ? ` --paused --disk-map xvda=${disk.backup}` : ''} 2>>/tmp/b-bk.log`,
      ],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    ),
  );
  bk.stdout.setEncoding('utf8');
  bk.stdout.on('data', (d) => (backupOut += d));
  let port = null;
  const tb = Date.now();
  while (port === null) {
    const m = /"listening":(\d+)/.exec(backupOut);
    if (m) port = Number(m[1]);
    else if (Date.now() - tb > 300_000 || bk.exitCode !== null)
      throw new Error(`remus-receive did not listen: ${readFileSync('/tmp/b-bk.log', 'utf8').slice(-300)}`);
    else await sleep(100);
  }
  const nb = buffered ? '' : ' --no-net-buffer';
  let primaryOut = '';
  const p = track(
    spawn(
      'sh',
      [
        '-c',
        `exec ${XENMIG} remus --json${nb} ${disk ? `--disk xvda=${disk.ctl}` : '--no-disk-replication'} -i ${REMUS_INTERVAL_MS} --insecure ${src} tcp://127.0.0.1:${port} 2>/tmp/b-pr.log`,
      ],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    ),
  );
  p.stdout.setEncoding('utf8');
  p.stdout.on('data', (d) => (primaryOut += d));
  return { bk, p, backupOut: () => backupOut, primaryOut: () => primaryOut };
}

/** Replicate g-bench for REMUS_SECONDS, then fail the primary over to the backup (as the scenario's
 * Remus steps do). tool: 'xl' (xl remus -F -n -d, as Debian's xl allows) | 'xenmig' (--no-net-buffer,
 * the same unsafe mode) | 'xenmig-buffered' (network output held until the backup ACKs). */
async function remusRun(arr, tool, round) {
  const src = await domidOf(NAME);
  for (const f of ['/tmp/b-bk.log', '/tmp/b-pr.log', '/tmp/b-pr.out']) if (existsSync(f)) unlinkSync(f);
  let p;
  let bk;
  let primaryOut = () => '';
  // the xenmig primary's --json lines (one per acknowledged checkpoint)
  const json = () => jsonLines(primaryOut());
  if (tool === 'xl') {
    p = track(
      spawn(
        'sh',
        [
          '-c',
          `exec xl remus -F -n -d -i ${REMUS_INTERVAL_MS} -s '' ${NAME} "exec xl migrate-receive -r 2>>/tmp/b-bk.log" >/tmp/b-pr.log 2>&1`,
        ],
        { stdio: 'ignore' },
      ),
    );
  } else {
    const r = await startXenmigRemus(src, tool === 'xenmig-buffered');
    p = r.p;
    bk = r.bk;
    primaryOut = r.primaryOut;
  }
  // the first checkpoint is the whole guest: measure from 5 s after it to the end of the window
  const ts = Date.now();
  const applied = () =>
    tool === 'xl'
      ? existsSync('/tmp/b-bk.log')
        ? (readFileSync('/tmp/b-bk.log', 'utf8').match(/All records processed/g) ?? []).length
        : 0
      : json().filter((j) => j.checkpoint).length;
  while (applied() < 2) {
    if (p.exitCode !== null)
      throw new Error(
        `${tool} remus exited (${p.exitCode}): ${readFileSync('/tmp/b-pr.log', 'utf8').slice(-300)} | ${existsSync('/tmp/b-bk.log') ? readFileSync('/tmp/b-bk.log', 'utf8').slice(-300) : ''}`,
      );
    if (Date.now() - ts > 600_000) throw new Error(`${tool} remus: ${applied()} checkpoints in 600 s`);
    await sleep(200);
  }
  await sleep(5000);
  const n0 = applied();
  const w0 = performance.now();
  await sleep(REMUS_SECONDS * 1000);
  const w1 = performance.now();
  const n1 = applied();
  const pauses = arr.pauses('console', w0, w1);
  const ckpts = json().filter((j) => j.checkpoint && j.pauseMs !== undefined && j.atMs !== undefined);
  const jsonPauses = ckpts.map((j) => j.pauseMs);
  // the guest's own share of each pause: suspend requested -> suspended (xenmig's is the rest)
  const jsonSuspends = ckpts.filter((j) => j.suspendMs !== undefined).map((j) => j.suspendMs);
  // the primary host fails: freeze the replicating process, take its guest away, kill the process;
  // the measurement above stands whether or not the backup then takes over (reported apart)
  p.kill('SIGSTOP');
  await xl(['destroy', String(src)]);
  p.kill('SIGKILL');
  const tick = arr.last('console');
  const tf = Date.now();
  let failover = 'ok';
  for (;;) {
    const d = await domidOf(NAME);
    if (d !== null && d !== src) break;
    if (Date.now() - tf > 180_000) {
      failover = `no ${NAME} within 180 s (${(await xlList()).map((r) => `${r.name}:${r.domid}:${r.state}`).join(' ')}); backup: ${readFileSync('/tmp/b-bk.log', 'utf8').slice(-200)}`;
      break;
    }
    await sleep(500);
  }
  if (failover === 'ok') await waitArrival(arr, 'console', Math.max(0, tick - 200), 120_000).catch(() => {});
  else await recover();
  writeFileSync(
    `${OUT}/bench-remus-${tool}-${round}.log`,
    `== primary\n${readFileSync('/tmp/b-pr.log', 'utf8')}\n== backup\n${existsSync('/tmp/b-bk.log') ? readFileSync('/tmp/b-bk.log', 'utf8') : ''}\n`,
  );
  bk?.kill('SIGKILL');
  return {
    kind: 'remus',
    tool,
    round,
    intervalMs: REMUS_INTERVAL_MS,
    windowS: REMUS_SECONDS,
    checkpointsPerS: Number(((n1 - n0) / ((w1 - w0) / 1000)).toFixed(2)),
    visiblePauses: pauses.length,
    pauseMedianMs: pauses.length ? Math.round(median(pauses)) : null,
    pauseMaxMs: pauses.length ? Math.round(Math.max(...pauses)) : null,
    ownPauseMedianMs: jsonPauses.length ? Number(median(jsonPauses).toFixed(1)) : null,
    suspendMedianMs: jsonSuspends.length ? Number(median(jsonSuspends).toFixed(1)) : null,
    failover,
  };
}

// ---- Remus output commit: the primary killed at random moments ---------------------------------------
/** The disk of the disk-replicated trials: g-bench booted afresh from g-bench-nbd.cfg, its vbd on
 * /dev/nbd0 served by `xenmig disk serve` (a replica runs on its backup image, a plain file, so each
 * such trial needs a new guest). */
let nbd = null;
async function benchOnNbd(arr) {
  for (const r of await xlList()) if (r.name.startsWith(NAME)) await xl(['destroy', String(r.domid)]);
  await nbd?.close();
  nbd = null;
  nbd = await serveNbdDisk({
    image: `${DISK_DIR}/${NAME}-nbd.img`,
    dev: '/dev/nbd0',
    log: '/tmp/b-disk.log',
  });
  const backup = `${DISK_DIR}/${NAME}-backup.img`;
  writeFileSync(backup, Buffer.alloc(4 << 20));
  const mark = arr.console.length;
  const c = await xl(['create', `/etc/xen/${NAME}-nbd.cfg`], { timeoutMs: 120_000 });
  if (c.rc !== 0) throw new Error(`xl create ${NAME}-nbd.cfg: ${c.err.slice(-300)}`);
  const t0 = Date.now();
  while (arr.console.length < mark + 20 || diskCounter('bench', nbd.image) === 0) {
    if (Date.now() - t0 > 300_000)
      throw new Error(
        `${NAME} on /dev/nbd0: ${arr.console.length - mark} ticks, disk ${diskCounter('bench', nbd.image)}`,
      );
    await sleep(200);
  }
  return { ctl: nbd.ctl, backup, image: nbd.image };
}

/** One trial: replicate g-bench with xenmig (network output buffered, or not; with `withDisk` its vbd
 * replicated too, on a fresh guest), kill the primary host at a random moment 2-12 s after the first
 * acknowledged checkpoint, let the backup fail over, then compare the highest counter that reached dom0
 * over UDP during the trial (what the outside world saw) with the counter the replica resumed from: the
 * first tick the replica prints on its console, less one (the console is a ring, nothing is lost
 * there; the replica's own log starts with it). Output commit holds when the replica's counter is >=
 * the highest counter the outside saw. With the disk, the replica stays paused at failover and its disk
 * (the backup image) is read first: it must hold the record of the same checkpoint as the memory. */
async function killTrial(arr, buffered, trial, withDisk = false) {
  const disk = withDisk ? await benchOnNbd(arr) : null;
  const src = await domidOf(NAME);
  const udp0 = arr.udp.length;
  for (const f of ['/tmp/b-bk.log', '/tmp/b-pr.log']) if (existsSync(f)) unlinkSync(f);
  const { bk, p, backupOut, primaryOut } = await startXenmigRemus(src, buffered, disk);
  const t0 = Date.now();
  while (!/"checkpoint":\d+/.test(primaryOut())) {
    if (p.exitCode !== null)
      throw new Error(`remus exited (${p.exitCode}): ${readFileSync('/tmp/b-pr.log', 'utf8').slice(-300)}`);
    if (Date.now() - t0 > 600_000) throw new Error('no acknowledged checkpoint in 600 s');
    await sleep(100);
  }
  const waitMs = 2000 + Math.floor(Math.random() * 10_000);
  await sleep(waitMs);
  // the primary's own per-checkpoint figures (--json: one line per acknowledged checkpoint)
  const stats = jsonLines(primaryOut()).filter((j) => j.checkpoint);
  const acked = Math.max(...stats.map((j) => j.checkpoint));
  // the primary host fails: the replicating process freezes, its guest goes, the process dies
  p.kill('SIGSTOP');
  await xl(['destroy', String(src)]);
  // what the dead guest had printed drains from its console ring into its log: wait, then count
  // arrivals from here on only (the replica's log may have the name the primary's had)
  await sleep(1500);
  const seen = arr.udp.slice(udp0).reduce((m, [, n]) => Math.max(m, n), 0);
  const mark = arr.console.length;
  p.kill('SIGKILL');
  const tf = Date.now();
  let b = null;
  while (!b) {
    const line = backupOut()
      .split('\n')
      .find((l) => l.includes('"result"'));
    if (line) b = JSON.parse(line);
    else if (Date.now() - tf > 180_000)
      throw new Error(
        `the backup reported nothing within 180 s: ${readFileSync('/tmp/b-bk.log', 'utf8').slice(-300)}`,
      );
    else await sleep(200);
  }
  if (b.result !== 'failover' || b.guest !== (disk ? 'paused' : 'running'))
    throw new Error(`backup: ${JSON.stringify(b)}`);
  let diskAtFailover;
  if (disk) {
    diskAtFailover = diskCounter('bench', disk.backup);
    // as the backup itself would unpause it (a replica left in its suspended state is resumed first)
    const xen = openHypervisor({ flavour: 'system' });
    try {
      if (xen.domainInfo(b.domid).shutdown) xen.resume(b.domid, false);
      xen.unpause(b.domid);
    } finally {
      xen.close();
    }
  }
  const first = () => arr.console[mark]?.[1];
  const tw = Date.now();
  while (first() === undefined) {
    if (Date.now() - tw > 120_000) throw new Error('the replica printed no tick within 120 s');
    await sleep(100);
  }
  const replica = first() - 1;
  bk.kill('SIGKILL');
  writeFileSync(
    `${OUT}/trial-${buffered ? 'buffered' : 'unbuffered'}${disk ? '-disk' : ''}-${trial}.log`,
    `== primary\n${readFileSync('/tmp/b-pr.log', 'utf8')}\n== backup\n${readFileSync('/tmp/b-bk.log', 'utf8')}\n`,
  );
  const pauses = stats.map((j) => j.pauseMs).filter((x) => typeof x === 'number');
  // g-bench-nbd.cfg: the guest writes every 5th counter to its disk
  const diskOk = disk ? diskMatchesMemory(diskAtFailover, replica, 5) : undefined;
  return {
    kind: 'trial',
    buffered,
    disk: !!disk,
    trial,
    killedAfterMs: waitMs,
    ackedBeforeKill: acked,
    failoverCheckpoint: b.checkpoint,
    seenOutside: seen,
    replicaCounter: replica,
    future: seen > replica ? seen - replica : 0,
    ...(disk ? { diskAtFailover, diskOk } : {}),
    ownPauseMedianMs: pauses.length ? Number(median(pauses).toFixed(2)) : null,
    ownPausesMs: pauses.map((x) => Number(x.toFixed(2))),
    diskBlocks: disk ? stats.map((j) => j.diskBlocks ?? 0) : undefined,
    ok: replica >= seen && diskOk !== false,
  };
}

/** After a failed run: nothing of it left running, and a ticking g-bench (a fresh one if it was lost). */
async function recover() {
  killAll();
  await sleep(2000);
  const d = await domidOf(NAME);
  let ok = false;
  if (d !== null) {
    const before = arr.last('console');
    await sleep(3000);
    ok = arr.last('console') > before;
  }
  for (const r of await xlList())
    if (r.name.startsWith(NAME) && (!ok || r.domid !== d)) await xl(['destroy', String(r.domid)]);
  if (ok) return 'kept';
  const c = await xl(['create', `/etc/xen/${NAME}.cfg`], { timeoutMs: 120_000 });
  if (c.rc !== 0) throw new Error(`re-creating ${NAME}: ${c.err}`);
  const t = arr.last('console');
  await waitArrival(arr, 'console', t + 20, 300_000).catch(() => {});
  return 'fresh';
}

/** The logs of a run that failed, kept with the results. */
function keepLogs(file) {
  const part = (f) => (existsSync(f) ? readFileSync(f, 'utf8').slice(-20_000) : '(none)');
  writeFileSync(
    `${OUT}/${file}`,
    `== primary / sender\n${part('/tmp/b-pr.log')}${part('/tmp/b-tx.log')}\n== backup / receiver\n${part('/tmp/b-bk.log')}${part('/tmp/b-rx.log')}\n`,
  );
}

// ---- the run --------------------------------------------------------------------------------------
const arr = new Arrivals();
await arr.start();
if (process.env.BENCH_PROFILE === '1') mkdirSync(`${OUT}/prof`, { recursive: true });
const facts = { rounds: ROUNDS, remusRounds: REMUS_ROUNDS, tickMs: TICK_MS };
{
  const r = await xl(['info']);
  const get = (k) => (r.out.match(new RegExp(`^${k}\\s*:\\s*(.*)$`, 'm')) ?? [])[1];
  facts.xen = `${get('xen_major')}.${get('xen_minor')}${get('xen_extra')}`;
  facts.node = process.versions.node;
  writeFileSync(`${OUT}/bench-facts.json`, JSON.stringify(facts));
}
log(`create ${NAME}`);
{
  // libxl runs the vbd and vif hotplug scripts under TCG: 2-10 s each unloaded, minutes on a loaded host
  const r = await xl(['create', `/etc/xen/${NAME}.cfg`], { timeoutMs: 400_000 });
  if (r.rc !== 0) throw new Error(`xl create ${NAME}: ${r.err}`);
  await waitArrival(arr, 'console', 20, 300_000);
  await waitArrival(arr, 'udp', 20, 120_000);
}
const ONLY = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',')) : null;
if (!ONLY || ONLY.has('startup')) {
  log('start-up probes');
  await startupProbes();
}
if (ONLY?.has('walk')) {
  log('walk probe');
  try {
    await walkProbe();
    await walkProbe();
  } catch (e) {
    record({ kind: 'walk', error: errInfo(e).slice(0, 600) });
  }
}
const SAVE_TOOLS = [...(ONLY ?? [])].filter((t) => t.startsWith('save:')).map((t) => t.slice(5));
for (let round = 1; round <= (SAVE_TOOLS.length ? ROUNDS : 0); round++)
  for (const tool of SAVE_TOOLS) {
    log(`save ${tool} round ${round}`);
    try {
      record(await saveRun(arr, tool, round));
    } catch (e) {
      record({ kind: 'save', tool, round, error: errInfo(e).slice(0, 600), guest: await recover() });
    }
  }
const PAIRS = [
  ['xl', 'xl'],
  ['xenmig', 'xenmig'],
  ['xenmig', 'xl'],
  ['xl', 'xenmig'],
].filter(([s, r]) => !ONLY || ONLY.has(`${s}>${r}`));
const REMUS_TOOLS = ['xl', 'xenmig', 'xenmig-buffered'].filter((t) => !ONLY || ONLY.has(`remus:${t}`));
for (let round = 1; round <= ROUNDS; round++) {
  for (const [s, r] of PAIRS) {
    log(`migrate ${s} -> ${r} round ${round}`);
    try {
      const stop = watchdog(`migrate ${s}->${r}`);
      try {
        record(await migration(arr, s, r, round));
      } finally {
        stop();
      }
    } catch (e) {
      keepLogs(`bench-${s}-${r}-${round}-failed.log`);
      record({
        kind: 'migrate',
        sender: s,
        receiver: r,
        round,
        error: errInfo(e).slice(0, 600),
        guest: await recover(),
      });
    }
  }
}
for (let round = 1; round <= REMUS_ROUNDS; round++) {
  for (const tool of REMUS_TOOLS) {
    log(`remus ${tool} round ${round}`);
    try {
      const stop = watchdog(`remus ${tool}`);
      try {
        record(await remusRun(arr, tool, round));
      } finally {
        stop();
      }
    } catch (e) {
      keepLogs(`bench-remus-${tool}-${round}-failed.log`);
      record({ kind: 'remus', tool, round, error: errInfo(e).slice(0, 600), guest: await recover() });
    }
  }
}
const TRIALS = Number(process.env.BENCH_TRIALS ?? 0);
const TRIALS_UNBUFFERED = Number(process.env.BENCH_TRIALS_UNBUFFERED ?? 0);
// BENCH_TRIALS_DISK: the first N buffered trials also replicate the vbd (a fresh guest on NBD each)
const TRIALS_DISK = Math.min(TRIALS, Number(process.env.BENCH_TRIALS_DISK ?? 0));
for (let i = 1; i <= TRIALS + TRIALS_UNBUFFERED; i++) {
  const buffered = i <= TRIALS;
  const disk = i <= TRIALS_DISK;
  log(`kill trial ${i} (${buffered ? 'buffered' : 'unbuffered'}${disk ? ', disk replicated' : ''})`);
  try {
    const stop = watchdog(`trial ${i}`);
    try {
      record(await killTrial(arr, buffered, i, disk));
    } finally {
      stop();
    }
  } catch (e) {
    keepLogs(`trial-${i}-failed.log`);
    record({
      kind: 'trial',
      buffered,
      disk,
      trial: i,
      error: errInfo(e).slice(0, 600),
      // a loaded host can time out re-creating the guest (run 20261203-174734): recorded, and the next
      // trial tries again, instead of ending the run
      guest: await recover().catch((r) => `not recovered: ${errInfo(r).slice(0, 300)}`),
    });
  }
}
console.log(`RIG SCENARIO_END t=${uptime()}`);
process.exit(0);
