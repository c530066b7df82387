// Shared benchmark helpers: every figure is a ratio against a baseline measured in the same run,
// plus peak memory. Commands are timed with GNU time (wall seconds and max RSS of the process tree
// leader). Nothing here asserts a speed: benchmarks report, tests check behaviour.
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  rmSync,
  statSync,
  statfsSync,
  writeSync,
} from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

/** A scratch directory removed at process exit. Prefers /dev/shm (RAM) when large enough. */
export function scratchDir(prefix = 'xenmig-bench-') {
  const dir = mkdtempSync(join(process.env.XENMIG_BENCH_DIR ?? tmpdir(), prefix));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Run a shell pipeline under GNU time. Returns { seconds, maxRssBytes, cpuSeconds, stdout, stderr }.
 * `time` measures the shell it starts; use `exec` in `script` to measure a single command.
 */
export function timeShell(script, { env } = {}) {
  const r = spawnSync('/usr/bin/time', ['-f', '__TIME__ %e %M %U %S', 'bash', '-c', script], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    maxBuffer: 64 * MiB,
  });
  const m = /__TIME__ ([\d.]+) (\d+) ([\d.]+) ([\d.]+)\s*$/.exec(r.stderr ?? '');
  if (r.status !== 0 || !m) {
    throw new Error(`benchmark command failed (${r.status}): ${script}\n${r.stderr}`);
  }
  return {
    seconds: Number(m[1]),
    maxRssBytes: Number(m[2]) * 1024,
    /** user + system CPU seconds of the whole (waited-for) process tree */
    cpuSeconds: Number(m[3]) + Number(m[4]),
    stdout: r.stdout,
    stderr: r.stderr.slice(0, m.index),
  };
}

/** Baseline: the same bytes through `cat` on a pipe (cat FILE | cat > /dev/null). */
export function catPipeBaseline(file) {
  const bytes = statSync(file).size;
  const t = timeShell(`cat '${file}' | cat > /dev/null`);
  return { bytes, seconds: t.seconds, rate: bytes / t.seconds, cpuSeconds: t.cpuSeconds };
}

export function fmtRate(bytesPerSecond) {
  return `${(bytesPerSecond / MiB).toFixed(0)} MiB/s`;
}

/** Print one result line: name, throughput, ratio to baseline, peak RSS. Returns the ratio. */
export function report(name, { bytes, seconds, maxRssBytes }, baseline, extra = '') {
  const rate = bytes / seconds;
  const ratio = rate / baseline.rate;
  const line =
    `${name}: ${fmtRate(rate)} = ${ratio.toFixed(2)}x baseline (${baseline.label ?? 'cat pipe'} ${fmtRate(baseline.rate)})` +
    (maxRssBytes !== undefined ? `, peak RSS ${(maxRssBytes / MiB).toFixed(0)} MiB` : '') +
    (extra ? `, ${extra}` : '');
  console.log(line);
  return ratio;
}

// ---------------------------------------------------------------------------------------------
// Reusable pieces for the stream / migration / Remus benchmarks.

/** Sorted copy. */
function sorted(values) {
  return [...values].sort((a, b) => a - b);
}

