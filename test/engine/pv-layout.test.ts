// The PV structure offsets xenmig uses, checked against Xen's public headers (the installed
// /usr/include/xen when there is one, and the mock's copy), and the PTE / vCPU frame rewriting on
// synthetic data with frame numbers wider than 32 bits and every flag bit set.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SHINFO64, START_INFO64, VCPU64, XEN_L4_FIRST, XEN_L4_LAST } from '../../src/engine/pv/layout.js';
import { localisePageTable, normalisePageTable } from '../../src/engine/pv/pagetable.js';
import { localiseVcpu, normaliseVcpu } from '../../src/engine/pv/vcpu.js';
import { MigrationError } from '../../src/engine/errors.js';
import { packageRoot } from '../../src/xen/loader.js';

const PROBE = `
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <xen/xen.h>
#include <xen/foreign/x86_64.h>
#define O(t, f) printf("%s %zu\\n", #f, offsetof(t, f))
int main(void) {
  printf("vcpu_flags %zu\\n", offsetof(vcpu_guest_context_x86_64_t, flags)); O(vcpu_guest_context_x86_64_t, user_regs);
  O(vcpu_guest_context_x86_64_t, user_regs.rax); O(vcpu_guest_context_x86_64_t, user_regs.rdx);
  O(vcpu_guest_context_x86_64_t, gdt_frames); O(vcpu_guest_context_x86_64_t, gdt_ents);
  O(vcpu_guest_context_x86_64_t, ctrlreg);
  printf("vcpu_size %zu\\n", sizeof(vcpu_guest_context_x86_64_t));
  O(shared_info_x86_64_t, evtchn_pending); O(shared_info_x86_64_t, evtchn_mask); O(shared_info_x86_64_t, arch);
  printf("vcpu_info_size %zu\\n", sizeof(struct vcpu_info_x86_64));
  printf("arch_size %zu\\n", sizeof(arch_shared_info_x86_64_t));
  O(struct vcpu_info_x86_64, evtchn_pending_sel);
  O(arch_shared_info_x86_64_t, pfn_to_mfn_frame_list_list); O(arch_shared_info_x86_64_t, p2m_cr3);
  O(arch_shared_info_x86_64_t, p2m_vaddr); O(arch_shared_info_x86_64_t, p2m_generation);
  O(start_info_x86_64_t, nr_pages); O(start_info_x86_64_t, shared_info); O(start_info_x86_64_t, flags);
  O(start_info_x86_64_t, store_mfn); O(start_info_x86_64_t, store_evtchn);
  O(start_info_x86_64_t, console.domU.mfn); O(start_info_x86_64_t, console.domU.evtchn);
  printf("l4_first %llu\\n", (unsigned long long)((HYPERVISOR_VIRT_START >> 39) & 511));
  printf("l4_last %llu\\n", (unsigned long long)((HYPERVISOR_VIRT_END >> 39) & 511));
  return 0;
}
`;

const EXPECTED: Record<string, number> = {
  vcpu_flags: VCPU64.flags,
  flags: START_INFO64.flags,
  user_regs: VCPU64.userRegs,
  'user_regs.rax': VCPU64.rax,
  'user_regs.rdx': VCPU64.rdx,
  gdt_frames: VCPU64.gdtFrames,
  gdt_ents: VCPU64.gdtEnts,
  ctrlreg: VCPU64.ctrlreg,
  vcpu_size: VCPU64.size,
  evtchn_pending: SHINFO64.evtchnPending,
  evtchn_mask: SHINFO64.evtchnMask,
  arch: SHINFO64.arch,
  vcpu_info_size: SHINFO64.vcpuInfoSize,
  arch_size: SHINFO64.archSize,
  evtchn_pending_sel: SHINFO64.evtchnPendingSel,
  pfn_to_mfn_frame_list_list: SHINFO64.frameListList,
  p2m_cr3: SHINFO64.p2mCr3,
  p2m_vaddr: SHINFO64.p2mVaddr,
  p2m_generation: SHINFO64.p2mGeneration,
  nr_pages: START_INFO64.nrPages,
  shared_info: START_INFO64.sharedInfo,
  store_mfn: START_INFO64.storeMfn,
  store_evtchn: START_INFO64.storeEvtchn,
  'console.domU.mfn': START_INFO64.consoleMfn,
  'console.domU.evtchn': START_INFO64.consoleEvtchn,
  l4_first: XEN_L4_FIRST,
  l4_last: XEN_L4_LAST,
};

