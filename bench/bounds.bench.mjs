// Resource bounds (issue 12): peak RSS of each operation as a function of the guest's size, and
// of verify against the input's length. For guest sizes 16, 64, 256 MiB (XENMIG_BOUNDS_SIZES, MiB,
// comma-separated): save to a file, verify it (and a save piped into verify -), restore it; then
// verify of a stream carrying 10^6 unknown optional records. Every command runs under GNU time.
// The mock maps a domain's memory into each process that opens it, so the save/restore/receive
// figures include the guest pages that process touched; "engine" = peak minus the guest size.
import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MiB, machineLoad, nodeCmd, scratchDir, timeShell } from './lib.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const CLI = join(here, '..', 'dist', 'cli', 'main.js');
const sizes = (process.env.XENMIG_BOUNDS_SIZES ?? '16,64,256').split(',').map(Number);
const dir = scratchDir('xenmig-bounds-');
const host = join(dir, 'host');
const x = (...args) => nodeCmd(CLI, ...args);
const mb = (b) => (b / MiB).toFixed(0);

console.log(`bounds: ${machineLoad()}, node ${process.version}`);
console.log('| guest | save → file | verify FILE (save - \\| verify -) | restore FILE |');
console.log('|---|---|---|---|');
for (const size of sizes) {
  const domid = timeShell(
    `exec ${x('mock', 'create', '--host', host, '--type', 'hvm', '--memory', `${size}M`)}`,
  ).stdout.trim();
  // touch every page so the stream carries data pages (a fresh mock domain is all zero)
  timeShell(`exec ${x('mock', 'workload', '--host', host, domid, '--rate', '1000000', '--duration', '1')}`);
  const file = join(dir, `g${size}.xl`);
  const save = timeShell(`exec ${x('save', domid, file, '--host', host, '--keep-running')}`);
  const verify = timeShell(`exec ${x('verify', file)}`);
  const rest = timeShell(`exec ${x('restore', file, '--paused', '--host', host)}`);
  const rid = rest.stdout.trim();
  timeShell(`exec ${x('mock', 'destroy', rid, '--host', host)}`);
  const pipe = timeShell(
    `${x('save', domid, '-', '--host', host, '--keep-running')} | exec ${x('verify', '-')}`,
  );
  console.log(
    `| ${size} MiB | ${mb(save.maxRssBytes)} MiB | ${mb(verify.maxRssBytes)} MiB (pipe: ${mb(pipe.maxRssBytes)}) | ${mb(rest.maxRssBytes)} MiB (engine ≈ ${mb(rest.maxRssBytes - size * MiB)}) |`,
  );
  timeShell(`exec ${x('mock', 'destroy', domid, '--host', host)}`);
}

// verify against the input's length: 10^6 unknown optional records before the libxc END
{
  const domid = timeShell(
    `exec ${x('mock', 'create', '--host', host, '--type', 'hvm', '--memory', '4M')}`,
  ).stdout.trim();
  const base = join(dir, 'small.libxc');
  timeShell(`exec ${x('save', domid, base, '--host', host, '--format', 'libxc')}`);
  const b = readFileSync(base);
  const end = b.length - 8; // a libxc stream ends with its 8-byte END record
  const n = 1_000_000;
  const junk = Buffer.alloc(8 * n);
  for (let i = 0; i < n; i++) junk.writeUInt32LE((0x80000000 | (i & 0xffffff)) >>> 0, 8 * i);
  const file = join(dir, 'million.libxc');
  writeFileSync(file, Buffer.concat([b.subarray(0, end), junk, b.subarray(end)]));
  const small = timeShell(`exec ${x('verify', base)}`);
  const big = timeShell(`exec ${x('verify', file)} 2>/dev/null`);
  console.log(
    `verify, 4 MiB guest: ${mb(small.maxRssBytes)} MiB; the same with 10^6 unknown optional records (${mb(8 * n)} MiB more input): ${mb(big.maxRssBytes)} MiB, ${big.seconds.toFixed(1)} s`,
  );
}
