// Live migration end to end: REAL separate processes (sender, receiver, workload), two mock host
// directories as two hosts. Success over a pipe, mutual TLS and a fake ssh; and on every injected
// failure the source guest is resumed (running, its workload still dirtying memory) and no copy
// runs on the destination.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import {
  checksum,
  CLI,
  createDomain,
  domainState,
  expectSourceResumed,
  listDomains,
  makeFakeSsh,
  makePki,
  readAtSuspend,
  startCli,
  startWorkload,
  tempDir,
  tempHost,
  waitForDomain,
  type Done,
  type Pki,
  type Running,
} from './helpers.js';

const tmp = tempDir('xenmig-e2e-');
let pki: Pki;
let ssh: ReturnType<typeof makeFakeSsh>;
let seq = 0;
const cleanups: (() => void)[] = [];
const procs: Running[] = [];

beforeAll(() => {
  pki = makePki(tmp.dir);
  ssh = makeFakeSsh(tmp.dir);
});
afterEach(() => {
  for (const p of procs.splice(0))
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  for (const c of cleanups.splice(0)) c();
});
afterAll(() => tmp.cleanup());

function track(r: Running): Running {
  procs.push(r);
  return r;
}

interface Setup {
  A: string;
  B: string;
  domid: number;
  workload: Running;
  /** where the sender records the guest's checksum once suspended */
  atSuspend: string;
  stats: string;
}

async function setup(type: 'hvm' | 'pv' = 'hvm', memory = '16M'): Promise<Setup> {
  const a = tempHost();
  const b = tempHost();
  cleanups.push(a.cleanup, b.cleanup);
  const domid = await createDomain(a.dir, type, memory, 2);
  const workload = track(await startWorkload(a.dir, domid, 400, 0, ++seq));
  const n = ++seq;
  return {
    A: a.dir,
    B: b.dir,
    domid,
    workload,
    atSuspend: join(tmp.dir, `at-suspend-${n}.json`),
    stats: join(tmp.dir, `stats-${n}.json`),
  };
}

function senderArgs(s: Setup, dest: string, extra: string[] = []): string[] {
  return [
    'migrate',
    String(s.domid),
    dest,
    '--host',
    s.A,
    '--checksum-at-suspend',
    s.atSuspend,
    '--stats-file',
    s.stats,
    ...extra,
  ];
}

/** sender | receiver over two pipes joined directly between the two processes */
function pipePair(
  s: Setup,
  senderExtra: string[] = [],
  receiverEnv: NodeJS.ProcessEnv = {},
): { sender: Running; receiver: Running } {
  const receiver = track(
    startCli(['receive', '-', '--host', s.B], {
      stdio: ['pipe', 'pipe', 'pipe'],
      rawStdout: true,
      env: receiverEnv,
    }),
  );
  const sender = track(
    startCli(senderArgs(s, '-', senderExtra), {
      stdio: [receiver.child.stdout!, receiver.child.stdin!, 'pipe'],
    }),
  );
  receiver.child.stdin!.destroy();
  receiver.child.stdout!.destroy();
  return { sender, receiver };
}

/** The migration succeeded: the destination runs a copy equal to the source at its suspend. */
async function expectMigrated(s: Setup, sender: Done, receiver: Done): Promise<void> {
  expect(sender.code, `sender stderr:\n${sender.stderr}`).toBe(0);
  expect(receiver.code, `receiver stderr:\n${receiver.stderr}`).toBe(0);
  const rec = readAtSuspend(s.atSuspend);
  expect(rec.domid).toBe(s.domid);
  expect(rec.suspended).toBe(true);
  expect((await listDomains(s.A)).map((d) => d.domid)).not.toContain(s.domid);
  const dest = await listDomains(s.B);
  expect(dest.length).toBe(1);
  expect(dest[0]!.state).toBe('running');
  expect(await checksum(s.B, dest[0]!.domid)).toBe(rec.checksum);
  const { domid: _a, ...destState } = await domainState(s.B, dest[0]!.domid);
  const { domid: _b, ...srcState } = rec.state;
  expect(destState).toEqual(srcState);
  // the workload ends by itself once its domain left the host
  const w = await s.workload.done;
  expect(w.code).toBe(0);
  expect(w.stderr).toContain('domain gone');
  const q = JSON.parse(readFileSync(s.stats, 'utf8'));
  expect(q.status).toBe('completed');
  expect(q.ram.transferred).toBeGreaterThan(0);
  const rounds = q.xenmig.rounds as { kind: string }[];
  expect(q.ram['dirty-sync-count']).toBe(rounds.length);
  expect(rounds.at(-1)!.kind).toBe('final');
  expect(rounds.filter((r) => r.kind === 'live').length).toBeGreaterThanOrEqual(1);
  expect(typeof q.downtime).toBe('number');
  expect(q.xenmig.outcome).toBe('handed-over');
}