const haveCc = spawnSync('cc', ['--version']).status === 0;
const includeDirs = ['/usr/include', join(packageRoot, 'docker', 'mock', 'include')].filter((d) =>
  existsSync(join(d, 'xen', 'foreign', 'x86_64.h')),
);

describe.skipIf(!haveCc || includeDirs.length === 0)('PV layout constants against the Xen headers', () => {
  for (const inc of includeDirs) {
    it(`match ${inc}`, () => {
      const dir = mkdtempSync(join(tmpdir(), 'xenmig-pv-layout-'));
      try {
        writeFileSync(join(dir, 'p.c'), PROBE);
        const cc = spawnSync('cc', ['-I', inc, '-o', join(dir, 'p'), join(dir, 'p.c')], { encoding: 'utf8' });
        expect(cc.status, cc.stderr).toBe(0);
        const out = spawnSync(join(dir, 'p'), { encoding: 'utf8' }).stdout;
        const got: Record<string, number> = {};
        for (const line of out.trim().split('\n')) {
          const [k, v] = line.split(' ');
          got[k!] = Number(v);
        }
        expect(got).toEqual(EXPECTED);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

function pte(frame: bigint, flags: bigint): bigint {
  return (frame << 12n) | flags;
}

describe('page-table rewriting', () => {
  const FLAGS = (1n << 63n) | 0x7ffn | (0x7fn << 52n); // NX, available bits 52..62, low flags with PSE off below
  it('normalise/localise keep every flag bit and handle frames above 2^32', () => {
    const src = new Uint8Array(4096);
    const v = new DataView(src.buffer);
    const frames = [0x123456789n, 0xfffffffff0n, 7n, 0x100000n, 0xfffffn];
    frames.forEach((f, i) => v.setBigUint64(8 * (i + 1), pte(f, (FLAGS & ~0x80n) | 1n), true));
    v.setBigUint64(8 * 10, pte(0x55n, 0x62n), true); // not present: untouched
    const dst = new Uint8Array(4096);
    expect(
      normalisePageTable({ pfnOfMfn: (m) => (m === 0x55 ? -1 : m + 3), fatal: true, domid: 1 }, 1, src, dst),
    ).toBe(true);
    const d = new DataView(dst.buffer);
    frames.forEach((f, i) =>
      expect(d.getBigUint64(8 * (i + 1), true)).toBe(pte(f + 3n, (FLAGS & ~0x80n) | 1n)),
    );
    expect(d.getBigUint64(80, true)).toBe(pte(0x55n, 0x62n));
    // and back
    localisePageTable({ mfnOfPfn: (p) => p - 3, domid: 1 }, 1, dst, 9);
    expect(Buffer.compare(dst, src)).toBe(0);
  });

  it('an L4 loses Xen slots 256..272; an unknown frame defers while live and fails when suspended', () => {
    const src = new Uint8Array(4096);
    const v = new DataView(src.buffer);
    for (let i = 250; i < 280; i++) v.setBigUint64(8 * i, pte(BigInt(1000 + i), 0x67n), true);
    const dst = new Uint8Array(4096);
    expect(normalisePageTable({ pfnOfMfn: (m) => m, fatal: true, domid: 1 }, 4, src, dst)).toBe(true);
    const d = new DataView(dst.buffer);
    for (let i = 250; i < 280; i++) expect(d.getBigUint64(8 * i, true) === 0n).toBe(i >= 256 && i <= 272);
    expect(
      normalisePageTable({ pfnOfMfn: (m) => (m === 1250 ? -1 : m), fatal: false, domid: 1 }, 4, src, dst),
    ).toBe(false);
    expect(() =>
      normalisePageTable({ pfnOfMfn: (m) => (m === 1250 ? -1 : m), fatal: true, domid: 1 }, 4, src, dst),
    ).toThrow(MigrationError);
    // PSE in an L1 is the PAT bit, not a superpage
    v.setBigUint64(0, pte(5n, 0x81n), true);
    expect(normalisePageTable({ pfnOfMfn: (m) => m, fatal: true, domid: 1 }, 1, src, dst)).toBe(true);
    expect(() => normalisePageTable({ pfnOfMfn: (m) => m, fatal: true, domid: 1 }, 2, src, dst)).toThrow(
      /superpage/,
    );
  });
});

describe('vCPU frame rewriting', () => {
  it('rdx, GDT frames, cr3 and cr1 go to pfns and back; cr1 keeps its valid bit only in the stream', () => {
    const ctx = new Uint8Array(VCPU64.size);
    const v = new DataView(ctx.buffer);
    v.setBigUint64(VCPU64.rdx, 0x200000123n, true);
    v.setBigUint64(VCPU64.gdtEnts, 600n, true); // two GDT frames
    v.setBigUint64(VCPU64.gdtFrames, 0x300000001n, true);
    v.setBigUint64(VCPU64.gdtFrames + 8, 0x300000002n, true);
    v.setBigUint64(VCPU64.gdtFrames + 16, 0xdeadn, true); // beyond gdt_ents: untouched
    v.setBigUint64(VCPU64.ctrlreg + 24, 0x400000004n << 12n, true);
    v.setBigUint64(VCPU64.ctrlreg + 8, 0x500000005n << 12n, true);
    const pfn = (m: number) => m % 0x100000000;
    normaliseVcpu(ctx, 0, 1, pfn);
    expect(v.getBigUint64(VCPU64.rdx, true)).toBe(0x123n);
    expect(v.getBigUint64(VCPU64.gdtFrames, true)).toBe(1n);
    expect(v.getBigUint64(VCPU64.gdtFrames + 8, true)).toBe(2n);
    expect(v.getBigUint64(VCPU64.gdtFrames + 16, true)).toBe(0xdeadn);
    expect(v.getBigUint64(VCPU64.ctrlreg + 24, true)).toBe(4n << 12n);
    expect(v.getBigUint64(VCPU64.ctrlreg + 8, true)).toBe((5n << 12n) | 1n);
    const types = new Map([
      [1, 0],
      [2, 0],
      [4, 12],
      [5, 4],
    ]);
    localiseVcpu(ctx, 0, {
      domid: 1,
      maxPfn: 100,
      levels: 4,
      type: (p) => types.get(p) ?? 0,
      mfnOf: (p) => p + 0x700000000,
    });
    expect(v.getBigUint64(VCPU64.gdtFrames, true)).toBe(0x700000001n);
    expect(v.getBigUint64(VCPU64.ctrlreg + 24, true)).toBe(0x700000004n << 12n);
    expect(v.getBigUint64(VCPU64.ctrlreg + 8, true)).toBe(0x700000005n << 12n);
    expect(v.getUint32(VCPU64.flags, true) & 32).toBe(32); // VGCF_online
    // a GDT frame that is a page table is refused
    const bad = new Uint8Array(VCPU64.size);
    const b = new DataView(bad.buffer);
    b.setBigUint64(VCPU64.gdtEnts, 1n, true);
    b.setBigUint64(VCPU64.gdtFrames, 4n, true);
    b.setBigUint64(VCPU64.ctrlreg + 24, 4n << 12n, true);
    expect(() =>
      localiseVcpu(bad, 0, {
        domid: 1,
        maxPfn: 100,
        levels: 4,
        type: (p) => types.get(p) ?? 0,
        mfnOf: (p) => p,
      }),
    ).toThrow(/GDT frame 0/);
    b.setBigUint64(VCPU64.gdtEnts, 20000n, true);
    expect(() => normaliseVcpu(bad, 1, 1, (m) => m)).toThrow(/GDT entry count/);
  });
});
