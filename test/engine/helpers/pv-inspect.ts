// Independent consistency check of a mock-built PV guest (docker/README.md "PV guest layout"),
// written without the engine's PV code: walk the direct map from vCPU0's cr3 (L4 slot 273 maps
// pfn p at 0xffff888000000000 + p * 4 KiB) to learn pfn -> mfn, then check the host's M2P, the
// guest's p2m leaves, every page table's entries and the page types (pins) against it.
import type { Hypervisor } from '../../../src/xen/types.js';

const INVALID = -1;

function u64(v: DataView, off: number): number {
  const lo = v.getUint32(off, true);
  const hi = v.getUint32(off + 4, true);
  return hi >= 0x100000 ? INVALID : hi * 2 ** 32 + lo;
}
const pteMfn = (v: DataView, off: number) =>
  (v.getUint32(off + 4, true) & 0xfffff) * 2 ** 20 + (v.getUint32(off, true) >>> 12);
const present = (v: DataView, off: number) => (v.getUint32(off, true) & 1) === 1;

function mapAll(xen: Hypervisor, domid: number, mfns: number[]): DataView[] {
  const out: DataView[] = [];
  for (let i = 0; i < mfns.length; i += 1024) {
    const chunk = mfns.slice(i, i + 1024);
    const m = xen.map(
      domid,
      BigUint64Array.from(chunk, (x) => BigInt(x)),
      'r',
    );
    for (let j = 0; j < chunk.length; j++) {
      if (m.errors[j] !== 0) throw new Error(`inspect: mfn ${chunk[j]} not mappable (errno ${m.errors[j]})`);
      out.push(new DataView(m.bytes.slice(j * 4096, (j + 1) * 4096).buffer));
    }
    m.unmap();
  }
  return out;
}

export interface PvFacts {
  pages: number;
  /** pfns whose M2P entry does not name them back */
  m2pMismatches: number;
  /** p2m leaf entries that differ from the page tables' view */
  p2mMismatches: number;
  /** present page-table entries naming a frame that is not the guest's */
  foreignPtes: number;
  /** page-table pages by stream type nibble (1..4 plain, 9..12 pinned) */
  tableTypes: Record<string, number>;
  /** vCPU0's cr3 is a pinned L4 */
  cr3PinnedL4: boolean;
}

/** The mock guest's layout (docker/README.md), pfns of its special pages. */
export function mockLayout(n: number) {
  const nl1 = Math.ceil(n / 512);
  const nl2 = Math.ceil(nl1 / 512);
  const np2m = Math.ceil(n / 512);
  const nmid = Math.ceil(np2m / 512);
  const first = n - (3 + 1 + 1 + nl2 + nl1 + 1 + nmid + np2m);
  return {
    startInfo: first,
    l4: first + 3,
    l3: first + 4,
    l2: first + 5,
    l1: first + 5 + nl2,
    p2mTop: first + 5 + nl2 + nl1,
    p2mMid: first + 6 + nl2 + nl1,
    p2mLeaf: n - np2m,
    nl1,
    np2m,
  };
}

/** pfn -> mfn of a mock guest, read from its page tables' direct map. */
export function directMap(xen: Hypervisor, domid: number, n: number): Float64Array {
  const ctx = xen.vcpuContextGet(domid, 0);
  const cv = new DataView(ctx.buffer, ctx.byteOffset, ctx.byteLength);
  const l4Mfn = Number(cv.getBigUint64(4984 + 24, true) >> 12n);
  const [l4] = mapAll(xen, domid, [l4Mfn]);
  const nl1 = Math.ceil(n / 512);
  const nl2 = Math.ceil(nl1 / 512);
  const l3 = mapAll(xen, domid, [pteMfn(l4!, 273 * 8)])[0]!;
  const l2s = mapAll(
    xen,
    domid,
    Array.from({ length: nl2 }, (_, i) => pteMfn(l3, i * 8)),
  );
  const l1Mfns: number[] = [];
  for (let j = 0; j < nl1; j++) l1Mfns.push(pteMfn(l2s[Math.floor(j / 512)]!, (j % 512) * 8));
  const l1s = mapAll(xen, domid, l1Mfns);
  const mfn = new Float64Array(n);
  for (let p = 0; p < n; p++) mfn[p] = pteMfn(l1s[Math.floor(p / 512)]!, (p % 512) * 8);
  return mfn;
}

