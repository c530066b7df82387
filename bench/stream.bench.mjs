// Stream benchmark (issue 2): a >= 1 GiB PAGE_DATA-heavy HVM stream (an `xl save` image of a
// filled 1 GiB mock HVM domain), written once to a scratch file (/dev/shm when it has room), then,
// in the same run:
//   baseline   cat FILE | cat > /dev/null
//   verify     cat FILE | <verify> -         (xenmig verify - once the CLI has it; until then a node
//                                            script: validateStream(0, { blockingReads: true }))
//   encode     save of the same domain to /dev/null (the save engine + StreamWriter over fd 1); also
//              into a pipe drained by cat (/dev/null does not even read the pages)
//   transcode  StreamReader (lazy) over the file -> StreamWriter over fd 1 = /dev/null
// Goals: verify and encode >= 0.7x the baseline; peak RSS < 150 MiB regardless of the size.
// The encode figures have a second baseline: the C loop (bench/cloop.c send) moving the same pages
// through the same mock mappings to the same sink, timed right after the engine; engine/C-loop is
// the median of the per-run time ratios (goal <= 1.25x).
// Each figure is the median of XENMIG_BENCH_RUNS (default 3) runs; each run of a figure is paired
// with a baseline measured right before it, and the ratio is the median of the per-pair ratios.
//
//   node bench/stream.bench.mjs                    the benchmark (npm run bench builds dist/ first)
//   XENMIG_BENCH_BYTES=...                         domain size (default 1 GiB)
//   node bench/stream.bench.mjs --verify           child: validate stdin (fd 0), blocking reads
//   node bench/stream.bench.mjs --encode HOST DOMID  child: save DOMID of mock HOST to stdout
//   node bench/stream.bench.mjs --transcode FILE   child: re-encode FILE to stdout
import { existsSync, openSync, closeSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import {
  GiB,
  MiB,
  RUNS,
  scratchDir,
  timeShell,
  catPipeBaseline,
  fmtRate,
  median,
  nodeCmd,
  q,
  preferShm,
  machineLoad,
  createFilledHvm,
  cloopBinary,
} from './lib.mjs';

const self = fileURLToPath(import.meta.url);
const dist = (p) => new URL(`../dist/${p}`, import.meta.url).href;

const mode = process.argv[2];
if (mode === '--verify') {
  const { validateStream } = await import(dist('stream/index.js'));
  const r = await validateStream(0, { blockingReads: true });
  process.stderr.write(`verified ${r.summary.bytes} bytes, ended by ${r.summary.endedBy}\n`);
  process.exit(0);
}
if (mode === '--encode') {
  const { save } = await import(dist('api.js'));
  await save(Number(process.argv[4]), 1, { flavour: 'mock', host: process.argv[3], keepRunning: true });
  process.exit(0);
}
if (mode === '--transcode') {
  const { StreamReader, StreamWriter } = await import(dist('stream/index.js'));
  const reader = new StreamReader(process.argv[3], { lazyPageData: true });
  const w = new StreamWriter(1);
  let buf = new Uint8Array(1024 * 4096);
  for await (const item of reader) {
    if (
      item.kind === 'record' &&
      item.layer === 'libxc' &&
      item.record.name === 'PAGE_DATA' &&
      item.record.readPayloadInto
    ) {
      const len = item.record.dataPages * 4096;
      if (buf.length < len) buf = new Uint8Array(len);
      const payload = buf.subarray(0, len);
      await item.record.readPayloadInto(payload);
      await w.writeItem(item, payload);
    } else {
      await w.writeItem(item);
    }
  }
  process.exit(0);
}

// ---- the benchmark
const size = Number(process.env.XENMIG_BENCH_BYTES ?? GiB);
preferShm(3 * size + 256 * MiB); // domain + stream file + baseline file
const dir = scratchDir('xenmig-stream-bench-');
const hostDir = join(dir, 'host');
const { openMockHost } = await import(dist('xen/index.js'));
const { save } = await import(dist('api.js'));

const hv = openMockHost(hostDir);
const domid = createFilledHvm(hv, size);
hv.unpause(domid);
const file = join(dir, 'stream.xl');
{
  const fd = openSync(file, 'w');
  await save(domid, fd, { xen: hv, keepRunning: true });
  closeSync(fd);
}
const bytes = statSync(file).size;
console.log(
  `stream: ${(bytes / MiB).toFixed(1)} MiB xl image of a ${(size / MiB).toFixed(0)} MiB HVM mock domain in ${dir.startsWith('/dev/shm') ? '/dev/shm' : dir}; ${RUNS} run(s) per figure; ${machineLoad()}`,
);

// the CLI's verify once it exists, else the node script
const cliMain = new URL('../dist/cli/main.js', import.meta.url);
const cliHasVerify =
  process.env.XENMIG_BENCH_NO_CLI === undefined &&
  existsSync(cliMain) &&
  /^\s+verify\b/m.test(
    spawnSync(process.execPath, [fileURLToPath(cliMain), '--help'], { encoding: 'utf8' }).stdout ?? '',
  );
const verifyCmd = cliHasVerify ? `${nodeCmd(fileURLToPath(cliMain))} verify -` : nodeCmd(self, '--verify');

catPipeBaseline(file); // warm up the page cache / tmpfs
const cloop = `${q(cloopBinary())} send ${q(hostDir)} ${domid}`;
const cases = [
  { name: 'verify  (cat FILE | verify -)', cmd: `cat ${q(file)} | ${verifyCmd} > /dev/null`, goal: 0.7 },
  {
    name: 'encode  (save -> /dev/null)',
    cmd: `exec ${nodeCmd(self, '--encode', hostDir, String(domid))} > /dev/null`,
    cloop: `exec ${cloop} > /dev/null`,
    goal: 0.7,
  },
  // /dev/null never reads what it is given: the same save into a pipe drained by cat touches every page
  {
    name: 'encode  (save -> pipe | cat)',
    cmd: `${nodeCmd(self, '--encode', hostDir, String(domid))} | cat > /dev/null`,
    cloop: `${cloop} | cat > /dev/null`,
  },
  {
    name: 'transcode (reader -> writer, /dev/null)',
    cmd: `exec ${nodeCmd(self, '--transcode', file)} > /dev/null`,
  },
];
const baselines = [];
const baseCpu = []; // CPU seconds of the baseline pipeline: steadier than wall time on a busy machine
const results = {};
for (const c of cases) results[c.name] = [];
for (let r = 0; r < RUNS; r++) {
  for (const c of cases) {
    const b = catPipeBaseline(file);
    baselines.push(b.rate);
    baseCpu.push(b.cpuSeconds);
    const t = timeShell(c.cmd);
    const cl = c.cloop ? timeShell(c.cloop) : null;
    results[c.name].push({
      ...t,
      ratio: bytes / t.seconds / b.rate,
      baseRate: b.rate,
      cRatio: cl ? t.seconds / cl.seconds : NaN,
      cSeconds: cl?.seconds,
    });
  }
}
console.log(
  `verify command: ${verifyCmd.includes('--verify') ? 'node script (validateStream(0, { blockingReads: true }))' : 'xenmig verify -'}`,
);
console.log(
  `baseline cat FILE | cat > /dev/null: median ${fmtRate(median(baselines))} (${baselines.map((x) => (x / MiB).toFixed(0)).join(', ')} MiB/s), ` +
    `median CPU ${median(baseCpu).toFixed(2)} s`,
);
let ok = true;
for (const c of cases) {
  const rs = results[c.name];
  const ratio = median(rs.map((x) => x.ratio));
  const rate = median(rs.map((x) => bytes / x.seconds));
  const rss = Math.max(...rs.map((x) => x.maxRssBytes));
  const met =
    c.goal === undefined ? '' : ratio >= c.goal && rss < 150 * MiB ? ' [goal met]' : ' [BELOW GOAL]';
  if (c.goal !== undefined && !(ratio >= c.goal && rss < 150 * MiB)) ok = false;
  console.log(
    `${c.name}: ${fmtRate(rate)} = ${ratio.toFixed(2)}x baseline (median of ${rs.map((x) => x.ratio.toFixed(2)).join(', ')})` +
      `, CPU ${median(rs.map((x) => x.cpuSeconds)).toFixed(2)} s, peak RSS ${(rss / MiB).toFixed(0)} MiB${c.goal !== undefined ? `, goal >= ${c.goal}x and < 150 MiB` : ''}${met}` +
      (c.cloop
        ? `; engine/C-loop ${median(rs.map((x) => x.cRatio)).toFixed(2)}x (median of ${rs.map((x) => x.cRatio.toFixed(2)).join(', ')}; ` +
          `C loop median ${median(rs.map((x) => x.cSeconds)).toFixed(2)} s, goal <= 1.25x)`
        : ''),
  );
}
hv.destroyDomain(domid);
hv.close();
console.log(ok ? 'stream bench: goals met' : 'stream bench: below goal');
