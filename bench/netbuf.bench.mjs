// Network output buffering benchmark: the per-checkpoint cost of plug(n) + release(n) (the part
// that runs inside or right after the guest's pause), against the same run's baseline, an empty
// netlink round trip (NLMSG_NOOP with an ACK on a NETLINK_ROUTE socket through the same addon call).
// Runs in two network namespaces (a veth pair stands for the vif), without traffic and while the
// "guest" sends UDP datagrams as fast as it can. Needs root; each backend this kernel supports.
// Nothing here asserts: it reports.
//
//   node bench/netbuf.bench.mjs     (npm run bench builds dist/ first)
import { spawn, spawnSync } from 'node:child_process';
import { machineLoad, median, percentile } from './lib.mjs';

const { openNetlink, NETLINK_ROUTE } = await import(new URL('../dist/xen/index.js', import.meta.url).href);
const { createNetBuffer } = await import(new URL('../dist/netbuf/index.js', import.meta.url).href);

const N = Number(process.env.XENMIG_BENCH_CHECKPOINTS ?? 5000);
const tag = `b${process.pid}`;
const G = `xnb-g-${tag}`;
const D = `xnb-d-${tag}`;

if (process.env.XENMIG_NETBUF_BENCH_NS !== D && !process.argv.includes('--inside')) {
  if (process.getuid() !== 0) {
    console.log('netbuf bench: needs root (network namespaces); skipped');
    process.exit(0);
  }
  const ip = (...a) => {
    const r = spawnSync('ip', a, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ip ${a.join(' ')}: ${r.stderr}`);
  };
  ip('netns', 'add', G);
  ip('netns', 'add', D);
  try {
    ip('-n', D, 'link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'g0', 'netns', G);
    ip('-n', D, 'addr', 'add', '10.78.0.1/24', 'dev', 'v0');
    ip('-n', G, 'addr', 'add', '10.78.0.2/24', 'dev', 'g0');
    for (const [ns, dev] of [
      [D, 'v0'],
      [G, 'g0'],
      [D, 'lo'],
    ])
      ip('-n', ns, 'link', 'set', dev, 'up');
    const r = spawnSync(
      'ip',
      ['netns', 'exec', D, process.execPath, new URL(import.meta.url).pathname, '--inside', G],
      { stdio: 'inherit' },
    );
    process.exitCode = r.status ?? 1;
  } finally {
    spawnSync('ip', ['netns', 'del', G]);
    spawnSync('ip', ['netns', 'del', D]);
  }
} else {
  const guestNs = process.argv[process.argv.indexOf('--inside') + 1];
  console.log(`netbuf bench: ${N} checkpoints per figure; ${machineLoad()}`);
  // baseline: an empty netlink round trip
  const rt = openNetlink(NETLINK_ROUTE);
  const noop = Buffer.alloc(16);
  noop.writeUInt32LE(16, 0);
  noop.writeUInt16LE(1, 4); // NLMSG_NOOP
  noop.writeUInt16LE(1 | 4, 6); // REQUEST | ACK
  const base = [];
  for (let i = 0; i < N; i++) {
    const t = process.hrtime.bigint();
    rt.requestAck(noop, 'NLMSG_NOOP');
    base.push(Number(process.hrtime.bigint() - t) / 1000);
  }
  rt.close();
  const baseMed = median(base);
  console.log(
    `baseline: empty netlink round trip  median ${baseMed.toFixed(2)} µs, p99 ${percentile(base, 99).toFixed(2)} µs`,
  );

  const measure = async (b, n0, count, gapMs = 0) => {
    const plug = [];
    const both = [];
    for (let n = n0; n < n0 + count; n++) {
      if (gapMs) await new Promise((r) => setTimeout(r, gapMs)); // the guest runs: an epoch of traffic
      const t0 = process.hrtime.bigint();
      b.plug(n);
      const t1 = process.hrtime.bigint();
      b.release(n);
      const t2 = process.hrtime.bigint();
      plug.push(Number(t1 - t0) / 1000);
      both.push(Number(t2 - t0) / 1000);
    }
    return { plug, both };
  };
  const rxPackets = () =>
    Number(spawnSync('cat', ['/sys/class/net/v0/statistics/rx_packets'], { encoding: 'utf8' }).stdout.trim());
  const report = (label, r) =>
    console.log(
      `${label}: plug median ${median(r.plug).toFixed(2)} µs; plug + release median ${median(r.both).toFixed(2)} µs, ` +
        `p99 ${percentile(r.both, 99).toFixed(2)} µs; ratio to the baseline ${(median(r.both) / baseMed).toFixed(1)}×`,
    );
  for (const backend of ['plug', 'nfqueue']) {
    const b = createNetBuffer({ interfaces: ['v0'], backend });
    try {
      b.setup();
    } catch (e) {
      console.log(`${backend}: not measured: ${e.message}`);
      continue;
    }
    try {
      report(`${backend}, no traffic`, await measure(b, 1, N));
      // the guest sends UDP datagrams as fast as it can while the checkpoints run
      const flood = spawn(
        'ip',
        [
          'netns',
          'exec',
          guestNs,
          process.execPath,
          '-e',
          `
        const s = require('node:dgram').createSocket('udp4'); const m = Buffer.alloc(64);
        const go = () => { for (let i = 0; i < 50; i++) s.send(m, 9, '10.78.0.1'); setImmediate(go); }; go();`,
        ],
        { stdio: 'ignore' },
      );
      await new Promise((r) => setTimeout(r, 300));
      const rx0 = rxPackets();
      const M = Math.min(N, 500);
      const r = await measure(b, N + 1, M, 2);
      const per = (rxPackets() - rx0) / M;
      flood.kill('SIGKILL');
      report(`${backend}, guest flooding UDP (~${per.toFixed(0)} packets per epoch)`, r);
      if (b.lost) console.log(`  packets the kernel could not report (dropped): ${b.lost}`);
    } finally {
      b.releaseAll();
      b.teardown();
    }
  }
}
