// Helpers for the CLI and end-to-end tests: run `node dist/cli/main.js` as real child processes,
// temporary mock hosts (one directory = one simulated Xen host), the shared real `xl save` vectors.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { createGunzip } from 'node:zlib';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = join(REPO, 'dist', 'cli', 'main.js');
import { VECTORS } from '../fixtures/vectors.js';

export { VECTORS };

export interface Done {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface Running {
  child: ChildProcess;
  /** stdout/stderr so far (when piped) */
  out(): string;
  err(): string;
  done: Promise<Done>;
  /** resolves once stderr contains `text` (rejects if the process ends first) */
  waitErr(text: string | RegExp): Promise<string>;
}

export interface CliOptions {
  env?: NodeJS.ProcessEnv;
  stdio?: StdioOptions;
  input?: string | Buffer;
  cwd?: string;
  /** leave a piped stdout alone (binary relays) */
  rawStdout?: boolean;
}

/** The test's environment without a default mock host (every command names its host). */
export function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.XENMIG_MOCK_HOST;
  delete env.XENMIG_PROGRESS;
  return { ...env, ...extra };
}

/** Start `xenmig ARGS` as a child process. Without stdio given: stdin ignored (or input), stdout/stderr piped. */
export function startCli(args: string[], o: CliOptions = {}): Running {
  const stdio: StdioOptions = o.stdio ?? [o.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'];
  const child = spawn(process.execPath, [CLI, ...args], {
    stdio,
    cwd: o.cwd ?? REPO,
    env: cleanEnv(o.env),
  });
  let stdout = '';
  let stderr = '';
  const waiters: { re: string | RegExp; resolve: (s: string) => void; reject: (e: Error) => void }[] = [];
  const check = () => {
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i]!;
      if (typeof w.re === 'string' ? stderr.includes(w.re) : w.re.test(stderr)) {
        waiters.splice(i, 1);
        w.resolve(stderr);
      }
    }
  };
  if (!o.rawStdout) {
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (d: string) => (stdout += d));
  }
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => {
    stderr += d;
    check();
  });
  if (o.input !== undefined) child.stdin!.end(o.input);
  const done = new Promise<Done>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      for (const w of waiters.splice(0))
        w.reject(
          new Error(
            `xenmig ${args.join(' ')} ended (${code ?? signal}) before printing ${String(w.re)}; stderr:\n${stderr}`,
          ),
        );
      resolve({ code, signal, stdout, stderr });
    });
  });
  return {
    child,
    out: () => stdout,
    err: () => stderr,
    done,
    waitErr(re) {
      return new Promise((resolve, reject) => {
        waiters.push({ re, resolve, reject });
        check();
      });
    },
  };
}

export function cli(args: string[], o: CliOptions = {}): Promise<Done> {
  return startCli(args, o).done;
}

/** Run and require exit 0; returns trimmed stdout. */
export async function ok(args: string[], o: CliOptions = {}): Promise<string> {
  const r = await cli(args, o);
  if (r.code !== 0) throw new Error(`xenmig ${args.join(' ')} exited ${r.code ?? r.signal}:\n${r.stderr}`);
  return r.stdout.trim();
}

export { scratchDir as tempDir, tempHost } from '../support/hosts.js';

export interface DomInfo {
  domid: number;
  type: 'hvm' | 'pv';
  state: string;
  paused: boolean;
  shutdown: boolean;
  pages: number;
  vcpus: number;
}

export async function createDomain(
  host: string,
  type: 'hvm' | 'pv',
  memory = '16M',
  vcpus = 1,
): Promise<number> {
  const out = await ok([
    'mock',
    'create',
    '--type',
    type,
    '--memory',
    memory,
    '--vcpus',
    String(vcpus),
    '--host',
    host,
  ]);
  expectInt(out);
  return Number(out);
}

function expectInt(s: string): void {
  if (!/^\d+$/.test(s)) throw new Error(`expected a domid, got "${s}"`);
}

export async function listDomains(host: string): Promise<DomInfo[]> {
  return JSON.parse(await ok(['mock', 'list', '--json', '--host', host])) as DomInfo[];
}

export function checksum(host: string, domid: number): Promise<string> {
  return ok(['mock', 'checksum', String(domid), '--host', host]);
}

export async function domainState(host: string, domid: number): Promise<Record<string, unknown>> {
  return JSON.parse(await ok(['mock', 'state', String(domid), '--host', host])) as Record<string, unknown>;
}

/** Gunzip a shared vector into `dir` (once per dir). */
export async function gunzipVector(name: string, dir: string): Promise<string> {
  const out = join(dir, name.replace(/\.gz$/, ''));
  if (!existsSync(out))
    await pipeline(createReadStream(join(VECTORS, name)), createGunzip(), createWriteStream(out));
  return out;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Poll `f` until it returns a truthy value (bounded by `tries`; not a timing assertion). */
export async function until<T>(
  f: () => Promise<T | null | undefined | false>,
  what: string,
  tries = 600,
  everyMs = 50,
): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const v = await f();
    if (v) return v;
    await sleep(everyMs);
  }
  throw new Error(`gave up waiting for ${what}`);
}
