// Bundles helpers/pv-child.ts (TypeScript, with the engine) into a temp dir with rolldown, and runs
// it as a separate node process with the mock addon.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'rolldown';
import { packageRoot } from '../../../src/xen/loader.js';

export interface ChildRunner {
  /** Runs a job to completion; resolves with the JSON lines it printed. */
  run(job: object): Promise<Record<string, unknown>[]>;
  /** Starts a job; `lines` receives each JSON line as it arrives. */
  start(
    job: object,
    onLine: (l: Record<string, unknown>) => void,
  ): { child: ChildProcess; done: Promise<number> };
  dispose(): void;
}

export async function buildChild(): Promise<ChildRunner> {
  const dir = mkdtempSync(join(tmpdir(), 'xenmig-pv-child-'));
  await build({
    input: fileURLToPath(new URL('./pv-child.ts', import.meta.url)),
    platform: 'node',
    external: [/^node:/],
    logLevel: 'warn',
    output: { dir, format: 'esm', entryFileNames: 'child.mjs' },
  });
  const env = { ...process.env, XENMIG_ADDON_PATH: join(packageRoot, 'build', 'Release') };
  const start = (job: object, onLine: (l: Record<string, unknown>) => void) => {
    const child = spawn(process.execPath, [join(dir, 'child.mjs'), JSON.stringify(job)], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let buf = '';
    let err = '';
    child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      buf += s;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.trim()) onLine(JSON.parse(line) as Record<string, unknown>);
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (err += s));
    const done = new Promise<number>((res, rej) => {
      child.on('error', rej);
      child.on('close', (code) =>
        code === 0 || code === 1 ? res(code) : rej(new Error(`child exited with ${code}: ${err}`)),
      );
    });
    return { child, done };
  };
  return {
    start,
    async run(job) {
      const lines: Record<string, unknown>[] = [];
      await start(job, (l) => lines.push(l)).done;
      return lines;
    },
    dispose: () => rmSync(dir, { recursive: true, force: true }),
  };
}
