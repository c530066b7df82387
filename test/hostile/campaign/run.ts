// The campaign driver: bundles worker.ts (rolldown), splits the case range over worker processes,
// and watches them: a case that does not finish within the hard deadline, or a worker whose
// resident memory passes the bound, is a failure of that case (the worker is killed and a new one
// goes on with the next case). Returns the totals and every failed check with its seed and index.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'rolldown';
import { REPO } from '../../cli/helpers.js';
import type { WorkerJob } from './worker.js';

export interface CampaignOptions {
  seed: number;
  cases: number;
  workers: number;
  /** every Nth case also runs through real CLI processes (0 = none) */
  cliEvery: number;
  /** first case index (to re-run one case: from = index, cases = 1) */
  from?: number;
  caseDeadlineMs?: number;
  /** resident memory bound of a worker (its mock mappings included) */
  rssLimitMb?: number;
  log?: (s: string) => void;
}

export interface Failure {
  seed: number;
  index: number;
  check: string;
  detail: string;
  base?: string;
  target?: string;
  ops?: string[];
}

export interface CampaignResult {
  cases: number;
  ok: number;
  rejected: number;
  cli: number;
  failures: Failure[];
  codes: Record<string, number>;
  targets: Record<string, number>;
  maxRssMb: number;
  msByKind: Record<string, number>;
  /** cases that took over a second (not a failure: for the report) */
  slow: { index: number; kind: string; ms: number }[];
  ms: number;
}

function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

async function bundle(): Promise<{ file: string; cleanup(): void }> {
  const dir = mkdtempSync(join(tmpdir(), 'xenmig-campaign-bundle-'));
  await build({
    input: fileURLToPath(new URL('./worker.ts', import.meta.url)),
    platform: 'node',
    external: [/^node:/],
    logLevel: 'silent',
    output: { dir, format: 'esm', entryFileNames: 'worker.mjs' },
  });
  return { file: join(dir, 'worker.mjs'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export async function runCampaign(o: CampaignOptions): Promise<CampaignResult> {
  const t0 = performance.now();
  const deadlineMs = o.caseDeadlineMs ?? 30_000;
  const rssLimit = o.rssLimitMb ?? 1536;
  const b = await bundle();
  const res: CampaignResult = {
    cases: 0,
    ok: 0,
    rejected: 0,
    cli: 0,
    failures: [],
    codes: {},
    targets: {},
    msByKind: {},
    slow: [],
    maxRssMb: 0,
    ms: 0,
  };
  const from = o.from ?? 0;
  const per = Math.ceil(o.cases / o.workers);
  const add = (to: Record<string, number>, from: Record<string, number>) => {
    for (const [k, v] of Object.entries(from)) to[k] = (to[k] ?? 0) + v;
  };

  /** Runs [lo, hi) in one worker; restarts after a killed case. */
  const lane = async (lo: number, hi: number, lane: number): Promise<void> => {
    let next = lo;
    while (next < hi) {
      const host = mkdtempSync(
        join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), `xenmig-campaign-${lane}-`),
      );
      const job: WorkerJob = {
        host,
        seed: o.seed,
        from: next,
        to: hi,
        cliEvery: o.cliEvery,
        caseDeadlineMs: deadlineMs,
        repo: REPO,
      };
      const child = spawn(process.execPath, [b.file, JSON.stringify(job)], {
        env: { ...process.env, XENMIG_ADDON_PATH: join(REPO, 'build', 'Release'), XENMIG_MOCK_HOST: host },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let current = next;
      let startedAt = performance.now();
      // set by the watchdog's callback: declared wide so that TypeScript does not narrow it to null
      let killed = null as string | null;
      let finished = false;
      let buf = '';
      let stderr = '';
      child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-4000)));
      child.stdout!.setEncoding('utf8').on('data', (d: string) => {
        buf += d;
        let k;
        while ((k = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, k);
          buf = buf.slice(k + 1);
          if (line.startsWith('S ')) {
            current = Number(line.slice(2));
            startedAt = performance.now();
          } else if (line.startsWith('F ')) {
            const f = JSON.parse(line.slice(2)) as Omit<Failure, 'seed' | 'index'> & { index?: number };
            res.failures.push({ seed: o.seed, index: current, ...f });
            o.log?.(
              `campaign: FAILED seed ${o.seed} index ${f.index ?? current}: ${f.check}: ${f.detail.split('\n')[0]}`,
            );
          } else if (line.startsWith('W ')) {
            res.slow.push(JSON.parse(line.slice(2)) as { index: number; kind: string; ms: number });
          } else if (line.startsWith('D ')) {
            const t = JSON.parse(line.slice(2)) as CampaignResult;
            res.cases += t.cases;
            res.ok += t.ok;
            res.rejected += t.rejected;
            res.cli += t.cli;
            add(res.codes, t.codes);
            add(res.targets, t.targets);
            add(res.msByKind, t.msByKind);
            res.maxRssMb = Math.max(res.maxRssMb, t.maxRssMb);
            finished = true;
          }
        }
      });
      const watch = setInterval(() => {
        if (child.exitCode !== null || child.pid === undefined) return;
        const mb = rssMb(child.pid);
        res.maxRssMb = Math.max(res.maxRssMb, Math.round(mb));
        if (mb > rssLimit && !killed) killed = `resident memory ${Math.round(mb)} MiB > ${rssLimit} MiB`;
        else if (performance.now() - startedAt > deadlineMs * 2 && !killed)
          killed = `no result after ${deadlineMs * 2} ms (the event loop is blocked)`;
        if (killed) child.kill('SIGKILL');
      }, 100);
      const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
      clearInterval(watch);
      rmSync(host, { recursive: true, force: true });
      if (killed) {
        res.failures.push({
          seed: o.seed,
          index: current,
          check: killed.startsWith('resident') ? 'memory' : 'hang',
          detail: killed,
        });
        o.log?.(`campaign: FAILED seed ${o.seed} index ${current}: ${killed}`);
        res.cases += current - next + 1; // the killed worker's totals are lost; its cases ran
        next = current + 1;
        continue;
      }
      if (code === 3) {
        // the worker reported a hang of `current` itself and stopped
        res.cases += 1;
        next = current + 1;
        continue;
      }
      if (code !== 0 || !finished) {
        res.failures.push({
          seed: o.seed,
          index: current,
          check: 'worker exit',
          detail: `worker exited ${code}: ${stderr}`,
        });
        next = current + 1;
        continue;
      }
      next = hi;
    }
  };
  try {
    await Promise.all(
      Array.from({ length: o.workers }, (_, w) => {
        const lo = from + w * per;
        const hi = Math.min(from + o.cases, lo + per);
        return lo < hi ? lane(lo, hi, w) : Promise.resolve();
      }),
    );
  } finally {
    b.cleanup();
  }
  res.ms = performance.now() - t0;
  return res;
}
