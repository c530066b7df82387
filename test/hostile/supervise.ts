// Runs `xenmig ARGS` as a real process under supervision: a deadline, and a watchdog on its
// resident memory (polled from /proc, so a runaway process is stopped long before it can hurt the
// machine). Reports the exit status, output and the peak RSS seen (VmHWM).
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { CLI, cleanEnv, REPO } from '../cli/helpers.js';

export interface Supervised {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** peak resident set of the xenmig process, KiB (0 when it ended before the first sample) */
  peakRssKb: number;
  /** why the supervisor killed it, if it did */
  killed: 'deadline' | 'rss' | null;
  ms: number;
}

export interface SuperviseOptions {
  deadlineMs: number;
  rssLimitMb: number;
  /** bytes written to stdin (then closed), or 'open' to keep stdin open and silent */
  input?: Buffer | 'open';
  env?: NodeJS.ProcessEnv;
  /** called once the process runs (e.g. to feed or signal it later) */
  onStart?: (child: ChildProcess) => void;
  everyMs?: number;
  /** the CLI entry and working directory (default: this work tree's dist/cli/main.js) */
  cli?: string;
  cwd?: string;
}

function hwmKb(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /VmHWM:\s+(\d+) kB/.exec(s);
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

export function supervise(args: string[], o: SuperviseOptions): Promise<Supervised> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [o.cli ?? CLI, ...args], {
    cwd: o.cwd ?? REPO,
    env: cleanEnv(o.env),
    stdio: [o.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let peak = 0;
  let killed: Supervised['killed'] = null;
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  if (Buffer.isBuffer(o.input)) {
    child.stdin!.on('error', () => undefined); // the process may refuse the stream early
    child.stdin!.end(o.input);
  } else if (o.input === 'open') child.stdin!.on('error', () => undefined);
  o.onStart?.(child);
  const poll = setInterval(() => {
    if (child.pid === undefined || child.exitCode !== null) return;
    peak = Math.max(peak, hwmKb(child.pid));
    if (peak > o.rssLimitMb * 1024 && !killed) {
      killed = 'rss';
      child.kill('SIGKILL');
    }
  }, o.everyMs ?? 50);
  const deadline = setTimeout(() => {
    if (!killed) killed = 'deadline';
    child.kill('SIGKILL');
  }, o.deadlineMs);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', () => {
      if (child.pid !== undefined) peak = Math.max(peak, hwmKb(child.pid));
    });
    child.once('close', (code, signal) => {
      clearInterval(poll);
      clearTimeout(deadline);
      if (o.input === 'open') child.stdin?.destroy();
      resolve({ code, signal, stdout, stderr, peakRssKb: peak, killed, ms: performance.now() - t0 });
    });
  });
}

/** A stack trace or an untyped error in a CLI's stderr (what a hostile input must never cause). */
export function crashText(stderr: string): string | null {
  const m =
    /^\s+at .+\(.+:\d+:\d+\)$|Unhandled|TypeError|RangeError|ReferenceError|SyntaxError|Maximum call stack|FATAL ERROR/m.exec(
      stderr,
    );
  return m ? m[0] : null;
}
