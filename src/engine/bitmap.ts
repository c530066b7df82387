// Dirty / deferred page bitmaps in Xen's layout: little-endian 64-bit words, bit p = pfn p
// (LSB first within each byte as a consequence). Byte-addressed here for speed in JS.

export class PfnBitmap {
  readonly bytes: Uint8Array;
  constructor(readonly size: number) {
    // whole 64-bit words, as xc_logdirty_control writes them
    this.bytes = new Uint8Array(Math.ceil(size / 64) * 8);
  }

  static wordBytes(size: number): number {
    return Math.ceil(size / 64) * 8;
  }

  get(pfn: number): boolean {
    return (this.bytes[pfn >>> 3]! & (1 << (pfn & 7))) !== 0;
  }

  set(pfn: number): void {
    this.bytes[pfn >>> 3]! |= 1 << (pfn & 7);
  }

  clear(pfn: number): void {
    this.bytes[pfn >>> 3]! &= ~(1 << (pfn & 7));
  }

  setAll(): void {
    this.bytes.fill(0xff);
    this.trim();
  }

  clearAll(): void {
    this.bytes.fill(0);
  }

  /** OR another bitmap of the same size into this one. */
  or(other: PfnBitmap): void {
    const a = this.bytes;
    const b = other.bytes;
    for (let i = 0; i < a.length; i++) a[i]! |= b[i]!;
  }

  count(): number {
    let n = 0;
    const a = this.bytes;
    for (let i = 0; i < a.length; i++) {
      let v = a[i]!;
      while (v) {
        v &= v - 1;
        n++;
      }
    }
    return n;
  }

  /** Visit set bits in ascending pfn order (skips zero bytes quickly). */
  *iterate(): Generator<number> {
    const a = this.bytes;
    const size = this.size;
    for (let i = 0; i < a.length; i++) {
      let v = a[i]!;
      if (v === 0) continue;
      const base = i << 3;
      while (v) {
        const low = v & -v;
        const bit = 31 - Math.clz32(low);
        const pfn = base + bit;
        if (pfn >= size) return;
        yield pfn;
        v &= v - 1;
      }
    }
  }

  /** Fill `out` with up to out.length set pfns starting at `from`; returns [count, next from]. */
  collect(from: number, out: Float64Array): [number, number] {
    const a = this.bytes;
    const size = this.size;
    let n = 0;
    let i = from >>> 3;
    let v = i < a.length ? a[i]! & (0xff << (from & 7)) & 0xff : 0;
    while (i < a.length) {
      while (v) {
        const low = v & -v;
        const pfn = (i << 3) + (31 - Math.clz32(low));
        if (pfn >= size) return [n, size];
        out[n++] = pfn;
        v &= v - 1;
        if (n === out.length) return [n, pfn + 1];
      }
      i++;
      v = a[i] ?? 0;
    }
    return [n, size];
  }

  private trim(): void {
    // bits beyond `size` stay clear so count() is exact
    for (let p = this.size; p < this.bytes.length * 8; p++) this.clear(p);
  }
}

/** A set of pfns over a large, sparsely used range (restore: which pfns are populated). */
export class SparsePfnSet {
  private static readonly CHUNK_BITS = 15; // 32768 pfns (128 MiB of guest memory) per 4 KiB chunk
  private readonly chunks = new Map<number, Uint8Array>();

  has(pfn: number): boolean {
    const c = this.chunks.get(Math.floor(pfn / 2 ** SparsePfnSet.CHUNK_BITS));
    if (!c) return false;
    const bit = pfn % 2 ** SparsePfnSet.CHUNK_BITS;
    return (c[bit >>> 3]! & (1 << (bit & 7))) !== 0;
  }

  add(pfn: number): void {
    const key = Math.floor(pfn / 2 ** SparsePfnSet.CHUNK_BITS);
    let c = this.chunks.get(key);
    if (!c) {
      c = new Uint8Array(2 ** SparsePfnSet.CHUNK_BITS / 8);
      this.chunks.set(key, c);
    }
    const bit = pfn % 2 ** SparsePfnSet.CHUNK_BITS;
    c[bit >>> 3]! |= 1 << (bit & 7);
  }
}
