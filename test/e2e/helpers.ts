// End-to-end helpers: throwaway PKI (openssl, at test time, in a temp dir), a fake ssh, workloads
// and the checks that a source guest was resumed after a failed migration.
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { makeCa, makeLeaf } from '../support/pki.js';
import { checksum, listDomains, startCli, until, type Running } from '../cli/helpers.js';

export * from '../cli/helpers.js';

export interface Pki {
  ca: string;
  server: { cert: string; key: string };
  client: { cert: string; key: string };
  /** a client certificate signed by another CA */
  rogue: { cert: string; key: string };
}

/** CA + server (127.0.0.1/localhost) + client certificates, and a client of an unrelated CA (paths). */
export function makePki(dir: string): Pki {
  const ca = makeCa(dir, 'ca');
  makeCa(dir, 'rogue-ca');
  return {
    ca,
    server: makeLeaf(dir, 'server', 'ca', 'serverAuth'),
    client: makeLeaf(dir, 'client', 'ca', 'clientAuth'),
    rogue: makeLeaf(dir, 'rogue', 'rogue-ca', 'clientAuth'),
  };
}

/**
 * A fake ssh: records its argv, ignores options and host, and runs the remote command (the word
 * after `--`) with sh -c, its stdin/stdout being ours — as ssh does across the network.
 */
export function makeFakeSsh(dir: string): { path: string; argvLog: string; argv(): string[] } {
  const path = join(dir, 'fake-ssh.mjs');
  const argvLog = join(dir, 'fake-ssh.argv');
  writeFileSync(
    path,
    `#!/usr/bin/env node
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
const args = process.argv.slice(2);
writeFileSync(${JSON.stringify(argvLog)}, JSON.stringify(args));
const i = args.indexOf('--');
if (i < 0) { process.stderr.write('fake-ssh: no remote command\\n'); process.exit(255); }
const child = spawn('sh', ['-c', args.slice(i + 1).join(' ')], { stdio: 'inherit' });
child.on('exit', (code, signal) => process.exit(code ?? 255));
`,
  );
  chmodSync(path, 0o755);
  return { path, argvLog, argv: () => JSON.parse(readFileSync(argvLog, 'utf8')) as string[] };
}

export interface AtSuspend {
  domid: number;
  suspended: boolean;
  checksum: string;
  state: Record<string, unknown>;
}

export function readAtSuspend(file: string): AtSuspend {
  return JSON.parse(readFileSync(file, 'utf8')) as AtSuspend;
}

/** Start a workload process and wait until it runs. */
export async function startWorkload(
  host: string,
  domid: number,
  rate = 400,
  hot = 0,
  seed = 1,
): Promise<Running> {
  const w = startCli([
    'mock',
    'workload',
    String(domid),
    '--rate',
    String(rate),
    '--hot',
    String(hot),
    '--seed',
    String(seed),
    '--host',
    host,
  ]);
  await w.waitErr('workload running');
  return w;
}

/** Wait until the host has a domain (the receiver created its copy); returns it. */
export async function waitForDomain(host: string): Promise<number> {
  return until(async () => (await listDomains(host))[0]?.domid, `a domain on ${host}`, 2000, 25);
}

/**
 * After a failed migration: the source domain exists and runs (not paused, not suspended), its
 * workload process is still alive and still changes guest memory; then the workload is stopped and
 * memory is stable. Returns the final checksum.
 */
export async function expectSourceResumed(host: string, domid: number, workload: Running): Promise<string> {
  const doms = await listDomains(host);
  const d = doms.find((x) => x.domid === domid);
  expect(d, `source domain ${domid} still exists`).toBeDefined();
  expect(d!.state).toBe('running');
  expect(d!.paused).toBe(false);
  expect(d!.shutdown).toBe(false);
  expect(workload.child.exitCode, 'workload still running').toBeNull();
  const c1 = await checksum(host, domid);
  await until(
    async () => (await checksum(host, domid)) !== c1,
    'the workload to change guest memory after the failure',
    200,
    50,
  );
  workload.child.kill('SIGINT');
  const w = await workload.done;
  expect(w.code).toBe(0);
  expect(Number(w.stdout.trim())).toBeGreaterThan(0);
  const a = await checksum(host, domid);
  expect(await checksum(host, domid)).toBe(a);
  return a;
}
