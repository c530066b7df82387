// Issue 12 items 8 and 9: verify and restore agree on unknown optional libxc records (skipped with a
// warning that is not ERR_UNKNOWN_MANDATORY_RECORD); pfns print as 0x…; a 64-bit index prints
// exactly; `receive foo` is a usage error (exit 2).
import { readFileSync } from 'node:fs';
import { join as pathJoin } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { restore } from '../../src/api.js';
import { validateStream } from '../../src/stream/index.js';
import { openMockHost, type MockHypervisor } from '../../src/xen/hypervisor.js';
import { cli, createDomain, ok, tempDir, tempHost } from '../cli/helpers.js';
import { clone, join, libxcEnd, rec, split, type Segment } from './frame.js';

describe('unknown optional records, number formats, usage errors', () => {
  const host = tempHost();
  const tmp = tempDir('xenmig-msg-');
  let xen: MockHypervisor;
  let hvm: Segment[];

  beforeAll(async () => {
    const d = await createDomain(host.dir, 'hvm', '4M');
    const file = pathJoin(tmp.dir, 'hvm.xl');
    await ok(['save', String(d), file, '--host', host.dir]);
    hvm = await split(readFileSync(file));
    xen = openMockHost(host.dir);
  });
  afterAll(() => {
    xen?.close();
    host.cleanup();
    tmp.cleanup();
  });

  const attempt = async (segs: Segment[]) => {
    try {
      const r = await restore(join(segs), { xen, paused: true });
      xen.destroyDomain(r.domid);
      return { ok: true as const, r };
    } catch (e) {
      return { ok: false as const, e: e as Error & { code?: string } };
    }
  };

  it('an unknown optional libxc record before END: verify and restore both accept it, with the same warning', async () => {
    const segs = clone(hvm);
    segs.splice(libxcEnd(segs), 0, rec('libxc', 0x80000123, Buffer.alloc(16, 0xab)));
    const v = await validateStream(join(segs));
    expect(v.warnings.map((w) => w.code)).toEqual(['WARN_UNKNOWN_OPTIONAL_RECORD']);
    expect(v.warnings[0]!.message).toMatch(/0x80000123/);
    const got = await attempt(segs);
    expect(got.ok, got.ok ? '' : String(got.e)).toBe(true);
    if (got.ok) expect(got.r.warnings?.map((w) => w.code)).toEqual(['WARN_UNKNOWN_OPTIONAL_RECORD']);
  });

  it('restore through the CLI prints the warning and succeeds', async () => {
    const segs = clone(hvm);
    segs.splice(libxcEnd(segs), 0, rec('libxc', 0x80000123, Buffer.alloc(8)));
    const file = pathJoin(tmp.dir, 'unknown-opt.xl');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(file, join(segs));
    const r = await cli(['restore', file, '--paused', '--host', host.dir]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/warn(ing)?: WARN_UNKNOWN_OPTIONAL_RECORD: .*0x80000123/);
    expect(r.stderr).not.toMatch(/ERR_UNKNOWN_MANDATORY_RECORD/);
    await ok(['mock', 'destroy', r.stdout.trim(), '--host', host.dir]);
  });

  it('a PAGE_DATA pfn beyond the domain is named in hex', async () => {
    const segs = clone(hvm);
    const pd = segs.find((s) => s.kind === 'record' && s.layer === 'libxc' && s.type === 1)!;
    pd.bytes.writeUInt32LE(0x10000000, 8); // first pfn word: pfn 0x10000000, type NOTAB
    pd.bytes.writeUInt32LE(0, 12);
    const got = await attempt(segs);
    expect(got.ok).toBe(false);
    if (!got.ok) expect(got.e.message).toMatch(/pfn 0x10000000\b/);
  });

  it('an HVM_PARAMS index of 2^64-1 is refused with a typed error naming it exactly', async () => {
    const segs = clone(hvm);
    const p = segs.find((s) => s.kind === 'record' && s.layer === 'libxc' && s.type === 0x0a)!;
    p.bytes.writeBigUInt64LE(0xffffffffffffffffn, 8); // entry 0's index
    const got = await attempt(segs);
    expect(got.ok).toBe(false);
    if (!got.ok) {
      expect(got.e.code).toBe('ERR_DOMAIN_MISMATCH');
      expect(got.e.message).toMatch(/0xffffffffffffffff/);
      expect(got.e.message).not.toMatch(/18446744073709552000/);
    }
  });

  it('emulator records without a device-model provider: a typed ERR_UNSUPPORTED (found by the campaign)', async () => {
    const segs = clone(hvm);
    const body = Buffer.alloc(16);
    body.writeUInt32LE(2, 0); // emulator id: qemu upstream
    segs.splice(libxcEnd(segs) + 1, 0, rec('libxl', 3, body)); // EMULATOR_CONTEXT after the libxc END
    const got = await attempt(segs);
    expect(got.ok).toBe(false);
    if (!got.ok) {
      expect(got.e.code, String(got.e)).toBe('ERR_UNSUPPORTED');
      expect(got.e.message).toMatch(/no device model provider/);
    }
  });

  it('`receive foo` is a usage error: exit 2', async () => {
    const r = await cli(['receive', 'foo', '--host', host.dir]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/receive takes - or --listen/);
  });
});