/** p-th percentile (0..100) by linear interpolation between closest ranks; NaN for no values. */
export function percentile(values, p) {
  if (values.length === 0) return NaN;
  const s = sorted(values);
  const rank = (Math.min(100, Math.max(0, p)) / 100) * (s.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return s[lo] + (s[hi] - s[lo]) * (rank - lo);
}

export function median(values) {
  return percentile(values, 50);
}

/** Run `fn` (returning a result object) `n` times; return the run whose `key` is the median. */
export function medianRun(n, fn, key = 'seconds') {
  const runs = [];
  for (let i = 0; i < n; i++) runs.push(fn(i));
  const s = [...runs].sort((a, b) => a[key] - b[key]);
  return { ...s[Math.floor((s.length - 1) / 2)], runs };
}

/** Repetitions per figure: XENMIG_BENCH_RUNS (default 3). */
export const RUNS = Math.max(1, Number(process.env.XENMIG_BENCH_RUNS ?? 3));

/** Prefer /dev/shm for scratch data when it has `bytes` free (else the system tmp dir). */
export function preferShm(bytes) {
  if (process.env.XENMIG_BENCH_DIR) return;
  try {
    const st = statfsSync('/dev/shm');
    if (st.bavail * st.bsize > bytes) process.env.XENMIG_BENCH_DIR = '/dev/shm';
  } catch {
    /* no /dev/shm */
  }
}

/** A shell word. */
export function q(s) {
  return `'${String(s).replace(/'/g, `'\\''`)}'`;
}

/** `node <script> args...` as a shell command (this node binary). */
export function nodeCmd(script, ...args) {
  return [process.execPath, script, ...args].map(q).join(' ');
}

/** Load average (1 min) and the number of CPUs: the "was the machine busy" line of a report. */
export function machineLoad() {
  return `load avg ${loadavg()[0].toFixed(2)} on ${cpus().length} CPUs`;
}

/**
 * Create a mock HVM domain of `bytes` on `xen` (a mock Hypervisor) with every page written
 * (distinct, non-zero contents: no tmpfs holes), paused. Returns its domid.
 */
export function createFilledHvm(xen, bytes, { batch = 1024 } = {}) {
  const PAGE = 4096;
  const pages = Math.floor(bytes / PAGE);
  const domid = xen.createDomain({ type: 'hvm', pages, vcpus: 1 });
  xen.pause(domid);
  const frames = new BigUint64Array(batch);
  for (let first = 0; first < pages; first += batch) {
    const n = Math.min(batch, pages - first);
    for (let i = 0; i < n; i++) frames[i] = BigInt(first + i);
    const m = xen.map(domid, frames.subarray(0, n), 'rw');
    const w = new Uint32Array(m.bytes.buffer, m.bytes.byteOffset, m.bytes.length / 4);
    for (let p = 0; p < n; p++) w.fill(((first + p) * 2654435761) >>> 0 || 1, p * 1024, (p + 1) * 1024);
    m.unmap();
  }
  return domid;
}

/** Write `bytes` of 0x5a to `file` (a baseline file of the same size on the same filesystem). */
export function writeBaselineFile(file, bytes) {
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(16 * MiB, 0x5a);
  for (let off = 0; off < bytes; off += chunk.length)
    writeSync(fd, chunk, 0, Math.min(chunk.length, bytes - off));
  closeSync(fd);
}

/**
 * The C-loop baseline (bench/cloop.c), built against the mock library the addon links to. Returns
 * the binary's path. The engine's figure over this loop's is what the engine adds to the mock.
 */
export function cloopBinary() {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..');
  const libDir = join(root, 'build', 'Release');
  const lib = join(libDir, 'xenctrl_mock.so');
  const out = join(libDir, 'xenmig-cloop');
  const src = join(root, 'bench', 'cloop.c');
  if (!existsSync(lib)) throw new Error(`the mock library ${lib} is missing: run npm run build first`);
  if (
    !existsSync(out) ||
    statSync(out).mtimeMs < statSync(src).mtimeMs ||
    statSync(out).mtimeMs < statSync(lib).mtimeMs
  ) {
    const r = spawnSync(
      process.env.CC ?? 'cc',
      [
        '-O2',
        '-std=gnu11',
        '-Wall',
        '-I',
        join(root, 'docker', 'mock', 'include'),
        src,
        lib,
        `-Wl,-rpath,${libDir}`,
        '-o',
        out,
      ],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) throw new Error(`building the C-loop baseline failed:\n${r.stderr}`);
  }
  return out;
}

/** "engine/C-loop X.XXx" for two durations (lower is better; goal <= 1.25x). */
export function cloopRatio(engineSeconds, cloopSeconds) {
  const r = engineSeconds / Math.max(cloopSeconds, 0.01); // GNU time counts in 10 ms steps
  return {
    ratio: r,
    text: `engine/C-loop ${r.toFixed(2)}x (C loop ${cloopSeconds.toFixed(2)} s, goal <= 1.25x)`,
  };
}
