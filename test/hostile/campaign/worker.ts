// A campaign worker (bundled and run as its own process by run.ts): builds the corpus on its own
// mock host, then runs cases [from, to) of the seed in-process — verify, restore, receive (the real
// receiver handshake against an in-memory sender) and the Remus backup's restore — plus a sample
// through real CLI processes. Protocol on stdout, one line each: "S <index>" when a case starts,
// "F <json>" for a failed check, "D <json>" with the totals at the end.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as pathJoin } from 'node:path';
import net from 'node:net';
import { Readable, Writable } from 'node:stream';
import { mockBuilder, receive, restore, save } from '../../../src/api.js';
import { restoreDomain } from '../../../src/toolstack/restore.js';
import { parseDomainConfig } from '../../../src/toolstack/config.js';
import { validateStream } from '../../../src/stream/index.js';
import { Channel } from '../../../src/transport/channel.js';
import { senderHandshake } from '../../../src/transport/handshake.js';
import { openMockHost, type MockHypervisor } from '../../../src/xen/hypervisor.js';
import { frameRecord, split, type Segment } from '../frame.js';
import { TABLE_ATTACKS, withRandomPtes, withTableAttack } from '../pt.js';
import { crashText, supervise } from '../supervise.js';
import { makeCase, type Base, type Case, type Input } from './gen.js';

export interface WorkerJob {
  host: string;
  seed: number;
  from: number;
  to: number;
  /** run a case through the CLI too when index % cliEvery === cliEvery - 1 (0 = never) */
  cliEvery: number;
  /** a case still running after this long is a hang */
  caseDeadlineMs: number;
  repo: string;
}

const out = (s: string) => process.stdout.write(s + '\n');

class Sink extends Writable {
  chunks: Buffer[] = [];
  override _write(c: Buffer, _e: BufferEncoding, cb: () => void): void {
    this.chunks.push(Buffer.from(c));
    cb();
  }
}

async function saved(xen: MockHypervisor, domid: number, format: 'xl' | 'libxl' | 'libxc'): Promise<Buffer> {
  const sink = new Sink();
  await save(domid, sink, { xen, format, keepRunning: true });
  return Buffer.concat(sink.chunks);
}

function configOf(segs: Segment[]): string {
  const h = segs[0]!;
  const i = h.bytes.indexOf('{');
  return h.bytes.subarray(i, h.bytes.lastIndexOf('}') + 1).toString('utf8');
}

/** A Remus stream (libxl format) from a plain one: the stream as checkpoint 1, then two more. */
function remusOf(segs: Segment[]): Segment[] {
  const ckpt: Segment = {
    kind: 'record',
    layer: 'libxc',
    type: 0x0e,
    name: 'CHECKPOINT',
    bytes: Buffer.alloc(0),
    offset: -1,
  };
  const ckEnd: Segment = {
    kind: 'record',
    layer: 'libxl',
    type: 4,
    name: 'CHECKPOINT_END',
    bytes: Buffer.alloc(0),
    offset: -1,
  };
  const end = segs.findIndex((s) => s.kind === 'record' && s.layer === 'libxc' && s.type === 0);
  const body = segs.slice(0, end);
  const again = body.filter(
    (s) => s.kind === 'record' && s.layer === 'libxc' && [0x01, 0x09, 0x0a].includes(s.type),
  );
  return [...body, ckpt, ckEnd, ...again, ckpt, ckEnd, ...again, ckpt, ckEnd].map((s, i) => ({
    ...s,
    offset: i === 0 ? 0 : -1,
  }));
}

