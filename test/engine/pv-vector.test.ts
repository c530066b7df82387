// The real `xl save` of a 128 MiB 64-bit PV Linux guest (Xen 4.17) restored into a mock PV domain
// (real page tables, real vCPU state, real linear p2m), then saved again: the second stream must
// carry the vector's memory (pfn for pfn, page tables normalised) and vCPU state.
import { createReadStream } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mockBuilder } from '../../src/api.js';
import { restoreDomain } from '../../src/toolstack/restore.js';
import type { LibxcRecord } from '../../src/stream/index.js';
import { openMockHost, type MockHypervisor } from '../../src/xen/hypervisor.js';
import { digest, tempHost, PV_VECTOR, saveLibxc, type Digest } from './helpers/pv.js';

const gunzipped = () =>
  createReadStream(PV_VECTOR).pipe(createGunzip({ chunkSize: 1 << 20 })) as AsyncIterable<Uint8Array>;

const u64 = (b: Uint8Array, off: number) =>
  Number(new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(off, true));
const rec = <N extends LibxcRecord['name']>(d: Digest, name: N) =>
  d.records.filter((r) => r.name === name) as (LibxcRecord & { name: N })[];
const leafKeeper = (pfn: number, records: LibxcRecord[]) => {
  const p2m = records.find((r) => r.name === 'X86_PV_P2M_FRAMES') as
    Extract<LibxcRecord, { name: 'X86_PV_P2M_FRAMES' }> | undefined;
  return !!p2m && p2m.frames.includes(BigInt(pfn));
};

