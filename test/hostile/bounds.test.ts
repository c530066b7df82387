// Issue 12 item 5: memory is bounded by the guest's configured size, not by the input's length or
// by Xen's address space: verify stays flat on a million unknown records (file and endless pipe); a
// restore whose config says 4 MiB cannot populate more; a Remus checkpoint that never ends is
// refused once it outgrows twice the configured size (plus a constant), whatever its records carry.
import { readFileSync, writeFileSync } from 'node:fs';
import { join as pathJoin } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mockBuilder, restore } from '../../src/api.js';
import { StreamCursor } from '../../src/engine/cursor.js';
import { libxcRestore } from '../../src/engine/restore/restore.js';
import { parseDomainConfig } from '../../src/toolstack/config.js';
import { openMockHost, type MockHypervisor } from '../../src/xen/hypervisor.js';
import { createDomain, ok, tempDir, tempHost } from '../cli/helpers.js';
import { clone, frameRecord, join, libxcEnd, rec, split, type Segment } from './frame.js';
import { crashText, supervise } from './supervise.js';

/** n unknown optional libxc records (distinct types), empty bodies: 8 bytes each. */
function unknownRecords(n: number, from = 0): Buffer {
  const b = Buffer.alloc(8 * n);
  for (let i = 0; i < n; i++) b.writeUInt32LE((0x80000000 | ((from + i) & 0xffffff)) >>> 0, 8 * i);
  return b;
}

/** A PAGE_DATA body: `pfns` with one page type, no data (XTAB / XALLOC carry none). */
function pageDataNoData(pfns: number[], type: number): Buffer {
  const b = Buffer.alloc(8 + 8 * pfns.length);
  b.writeUInt32LE(pfns.length, 0);
  pfns.forEach((p, i) => b.writeBigUInt64LE((BigInt(type) << 60n) | BigInt(p), 8 + 8 * i));
  return b;
}

