// Addon page-I/O benchmark: map + writePages of a whole 1 GiB mock domain, in 1024-page batches
// (as the save engine sends PAGE_DATA), to /dev/null and through a pipe drained by `cat`, against
// `cat FILE | cat > /dev/null` of a 1 GiB file on the same filesystem, in the same run.
// Goal: >= 0.8x the baseline through the pipe. Prints ratio and peak RSS (GNU time).
// Second baseline: the C loop (bench/cloop.c) sending the same pages through the same mock mappings
// to the same sink; engine/C-loop is the time ratio (goal <= 1.25x).
//
//   node bench/addon.bench.mjs            the benchmark (npm run bench builds dist/ first)
//   node bench/addon.bench.mjs --send HOSTDIR DOMID PAGES
//                                         the timed sender: writes every page of DOMID to stdout
import { existsSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import {
  GiB,
  MiB,
  scratchDir,
  timeShell,
  catPipeBaseline,
  report,
  cloopBinary,
  cloopRatio,
  q,
} from './lib.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const { openMockHost } = await import(new URL('../dist/xen/index.js', import.meta.url).href);

const BATCH = 1024;
const PAGE = 4096;
const HEADER = 16 + 8 * BATCH; // a PAGE_DATA record header + pfn array, as the engine writes

async function send(hostDir, domid, pages) {
  const hv = openMockHost(hostDir);
  const header = new Uint8Array(HEADER);
  const frames = new BigUint64Array(BATCH);
  const indices = new Uint32Array(BATCH);
  for (let i = 0; i < BATCH; i++) indices[i] = i;
  // map the next batch while the previous one is being written (XENMIG_BENCH_OVERLAP=0: don't)
  const overlap = process.env.XENMIG_BENCH_OVERLAP !== '0';
  const t0 = process.hrtime.bigint();
  let pending = null;
  for (let first = 0; first < pages; first += BATCH) {
    const n = Math.min(BATCH, pages - first);
    for (let i = 0; i < n; i++) frames[i] = BigInt(first + i);
    const m = hv.map(domid, n === BATCH ? frames : frames.subarray(0, n), 'r');
    if (pending) await pending;
    pending = hv
      .writePages(1, header, m, n === BATCH ? indices : indices.subarray(0, n))
      .finally(() => m.unmap());
    if (!overlap) await pending;
  }
  await pending;
  hv.close();
  // the transfer alone, without process start-up (the report's figure includes it)
  process.stderr.write(`transfer ${Number(process.hrtime.bigint() - t0) / 1e9}\n`);
}

if (process.argv[2] === '--send') {
  await send(process.argv[3], Number(process.argv[4]), Number(process.argv[5]));
  process.exit(0);
}

// ---- the benchmark
process.env.XENMIG_BENCH_DIR ??= existsSync('/dev/shm') ? '/dev/shm' : undefined;
if (process.env.XENMIG_BENCH_DIR === undefined) delete process.env.XENMIG_BENCH_DIR;
const dir = scratchDir('xenmig-addon-bench-');
const hostDir = join(dir, 'host');
const size = Number(process.env.XENMIG_BENCH_BYTES ?? GiB);
const pages = size / PAGE;

// the domain, with every page written (a realistic guest, and no tmpfs holes to fault in)
const hv = openMockHost(hostDir);
const domid = hv.createDomain({ type: 'hvm', pages, vcpus: 1 });
hv.pause(domid);
{
  const frames = new BigUint64Array(BATCH);
  for (let first = 0; first < pages; first += BATCH) {
    for (let i = 0; i < BATCH; i++) frames[i] = BigInt(first + i);
    const m = hv.map(domid, frames, 'rw');
    for (let p = 0; p < BATCH; p++) m.bytes.fill((first + p) & 0xff, p * PAGE, (p + 1) * PAGE);
    m.unmap();
  }
}

// the baseline file: same size, same filesystem
const file = join(dir, 'baseline.bin');
{
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(16 * MiB, 0x5a);
  for (let off = 0; off < size; off += chunk.length)
    writeSync(fd, chunk, 0, Math.min(chunk.length, size - off));
  closeSync(fd);
}
catPipeBaseline(file); // warm up
const baseline = catPipeBaseline(file);

const bytes = size + (pages / BATCH) * HEADER;
const sender = `${JSON.stringify(process.execPath)} ${JSON.stringify(join(here, 'addon.bench.mjs'))} --send ${JSON.stringify(hostDir)} ${domid} ${pages}`;
const transfer = (t) => {
  const m = /transfer ([\d.]+)/.exec(t.stderr);
  return m ? `transfer alone ${(bytes / Number(m[1]) / MiB).toFixed(0)} MiB/s` : '';
};
const cloop = `${q(cloopBinary())} send ${q(hostDir)} ${domid}`;
const cDevnull = timeShell(`exec ${cloop} > /dev/null`);
const devnull = timeShell(`exec ${sender} > /dev/null`);
report(
  'addon map+writePages 1 GiB -> /dev/null',
  { bytes, ...devnull },
  baseline,
  `${transfer(devnull)}, ${cloopRatio(devnull.seconds, cDevnull.seconds).text}`,
);
const cPipe = timeShell(`${cloop} | cat > /dev/null`);
const pipe = timeShell(`${sender} | cat > /dev/null`);
const ratio = report(
  'addon map+writePages 1 GiB -> pipe | cat',
  { bytes, ...pipe },
  baseline,
  `${transfer(pipe)}, ${cloopRatio(pipe.seconds, cPipe.seconds).text}, goal >= 0.80x`,
);
hv.destroyDomain(domid);
hv.close();
console.log(ratio >= 0.8 ? 'addon bench: goal met' : 'addon bench: below the 0.8x goal');