describe('the real PV vector (xl save, Xen 4.17, 128 MiB 64-bit Linux)', () => {
  let host: ReturnType<typeof tempHost>;
  let xen: MockHypervisor;
  let domid = -1;
  let vector: Digest;
  let again: Digest;

  beforeAll(async () => {
    host = tempHost('xenmig-pv-vec-');
    xen = openMockHost(host.dir);
    const r = await restoreDomain({ xen, input: gunzipped(), builder: mockBuilder(xen), paused: true });
    domid = r.domid;
    // What the guest does when it resumes (Linux xen_post_suspend): publish its p2m list again;
    // any of its L4s maps the kernel half, so vCPU0's current one serves as p2m_cr3.
    const ctx = xen.vcpuContextGet(domid, 0);
    const cr3 = new DataView(ctx.buffer, ctx.byteOffset).getBigUint64(4984 + 24, true);
    const info = xen.domainInfo(domid);
    const sh = xen.map(domid, new BigUint64Array([BigInt(info.sharedInfoFrame)]), 'rw');
    new DataView(sh.bytes.buffer, sh.bytes.byteOffset).setBigUint64(3088 + 24, cr3, true);
    sh.unmap();
    // the restored guest is paused, not suspended: save it as it is
    const stream = await saveLibxc(xen, domid, { suspend: async () => {} });
    vector = await digest(gunzipped(), leafKeeper);
    again = await digest(stream, leafKeeper);
  });
  afterAll(() => {
    if (domid >= 0) xen?.destroy(domid);
    xen?.close();
    host?.cleanup();
  });

  it('restores into a 128 MiB, 1-vCPU mock PV domain', () => {
    const info = xen.domainInfo(domid);
    expect(info.type).toBe('pv');
    expect(info.maxVcpuId).toBe(0);
    expect(info.totPages).toBe(32768);
    expect(vector.pages.size).toBe(32768);
  });

  it('the second stream has the same PV_INFO, p2m frames and page types (pins included)', () => {
    expect(rec(again, 'X86_PV_INFO')).toEqual(rec(vector, 'X86_PV_INFO'));
    expect(rec(again, 'X86_PV_P2M_FRAMES')).toEqual(rec(vector, 'X86_PV_P2M_FRAMES'));
    expect(again.pages.size).toBe(vector.pages.size);
    const pinned = { vector: 0, again: 0 };
    for (const [pfn, v] of vector.pages) {
      const a = again.pages.get(pfn);
      expect(a?.type, `type of pfn ${pfn}`).toBe(v.type);
      if (v.type >= 9 && v.type <= 12) pinned.vector++;
      if (a && a.type >= 9 && a.type <= 12) pinned.again++;
    }
    expect(pinned.vector).toBeGreaterThan(0);
    expect(pinned.again).toBe(pinned.vector);
  });

  it('every page but the start info and the p2m leaves is byte-identical (page tables normalised)', () => {
    const [basic] = rec(vector, 'X86_PV_VCPU_BASIC');
    const startInfo = u64(basic!.context, 616);
    const leaves = new Set(Array.from(rec(vector, 'X86_PV_P2M_FRAMES')[0]!.frames, Number));
    let tables = 0;
    let same = 0;
    for (const [pfn, v] of vector.pages) {
      const a = again.pages.get(pfn)!;
      if (leaves.has(pfn)) continue;
      if (pfn === startInfo) {
        // the restore rewrote nr_pages, shared_info, flags, the xenstore/console frames and channels
        expect(a.hashMasked, 'start info outside the fields restore rewrites').toBe(v.hashMasked);
        continue;
      }
      expect(a.hash, `pfn ${pfn} (type ${v.type})`).toBe(v.hash);
      if ((v.type & 7) >= 1 && (v.type & 7) <= 4 && v.type !== 0xd && v.type !== 0xe && v.type !== 0xf)
        tables++;
      same++;
    }
    expect(tables).toBe(184); // 40 L1 + 14 L2 + 74 L3, 48 pinned L1 + 1 pinned L3 + 7 pinned L4
    expect(same).toBe(32768 - leaves.size - 1);
  });

  it("the guest's p2m leaves now hold the new frames, which the host's M2P names back", () => {
    const m2p = xen.mapM2p();
    try {
      const m2pOf = (mfn: number) => Number(m2p.table[mfn]!);
      const frames = Array.from(rec(vector, 'X86_PV_P2M_FRAMES')[0]!.frames, Number);
      let checked = 0;
      frames.forEach((leafPfn, j) => {
        const page = again.kept.get(leafPfn)!;
        for (let k = 0; k < 512; k++) {
          const pfn = j * 512 + k;
          if (pfn > 32767) break;
          expect(m2pOf(u64(page, k * 8)), `p2m[${pfn}]`).toBe(pfn);
          checked++;
        }
        // the vector's leaves held the old host's frames: different numbers, same shape
        expect(Buffer.compare(page, vector.kept.get(leafPfn)!)).not.toBe(0);
      });
      expect(checked).toBe(32768);
    } finally {
      m2p.unmap();
    }
  });

  it('the start info names the xenstore and console pages by their new frames', async () => {
    // the vector's start info (pfns: the guest canonicalised them at suspend)
    const [basic] = rec(vector, 'X86_PV_VCPU_BASIC');
    const siPfn = u64(basic!.context, 616);
    const v = await digest(gunzipped(), (pfn) => pfn === siPfn);
    const old = v.kept.get(siPfn)!;
    const ctx = xen.vcpuContextGet(domid, 0);
    const siMfn = u64(ctx, 616);
    const m = xen.map(domid, new BigUint64Array([BigInt(siMfn)]), 'r');
    const m2p = xen.mapM2p();
    try {
      const now = m.bytes;
      expect(Number(m2p.table[siMfn]!)).toBe(siPfn);
      expect(Number(m2p.table[u64(now, 56)]!)).toBe(u64(old, 56)); // store_mfn
      expect(Number(m2p.table[u64(now, 72)]!)).toBe(u64(old, 72)); // console.domU.mfn
      expect(u64(now, 32)).toBe(32768); // nr_pages
      expect(u64(now, 40)).toBe(xen.domainInfo(domid).sharedInfoFrame * 4096);
      expect(Buffer.from(now.subarray(0, 24)).toString('latin1')).toMatch(/^xen-3\.0-x86_64/);
    } finally {
      m2p.unmap();
      m.unmap();
    }
  });

  it('the vCPU state is the vector’s: basic context (frames as pfns), extended context, TSC', () => {
    const names = (d: Digest) => d.records.filter((r) => r.name.startsWith('X86_PV_VCPU')).map((r) => r.name);
    // The vector's host (QEMU's qemu64 CPU) had no XSAVE; the mock host gives every vCPU an xsave
    // area, which a save reports like Xen would: the one record the vector cannot have.
    expect(names(vector)).not.toContain('X86_PV_VCPU_XSAVE');
    expect(names(again).filter((n) => n !== 'X86_PV_VCPU_XSAVE')).toEqual(names(vector));
    const [vb] = rec(vector, 'X86_PV_VCPU_BASIC');
    const [ab] = rec(again, 'X86_PV_VCPU_BASIC');
    expect(ab!.vcpuId).toBe(0);
    expect(Buffer.compare(ab!.context, vb!.context)).toBe(0);
    const [ve] = rec(vector, 'X86_PV_VCPU_EXTENDED');
    const [ae] = rec(again, 'X86_PV_VCPU_EXTENDED');
    expect(Buffer.compare(ae!.context, ve!.context)).toBe(0);
    const [vt] = rec(vector, 'X86_TSC_INFO');
    const [at] = rec(again, 'X86_TSC_INFO');
    expect({ mode: at!.mode, khz: at!.khz, nsec: at!.nsec }).toEqual({
      mode: vt!.mode,
      khz: vt!.khz,
      nsec: vt!.nsec,
    });
  });

  it('the shared info carries the vector’s vCPU info and arch part; event channels start masked', () => {
    const [vs] = rec(vector, 'SHARED_INFO');
    const [as] = rec(again, 'SHARED_INFO');
    const mask = (b: Uint8Array) => {
      const c = Buffer.from(b);
      for (let i = 0; i < 32; i++) c.fill(0, i * 64 + 8, i * 64 + 16); // evtchn_pending_sel: cleared by restore
      c.fill(0, 3088 + 8, 3088 + 16); // frame list list: 0 until the guest rebuilds it
      c.fill(0, 3088 + 24, 3088 + 32); // p2m_cr3: republished by the guest (above)
      return c;
    };
    expect(Buffer.compare(mask(as!.data).subarray(0, 2048), mask(vs!.data).subarray(0, 2048))).toBe(0);
    expect(Buffer.compare(mask(as!.data).subarray(3088, 3136), mask(vs!.data).subarray(3088, 3136))).toBe(0);
    expect(as!.data.subarray(2048, 2560).every((b) => b === 0)).toBe(true);
    expect(as!.data.subarray(2560, 3072).every((b) => b === 0xff)).toBe(true);
  });
});