describe('memory bounded by the guest, not by the input', () => {
  const host = tempHost();
  const tmp = tempDir('xenmig-bounds-');
  let xen: MockHypervisor;
  let hvmXl: Segment[];
  let hvmLibxc: Buffer;

  beforeAll(async () => {
    const d = await createDomain(host.dir, 'hvm', '4M');
    const a = pathJoin(tmp.dir, 'hvm.xl');
    const b = pathJoin(tmp.dir, 'hvm.libxc');
    await ok(['save', String(d), a, '--host', host.dir, '--keep-running']);
    await ok(['save', String(d), b, '--host', host.dir, '--format', 'libxc']);
    hvmXl = await split(readFileSync(a));
    hvmLibxc = readFileSync(b);
    xen = openMockHost(host.dir);
  });
  afterAll(() => {
    xen?.close();
    host.cleanup();
    tmp.cleanup();
  });

  it('verify of a stream with 10^6 unknown optional records stays flat (< 200 MiB peak)', async () => {
    const segs = clone(hvmXl);
    const at = libxcEnd(segs);
    const file = pathJoin(tmp.dir, 'million.xl');
    writeFileSync(
      file,
      Buffer.concat([join(segs.slice(0, at)), unknownRecords(1_000_000), join(segs.slice(at))]),
    );
    const r = await supervise(['verify', file], { deadlineMs: 120_000, rssLimitMb: 400 });
    expect(r.killed, `killed for ${r.killed}, peak ${r.peakRssKb} KiB`).toBeNull();
    expect(crashText(r.stderr), r.stderr.slice(0, 2000)).toBeNull();
    expect(r.code, r.stderr.slice(0, 2000)).toBe(0);
    expect(r.stdout).toMatch(/^OK: /);
    // the warnings are summarised, not a million lines
    expect(r.stderr.split('\n').length).toBeLessThan(200);
    expect(r.stderr).toMatch(/WARN_UNKNOWN_OPTIONAL_RECORD: 999980 more not shown/);
    expect(r.peakRssKb, `peak ${r.peakRssKb} KiB`).toBeLessThan(200 * 1024);
  });

  it('verify - of an endless pipe of unknown optional records stays flat until the input stops', async () => {
    const segs = clone(hvmXl);
    const head = join(segs.slice(0, libxcEnd(segs)));
    const r = await supervise(['verify', '-'], {
      deadlineMs: 120_000,
      rssLimitMb: 400,
      input: 'open',
      onStart: (child) => {
        let sent = 0;
        const chunk = 100_000;
        const pump = () => {
          while (sent < 1_500_000) {
            const ok = child.stdin!.write(
              sent === 0 ? Buffer.concat([head, unknownRecords(chunk)]) : unknownRecords(chunk, sent),
            );
            sent += chunk;
            if (!ok) return void child.stdin!.once('drain', pump);
          }
          child.stdin!.end();
        };
        pump();
      },
    });
    expect(r.killed, `killed for ${r.killed}, peak ${r.peakRssKb} KiB`).toBeNull();
    expect(crashText(r.stderr), r.stderr.slice(0, 2000)).toBeNull();
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ERR_MISSING_END/);
    expect(r.peakRssKb, `peak ${r.peakRssKb} KiB`).toBeLessThan(200 * 1024);
  });

  it('a restore whose config says 4 MiB refuses to populate 65,536 pages (typed error, nothing beyond the size)', async () => {
    const segs = clone(hvmXl);
    const at = segs.findIndex((s) => s.kind === 'record' && s.layer === 'libxc' && s.type === 1);
    const extra: Segment[] = [];
    for (let r = 0; r < 64; r++)
      extra.push(
        rec(
          'libxc',
          1,
          pageDataNoData(
            Array.from({ length: 1024 }, (_, i) => 0x10000 + r * 1024 + i),
            0xe,
          ),
        ),
      );
    segs.splice(at, 0, ...extra);
    let err: (Error & { code?: string; domid?: number; destination?: string }) | null = null;
    try {
      const r = await restore(join(segs), { xen, onFailure: 'pause' });
      xen.destroyDomain(r.domid);
    } catch (e) {
      err = e as typeof err;
    }
    expect(err, 'the restore succeeded').not.toBeNull();
    expect(err!.code, String(err)).toBe('ERR_DOMAIN_MISMATCH');
    expect(err!.message).toMatch(/populates more than the domain's \d+ pages/);
    const info = xen.domainInfo(err!.domid!);
    expect(info.maxPages).toBeLessThanOrEqual(1024 + 256);
    expect(info.totPages).toBeLessThanOrEqual(info.maxPages);
    xen.destroyDomain(err!.domid!);
  });

  it('a Remus checkpoint that never ends is refused at 2 × the configured size + 64 MiB, records without data included', async () => {
    const cfg = parseDomainConfig(hvmXl[0]!.kind === 'xl-header' ? configOf(hvmXl[0]!.bytes) : '');
    const domid = await mockBuilder(xen).create(cfg);
    const limit = 2 * xen.domainInfo(domid).maxPages * 4096 + (64 << 20);
    expect(limit).toBeLessThan(100 << 20);
    const base = await split(hvmLibxc);
    const endAt = libxcEnd(base);
    const first = join(base.slice(0, endAt));
    const ckpt = frameRecord(0x0e, Buffer.alloc(0));
    // one XTAB entry per record: 24 bytes of stream each, no data
    const xtab = frameRecord(1, pageDataNoData([5], 0xf));
    const per = 4096;
    const block = Buffer.concat(Array.from({ length: per }, () => xtab));
    const maxRecords = 1_200_000;
    async function* endless(): AsyncGenerator<Uint8Array> {
      yield Buffer.concat([first, ckpt]);
      for (let n = 0; n < maxRecords; n += per) yield block;
    }
    let err: (Error & { code?: string }) | null = null;
    let endedBy = '';
    try {
      const stats = await libxcRestore({
        xen,
        domid,
        cursor: new StreamCursor(endless(), { validator: { streamType: 'remus' } }),
        streamType: 'remus',
        callbacks: { checkpoint: async () => 'success' },
      });
      endedBy = stats.endedBy;
    } catch (e) {
      err = e as typeof err;
    } finally {
      xen.destroyDomain(domid);
    }
    expect(
      err,
      `the checkpoint of ${maxRecords} records was buffered whole (ended by ${endedBy})`,
    ).not.toBeNull();
    expect(err!.message).toMatch(new RegExp(`checkpoint exceeds ${limit} buffered bytes`));
    expect(crashText(String(err!.stack?.split('\n')[0]))).toBeNull();
  });
});

/** The config text of an xl header segment (its optional data: the libxl JSON). */
function configOf(xlHeader: Buffer): string {
  const i = xlHeader.indexOf('{');
  const j = xlHeader.lastIndexOf('}');
  return xlHeader.subarray(i, j + 1).toString('utf8');
}
