// Malformed PV streams fail with typed errors before anything is written outside the target
// domain: a bystander domain on the same host keeps its checksum, and no failure is a crash/hang.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MigrationError } from '../../src/engine/errors.js';
import { pvRestoreOps } from '../../src/engine/restore/pv.js';
import { StreamError } from '../../src/stream/index.js';
import { openMockHost, type MockHypervisor } from '../../src/xen/hypervisor.js';
import { tempHost, restoreLibxc, saveLibxc } from './helpers/pv.js';

const N = 1200;

interface Rec {
  type: number;
  body: Buffer;
}

/** Splits a libxc stream into its 40 header bytes and records (type, body without padding). */
function split(s: Buffer): { head: Buffer; recs: Rec[] } {
  const recs: Rec[] = [];
  let o = 40;
  while (o < s.length) {
    const type = s.readUInt32LE(o);
    const len = s.readUInt32LE(o + 4);
    recs.push({ type, body: Buffer.from(s.subarray(o + 8, o + 8 + len)) });
    o += 8 + Math.ceil(len / 8) * 8;
  }
  return { head: Buffer.from(s.subarray(0, 40)), recs };
}

function join(head: Buffer, recs: Rec[]): Buffer {
  const parts = [head];
  for (const r of recs) {
    const h = Buffer.alloc(8);
    h.writeUInt32LE(r.type, 0);
    h.writeUInt32LE(r.body.length, 4);
    parts.push(h, r.body, Buffer.alloc((8 - (r.body.length % 8)) % 8));
  }
  return Buffer.concat(parts);
}

const T = { PAGE_DATA: 1, PV_INFO: 2, P2M_FRAMES: 3, VCPU_BASIC: 4 };