async function corpus(xen: MockHypervisor): Promise<Base[]> {
  const bases: Base[] = [];
  for (const kind of ['hvm', 'pv'] as const) {
    const d = xen.createDomain({
      type: kind,
      pages: kind === 'hvm' ? 64 : 128,
      vcpus: kind === 'pv' ? 2 : 1,
    });
    for (const format of ['xl', 'libxl', 'libxc'] as const) {
      const bytes = await saved(xen, d, format);
      const segs = await split(bytes);
      bases.push({ name: `${kind}-${format}`, kind, format, remus: false, segs, config: '' });
    }
    const config = configOf(bases.find((b) => b.name === `${kind}-xl`)!.segs);
    for (const b of bases) if (b.kind === kind) b.config = config;
    xen.destroyDomain(d);
  }
  const hvmLibxl = bases.find((b) => b.name === 'hvm-libxl')!;
  const remusSegs = remusOf(hvmLibxl.segs);
  // offsets of the rebuilt stream (truncation at record boundaries uses them)
  let off = 0;
  for (const s of remusSegs) {
    s.offset = off;
    off += s.kind === 'record' ? frameRecord(s.type, s.bytes).length : s.bytes.length;
  }
  bases.push({
    name: 'hvm-remus',
    kind: 'hvm',
    format: 'libxl',
    remus: true,
    segs: remusSegs,
    config: hvmLibxl.config,
  });
  return bases;
}

/** The problem with an error, or null when it is a typed one (a string code of ours or an errno). */
export function untyped(e: unknown): string | null {
  if (!(e instanceof Error)) return `non-Error thrown: ${String(e)}`;
  if (
    e instanceof TypeError ||
    e instanceof RangeError ||
    e instanceof ReferenceError ||
    e instanceof SyntaxError
  )
    return `${e.name}: ${e.message}`;
  const code = (e as { code?: unknown }).code;
  if (typeof code !== 'string' || !/^(ERR_[A-Z0-9_]+|E[A-Z0-9]+)$/.test(code))
    return `untyped ${e.name}: ${e.message}`;
  return null;
}

const toReadable = (input: Input): Readable | Buffer =>
  Buffer.isBuffer(input) ? input : Readable.from(input());

/** A loopback TCP connection as a (sender, receiver) channel pair: sockets, so the receiver's idle timeout works. */
let server: net.Server | null = null;
const accepted: net.Socket[] = [];
const acceptWaiters: ((s: net.Socket) => void)[] = [];
async function channelPair(): Promise<[Channel, Channel]> {
  if (!server) {
    server = net.createServer((s) => {
      const w = acceptWaiters.shift();
      if (w) w(s);
      else accepted.push(s);
    });
    await new Promise<void>((res) => server!.listen(0, '127.0.0.1', () => res()));
  }
  const port = (server.address() as net.AddressInfo).port;
  const got = accepted.length
    ? Promise.resolve(accepted.shift()!)
    : new Promise<net.Socket>((res) => acceptWaiters.push(res));
  const a = net.connect(port, '127.0.0.1');
  await new Promise<void>((res, rej) => a.once('connect', res).once('error', rej));
  const b = await got;
  const mk = (role: 'sender' | 'receiver', s: net.Socket) =>
    new Channel({
      kind: 'tcp',
      role,
      description: `loopback ${role}`,
      readable: { stream: s },
      writable: { stream: s },
      idleTimeoutMs: 400,
    });
  return [mk('sender', a), mk('receiver', b)];
}

async function writeInput(w: Writable, input: Input, signal: AbortSignal): Promise<void> {
  const chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array> = Buffer.isBuffer(input) ? [input] : input();
  for await (const c of chunks) {
    if (signal.aborted) throw signal.reason;
    if (!w.write(c))
      await new Promise<void>((res, rej) => {
        const done = () => {
          w.off('drain', done);
          w.off('close', done);
          signal.removeEventListener('abort', done);
          // the reason is the AbortError of the case's own controller
          if (signal.aborted) rej(signal.reason as Error);
          else res();
        };
        w.on('drain', done);
        w.on('close', done);
        signal.addEventListener('abort', done);
      });
  }
}

