// xenmig demo: the README's first command. Small guest here; the command itself proves the result.
import { expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { cli } from './helpers.js';

it('demo migrates a busy HVM guest between two temporary hosts and the checksums match (exit 0)', async () => {
  const r = await cli(['demo', '--memory', '16M', '--rate', '300']);
  expect(r.code, r.stderr + r.stdout).toBe(0);
  const a = /checksum at suspend \(host A\): ([0-9a-f]{64})/.exec(r.stdout)?.[1];
  const b = /checksum on host B: +([0-9a-f]{64})/.exec(r.stdout)?.[1];
  expect(a).toBeDefined();
  expect(b).toBe(a);
  expect(r.stdout).toContain('checksums match');
  expect(r.stdout).toMatch(/rounds: \d+ \(\d+ live \+ 1 final\)/);
  expect(r.stdout).toMatch(/downtime: \d+ ms/);
  expect(r.stdout).toMatch(/0 domains left on host A/);
  // the temporary hosts are removed
  const hostA = /^hosts: (\S+) ->/m.exec(r.stdout)![1]!;
  expect(existsSync(dirname(hostA))).toBe(false);
});