/** No copy runs on the destination. */
async function expectNoRunningCopy(B: string): Promise<void> {
  for (const d of await listDomains(B)) expect(d.state).not.toBe('running');
}

/** A failed sender: non-zero exit, `xenmig: CODE: …`, and it says the source runs. */
function expectSenderFailed(r: Done, status = 1): void {
  expect(r.code, r.stderr).toBe(status);
  expect(r.stderr).toMatch(/^xenmig: [A-Z_]+: /m);
  expect(r.stderr).toMatch(/source (was resumed|was not touched) and runs/);
}

/** After a failure and the checks: the resumed source migrates fine, its memory intact. */
async function expectRetryWorks(s: Setup, stableChecksum: string): Promise<void> {
  const c = tempHost();
  cleanups.push(c.cleanup);
  const receiver = track(
    startCli(['receive', '-', '--host', c.dir], { stdio: ['pipe', 'pipe', 'pipe'], rawStdout: true }),
  );
  const sender = track(
    startCli(['migrate', String(s.domid), '-', '--host', s.A], {
      stdio: [receiver.child.stdout!, receiver.child.stdin!, 'pipe'],
    }),
  );
  receiver.child.stdin!.destroy();
  receiver.child.stdout!.destroy();
  const [sd, rd] = await Promise.all([sender.done, receiver.done]);
  expect(sd.code, sd.stderr).toBe(0);
  expect(rd.code, rd.stderr).toBe(0);
  const [d] = await listDomains(c.dir);
  expect(await checksum(c.dir, d!.domid)).toBe(stableChecksum);
}

function listeningPort(stderr: string): number {
  const m = /listening on .*:(\d+)/.exec(stderr);
  if (!m) throw new Error(`no port in: ${stderr}`);
  return Number(m[1]);
}

function tlsArgs(p: { cert: string; key: string }): string[] {
  return ['--cert', p.cert, '--key', p.key, '--ca', pki.ca];
}

describe('live migration succeeds', () => {
  it('HVM over - (a pipe between sender and receiver) while a workload dirties memory: destination = source at suspend', async () => {
    const s = await setup('hvm');
    const { sender, receiver } = pipePair(s);
    const [sd, rd] = await Promise.all([sender.done, receiver.done]);
    await expectMigrated(s, sd, rd);
  });

  it('HVM over - with xl’s handshake (--protocol xl on both ends)', async () => {
    const s = await setup('hvm');
    const receiver = track(
      startCli(['receive', '-', '--protocol', 'xl', '--host', s.B], {
        stdio: ['pipe', 'pipe', 'pipe'],
        rawStdout: true,
      }),
    );
    const sender = track(
      startCli(senderArgs(s, '-', ['--protocol', 'xl']), {
        stdio: [receiver.child.stdout!, receiver.child.stdin!, 'pipe'],
      }),
    );
    receiver.child.stdin!.destroy();
    receiver.child.stdout!.destroy();
    const [sd, rd] = await Promise.all([sender.done, receiver.done]);
    await expectMigrated(s, sd, rd);
    expect(JSON.parse(readFileSync(s.stats, 'utf8')).xenmig.peer.protocol).toBe('xl');
  });

  it('HVM over tcp:// with mutual TLS', async () => {
    const s = await setup('hvm');
    const receiver = track(
      startCli(['receive', '--listen', '127.0.0.1:0', ...tlsArgs(pki.server), '--host', s.B]),
    );
    const port = listeningPort(await receiver.waitErr(/listening on .*:\d+/));
    const sender = track(
      startCli(senderArgs(s, `tcp://127.0.0.1:${port}`, [...tlsArgs(pki.client), '--json'])),
    );
    const [sd, rd] = await Promise.all([sender.done, receiver.done]);
    await expectMigrated(s, sd, rd);
    // --json: the same stats on stdout; the receiver prints the new domid
    expect(JSON.parse(sd.stdout)).toEqual(JSON.parse(readFileSync(s.stats, 'utf8')));
    expect(Number(rd.stdout.trim())).toBe((await listDomains(s.B))[0]!.domid);
  });

  it('HVM over ssh:// (a fake ssh running the remote command)', async () => {
    const s = await setup('hvm');
    const remote = `${process.execPath} ${CLI} receive - --host ${s.B}`;
    const sender = track(
      startCli(
        senderArgs(s, 'ssh://tester@fakehost:2222', [
          '--ssh-command',
          `${process.execPath} ${ssh.path}`,
          '--remote-command',
          remote,
          '--log-format',
          'json',
        ]),
      ),
    );
    const sd = await sender.done;
    await expectMigrated(s, sd, { ...sd });
    // --log-format json: every log line on stderr is a JSON object
    const logs = sd.stderr
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { level: string; msg: string });
    expect(logs.length).toBeGreaterThan(0);
    expect(logs.every((l) => l.level === 'info' && typeof l.msg === 'string')).toBe(true);
    const argv = ssh.argv();
    expect(argv).toEqual(expect.arrayContaining(['-p', '2222', '-l', 'tester', 'fakehost', '--']));
    expect(argv.at(-1)).toContain('receive - --host');
  });
});

