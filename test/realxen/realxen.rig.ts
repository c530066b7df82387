// One test per step of the real-Xen scenario, judged from the last run of test/realxen/run.sh
// ($XENLAB_DIR/results/latest/results.jsonl, default .xenlab/). pass -> passing test; fail -> failing
// test with the step's error; unsupported (a reason in Xen or the rig, e.g. PV log-dirty without
// shadow paging) -> a passing test named "UNSUPPORTED ON THIS RIG: ..." (the operation was tried and
// refused for that reason); todo (xenmig lacks the feature) -> a vitest todo named "NOT YET
// IMPLEMENTED: ...". A step that did not report at all fails.
import { describe, it, expect } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
// @ts-expect-error plain ESM helper shared with the in-dom0 scenario
import { EXPECTED } from './steps.mjs';

interface StepResult {
  id: string;
  name: string;
  status: 'pass' | 'fail' | 'unsupported' | 'todo';
  ms?: number;
  detail?: string;
}

const dir = join(resolve(process.env.XENLAB_DIR ?? '.xenlab'), 'results', 'latest');
const file = join(dir, 'results.jsonl');
const results: StepResult[] = existsSync(file)
  ? readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as StepResult)
  : [];
const byId = new Map(results.map((r) => [r.id, r]));

describe('real Xen (QEMU TCG rig)', () => {
  it('the rig produced results', () => {
    expect(existsSync(file), `no ${file}: see ${dir}/serial.log`).toBe(true);
  });
  for (const id of EXPECTED as string[]) {
    const r = byId.get(id);
    if (!r) {
      it(`${id}: step did not report (scenario crashed or timed out; see serial.log)`, () => {
        throw new Error(`step ${id} has no result in ${file}`);
      });
      continue;
    }
    const title = `${r.id}: ${r.name}`;
    const time = r.ms !== undefined ? ` (${(r.ms / 1000).toFixed(1)} s)` : '';
    switch (r.status) {
      case 'pass':
        it(`${title}${time}`, () => {
          if (r.detail) console.log(`${r.id}: ${r.detail}`);
        });
        break;
      case 'unsupported':
        it(`${title} — UNSUPPORTED ON THIS RIG: ${r.detail ?? ''}`, () => {
          expect(r.detail).toBeTruthy();
        });
        break;
      case 'todo':
        it.todo(`${title} — NOT YET IMPLEMENTED: ${r.detail ?? ''}`);
        break;
      default:
        it(`${title}${time}`, () => {
          const e = new Error(r.detail || 'failed');
          e.stack = `step ${r.id} failed in dom0: ${r.detail ?? ''}`; // the in-dom0 frames, not this file's
          throw e;
        });
    }
  }
  for (const r of results) {
    if (!(EXPECTED as string[]).includes(r.id))
      it(`${r.id}: ${r.name} (unlisted step) — ${r.status}`, () => {
        expect(r.status).not.toBe('fail');
      });
  }
});