async function runTarget(xen: MockHypervisor, c: Case, base: Base): Promise<{ domid: number | null }> {
  const config = base.format === 'xl' ? undefined : parseDomainConfig(base.config);
  switch (c.target) {
    case 'verify':
      await validateStream(Buffer.isBuffer(c.input) ? c.input : c.input(), {
        streamType: base.remus ? 'remus' : 'plain',
      });
      return { domid: null };
    case 'restore': {
      const r = await restore(toReadable(c.input), { xen, paused: true, ...(config ? { config } : {}) });
      return { domid: r.domid };
    }
    case 'remus': {
      const r = await restoreDomain({
        xen,
        input: Buffer.isBuffer(c.input) ? c.input : c.input(),
        builder: mockBuilder(xen),
        streamType: 'remus',
        paused: true,
        completeEachCheckpoint: true,
        ...(config ? { config } : {}),
      });
      return { domid: r.domid };
    }
    case 'receive': {
      const [tx, rx] = await channelPair();
      const sender = senderHandshake(
        tx,
        {
          sendStream: (ch, signal) => writeInput(ch.writable, c.input, signal),
          prepareHandover: async () => undefined,
          resumeSource: async () => undefined,
          destroySource: async () => undefined,
        },
        { timeouts: { ready: 3_000, received: 5_000, result: 3_000, clearedBack: 3_000, bestEffort: 300 } },
      );
      const got = receive({ xen, channel: rx, paused: true }).then(
        (r) => ({ domid: r.domid, err: null as Error | null }),
        (e: unknown) => ({ domid: null, err: e instanceof Error ? e : new Error(String(e)) }),
      );
      const [, r] = await Promise.all([sender, got]);
      if (r.err) throw r.err;
      return { domid: r.domid };
    }
  }
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2]!) as WorkerJob;
  const xen = openMockHost(job.host);
  const bases = await corpus(xen);
  const byName = new Map(bases.map((b) => [b.name, b]));
  const bystanders = [
    xen.createDomain({ type: 'pv', pages: 64, vcpus: 1 }),
    xen.createDomain({ type: 'hvm', pages: 16, vcpus: 1 }),
  ];
  const sums = bystanders.map((d) => xen.checksum(d));
  const baseline = xen.listDomainIds().join(',');
  const tmp = mkdtempSync(pathJoin(tmpdir(), 'xenmig-campaign-'));
  const totals = {
    cases: 0,
    ok: 0,
    rejected: 0,
    cli: 0,
    codes: {} as Record<string, number>,
    targets: {} as Record<string, number>,
    msByKind: {} as Record<string, number>,
    maxRssMb: 0,
  };
  const ptAttack = async (
    b: Buffer,
    r: { int(n: number): number; next(): number; pick<T>(a: readonly T[]): T; chance(p: number): boolean },
  ) => (r.chance(0.5) ? withTableAttack(b, r.pick(TABLE_ATTACKS)) : withRandomPtes(b, () => r.next()));
  const fail = (c: Case, check: string, detail: string) =>
    out(
      'F ' +
        JSON.stringify({
          seed: job.seed,
          index: c.index,
          base: c.base,
          target: c.target,
          ops: c.ops,
          check,
          detail: detail.slice(0, 2000),
        }),
    );

  for (let i = job.from; i < job.to; i++) {
    out(`S ${i}`);
    const c = await makeCase(bases, job.seed, i, ptAttack);
    const base = byName.get(c.base)!;
    totals.targets[c.target] = (totals.targets[c.target] ?? 0) + 1;
    const t0 = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, rej) => {
      timer = setTimeout(
        () => rej(Object.assign(new Error(`no result after ${job.caseDeadlineMs} ms`), { hang: true })),
        job.caseDeadlineMs,
      );
    });
    try {
      const r = await Promise.race([runTarget(xen, c, base), deadline]);
      totals.ok++;
      if (r.domid !== null) xen.destroyDomain(r.domid);
    } catch (e) {
      if ((e as { hang?: boolean }).hang) {
        fail(c, 'hang', (e as Error).message);
        out('D ' + JSON.stringify({ ...totals, aborted: i }));
        process.exit(3);
      }
      const bad = untyped(e);
      if (bad) fail(c, 'typed error', `${bad}\n${(e as Error).stack ?? ''}`);
      totals.rejected++;
      const code = String((e as { code?: unknown }).code);
      totals.codes[`${c.target}:${code}`] = (totals.codes[`${c.target}:${code}`] ?? 0) + 1;
    } finally {
      clearTimeout(timer);
    }
    totals.cases++;
    const kindKey = `${c.target}:${c.ops[0]?.replace(/[@(].*/, '') ?? '?'}`;
    totals.msByKind[kindKey] = Math.round((totals.msByKind[kindKey] ?? 0) + performance.now() - t0);
    if (performance.now() - t0 > 1000)
      out('W ' + JSON.stringify({ index: i, kind: kindKey, ms: Math.round(performance.now() - t0) }));
    const now = xen.listDomainIds();
    if (now.join(',') !== baseline) {
      fail(c, 'domain left behind', `domains ${now.join(',')} (expected ${baseline})`);
      for (const d of now) if (!baseline.split(',').includes(String(d))) xen.destroyDomain(d);
    }
    bystanders.forEach((d, k) => {
      if (xen.checksum(d) !== sums[k]) fail(c, 'bystander memory', `domain ${d} changed`);
    });
    totals.maxRssMb = Math.max(totals.maxRssMb, Math.round(process.memoryUsage().rss / 2 ** 20));
    if (job.cliEvery > 0 && i % job.cliEvery === job.cliEvery - 1 && Buffer.isBuffer(c.input)) {
      totals.cli++;
      await cliCase(job, xen, c, tmp, baseline, bystanders, sums, fail);
    }
  }
  rmSync(tmp, { recursive: true, force: true });
  out('D ' + JSON.stringify(totals));
  server?.close();
  xen.close();
}