export function inspectPvDomain(xen: Hypervisor, domid: number): PvFacts {
  const info = xen.domainInfo(domid);
  const sh = mapAll(xen, domid, [info.sharedInfoFrame])[0]!;
  const maxPfnField = u64(sh, 3088);
  const n = maxPfnField; // the mock guest: pfns 0..n-1
  const ctx = xen.vcpuContextGet(domid, 0);
  const l4Mfn = Number(
    new DataView(ctx.buffer, ctx.byteOffset, ctx.byteLength).getBigUint64(4984 + 24, true) >> 12n,
  );
  const mfn = directMap(xen, domid, n);

  const m2p = xen.mapM2p();
  const m2pv = new DataView(m2p.table.buffer, m2p.table.byteOffset, m2p.table.byteLength);
  const m2pOf = (f: number) => (f >= 0 && f < m2p.table.length ? u64(m2pv, f * 8) : INVALID);
  let m2pMismatches = 0;
  for (let p = 0; p < n; p++) if (m2pOf(mfn[p]!) !== p) m2pMismatches++;

  // the p2m leaves are the guest's last ceil(n/512) pages
  const np2m = Math.ceil(n / 512);
  const leaves = mapAll(
    xen,
    domid,
    Array.from({ length: np2m }, (_, j) => mfn[n - np2m + j]!),
  );
  let p2mMismatches = 0;
  for (let j = 0; j < np2m; j++)
    for (let k = 0; k < 512; k++) {
      const p = j * 512 + k;
      const e = u64(leaves[j]!, k * 8);
      if (p < n ? e !== mfn[p] : e !== INVALID) p2mMismatches++;
    }

  // page types of every frame, and the entries of every table
  const typeOf = new Uint8Array(n);
  for (let i = 0; i < n; i += 1024) {
    const q = BigUint64Array.from(mfn.slice(i, Math.min(n, i + 1024)), (x) => BigInt(x));
    xen.pfnTypes(domid, q);
    for (let j = 0; j < q.length; j++) typeOf[i + j] = Number((q[j]! >> 28n) & 0xfn);
  }
  const tableTypes: Record<string, number> = {};
  const tablePfns: number[] = [];
  for (let p = 0; p < n; p++) {
    const t = typeOf[p]!;
    if ((t >= 1 && t <= 4) || (t >= 9 && t <= 12)) {
      tableTypes[t] = (tableTypes[t] ?? 0) + 1;
      tablePfns.push(p);
    }
  }
  let foreignPtes = 0;
  const tables = mapAll(
    xen,
    domid,
    tablePfns.map((p) => mfn[p]!),
  );
  tables.forEach((v, i) => {
    const lvl = typeOf[tablePfns[i]!]! & 7;
    for (let e = 0; e < 512; e++) {
      if (lvl === 4 && e >= 256 && e <= 272) continue; // Xen's slots
      if (!present(v, e * 8)) continue;
      const f = pteMfn(v, e * 8);
      const p = m2pOf(f);
      if (!(p >= 0 && p < n && mfn[p] === f)) foreignPtes++;
    }
  });
  const l4Pfn = m2pOf(l4Mfn);
  m2p.unmap();
  return {
    pages: n,
    m2pMismatches,
    p2mMismatches,
    foreignPtes,
    tableTypes,
    cr3PinnedL4: l4Pfn >= 0 && typeOf[l4Pfn] === 12,
  };
}
