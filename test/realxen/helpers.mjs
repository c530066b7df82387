// Helpers for the in-dom0 scenario of the xenmig real-Xen rig: processes, console ticks, results.
import { spawn } from 'node:child_process';
import {
  appendFileSync,
  readFileSync,
  readdirSync,
  existsSync,
  openSync,
  readSync,
  closeSync,
} from 'node:fs';

export const CONSOLE_DIR = '/var/log/xen/console';
export const uptime = () => Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Run a program; resolves {rc, out, err} (never rejects; rc -1 on spawn failure or timeout). */
export function run(argv, { timeoutMs = 120_000, input } = {}) {
  return new Promise((resolve) => {
    let out = '';
    let err = '';
    let done = false;
    const p = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    const t = setTimeout(() => {
      err += `\n[rig] timeout after ${timeoutMs} ms`;
      p.kill('SIGKILL');
    }, timeoutMs);
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('error', (e) => {
      if (done) return;
      done = true;
      clearTimeout(t);
      resolve({ rc: -1, out, err: err + String(e) });
    });
    p.on('close', (code, sig) => {
      if (done) return;
      done = true;
      clearTimeout(t);
      resolve({ rc: code ?? (sig ? -1 : 0), out, err });
    });
    if (input !== undefined) p.stdin.end(input);
    else p.stdin.end();
  });
}

export async function xl(args, o) {
  return run(['xl', ...args], o);
}

/** domid of a domain by name, or null */
export async function domidOf(name) {
  const r = await xl(['domid', name], { timeoutMs: 20_000 });
  return r.rc === 0 ? Number(r.out.trim()) : null;
}

/** `xl list` rows: {name, domid, memMiB, vcpus, state} */
export async function xlList() {
  const r = await xl(['list'], { timeoutMs: 20_000 });
  return r.out
    .split('\n')
    .slice(1)
    .filter((l) => l.trim())
    .map((l) => {
      const f = l.trim().split(/\s+/);
      return { name: f[0], domid: Number(f[1]), memMiB: Number(f[2]), vcpus: Number(f[3]), state: f[4] };
    });
}

/** Highest GUEST_TICK number in the console logs of a guest (any log whose name starts with it:
 * migration gives the incoming domain a temporary name). The guest's counter lives in its memory,
 * so after a restore the numbers continue: a tick above the pre-step maximum proves the same guest
 * runs again. */
export function lastTick(name) {
  if (!existsSync(CONSOLE_DIR)) return 0;
  let max = 0;
  for (const f of readdirSync(CONSOLE_DIR)) {
    if (!f.startsWith(`guest-${name}`)) continue;
    const text = readFileSync(`${CONSOLE_DIR}/${f}`, 'latin1');
    for (const m of text.matchAll(/GUEST_TICK (\d+)/g)) max = Math.max(max, Number(m[1]));
  }
  return max;
}

/** Number of GUEST_TICK lines in the guest's console logs (after a Remus failover the replica
 * resumes from a checkpoint, so its numbers repeat some the primary printed: count lines). */
export function tickLines(name) {
  if (!existsSync(CONSOLE_DIR)) return 0;
  let n = 0;
  for (const f of readdirSync(CONSOLE_DIR)) {
    if (!f.startsWith(`guest-${name}`)) continue;
    n += (readFileSync(`${CONSOLE_DIR}/${f}`, 'latin1').match(/GUEST_TICK \d+/g) ?? []).length;
  }
  return n;
}

/** Wait until the guest's tick counter passes `after` by `n`; returns the new last tick or throws. */
export async function waitTicks(name, after, { n = 2, timeoutMs = 60_000 } = {}) {
  const t0 = Date.now();
  for (;;) {
    const t = lastTick(name);
    if (t >= after + n) return t;
    if (Date.now() - t0 > timeoutMs)
      throw new Error(
        `guest ${name}: no new console ticks within ${timeoutMs} ms (last tick ${t}, needed > ${after + n - 1})`,
      );
    await sleep(500);
  }
}

/** The guest's libxl config (JSON text) as `xl list -l` prints it (what `xl save` puts in its header). */
export async function xlConfigText(name) {
  const r = await xl(['list', '-l', name], { timeoutMs: 30_000 });
  if (r.rc !== 0) throw new Error(`xl list -l ${name}: rc ${r.rc}: ${r.err}`);
  let j = JSON.parse(r.out);
  if (Array.isArray(j)) j = j[0];
  return JSON.stringify(j.config ?? j, null, 4) + '\n';
}

