// Remus disk replication benchmark, 100 dirty 4 KiB blocks per epoch on a 64 MiB image served by a
// real `xenmig disk serve` process (writes through NBD from this process):
//   1. rotate (the part inside the guest's pause): ROTATE round trip on the open control socket,
//      against the same run's baseline, an empty control round trip (HELLO);
//   2. sending the epoch (after the resume): FETCH + BLOCKS records written to /dev/null, against a
//      plain copy of the same blocks (pread from the image, write to /dev/null);
//   3. the pause of a Remus run (small mock guest, --blackhole) with and without the disk: the
//      extra pause per checkpoint;
// plus the peak RSS of this process and of the daemon. Nothing here asserts: it reports.
//
//   node bench/disk-repl.bench.mjs     (npm run bench builds dist/ first)
//   XENMIG_BENCH_CHECKPOINTS=300       epochs per figure
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { machineLoad, median, percentile, scratchDir } from './lib.mjs';

const dist = (p) => new URL(`../dist/${p}`, import.meta.url).href;
const { DiskControlClient } = await import(dist('disk/control.js'));
const { DiskReplication, diskRecord } = await import(dist('disk/primary.js'));
const { StreamWriter } = await import(dist('stream/index.js'));
const { openMockHost } = await import(dist('xen/index.js'));
const { remus } = await import(dist('checkpoint/index.js'));