describe('malformed PV streams', () => {
  let host: ReturnType<typeof tempHost>;
  let xen: MockHypervisor;
  let good: { head: Buffer; recs: Rec[] };
  let bystander = 0;
  let bystanderSum = '';

  beforeAll(async () => {
    host = tempHost('xenmig-pv-bad-');
    xen = openMockHost(host.dir);
    const d = xen.createDomain({ type: 'pv', pages: N, vcpus: 1 });
    good = split(await saveLibxc(xen, d));
    xen.destroy(d);
    bystander = xen.createDomain({ type: 'pv', pages: 600, vcpus: 1 });
    bystanderSum = xen.checksum(bystander);
  });
  afterAll(() => {
    xen?.close();
    host?.cleanup();
  });

  /** Restores `recs` into a fresh empty domain; returns the error (null when it succeeded). */
  async function attempt(recs: Rec[], vcpus = 1): Promise<unknown> {
    const e = xen.createDomain({ type: 'pv', pages: N, vcpus, populate: false });
    try {
      await restoreLibxc(xen, e, join(good.head, recs));
      return null;
    } catch (err) {
      return err;
    } finally {
      xen.destroy(e);
      expect(xen.checksum(bystander)).toBe(bystanderSum);
    }
  }
  const edit = (f: (recs: Rec[]) => Rec[]) =>
    f(good.recs.map((r) => ({ type: r.type, body: Buffer.from(r.body) })));
  const expectCode = (err: unknown, code: string, msg: RegExp) => {
    expect(err, String(err)).toBeInstanceOf(MigrationError);
    expect((err as MigrationError).code).toBe(code);
    expect((err as Error).message).toMatch(msg);
  };

  const expectStream = (err: unknown, code: string, msg: RegExp) => {
    expect(err, String(err)).toBeInstanceOf(StreamError);
    expect((err as StreamError).code).toBe(code);
    expect((err as Error).message).toMatch(msg);
  };

  it('the unmodified stream restores (the harness itself works)', async () => {
    expect(await attempt(edit((r) => r))).toBeNull();
  });

  it('X86_PV_INFO with an invalid width/levels pair', async () => {
    const err = await attempt(
      edit((recs) => {
        recs.find((r) => r.type === T.PV_INFO)!.body[1] = 3; // width 8, 3 levels
        return recs;
      }),
    );
    // the stream validator sees it first (the PV ops check it too: see below)
    expectStream(err, 'ERR_BAD_VALUE', /X86_PV_INFO guest_width 8 \/ pt_levels 3/);
  });

  it('X86_PV_INFO of a 32-bit guest into this 64-bit domain', async () => {
    const err = await attempt(
      edit((recs) => {
        const b = recs.find((r) => r.type === T.PV_INFO)!.body;
        b[0] = 4;
        b[1] = 3;
        return recs;
      }),
    );
    expectCode(err, 'ERR_UNSUPPORTED', /32-bit/);
  });

  it('X86_PV_P2M_FRAMES whose frame count does not match its pfn range', async () => {
    const err = await attempt(
      edit((recs) => {
        const b = recs.find((r) => r.type === T.P2M_FRAMES)!.body;
        b.writeUInt32LE(b.readUInt32LE(4) + 512, 4); // one more p2m page's worth of pfns, no frame for it
        return recs;
      }),
    );
    expectStream(err, 'ERR_BAD_LENGTH', /X86_PV_P2M_FRAMES body_length/);
  });

  it('X86_PV_P2M_FRAMES asking for a p2m far larger than the domain (refused before allocating)', async () => {
    const err = await attempt(
      edit((recs) => {
        const r = recs.find((x) => x.type === T.P2M_FRAMES)!;
        const end = 1 << 22; // 16 GiB of pfns for a 4.7 MiB domain
        const frames = Math.floor(end / 512) + 1;
        const b = Buffer.alloc(8 + 8 * frames);
        b.writeUInt32LE(0, 0);
        b.writeUInt32LE(end, 4);
        r.body = b;
        return recs;
      }),
    );
    expectCode(err, 'ERR_DOMAIN_MISMATCH', /more than this domain allows/);
  });

  it('a page table whose entry names a pfn beyond the guest', async () => {
    const err = await attempt(
      edit((recs) => {
        for (const r of recs) {
          if (r.type !== T.PAGE_DATA) continue;
          const count = r.body.readUInt32LE(0);
          let data = 8 + 8 * count;
          for (let i = 0; i < count; i++) {
            const type = r.body.readUInt8(8 + 8 * i + 7) >> 4;
            const hasData = type <= 4 || (type >= 9 && type <= 12);
            if (hasData && (type & 7) === 1) {
              // entry 3 of this L1: present, pfn 0xfffff
              r.body.writeUInt32LE(0xfffff063 >>> 0, data + 24);
              r.body.writeUInt32LE(0, data + 28);
              return recs;
            }
            if (hasData) data += 4096;
          }
        }
        throw new Error('no L1 table in the stream');
      }),
    );
    expectCode(err, 'ERR_PV_STATE', /names pfn 0xfffff, beyond the guest's max pfn/);
  });

  it('a PAGE_DATA pfn beyond the guest', async () => {
    const err = await attempt(
      edit((recs) => {
        const r = recs.find((x) => x.type === T.PAGE_DATA)!;
        const hi = r.body.readUInt32LE(8 + 4);
        r.body.writeUInt32LE(N + 5, 8); // first entry: pfn N+5, type kept
        r.body.writeUInt32LE(hi, 12);
        return recs;
      }),
    );
    expectCode(err, 'ERR_DOMAIN_MISMATCH', /beyond the guest's max pfn/);
  });

  it('a vCPU record for a vCPU the domain does not have', async () => {
    const err = await attempt(
      edit((recs) => {
        recs.find((r) => r.type === T.VCPU_BASIC)!.body.writeUInt32LE(5, 0);
        return recs;
      }),
    );
    expectCode(err, 'ERR_DOMAIN_MISMATCH', /vcpu 5, but the domain has vcpus 0..0/);
  });

  it("a stream without vCPU0's basic state", async () => {
    const err = await attempt(edit((recs) => recs.filter((r) => r.type !== T.VCPU_BASIC)));
    expectCode(err, 'ERR_INCOMPLETE', /vcpu0's basic state/);
  });

  it('a vCPU basic context of the wrong size', async () => {
    const err = await attempt(
      edit((recs) => {
        const r = recs.find((x) => x.type === T.VCPU_BASIC)!;
        r.body = r.body.subarray(0, r.body.length - 8);
        return recs;
      }),
    );
    expectStream(err, 'ERR_BAD_LENGTH', /X86_PV_VCPU_BASIC context of 5160 bytes/);
  });

  it('a cr3 that names a page which is not an L4 table', async () => {
    const err = await attempt(
      edit((recs) => {
        const r = recs.find((x) => x.type === T.VCPU_BASIC)!;
        r.body.writeBigUInt64LE(3n << 12n, 8 + 4984 + 24); // pfn 3: a data page
        return recs;
      }),
    );
    expectCode(err, 'ERR_PV_STATE', /cr3 \(pfn 0x3\) has type 0, expected an L4 table/);
  });

  it('PAGE_DATA before X86_PV_P2M_FRAMES', async () => {
    const err = await attempt(
      edit((recs) => {
        const i = recs.findIndex((x) => x.type === T.P2M_FRAMES);
        const j = recs.findIndex((x) => x.type === T.PAGE_DATA);
        const [pd] = recs.splice(j, 1);
        recs.splice(i, 0, pd!);
        return recs;
      }),
    );
    expect(err).toBeTruthy();
    // the stream validator or the PV ops refuse it: either way a typed error
    expect((err as { code?: string }).code).toMatch(/^ERR_/);
  });

  it('the PV ops refuse what the validator also catches (defence in depth, no validator in front)', async () => {
    const e = xen.createDomain({ type: 'pv', pages: N, vcpus: 1, populate: false });
    const ctx = { xen, domid: e, info: xen.domainInfo(e), streamType: 'plain' as const };
    const ops = pvRestoreOps();
    try {
      await ops.setup(ctx);
      const bad = () =>
        ops.processRecord(ctx, { name: 'X86_PV_INFO', guestWidth: 8, ptLevels: 3, reserved: 0 });
      expect(bad).toThrow(/invalid X86_PV_INFO combination/);
      expect(ops.processRecord(ctx, { name: 'X86_PV_INFO', guestWidth: 8, ptLevels: 4, reserved: 0 })).toBe(
        true,
      );
      expect(() =>
        ops.processRecord(ctx, { name: 'X86_PV_INFO', guestWidth: 8, ptLevels: 4, reserved: 0 }),
      ).toThrow(/a second X86_PV_INFO/);
      expect(() =>
        ops.processRecord(ctx, {
          name: 'X86_PV_P2M_FRAMES',
          startPfn: 0,
          endPfn: 1023,
          frames: new BigUint64Array(1),
        }),
      ).toThrow(/needs 2 frames, has 1/);
      expect(() =>
        ops.processRecord(ctx, {
          name: 'X86_PV_P2M_FRAMES',
          startPfn: 10,
          endPfn: 5,
          frames: new BigUint64Array(1),
        }),
      ).toThrow(/below start/);
      expect(() =>
        ops.processRecord(ctx, {
          name: 'X86_PV_VCPU_BASIC',
          vcpuId: 0,
          reserved: 0,
          context: new Uint8Array(5160),
        }),
      ).toThrow(/X86_PV_VCPU_BASIC of 5160 bytes, expected 5168/);
      expect(() => ops.processRecord(ctx, { name: 'SHARED_INFO', data: new Uint8Array(100) })).toThrow(
        /SHARED_INFO of 100 bytes/,
      );
      // nothing was populated: PAGE_DATA never came
      expect(xen.domainInfo(e).totPages).toBe(0);
    } finally {
      ops.cleanup(ctx);
      xen.destroy(e);
    }
  });

  it('pinTables checks its arguments and reports what Xen refuses', () => {
    const d = xen.createDomain({ type: 'pv', pages: 600, vcpus: 1 });
    try {
      const ctx = xen.vcpuContextGet(d, 0);
      const l4 = new DataView(ctx.buffer, ctx.byteOffset).getBigUint64(4984 + 24, true) >> 12n;
      expect(() => xen.pinTables(d, BigUint64Array.of(l4), Uint8Array.of(4, 4))).toThrow(RangeError);
      expect(() => xen.pinTables(d, BigUint64Array.of(l4), Uint8Array.of(5))).toThrow(/level 1..4/);
      expect(() => xen.pinTables(d, new BigUint64Array(1025).fill(l4), new Uint8Array(1025).fill(4))).toThrow(
        /at most 1024/,
      );
      // the builder pinned the L4 already: Xen says EINVAL
      let err: unknown;
      try {
        xen.pinTables(d, BigUint64Array.of(l4), Uint8Array.of(4));
      } catch (e) {
        err = e;
      }
      expect(err).toMatchObject({ code: 'EINVAL', syscall: 'xc_mmuext_op' });
    } finally {
      xen.destroy(d);
    }
  });
});