/** Cooperative suspend as libxl does for PV-aware guests without a suspend event channel
 * (libxl_dom_suspend.c, reference §3.10 step 3): write control/shutdown = "suspend" and wait for
 * the guest to shut down with reason suspend (2). */
export function xenstoreSuspend(xen, domid, timeoutMs = 60_000) {
  return async () => {
    const r = await run(['xenstore-write', `/local/domain/${domid}/control/shutdown`, 'suspend'], {
      timeoutMs: 20_000,
    });
    if (r.rc !== 0) throw new Error(`xenstore-write control/shutdown: rc ${r.rc} ${r.err}`);
    const t0 = Date.now();
    for (;;) {
      const i = xen.domainInfo(domid);
      if (i.shutdown && i.shutdownReason === 2) return;
      if (i.shutdown)
        throw new Error(`guest shut down with reason ${i.shutdownReason} instead of suspending`);
      if (Date.now() - t0 > timeoutMs)
        throw new Error(`guest ${domid} did not suspend within ${timeoutMs} ms`);
      await sleep(20);
    }
  };
}

/** Results: one JSON line per step in OUT/results.jsonl. status: pass | fail | unsupported | todo */
export class Results {
  constructor(dir) {
    this.file = `${dir}/results.jsonl`;
  }
  record(r) {
    const line = { t: uptime(), ...r };
    appendFileSync(this.file, JSON.stringify(line) + '\n');
    // also on the serial console: run.sh rebuilds results.jsonl from these if the disk copy is lost
    console.log(`RIG JSON ${JSON.stringify(line)}`);
    console.log(
      `RIG RESULT ${r.status.toUpperCase()} ${r.id} ${r.name} (${r.ms ?? '-'} ms)${r.detail ? ': ' + String(r.detail).slice(0, 400) : ''}`,
    );
  }
}

export class Unsupported extends Error {}
export class Todo extends Error {}

export function errInfo(e) {
  if (!(e instanceof Error)) return String(e);
  const x = /** @type {any} */ (e);
  const parts = [
    x.code && `code=${x.code}`,
    x.errno !== undefined && `errno=${x.errno}`,
    x.syscall && `syscall=${x.syscall}`,
  ].filter(Boolean);
  return `${e.message}${parts.length ? ' [' + parts.join(' ') + ']' : ''}`;
}

/** Run one step: fn resolves to a detail string (pass) or throws (fail / Unsupported / Todo). */
/** RIG_ONLY=id,id,... (run.sh passes it to dom0): run only these steps, to iterate on one (never in CI). */
const ONLY = process.env.RIG_ONLY ? new Set(process.env.RIG_ONLY.split(',')) : null;

export async function step(results, id, name, fn, timeoutMs = 240_000) {
  if (ONLY && !ONLY.has(id)) return false;
  const t0 = Date.now();
  console.log(`RIG STEP ${id} ${name} t=${uptime()}`);
  let timer;
  try {
    const detail = await Promise.race([
      fn(),
      new Promise(
        (_, rej) =>
          (timer = setTimeout(() => rej(new Error(`step timed out after ${timeoutMs} ms`)), timeoutMs)),
      ),
    ]);
    results.record({ id, name, status: 'pass', ms: Date.now() - t0, detail: detail ?? '' });
    return true;
  } catch (e) {
    const status = e instanceof Unsupported ? 'unsupported' : e instanceof Todo ? 'todo' : 'fail';
    results.record({
      id,
      name,
      status,
      ms: Date.now() - t0,
      detail:
        errInfo(e) + (status === 'fail' && e?.stack ? '\n' + e.stack.split('\n').slice(1, 6).join('\n') : ''),
    });
    return false;
  } finally {
    clearTimeout(timer);
  }
}

export function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

// ---- the guests' disk and network ---------------------------------------------------------------
// Every tick the rig guests send "XENMIG_UDP <type> <n>" to dom0's bridge address and write
// "XENMIG_DISK <type> <n>" onto the first sector of their disk (a file in dom0, loop-attached).

export const DISK_DIR = '/var/lib/xenmig-rig';
export const UDP_PORT = 5555;

