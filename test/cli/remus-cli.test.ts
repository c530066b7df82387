// `xenmig remus DOMID --blackhole` takes no destination (as `xl remus -b`); without one and without
// --blackhole it is a usage error.
import { afterAll, describe, expect, it } from 'vitest';
import { cli, createDomain, listDomains, tempHost } from './helpers.js';

const h = tempHost();
afterAll(() => h.cleanup());

describe('remus --blackhole', () => {
  it('replicates into nothing without a destination; the guest keeps running', async () => {
    const d = await createDomain(h.dir, 'hvm', '8M');
    const r = await cli([
      'remus',
      String(d),
      '--blackhole',
      '--max-checkpoints',
      '3',
      '--interval-ms',
      '20',
      '--json',
      '--host',
      h.dir,
    ]);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.code).toBe(0);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { checkpoint?: number; result?: string });
    expect(
      lines.filter((l) => l.checkpoint !== undefined && l.result === undefined).map((l) => l.checkpoint),
    ).toEqual([1, 2, 3]);
    const dom = (await listDomains(h.dir)).find((x) => x.domid === d);
    expect({ paused: dom?.paused, shutdown: dom?.shutdown }).toEqual({ paused: false, shutdown: false });
  });

  it('no destination and no --blackhole, or both: usage errors (exit 2)', async () => {
    const d = await createDomain(h.dir, 'hvm', '8M');
    const none = await cli(['remus', String(d), '--host', h.dir]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/needs a destination \(or --blackhole/);
    const both = await cli(['remus', String(d), '/tmp/x', '--blackhole', '--host', h.dir]);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/--blackhole discards the stream/);
  });
});