describe('live migration of a PV guest', () => {
  it('PV over - while a workload dirties memory: destination = source at suspend', async () => {
    const s = await setup('pv', '32M');
    const { sender, receiver } = pipePair(s);
    const [sd, rd] = await Promise.all([sender.done, receiver.done]);
    await expectMigrated(s, sd, rd);
    expect((await listDomains(s.B))[0]!.type).toBe('pv');
  });
});

describe('every failure leaves the source running', () => {
  it('receiver dies as the stream starts', async () => {
    const s = await setup();
    const { sender, receiver } = pipePair(s, [], { XENMIG_DEBUG_DIE_AT: 'stream' });
    const [sd, rd] = await Promise.all([sender.done, receiver.done]);
    expect(rd.signal).toBe('SIGKILL');
    expectSenderFailed(sd);
    await expectSourceResumed(s.A, s.domid, s.workload);
    await expectNoRunningCopy(s.B);
  });

  it('receiver killed mid-stream (its copy exists, pages flowing under a bandwidth cap); the resumed source then migrates intact', async () => {
    const s = await setup();
    const { sender, receiver } = pipePair(s, ['--bandwidth', '2M']);
    await waitForDomain(s.B);
    receiver.child.kill('SIGKILL');
    const [sd] = await Promise.all([sender.done, receiver.done]);
    expectSenderFailed(sd);
    const stable = await expectSourceResumed(s.A, s.domid, s.workload);
    await expectNoRunningCopy(s.B);
    await expectRetryWorks(s, stable);
  });

  it('receiver dies after the whole stream, before RESULT: source resumed; the dead receiver’s paused copy is the state at suspend', async () => {
    const s = await setup();
    const { sender, receiver } = pipePair(s, [], { XENMIG_DEBUG_DIE_AT: 'received' });
    const [sd, rd] = await Promise.all([sender.done, receiver.done]);
    expect(rd.signal).toBe('SIGKILL');
    expectSenderFailed(sd);
    const rec = readAtSuspend(s.atSuspend);
    expect(rec.suspended).toBe(true);
    await expectSourceResumed(s.A, s.domid, s.workload);
    await expectNoRunningCopy(s.B);
    const left = await listDomains(s.B);
    expect(left.length).toBe(1);
    expect(await checksum(s.B, left[0]!.domid)).toBe(rec.checksum);
  });

  it('stream cut in the middle (a relay drops both directions after 2 MiB)', async () => {
    const s = await setup();
    const receiver = track(
      startCli(['receive', '-', '--host', s.B], { stdio: ['pipe', 'pipe', 'pipe'], rawStdout: true }),
    );
    const sender = track(startCli(senderArgs(s, '-'), { stdio: ['pipe', 'pipe', 'pipe'], rawStdout: true }));
    const so = sender.child.stdout!;
    const ri = receiver.child.stdin!;
    receiver.child.stdout!.pipe(sender.child.stdin!);
    ri.on('error', () => undefined);
    sender.child.stdin!.on('error', () => undefined);
    let n = 0;
    so.on('data', (d: Buffer) => {
      if (n < 0) return;
      n += d.length;
      if (n > 2 << 20) {
        n = -1;
        for (const x of [so, ri, receiver.child.stdout!, sender.child.stdin!]) x.destroy();
        return;
      }
      ri.write(d);
    });
    const [sd, rd] = await Promise.all([sender.done, receiver.done]);
    expect(n).toBe(-1);
    expectSenderFailed(sd);
    expect(rd.code).not.toBe(0);
    await expectSourceResumed(s.A, s.domid, s.workload);
    await expectNoRunningCopy(s.B);
    expect(await listDomains(s.B)).toEqual([]);
  });

  it('TLS refused (client certificate of another CA): nothing sent, source untouched; the receiver still accepts a good client', async () => {
    const s = await setup();
    const receiver = track(
      startCli(['receive', '--listen', '127.0.0.1:0', ...tlsArgs(pki.server), '--host', s.B]),
    );
    const port = listeningPort(await receiver.waitErr(/listening on .*:\d+/));
    const bad = await startCli(senderArgs(s, `tcp://127.0.0.1:${port}`, tlsArgs(pki.rogue))).done;
    expectSenderFailed(bad);
    expect(bad.stderr).toMatch(/source was not touched and runs/);
    const stable = await expectSourceResumed(s.A, s.domid, s.workload);
    expect(await listDomains(s.B)).toEqual([]);
    const good = await startCli([
      'migrate',
      String(s.domid),
      `tcp://127.0.0.1:${port}`,
      '--host',
      s.A,
      ...tlsArgs(pki.client),
    ]).done;
    expect(good.code, good.stderr).toBe(0);
    expect((await receiver.done).code).toBe(0);
    const [d] = await listDomains(s.B);
    expect(await checksum(s.B, d!.domid)).toBe(stable);
  });

  it('SIGINT to the sender mid-stream: exits 130 with ERR_ABORTED, source resumed, receiver discards its copy', async () => {
    const s = await setup();
    const { sender, receiver } = pipePair(s, ['--bandwidth', '1M']);
    await waitForDomain(s.B);
    sender.child.kill('SIGINT');
    const [sd, rd] = await Promise.all([sender.done, receiver.done]);
    expectSenderFailed(sd, 130);
    expect(sd.stderr).toContain('ERR_ABORTED');
    expect(rd.code).not.toBe(0);
    const stable = await expectSourceResumed(s.A, s.domid, s.workload);
    expect(await listDomains(s.B)).toEqual([]);
    await expectRetryWorks(s, stable);
  });
});