/** Records the datagrams of the guests: per type the highest counter, the count, the last arrival. */
export class UdpObserver {
  constructor() {
    this.max = {};
    this.count = {};
    this.lastAt = {};
  }
  async start() {
    const { createSocket } = await import('node:dgram');
    this.sock = createSocket('udp4');
    this.sock.on('message', (m) => {
      const g = /XENMIG_UDP (\w+) (\d+)/.exec(m.toString('latin1'));
      if (!g) return;
      const [, ty, n] = g;
      this.max[ty] = Math.max(this.max[ty] ?? 0, Number(n));
      this.count[ty] = (this.count[ty] ?? 0) + 1;
      this.lastAt[ty] = Date.now();
      this.last = { ...(this.last ?? {}), [ty]: Number(n) };
    });
    await new Promise((res, rej) => {
      this.sock.once('error', rej);
      this.sock.bind(UDP_PORT, '0.0.0.0', res);
    });
    this.sock.unref();
  }
}

/** The counter on the guest's disk (read from the image file in dom0; `file`: another image, e.g. a
 * Remus backup's), or 0. */
export function diskCounter(ty, file = `${DISK_DIR}/g-${ty}.img`) {
  try {
    const fd = openSync(file, 'r');
    const buf = Buffer.alloc(64);
    try {
      readSync(fd, buf, 0, 64, 0);
    } finally {
      closeSync(fd);
    }
    const b = buf.toString('latin1');
    const m = /XENMIG_DISK (\w+) (\d+)/.exec(b);
    return m && m[1] === ty ? Number(m[2]) : 0;
  } catch {
    return 0;
  }
}

/**
 * Disk and memory from the same checkpoint: the guest writes its counter n to the disk when
 * n % every == 0, right after printing and sending it. A replica resumed with memory counter `mem`
 * must find on its disk the last such n <= mem; or the one before it when mem itself is due, if the
 * checkpoint caught the guest between printing mem and writing it (that write then runs on resume).
 */
export function diskMatchesMemory(disk, mem, every) {
  const last = mem - (mem % every);
  return disk === last || (mem % every === 0 && disk === last - every);
}

/**
 * A disk for Remus disk replication on this host: `xenmig disk serve IMAGE` (a fresh zeroed image of
 * `mib` MiB) on two unix sockets, and `dev` (/dev/nbdN) attached to it with nbd-client, for a guest
 * config whose vbd targets `dev`. close(): disconnect the device, stop the daemon (the guest must be
 * gone). The daemon's log goes to `log`.
 */
export async function serveNbdDisk({
  image,
  dev,
  mib = 4,
  log,
  xenmig = 'node /opt/xenmig/dist/cli/main.js',
}) {
  const { spawn } = await import('node:child_process');
  const { writeFileSync } = await import('node:fs');
  writeFileSync(image, Buffer.alloc(mib << 20));
  const base = image.replace(/\.img$/, '');
  const sock = `${base}.nbd`;
  const ctl = `${base}.ctl`;
  const d = spawn(
    'sh',
    ['-c', `exec ${xenmig} disk serve ${image} --socket ${sock} --control ${ctl} --json 2>>${log}`],
    {
      stdio: ['ignore', 'pipe', 'ignore'],
    },
  );
  let out = '';
  d.stdout.setEncoding('utf8');
  d.stdout.on('data', (x) => (out += x));
  const t0 = Date.now();
  while (!out.includes('"serving"')) {
    if (d.exitCode !== null || Date.now() - t0 > 60_000) {
      d.kill('SIGKILL');
      throw new Error(`xenmig disk serve ${image}: not serving (exit ${d.exitCode}): ${readLog(log)}`);
    }
    await sleep(100);
  }
  const c = await run(['nbd-client', '-u', sock, dev, '-b', '4096'], { timeoutMs: 60_000 });
  if (c.rc !== 0) {
    d.kill('SIGKILL');
    throw new Error(`nbd-client -u ${sock} ${dev}: rc ${c.rc}: ${(c.out + c.err).trim().slice(-300)}`);
  }
  const close = async () => {
    await run(['nbd-client', '-d', dev], { timeoutMs: 30_000 });
    d.kill('SIGTERM');
    await sleep(500);
    if (d.exitCode === null) d.kill('SIGKILL');
  };
  return { image, dev, sock, ctl, daemon: d, close, nbdClient: (c.out + c.err).trim() };
}

function readLog(f) {
  return existsSync(f) ? readFileSync(f, 'utf8').trim().slice(-300) : '';
}
