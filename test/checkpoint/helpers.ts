// Process helpers for the replication tests: the primary, the backup and the workload each run in
// a process of their own (fixtures/*.mjs over the built library), on two mock host directories.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = fileURLToPath(new URL('./fixtures/cli.mjs', import.meta.url));
export const WORKLOAD = fileURLToPath(new URL('./fixtures/workload.mjs', import.meta.url));

/** The fixtures run dist/: refuse to test a stale build. */
export function requireFreshBuild(): void {
  for (const f of [
    'checkpoint/remus',
    'checkpoint/backup',
    'cli/commands/remus',
    'engine/restore/restore',
    'engine/save/save',
  ]) {
    const js = join(REPO, 'dist', f + '.js');
    const ts = join(REPO, 'src', f + '.ts');
    if (!existsSync(js) || statSync(js).mtimeMs < statSync(ts).mtimeMs)
      throw new Error(`dist/${f}.js is missing or older than src: run npm run build`);
  }
}

export { hostDirs, scratchMockHost } from '../support/hosts.js';

/** A listener's onListening callback and the port it reports. */
export function listeningPort(): { onListening: (port: number) => void; port: Promise<number> } {
  let onListening!: (port: number) => void;
  const port = new Promise<number>((r) => (onListening = r));
  return { onListening, port };
}

export class Proc {
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  stderr = '';
  private waiters: (() => void)[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(script: string, args: string[]) {
    this.child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    this.child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      buf += s;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        this.lines.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
      for (const w of this.waiters.splice(0)) w();
    });
    this.child.stderr!.setEncoding('utf8').on('data', (s: string) => {
      this.stderr += s;
    });
    this.exited = new Promise((resolve) =>
      this.child.on('exit', (code, signal) => resolve({ code, signal })),
    );
    void this.exited.then(() => {
      for (const w of this.waiters.splice(0)) w();
    });
  }

  get json(): Record<string, unknown>[] {
    return this.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  /** Wait for a stdout JSON line matching `pred` (rejects if the process exits first). */
  async waitFor(
    pred: (j: Record<string, unknown>) => boolean,
    what: string,
  ): Promise<Record<string, unknown>> {
    for (;;) {
      const hit = this.json.find(pred);
      if (hit) return hit;
      if (this.child.exitCode !== null || this.child.signalCode !== null)
        throw new Error(`process exited before ${what}; stderr:\n${this.stderr}`);
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  kill(sig: NodeJS.Signals = 'SIGTERM'): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(sig);
  }
}

/** JSON lines of a --checksum-log file. */
export function checksumLog(path: string): Record<string, unknown>[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Deterministic PRNG (mulberry32) for reproducible random kill points. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
