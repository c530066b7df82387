// Turns a benchmark run of the rig (RIG_MODE=bench: bench.mjs in dom0) into its table: per direction
// the medians over the rounds, and the ratios to xl -> xl measured in the same boot.
// Usage: node bench-report.mjs RESULTS_DIR [OUT.md]   (prints the table; writes OUT.md when given)
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { basename } from 'node:path';

const [dir, outFile] = process.argv.slice(2);
const rows = readFileSync(`${dir}/bench.jsonl`, 'utf8')
  .split('\n')
  .filter(Boolean)
  .map((l) => JSON.parse(l));
const facts = existsSync(`${dir}/bench-facts.json`)
  ? JSON.parse(readFileSync(`${dir}/bench-facts.json`, 'utf8'))
  : {};

const median = (a) => {
  const v = a.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((x, y) => x - y);
  if (!v.length) return null;
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};
const f1 = (x, d = 1) => (x === null || x === undefined ? '–' : Number(x).toFixed(d));
const ratio = (a, b) => (a && b ? `${(a / b).toFixed(2)}×` : '–');

const lines = [];
lines.push(`# Real-Xen benchmark: xl and xenmig on the same Xen boot`);
lines.push('');
lines.push(
  `Run \`${basename(dir)}\`: Xen ${facts.xen ?? '?'} under QEMU TCG (one emulated CPU), node ${facts.node ?? '?'};`,
);
lines.push(
  `the 128 MiB PVH guest \`g-bench\` (a vbd and a vif) ticks every ${facts.tickMs ?? 50} ms; ${facts.rounds ?? '?'} rounds per direction, interleaved;`,
);
lines.push(
  'live migration on the same host, both ends the real CLI connected by two FIFOs. Produced by `npm run bench:realxen`.',
);
lines.push('');
lines.push(
  'Guest-visible pause: the largest gap between two consecutive ticks of the guest as they reach dom0, less one tick',
);
lines.push(
  "interval: on the console (xenconsoled's log) and in UDP datagrams (network back at the destination).",
);
lines.push(
  "Speed ratio: xl → xl wall time ÷ this direction's (above 1 is faster than xl). Pause ratio: this ÷ xl → xl (below 1 is shorter).",
);
lines.push('');
lines.push(
  '| migration | runs | wall time | speed vs xl → xl | sender wall / CPU | receiver wall / CPU | peak RSS sender / receiver | pause (console) | vs xl | pause (network) | vs xl |',
);
lines.push('|---|---|---|---|---|---|---|---|---|---|---|');
const mig = rows.filter((r) => r.kind === 'migrate');
const dirs = [
  ['xl', 'xl'],
  ['xenmig', 'xenmig'],
  ['xenmig', 'xl'],
  ['xl', 'xenmig'],
];
const stat = {};
for (const [s, r] of dirs) {
  const ok = mig.filter((x) => x.sender === s && x.receiver === r && !x.error);
  stat[`${s}>${r}`] = {
    n: ok.length,
    failed: mig.filter((x) => x.sender === s && x.receiver === r && x.error).length,
    wall: median(ok.map((x) => x.wallMs / 1000)),
    sw: median(ok.map((x) => x.senderWallS)),
    sc: median(ok.map((x) => x.senderCpuS)),
    rw: median(ok.map((x) => x.receiverWallS)),
    rc: median(ok.map((x) => x.receiverCpuS)),
    ru: median(ok.map((x) => x.receiverUserS)),
    rs: median(ok.map((x) => x.receiverSysS)),
    su: median(ok.map((x) => x.senderUserS)),
    ss: median(ok.map((x) => x.senderSysS)),
    sm: median(ok.map((x) => x.senderPeakMiB)),
    rm: median(ok.map((x) => x.receiverPeakMiB)),
    pc: median(ok.map((x) => x.pauseConsoleMs / 1000)),
    pu: median(ok.map((x) => x.pauseUdpMs / 1000)),
  };
}
const base = stat['xl>xl'];
for (const [s, r] of dirs) {
  const x = stat[`${s}>${r}`];
  lines.push(
    `| \`${s} ${s === 'xl' ? 'migrate' : 'migrate'}\` → \`${r === 'xl' ? 'xl migrate-receive' : 'xenmig receive'}\` | ${x.n}${x.failed ? ` (+${x.failed} failed)` : ''} | ${f1(x.wall)} s | ${ratio(base.wall, x.wall)} | ${f1(x.sw)} s / ${f1(x.sc)} s | ${f1(x.rw)} s / ${f1(x.rc)} s | ${f1(x.sm, 0)} / ${f1(x.rm, 0)} MiB | ${f1(x.pc, 2)} s | ${ratio(x.pc, base.pc)} | ${f1(x.pu, 2)} s | ${ratio(x.pu, base.pu)} |`,
  );
}
if (dirs.some(([s, r]) => stat[`${s}>${r}`].ru !== null)) {
  lines.push('');
  lines.push("CPU seconds split into user / system (an xl sender's figures include its receiver child's):");
  lines.push('');
  lines.push('| migration | sender user / system | receiver user / system |');
  lines.push('|---|---|---|');
  for (const [s, r] of dirs) {
    const x = stat[`${s}>${r}`];
    lines.push(`| ${s} → ${r} | ${f1(x.su)} / ${f1(x.ss)} s | ${f1(x.ru)} / ${f1(x.rs)} s |`);
  }
}
const withRounds = mig.filter((x) => x.xenmigRounds?.length);
if (withRounds.length) {
  lines.push('');
  lines.push(
    "A xenmig sender's own figures (its statistics): rounds as kind:pages:ms, setup and total time.",
  );
  lines.push('');
  lines.push('| migration | round | setup | total | rounds |');
  lines.push('|---|---|---|---|---|');
  for (const x of withRounds)
    lines.push(
      `| ${x.sender} → ${x.receiver} | ${x.round} | ${f1((x.xenmigSetupMs ?? NaN) / 1000)} s | ${f1((x.xenmigTotalMs ?? NaN) / 1000)} s | ${x.xenmigRounds.map((r) => r.join(':')).join(' ')} |`,
    );
}
const probes = rows.filter((r) => r.kind === 'startup' && r.rc === 0);
if (probes.length) {
  lines.push('');
  lines.push('Start-up in this dom0 (3 runs each, medians):');
  lines.push('');
  lines.push('| command | wall | user | system |');
  lines.push('|---|---|---|---|');
  for (const name of [...new Set(probes.map((r) => r.name))]) {
    const p = probes.filter((r) => r.name === name);
    lines.push(
      `| \`${name}\` | ${f1(median(p.map((r) => r.wallS)), 2)} s | ${f1(median(p.map((r) => r.userS)), 2)} s | ${f1(median(p.map((r) => r.sysS)), 2)} s |`,
    );
  }
}
const saves = rows.filter((r) => r.kind === 'save' && !r.error);
if (saves.length) {
  lines.push('');
  lines.push(
    'The sender alone: a non-live save of g-bench to /dev/null that leaves it running (`xl save -c` against `xenmig save --keep-running`), medians:',
  );
  lines.push('');
  lines.push('| save | runs | wall | vs xl | user / system | pause (console) | xenmig total-time |');
  lines.push('|---|---|---|---|---|---|---|');
  const sm = {};
  const tools = [...new Set(saves.map((r) => r.tool))];
  for (const tool of tools) {
    const t = saves.filter((r) => r.tool === tool);
    sm[tool] = {
      n: t.length,
      wall: median(t.map((r) => r.wallMs / 1000)),
      u: median(t.map((r) => r.userS)),
      sy: median(t.map((r) => r.sysS)),
      p: median(t.map((r) => r.pauseConsoleMs / 1000)),
      tot: median(t.map((r) => r.xenmigTotalMs / 1000)),
    };
  }
  for (const tool of tools) {
    const x = sm[tool];
    lines.push(
      `| ${tool} | ${x.n} | ${f1(x.wall)} s | ${ratio(sm.xl?.wall, x.wall)} | ${f1(x.u)} / ${f1(x.sy)} s | ${f1(x.p, 2)} s | ${x.tot === null ? '–' : `${f1(x.tot)} s`} |`,
    );
  }
}
const rem = rows.filter((r) => r.kind === 'remus');
if (rem.length) {
  lines.push('');
  lines.push(
    `Remus at a ${rem.find((r) => r.intervalMs)?.intervalMs ?? '?'} ms interval, measured over ${rem.find((r) => r.windowS)?.windowS ?? '?'} s per run after the first checkpoints; guest-visible pauses are the`,
  );
  lines.push(
    'console gaps above 1.5 ticks (less one tick); "own" is the pause the primary reports itself (suspend requested →',
  );
  lines.push(
    'guest resumed), "guest suspending" the part of it spent waiting for the guest to suspend itself.',
  );
  lines.push('');
  lines.push(
    '| Remus | runs | checkpoints/s | visible pauses/s | pause median | vs xl | pause max | own pause median | guest suspending, median |',
  );
  lines.push('|---|---|---|---|---|---|---|---|---|');
  const names = {
    xl: '`xl remus -F -n -d` → `xl migrate-receive -r`',
    xenmig: '`xenmig remus --no-net-buffer` → `xenmig remus-receive`',
    'xenmig-buffered': '`xenmig remus` (network buffered) → `xenmig remus-receive`',
  };
  const rs = {};
  for (const tool of ['xl', 'xenmig', 'xenmig-buffered']) {
    const ok = rem.filter((x) => x.tool === tool && !x.error);
    rs[tool] = {
      n: ok.length,
      failed: rem.filter((x) => x.tool === tool && x.error).length,
      cps: median(ok.map((x) => x.checkpointsPerS)),
      vps: median(ok.map((x) => x.visiblePauses / x.windowS)),
      pm: median(ok.map((x) => x.pauseMedianMs)),
      px: median(ok.map((x) => x.pauseMaxMs)),
      own: median(ok.map((x) => x.ownPauseMedianMs)),
      susp: median(ok.filter((x) => x.suspendMedianMs != null).map((x) => x.suspendMedianMs)),
    };
  }
  for (const tool of ['xl', 'xenmig', 'xenmig-buffered']) {
    const x = rs[tool];
    lines.push(
      `| ${names[tool]} | ${x.n}${x.failed ? ` (+${x.failed} failed)` : ''} | ${f1(x.cps, 2)} | ${f1(x.vps, 2)} | ${f1(x.pm, 0)} ms | ${ratio(x.pm, rs.xl.pm)} | ${f1(x.px, 0)} ms | ${x.own === null ? '–' : `${f1(x.own, 1)} ms`} | ${x.susp === null ? '–' : `${f1(x.susp, 1)} ms`} |`,
    );
  }
}
const trials = rows.filter((r) => r.kind === 'trial' && !r.error);
if (trials.length) {
  lines.push('');
  lines.push(
    'Remus output commit (xenmig → xenmig, the primary killed 2–12 s after its first acknowledged checkpoint): the highest',
  );
  lines.push(
    'counter dom0 ever received over UDP against the counter the replica resumed from (its first console tick less one).',
  );
  lines.push('');
  lines.push(
    "| network output | trials | replica ≥ outside (output commit held) | outside saw the future | largest lead | disk = memory's checkpoint |",
  );
  lines.push('|---|---|---|---|---|---|');
  const kinds = [
    [true, true, 'buffered, vbd replicated (`--disk`)'],
    [true, false, 'buffered (default)'],
    [false, false, '`--no-net-buffer`'],
  ];
  for (const [buffered, disk, label] of kinds) {
    const t = trials.filter((x) => x.buffered === buffered && !!x.disk === disk);
    if (!t.length) continue;
    const fut = t.filter((x) => x.future > 0);
    const dk = disk ? `${t.filter((x) => x.diskOk).length} of ${t.length}` : '–';
    lines.push(
      `| ${label} | ${t.length} | ${t.filter((x) => x.replicaCounter >= x.seenOutside).length} | ${fut.length} | ${fut.length ? Math.max(...fut.map((x) => x.future)) + ' ticks' : '–'} | ${dk} |`,
    );
  }
  // xenmig's own pause per checkpoint (suspend to resume, as the primary reports it), buffered trials
  const own = (disk) =>
    trials.filter((x) => x.buffered && !!x.disk === disk).flatMap((x) => x.ownPausesMs ?? []);
  const withDisk = own(true);
  const without = own(false);
  if (withDisk.length && without.length) {
    lines.push('');
    lines.push(
      `Pause added by disk replication (reported, not asserted): xenmig's own pause per checkpoint, median over the buffered trials' checkpoints: ` +
        `${f1(median(withDisk), 1)} ms with \`--disk\` (${withDisk.length} checkpoints) against ${f1(median(without), 1)} ms without (${without.length} checkpoints).`,
    );
  }
  const failedTrials = rows.filter((r) => r.kind === 'trial' && r.error);
  if (failedTrials.length)
    lines.push('', `Trials that did not complete: ${failedTrials.length} (listed under "Failed runs").`);
}
const noFailover = rows.filter((r) => r.kind === 'remus' && r.failover && r.failover !== 'ok');
if (noFailover.length) {
  lines.push('');
  lines.push('Measured, but the backup did not take over after the primary was killed:');
  for (const r of noFailover)
    lines.push(`- remus ${r.tool} round ${r.round}: ${String(r.failover).replace(/\n/g, ' ').slice(0, 300)}`);
}
const errors = rows.filter((r) => r.error);
if (errors.length) {
  lines.push('');
  lines.push('Failed runs:');
  for (const e of errors)
    lines.push(
      `- ${e.kind === 'trial' ? `kill trial ${e.trial}${e.disk ? ' (disk)' : ''}` : `${e.kind} ${e.sender ?? e.tool}${e.receiver ? ` → ${e.receiver}` : ''} round ${e.round}`}: ${String(e.error).replace(/\n/g, ' ').slice(0, 300)}`,
    );
}
const text = lines.join('\n') + '\n';
process.stdout.write(text);
if (outFile) writeFileSync(outFile, text);
