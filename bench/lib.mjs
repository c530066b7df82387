// Shared benchmark helpers: every figure is a ratio against a baseline measured in the same run,
// plus peak memory. Commands are timed with GNU time (wall seconds and max RSS of the process tree
// leader). Nothing here asserts a speed: benchmarks report, tests check behaviour.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

/** A scratch directory removed at process exit. Prefers /dev/shm (RAM) when large enough. */
export function scratchDir(prefix = 'xenmig-bench-') {
  const dir = mkdtempSync(join(process.env.XENMIG_BENCH_DIR ?? tmpdir(), prefix));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Run a shell pipeline under GNU time. Returns { seconds, maxRssBytes, stdout, stderr }.
 * `time` measures the shell it starts; use `exec` in `script` to measure a single command.
 */
export function timeShell(script, { env } = {}) {
  const r = spawnSync('/usr/bin/time', ['-f', '__TIME__ %e %M', 'bash', '-c', script], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    maxBuffer: 64 * MiB,
  });
  const m = /__TIME__ ([\d.]+) (\d+)\s*$/.exec(r.stderr ?? '');
  if (r.status !== 0 || !m) {
    throw new Error(`benchmark command failed (${r.status}): ${script}\n${r.stderr}`);
  }
  return {
    seconds: Number(m[1]),
    maxRssBytes: Number(m[2]) * 1024,
    stdout: r.stdout,
    stderr: r.stderr.slice(0, m.index),
  };
}

/** Baseline: the same bytes through `cat` on a pipe (cat FILE | cat > /dev/null). */
export function catPipeBaseline(file) {
  const bytes = statSync(file).size;
  const t = timeShell(`cat '${file}' | cat > /dev/null`);
  return { bytes, seconds: t.seconds, rate: bytes / t.seconds };
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
