// Hostile PV page tables written into an otherwise valid stream: the pinned L4 (or one of its L3s)
// made to map itself or its parent. The stream carries page tables normalised (a PTE's frame field
// holds a pfn), so "maps itself" is a PTE naming the table's own pfn.
import { PageType, StreamReader } from '../../src/stream/index.js';

const PTE_P = 1n;
const PTE_RW = 2n;
const PTE_FLAGS = PTE_P | PTE_RW | 4n | 0x20n | 0x40n;
const XEN_L4_FIRST = 256;
const XEN_L4_LAST = 271;

export interface TablePage {
  pfn: number;
  /** stream type (L1TAB..L4TAB_PIN) */
  type: number;
  /** absolute offset of the page's 4096 bytes in the stream */
  offset: number;
}

/** Every page-table page of a stream (the last copy of each pfn), with where its bytes are. */
export async function tablePages(stream: Uint8Array): Promise<Map<number, TablePage>> {
  const out = new Map<number, TablePage>();
  for await (const item of new StreamReader(stream)) {
    if (item.kind !== 'record' || item.layer !== 'libxc' || item.record.name !== 'PAGE_DATA') continue;
    const r = item.record;
    let data = item.offset + 8 + 8 + 8 * r.count;
    for (let i = 0; i < r.count; i++) {
      const t = r.types[i]!;
      if (t === PageType.XTAB || t === PageType.BROKEN || t === PageType.XALLOC) continue;
      const isTable =
        (t >= PageType.L1TAB && t <= PageType.L4TAB) || (t >= PageType.L1TAB_PIN && t <= PageType.L4TAB_PIN);
      if (isTable) out.set(r.pfns[i]!, { pfn: r.pfns[i]!, type: t, offset: data });
      data += 4096;
    }
  }
  return out;
}

export type TableAttack =
  /** all guest slots of the pinned L4 name the L4 itself (read-write) */
  | 'l4-self'
  /** the same, read-only (what Xen calls a linear page table: one level, no descent) */
  | 'l4-self-ro'
  /** every entry of an L3 names that L3 */
  | 'l3-self'
  /** every entry of an L3 names the L4 above it */
  | 'l3-parent'
  /** every entry of an L2 names the L4 */
  | 'l2-l4';

export const TABLE_ATTACKS: TableAttack[] = ['l4-self', 'l4-self-ro', 'l3-self', 'l3-parent', 'l2-l4'];

function fill(page: DataView, target: number, rw: boolean, skipXen: boolean): void {
  const e = (BigInt(target) << 12n) | (rw ? PTE_FLAGS : PTE_FLAGS & ~PTE_RW);
  for (let i = 0; i < 512; i++) {
    if (skipXen && i >= XEN_L4_FIRST && i <= XEN_L4_LAST) continue;
    page.setBigUint64(i * 8, e, true);
  }
}

/** A copy of `stream` with one page table rewritten as `attack` says. */
export async function withTableAttack(stream: Uint8Array, attack: TableAttack): Promise<Buffer> {
  const pages = await tablePages(stream);
  const out = Buffer.from(stream);
  const view = (p: TablePage) => new DataView(out.buffer, out.byteOffset + p.offset, 4096);
  const byType = (t: number) => [...pages.values()].find((p) => p.type === t || p.type === t + 8);
  const l4 = [...pages.values()].find((p) => p.type === PageType.L4TAB_PIN) ?? byType(PageType.L4TAB);
  const l3 = byType(PageType.L3TAB);
  const l2 = byType(PageType.L2TAB);
  if (!l4 || !l3 || !l2) throw new Error('stream has no L4/L3/L2 table');
  switch (attack) {
    case 'l4-self':
      fill(view(l4), l4.pfn, true, true);
      break;
    case 'l4-self-ro':
      fill(view(l4), l4.pfn, false, true);
      break;
    case 'l3-self':
      fill(view(l3), l3.pfn, true, false);
      break;
    case 'l3-parent':
      fill(view(l3), l4.pfn, true, false);
      break;
    case 'l2-l4':
      fill(view(l2), l4.pfn, true, false);
      break;
  }
  return out;
}

/** A copy of `stream` with random entries of random page tables pointing at other page tables. */
export async function withRandomPtes(stream: Uint8Array, rand: () => number): Promise<Buffer> {
  const pages = [...(await tablePages(stream)).values()];
  const out = Buffer.from(stream);
  if (!pages.length) return out;
  const n = 1 + (rand() % 64);
  for (let k = 0; k < n; k++) {
    const p = pages[rand() % pages.length]!;
    const target = rand() % 4 === 0 ? rand() % 0x10000 : pages[rand() % pages.length]!.pfn;
    const flags = rand() % 2 ? PTE_FLAGS : PTE_FLAGS & ~PTE_RW;
    const e = (BigInt(target) << 12n) | flags | (rand() % 8 === 0 ? 0x80n : 0n);
    out.writeBigUInt64LE(e, p.offset + 8 * (rand() % 512));
  }
  return out;
}
