// Frame and pfn lists for the hypervisor calls (BigUint64Array, as libxenctrl takes xen_pfn_t),
// filled through 32-bit halves: writing `BigInt(n)` per entry allocates a BigInt each time, which
// costs microseconds per page on an emulated CPU (the real-Xen rig) and adds up over a guest's
// million gfns.

export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Entry i of `big` (whose 32-bit view is `w`) = frame number f (a non-negative safe integer). */
export function setFrame(big: BigUint64Array, w: Uint32Array, i: number, f: number): void {
  if (HOST_LITTLE_ENDIAN && f <= 0xffffffff) {
    w[2 * i] = f;
    w[2 * i + 1] = 0;
  } else {
    big[i] = BigInt(f);
  }
}

/** The frame numbers list[0..n) as a BigUint64Array. */
export function framesOf(list: ArrayLike<number>, n = list.length): BigUint64Array {
  const big = new BigUint64Array(n);
  const w = new Uint32Array(big.buffer);
  for (let i = 0; i < n; i++) setFrame(big, w, i, list[i]!);
  return big;
}

/** Frames first, first + 1, ..., first + n - 1. */
export function frameRange(first: number, n: number): BigUint64Array {
  const big = new BigUint64Array(n);
  const w = new Uint32Array(big.buffer);
  for (let i = 0; i < n; i++) setFrame(big, w, i, first + i);
  return big;
}