const N = Math.max(20, Number(process.env.XENMIG_BENCH_CHECKPOINTS ?? 300));
const BS = 4096;
const DIRTY = 100;
const IMAGE = 64 << 20;
const dir = scratchDir('xenmig-disk-bench-');
const image = join(dir, 'disk.img');
writeFileSync(image, Buffer.alloc(IMAGE));
const nbdSock = join(dir, 'nbd.sock');
const ctlSock = join(dir, 'ctl.sock');
const daemon = spawn(
  process.execPath,
  [
    fileURLToPath(dist('cli/main.js')),
    'disk',
    'serve',
    image,
    '--socket',
    nbdSock,
    '--control',
    ctlSock,
    '--json',
  ],
  {
    stdio: ['ignore', 'pipe', 'ignore'],
  },
);
process.on('exit', () => daemon.kill());
await new Promise((r) => daemon.stdout.once('data', r));
const rssPeak = { self: 0 };
const sampleRss = () => (rssPeak.self = Math.max(rssPeak.self, process.memoryUsage().rss));
const daemonHwm = () =>
  Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${daemon.pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;

/** A minimal NBD client (fixed newstyle, GO, WRITE). */
async function nbdClient(path) {
  const s = createConnection(path);
  let buf = Buffer.alloc(0);
  let wake = null;
  s.on('data', (c) => {
    buf = Buffer.concat([buf, c]);
    wake?.();
  });
  const read = async (n) => {
    while (buf.length < n) await new Promise((r) => (wake = r));
    const o = buf.subarray(0, n);
    buf = buf.subarray(n);
    return o;
  };
  await new Promise((r) => s.once('connect', r));
  await read(18);
  const go = Buffer.alloc(26);
  go.writeUInt32BE(3, 0);
  go.write('IHAVEOPT', 4, 'latin1');
  go.writeUInt32BE(7, 12);
  go.writeUInt32BE(6, 16);
  s.write(go);
  for (;;) {
    const h = await read(20);
    await read(h.readUInt32BE(16));
    if (h.readUInt32BE(12) === 1) break;
  }
  const req = Buffer.alloc(28 + BS);
  return {
    async write(block, v) {
      req.writeUInt32BE(0x25609513, 0);
      req.writeUInt32BE(1, 4);
      req.writeBigUInt64BE(BigInt(block), 8);
      req.writeBigUInt64BE(BigInt(block * BS), 16);
      req.writeUInt32BE(BS, 24);
      req.fill(v & 0xff, 28);
      s.write(req);
      const r = await read(16);
      if (r.readUInt32BE(4) !== 0) throw new Error(`NBD write error ${r.readUInt32BE(4)}`);
    },
    close: () => s.destroy(),
  };
}

let seed = 12345;
const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
const dirtyBlocks = async (nbd, v) => {
  for (let i = 0; i < DIRTY; i++) await nbd.write(Math.floor(rnd() * (IMAGE / BS)), v + i);
};

console.log(
  `disk-repl bench: ${N} epochs of ${DIRTY} dirty ${BS}-byte blocks on a ${IMAGE >> 20} MiB image; ${machineLoad()}`,
);
const nbd = await nbdClient(nbdSock);
const ctl = await DiskControlClient.connect(ctlSock);

// 1. rotate vs an empty round trip
const base = [];
for (let i = 0; i < N; i++) {
  const t = process.hrtime.bigint();
  await ctl.hello();
  base.push(Number(process.hrtime.bigint() - t) / 1000);
}
await ctl.start();
const rot = [];
const fetchUs = [];
const copyUs = [];
const nullFd = openSync('/dev/null', 'w');
const w = new StreamWriter(nullFd);
const imgFd = openSync(image, 'r');
const copyBuf = Buffer.alloc(BS);
for (let n = 1; n <= N; n++) {
  await dirtyBlocks(nbd, n);
  const t0 = process.hrtime.bigint();
  await ctl.rotate(n);
  const t1 = process.hrtime.bigint();
  rot.push(Number(t1 - t0) / 1000);
  // 2. send epoch n as the primary does (records into a writer) ...
  const blocks = [];
  const t2 = process.hrtime.bigint();
  await ctl.fetch(n, 256, BS, async (bl, data) => {
    blocks.push(...bl);
    await w.writeRaw(
      diskRecord({ kind: 'blocks', disk: 'xvda', checkpoint: n, blockSize: BS, blocks: bl, data }),
    );
  });
  fetchUs.push(Number(process.hrtime.bigint() - t2) / 1000);
  // ... vs a plain copy of the same blocks
  const t3 = process.hrtime.bigint();
  for (const b of blocks) {
    readSync(imgFd, copyBuf, 0, BS, b * BS);
    writeSync(nullFd, copyBuf);
  }
  copyUs.push(Number(process.hrtime.bigint() - t3) / 1000);
  sampleRss();
}
ctl.close();
closeSync(imgFd);
const bm = median(base);
console.log(
  `baseline: empty control round trip  median ${bm.toFixed(1)} µs, p99 ${percentile(base, 99).toFixed(1)} µs`,
);
console.log(
  `rotate (in the pause): median ${median(rot).toFixed(1)} µs, p99 ${percentile(rot, 99).toFixed(1)} µs; ratio to the baseline ${(median(rot) / bm).toFixed(2)}×`,
);
console.log(
  `send ${DIRTY} blocks (FETCH + records, after the resume): median ${median(fetchUs).toFixed(0)} µs, p99 ${percentile(fetchUs, 99).toFixed(0)} µs; ` +
    `plain copy of the same blocks median ${median(copyUs).toFixed(0)} µs; ratio ${(median(fetchUs) / median(copyUs)).toFixed(1)}×`,
);

// 3. the pause of a Remus run, with and without the disk (blackhole, small guest, 1 dirty page + 100 blocks per epoch)
const xen = openMockHost(join(dir, 'host'));
const pauseOf = async (withDisk) => {
  const d = xen.createDomain({ type: 'hvm', pages: 256, populate: true });
  if (xen.domainInfo(d).paused) xen.unpause(d);
  const pauses = [];
  let v = 0;
  const h = remus(d, '-', {
    xen,
    blackhole: true,
    intervalMs: 0,
    maxCheckpoints: Math.min(N, 200),
    log: () => {},
    ...(withDisk ? { disks: new DiskReplication([{ name: 'xvda', control: ctlSock }]) } : {}),
    onIdle: async () => {
      xen.guestWrite(d, 1, 0, Buffer.from([++v & 0xff]));
      await dirtyBlocks(nbd, v);
    },
  });
  for await (const s of h) if (s.checkpoint > 2) pauses.push(s.pauseMs * 1000);
  const r = await h.done;
  if (r.error) throw r.error;
  xen.destroyDomain(d);
  sampleRss();
  return pauses;
};
const plain = await pauseOf(false);
const disk = await pauseOf(true);
console.log(
  `remus pause (blackhole, 256-page guest, 1 dirty page + ${DIRTY} dirty blocks per epoch): without the disk median ${median(plain).toFixed(0)} µs, ` +
    `with it ${median(disk).toFixed(0)} µs (p99 ${percentile(disk, 99).toFixed(0)} µs); extra pause ${(median(disk) - median(plain)).toFixed(0)} µs per checkpoint`,
);
console.log(
  `peak RSS: bench process ${(rssPeak.self / 2 ** 20).toFixed(0)} MiB, disk daemon ${(daemonHwm() / 2 ** 20).toFixed(0)} MiB`,
);
nbd.close();
xen.close();
daemon.kill();
process.exit(0);