describe('TLS listener', () => {
  it('refuses a TLS client without a certificate: no transport hello, no channel', async () => {
    const b = tempHost();
    cleanups.push(b.cleanup);
    const receiver = track(
      startCli(['receive', '--listen', '127.0.0.1:0', ...tlsArgs(pki.server), '--host', b.dir]),
    );
    const port = listeningPort(await receiver.waitErr(/listening on .*:\d+/));
    const got = await new Promise<{ data: string; error: string | null }>((resolve) => {
      let data = '';
      const sock = tls.connect({
        host: '127.0.0.1',
        port,
        ca: readFileSync(pki.ca),
        servername: 'localhost',
      });
      sock.on('secureConnect', () => sock.write('xenmig-tls-1.0\r\n'));
      sock.on('data', (d: Buffer) => (data += d.toString('latin1')));
      sock.on('error', (e) => resolve({ data, error: e.message }));
      sock.on('close', () => resolve({ data, error: null }));
    });
    // not a byte of application data (the server's transport hello) came back
    expect(got.data).toBe('');
    // nothing was received, the receiver still waits
    expect(receiver.child.exitCode).toBeNull();
    expect(await listDomains(b.dir)).toEqual([]);
    receiver.child.kill('SIGINT');
    expect((await receiver.done).code).toBe(130);
  });
});
