// xenmig demo: the README's first command. Small guest here; the command itself proves the result.
import { expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { cli } from './helpers.js';

// The demo's checksum at suspend is made to hold the suspended guest at least this long (as the
// checksum of a large guest would): a headline downtime that still counted it would be off by as much.
const HOLD_MS = 1500;
const env = { XENMIG_DEBUG_CHECKSUM_HOLD_MS: String(HOLD_MS) };

it('demo migrates a busy HVM guest between two temporary hosts and the checksums match (exit 0)', async () => {
  const r = await cli(['demo', '--memory', '16M', '--rate', '300'], { env });
  expect(r.code, r.stderr + r.stdout).toBe(0);
  const a = /checksum at suspend \(host A\): ([0-9a-f]{64})/.exec(r.stdout)?.[1];
  const b = /checksum on host B: +([0-9a-f]{64})/.exec(r.stdout)?.[1];
  expect(a).toBeDefined();
  expect(b).toBe(a);
  expect(r.stdout).toContain('checksums match');
  expect(r.stdout).toMatch(/rounds: \d+ \(\d+ live \+ 1 final\)/);
  expect(r.stdout).toMatch(/0 domains left on host A/);
  // the headline downtime is the migration's; the demonstration's checksum time is on its own line
  const own = Number(/, downtime: (\d+) ms,/.exec(r.stdout)?.[1]);
  const m = /checksum at suspend took (\d+) ms .* stopped (\d+) ms in all/.exec(r.stdout);
  expect(m, r.stdout).not.toBeNull();
  const [held, all] = [Number(m![1]), Number(m![2])];
  expect(held).toBeGreaterThanOrEqual(HOLD_MS);
  expect(own + held).toBe(all);
  // the temporary hosts are removed
  const hostA = /^hosts: (\S+) ->/m.exec(r.stdout)![1]!;
  expect(existsSync(dirname(hostA))).toBe(false);
});

it('demo --json: downtimeMs (the migration) and checksumMs (the demonstration) apart; guestDowntimeMs is both', async () => {
  const r = await cli(['demo', '--memory', '16M', '--rate', '300', '--json'], { env });
  expect(r.code, r.stderr + r.stdout).toBe(0);
  const j = JSON.parse(r.stdout) as Record<string, unknown>;
  expect(j).toMatchObject({
    match: true,
    rounds: expect.any(Number),
    downtimeMs: expect.any(Number),
    checksumMs: expect.any(Number),
  });
  expect(j.checksumMs as number).toBeGreaterThanOrEqual(HOLD_MS);
  expect(j.downtimeMs as number).toBeGreaterThanOrEqual(0);
  expect(j.guestDowntimeMs).toBe((j.downtimeMs as number) + (j.checksumMs as number));
  expect(j.checksumAtSuspend).toBe(j.checksumOnDestination);
});
