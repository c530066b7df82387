// Remus checkpoint benchmark: a 1 GiB mock HVM guest replicated with --blackhole (the stream goes to
// /dev/null, as `xl remus -b`), 1,000 and 10,000 dirty pages per epoch. Per checkpoint: the guest's
// pause (suspend requested → guest resumed, with staging: the dirty set is copied while suspended
// and written after the resume). Figures: median / p99 pause, the highest sustained checkpoint rate
// (interval 0, back to back), and the same-run baseline: a plain memory copy of the same dirty set
// (Buffer.copy of N × 4096 bytes) and a copy through fresh mappings. Each in both modes: mapping per
// batch (default) and --persistent-mappings (HVM guests that never balloon). Goals: median pause <= 2 x baseline + 1 ms; >= 40 checkpoints/s
// at 1,000 dirty pages. Third baseline: the C loop (bench/cloop.c copy) mapping and copying the same
// dirty set through the same mock mappings in another process; pause/C-loop is printed too (the
// pause also holds the suspend and resume). Nothing here asserts: it reports.
//
//   node bench/remus.bench.mjs     (npm run bench builds dist/ first)
//   XENMIG_BENCH_CHECKPOINTS=60    checkpoints measured per configuration
import {
  GiB,
  machineLoad,
  median,
  percentile,
  preferShm,
  scratchDir,
  createFilledHvm,
  cloopBinary,
  q,
  timeShell,
} from './lib.mjs';

const { openMockHost } = await import(new URL('../dist/xen/index.js', import.meta.url).href);
const { remus } = await import(new URL('../dist/checkpoint/index.js', import.meta.url).href);

const PAGE = 4096;
const CHECKPOINTS = Math.max(5, Number(process.env.XENMIG_BENCH_CHECKPOINTS ?? 60));
const WARMUP = 2; // checkpoint 1 is the initial live migration of the whole guest

preferShm(3 * GiB);
const dir = scratchDir('xenmig-remus-bench-');
const xen = openMockHost(`${dir}/host`);
const t0 = performance.now();
const domid = createFilledHvm(xen, GiB);
xen.unpause(domid);
const pages = xen.domainInfo(domid).totPages;
console.log(
  `remus bench: 1 GiB HVM guest (${pages} pages) ready in ${((performance.now() - t0) / 1000).toFixed(1)} s; ${machineLoad()}`,
);

/** The guest dirties exactly `n` distinct pages spread over its memory (32 bytes each). */
function dirtier(n) {
  const stride = Math.floor(pages / n);
  const rec = new Uint8Array(32);
  let dirtyMs = 0;
  return {
    dirty(epoch) {
      const t = performance.now();
      rec[0] = epoch & 0xff;
      for (let i = 0; i < n; i++)
        xen.guestWrite(domid, (i * stride + epoch) % pages, (epoch * 32) % PAGE, rec);
      dirtyMs += performance.now() - t;
    },
    get ms() {
      return dirtyMs;
    },
  };
}

/** Baseline: copy the same dirty set (n × 4096 bytes) from one buffer into another. */
function copyBaseline(n) {
  const src = Buffer.alloc(n * PAGE, 0x5a);
  const dst = Buffer.alloc(n * PAGE, 1);
  const times = [];
  for (let i = 0; i < 50; i++) {
    src[i] = i;
    const t = performance.now();
    src.copy(dst);
    times.push(performance.now() - t);
  }
  return median(times);
}

/**
 * Baseline 2: the same dirty set copied out of the guest through foreign mappings (map in batches
 * of 1024 as the engine does, copy each batch into a buffer, unmap): the platform's own cost of
 * reading N scattered guest pages, with no stream, no suspend, no bookkeeping.
 */
const mapDst = new Uint8Array(10000 * PAGE); // reused, as the engine reuses its staging area
function mappingBaseline(n, epoch) {
  const stride = Math.floor(pages / n);
  const dst = mapDst;
  const frames = new BigUint64Array(1024);
  const t = performance.now();
  for (let b = 0; b < n; b += 1024) {
    const k = Math.min(1024, n - b);
    for (let i = 0; i < k; i++) frames[i] = BigInt(((b + i) * stride + epoch) % pages);
    const m = xen.map(domid, frames.subarray(0, k), 'r');
    dst.set(m.bytes, b * PAGE);
    m.unmap();
  }
  return performance.now() - t;
}

async function run(n, intervalMs, persistentMappings = false) {
  const d = dirtier(n);
  const stats = [];
  const h = remus(domid, '-', {
    xen,
    blackhole: true,
    intervalMs,
    maxCheckpoints: CHECKPOINTS + WARMUP,
    persistentMappings,
    log: () => {},
    onIdle: (k) => d.dirty(k),
  });
  for await (const s of h) stats.push(s);
  const r = await h.done;
  if (r.error) throw r.error;
  const measured = stats.slice(WARMUP);
  const span = measured.at(-1).atMs - stats[WARMUP - 1].atMs;
  return {
    pauses: measured.map((s) => s.pauseMs),
    dirty: median(measured.map((s) => s.dirtyPages)),
    bytes: median(measured.map((s) => s.bytes)),
    rate: (measured.length / span) * 1000,
    // the bench's own guest writes run on the same thread between checkpoints: rate without them
    rateNoGuest: (measured.length / (span - d.ms * (measured.length / (measured.length + WARMUP)))) * 1000,
  };
}

for (const n of [1000, 10000]) {
  const base = copyBaseline(n);
  const viaMap = median([...Array(9).keys()].map((e) => mappingBaseline(n, 7 + e)));
  const cLoop = Number(
    timeShell(`exec ${q(cloopBinary())} copy ${q(`${dir}/host`)} ${domid} ${n} 9`).stdout.trim(),
  );
  const goal = 2 * base + 1;
  console.log(
    `${n} dirty pages/epoch: baselines: Buffer.copy ${base.toFixed(2)} ms (goal: median pause <= ${goal.toFixed(2)} ms); ` +
      `copy via fresh mappings ${viaMap.toFixed(2)} ms; C loop (map + memcpy, median of 9) ${cLoop.toFixed(2)} ms`,
  );
  for (const pm of [false, true]) {
    const mode = pm ? 'persistent mappings' : 'default (map per batch)';
    const paced = await run(n, 25, pm);
    const flat = await run(n, 0, pm);
    const med = median(paced.pauses);
    const p99 = percentile(paced.pauses, 99);
    console.log(
      `  ${mode}: measured ${paced.dirty} pages, ${(paced.bytes / 1024 / 1024).toFixed(1)} MiB/checkpoint; pause median ${med.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms ` +
        `= ${(med / base).toFixed(1)}x Buffer.copy (goal ${med <= goal ? 'met' : 'NOT met'}), ${(med / viaMap).toFixed(2)}x copy via fresh mappings, ` +
        `pause/C-loop ${(med / cLoop).toFixed(2)}x; ` +
        `sustained ${flat.rate.toFixed(0)} checkpoints/s back to back (${flat.rateNoGuest.toFixed(0)}/s without the bench's own guest writes)` +
        (n === 1000 ? ` (goal >= 40/s: ${flat.rate >= 40 ? 'met' : 'NOT met'})` : ''),
    );
  }
}
xen.destroyDomain(domid);
xen.close();
