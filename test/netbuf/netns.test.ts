// End to end, in network namespaces (a veth pair stands for the guest's vif): packets the "guest"
// sends are held until released, and come out in epoch order. Real processes: the buffer driver and
// the UDP observer in the dom0 namespace, the sender in the guest namespace.
//
// This CI kernel has no sch_plug: the plug backend must refuse at setup (and leave nothing behind),
// and 'auto' selects the nfqueue backend, which is what the hold/release sequence proves here. On a
// kernel with sch_plug (Xen dom0: modprobe sch_plug) the same sequence runs on the plug backend.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DOM0_IP, LineProc, makeTopology, netnsUnavailable, sleep, type Topology } from './netns.js';

const FIX = join(import.meta.dirname, 'fixtures');
const PORT = 7712;
const HOLD_MS = 300;
const unavailable = netnsUnavailable();
if (unavailable) console.log(`netbuf e2e skipped: ${unavailable}`);

describe.skipIf(unavailable !== null)('network output buffering in a network namespace', () => {
  let topo: Topology;
  let observer: LineProc;
  let sender: LineProc;
  beforeAll(async () => {
    topo = makeTopology(String(process.pid));
    observer = new LineProc(topo.dom0, [
      process.execPath,
      join(FIX, 'udp.mjs'),
      'listen',
      DOM0_IP,
      String(PORT),
    ]);
    await observer.waitFor(/^listening$/);
    sender = new LineProc(topo.guest, [
      process.execPath,
      join(FIX, 'udp.mjs'),
      'send',
      DOM0_IP,
      String(PORT),
    ]);
    await sender.waitFor(/^ready$/);
  });
  afterAll(() => {
    observer?.kill();
    sender?.kill();
    topo?.destroy();
  });

  /** what the observer received since the last call */
  const received = () => observer.lines.splice(0).filter((l) => l !== 'listening');
  const send = (...words: string[]) => words.forEach((w) => sender.send(w));
  const arrive = async (n: number) => {
    const t0 = Date.now();
    while (observer.lines.filter((l) => l !== 'listening').length < n && Date.now() - t0 < 5000)
      await sleep(20);
    return received();
  };

  it('plug backend: refuses at setup with a typed error when the kernel has no sch_plug, leaving nothing behind', async (ctx) => {
    const d = new LineProc(topo.dom0, [process.execPath, join(FIX, 'driver.mjs'), 'v0', 'plug']);
    const first = await d.waitFor(/^(ready|error) /);
    await d.exited;
    if (first.startsWith('ready')) {
      console.log(
        'netbuf e2e: this kernel has sch_plug; the refusal is not exercised here (the hold sequence runs on plug below)',
      );
      ctx.skip();
    }
    expect(first).toMatch(/^error ERR_NET_BUFFER_UNSUPPORTED .*plug qdisc/);
    // no IFB left, no ingress qdisc left on the vif
    const links = spawnSync('ip', ['-n', topo.dom0, '-o', 'link', 'show'], { encoding: 'utf8' }).stdout;
    expect(links).not.toMatch(/xnb\d+/);
    const qd = spawnSync('tc', ['-n', topo.dom0, 'qdisc', 'show', 'dev', 'v0'], { encoding: 'utf8' }).stdout;
    expect(qd).not.toMatch(/ingress/);
    // and traffic still flows
    send('after-refusal');
    expect(await arrive(1)).toEqual(['after-refusal']);
  });

  for (const backend of ['plug', 'nfqueue'] as const) {
    it(`${backend} backend: held until release, released in epoch order, all released, removed on teardown`, async (ctx) => {
      const d = new LineProc(topo.dom0, [process.execPath, join(FIX, 'driver.mjs'), 'v0', backend]);
      const first = await d.waitFor(/^(ready|error) /);
      if (first.startsWith('error')) {
        // only the plug backend may be missing (CI kernel without CONFIG_NET_SCH_PLUG)
        expect(backend).toBe('plug');
        expect(first).toMatch(/ERR_NET_BUFFER_UNSUPPORTED/);
        console.log(
          `netbuf e2e: plug backend not proven on this kernel (${first.slice(6)}); the hold/release sequence ` +
            'runs on nfqueue here and on plug where sch_plug exists (Xen dom0: modprobe sch_plug)',
        );
        ctx.skip();
      }
      try {
        received();
        // before the first plug: passes
        send('a1', 'a2');
        expect(await arrive(2)).toEqual(['a1', 'a2']);
        expect(await d.command('plug 1')).toBe('ok plug 1');
        expect(await d.command('release 1')).toBe('ok release 1');
        // epoch 2: held
        send('b1', 'b2');
        await sleep(HOLD_MS);
        expect(received()).toEqual([]);
        expect(await d.command('plug 2')).toBe('ok plug 2');
        // epoch 3 begins: held too
        send('c1', 'c2');
        await sleep(HOLD_MS);
        expect(received()).toEqual([]);
        // checkpoint 2 safe: epoch 2 goes, in order, and nothing of epoch 3
        expect(await d.command('release 2')).toBe('ok release 2');
        expect(await arrive(2)).toEqual(['b1', 'b2']);
        await sleep(HOLD_MS);
        expect(received()).toEqual([]);
        expect(await d.command('plug 3')).toBe('ok plug 3');
        send('d1');
        await sleep(HOLD_MS);
        expect(received()).toEqual([]);
        expect(await d.command('release 3')).toBe('ok release 3');
        expect(await arrive(2)).toEqual(['c1', 'c2']);
        await sleep(HOLD_MS);
        expect(received()).toEqual([]);
        // stop with 'continue': everything goes, nothing is held any more
        expect(await d.command('releaseAll')).toBe('ok releaseAll');
        expect(await arrive(1)).toEqual(['d1']);
        send('e1');
        expect(await arrive(1)).toEqual(['e1']);
        // plugged again, then torn down: held output is dropped, later output flows directly
        expect(await d.command('plug 4')).toBe('ok plug 4');
        send('x-dropped');
        await sleep(HOLD_MS);
        expect(received()).toEqual([]);
        expect(await d.command('teardown')).toBe('ok teardown');
        send('f1');
        expect(await arrive(1)).toEqual(['f1']);
        await sleep(HOLD_MS);
        expect(received()).toEqual([]);
        const links = spawnSync('ip', ['-n', topo.dom0, '-o', 'link', 'show'], { encoding: 'utf8' }).stdout;
        expect(links).not.toMatch(/xnb\d+/);
      } finally {
        d.send('exit');
        await d.exited;
      }
    });
  }

  it('xenmig remus (CLI, mock host) with the real backend on the veth: replicates, output released, nothing left', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { openMockHost } = await import('../../src/xen/hypervisor.js');
    const root = mkdtempSync('/dev/shm/xenmig-netbuf-remus-');
    const xen = openMockHost(join(root, 'host'));
    try {
      const d = xen.createDomain({ type: 'hvm', pages: 32, populate: true });
      const cli = join(import.meta.dirname, '..', 'checkpoint', 'fixtures', 'cli.mjs');
      const p = new LineProc(topo.dom0, [
        process.execPath,
        cli,
        'remus',
        String(d),
        join(root, 's.stream'),
        '--host',
        join(root, 'host'),
        '-i',
        '100',
        '--max-checkpoints',
        '10',
        '--json',
        '--net-buffer-interfaces',
        'v0',
      ]);
      received();
      const words: string[] = [];
      for (let i = 0; i < 20; i++) {
        words.push(`r${i}`);
        send(`r${i}`);
        await sleep(40);
      }
      const code = await p.exited;
      expect(code, p.stderr).toBe(0);
      expect(p.lines.map((l) => JSON.parse(l) as { result?: string }).at(-1)).toMatchObject({
        result: 'max-checkpoints',
      });
      // everything sent during the run came out (released per checkpoint, the rest at the end), in order
      expect(await arrive(words.length)).toEqual(words);
      send('after-remus');
      expect(await arrive(1)).toEqual(['after-remus']);
    } finally {
      xen.close();
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('nfqueue backend: a SIGKILLed primary leaves no rule behind (the table belongs to its socket)', async () => {
    const d = new LineProc(topo.dom0, [process.execPath, join(FIX, 'driver.mjs'), 'v0', 'nfqueue']);
    expect(await d.waitFor(/^(ready|error) /)).toBe('ready nfqueue');
    received();
    expect(await d.command('plug 1')).toBe('ok plug 1');
    send('held-then-killed');
    await sleep(HOLD_MS);
    expect(received()).toEqual([]);
    d.kill('SIGKILL');
    await d.exited;
    send('g1');
    expect(await arrive(1)).toEqual(['g1']);
  });
});