/** The same case through real processes: `xenmig verify FILE` and `xenmig restore FILE`. */
async function cliCase(
  job: WorkerJob,
  xen: MockHypervisor,
  c: Case,
  tmp: string,
  baseline: string,
  bystanders: number[],
  sums: string[],
  fail: (c: Case, check: string, detail: string) => void,
): Promise<void> {
  const file = pathJoin(tmp, `case-${c.index}`);
  writeFileSync(file, c.input as Buffer);
  const opts = {
    deadlineMs: 60_000,
    rssLimitMb: 400,
    cli: pathJoin(job.repo, 'dist', 'cli', 'main.js'),
    cwd: job.repo,
  };
  for (const args of [
    ['verify', file],
    ['restore', file, '--paused', '--host', job.host],
  ]) {
    const r = await supervise(args, opts);
    const what = `xenmig ${args[0]}`;
    if (r.killed)
      fail(c, `${what}: ${r.killed}`, `peak ${r.peakRssKb} KiB after ${Math.round(r.ms)} ms\n${r.stderr}`);
    else if (r.code !== 0 && r.code !== 1)
      fail(c, `${what}: exit status`, `exit ${r.code ?? r.signal}\n${r.stderr}`);
    const crash = crashText(r.stderr);
    if (crash) fail(c, `${what}: stack trace`, r.stderr);
    if (args[0] === 'restore' && r.code === 0) {
      const domid = Number(r.stdout.trim());
      if (Number.isInteger(domid)) xen.destroyDomain(domid);
    }
  }
  const now = xen.listDomainIds();
  if (now.join(',') !== baseline) {
    fail(c, 'xenmig restore: domain left behind', `domains ${now.join(',')} (expected ${baseline})`);
    for (const d of now) if (!baseline.split(',').includes(String(d))) xen.destroyDomain(d);
  }
  bystanders.forEach((d, k) => {
    if (xen.checksum(d) !== sums[k]) fail(c, 'xenmig restore: bystander memory', `domain ${d} changed`);
  });
}

main().catch((e: unknown) => {
  out('F ' + JSON.stringify({ check: 'worker', detail: String((e as Error)?.stack ?? e) }));
  process.exit(2);
});
