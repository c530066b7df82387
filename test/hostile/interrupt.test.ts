// Issue 12 item 4 (second half): a restore stays interruptible. SIGTERM / SIGINT while the stream
// stalls mid-way (the input neither ends nor sends) end the process with the signal's exit status
// and a clean error, and the half-restored domain is destroyed.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDomain, listDomains, ok, tempDir, tempHost, until } from '../cli/helpers.js';
import { crashText, supervise } from './supervise.js';

describe('a stalled restore is interruptible', () => {
  const host = tempHost();
  const tmp = tempDir('xenmig-intr-');
  let saved: Buffer;

  beforeAll(async () => {
    const d = await createDomain(host.dir, 'hvm', '8M');
    const file = join(tmp.dir, 'good.xl');
    await ok(['save', String(d), file, '--host', host.dir]);
    saved = readFileSync(file);
  });
  afterAll(() => {
    host.cleanup();
    tmp.cleanup();
  });

  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    it(`${sig} while restore - waits for more of the stream`, async () => {
      const before = (await listDomains(host.dir)).map((d) => d.domid);
      const r = await supervise(['restore', '-', '--host', host.dir], {
        deadlineMs: 60_000,
        rssLimitMb: 400,
        input: 'open',
        onStart: (child) => {
          child.stdin!.write(saved.subarray(0, saved.length >> 1));
          void until(
            async () => (await listDomains(host.dir)).some((d) => !before.includes(d.domid)),
            'the half-restored domain',
          ).then(() => child.kill(sig));
        },
      });
      expect(r.killed, r.stderr).toBeNull();
      expect(crashText(r.stderr), r.stderr).toBeNull();
      expect(r.code, r.stderr).toBe(sig === 'SIGTERM' ? 143 : 130);
      expect(r.stderr).toMatch(new RegExp(`interrupted by ${sig}`));
      expect(r.stderr).toMatch(/was destroyed/);
      expect((await listDomains(host.dir)).map((d) => d.domid)).toEqual(before);
    });
  }
});
