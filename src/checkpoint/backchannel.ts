// The COLO back channel (secondary → primary): bare records, no header. libxl CHECKPOINT_STATE
// (type 5, 4-byte body) and libxc CHECKPOINT_DIRTY_PFN_LIST (type 0x0f, u64 pfns), each with the
// spec's 8-byte record header (type u32, length u32) and padding to 8 bytes. Xen ≥ 4.18 writes a
// 16-byte header for the dirty list (reference §8.1); xenmig writes, and reads, the spec framing.
//
// Between xenmig peers the records travel inside BACKCHANNEL control messages on the reverse
// direction (one message may carry several records; a record never spans two messages).
import {
  CheckpointState,
  encodeLibxcRecord,
  encodeLibxlRecord,
  LibxcType,
  LibxlType,
} from '../stream/index.js';

export type BackRecord = { kind: 'state'; state: number } | { kind: 'dirty'; pfns: BigUint64Array };

export const STATE_NAMES: Record<number, string> = {
  [CheckpointState.NEW]: 'NEW',
  [CheckpointState.SVM_SUSPENDED]: 'SVM_SUSPENDED',
  [CheckpointState.SVM_READY]: 'SVM_READY',
  [CheckpointState.SVM_RESUMED]: 'SVM_RESUMED',
};

export function encodeState(state: number): Uint8Array {
  return encodeLibxlRecord({ name: 'CHECKPOINT_STATE', controlId: state });
}

export function encodeDirtyPfns(pfns: ArrayLike<number>): Uint8Array {
  const a = new BigUint64Array(pfns.length);
  for (let i = 0; i < pfns.length; i++) a[i] = BigInt(pfns[i]!);
  return encodeLibxcRecord({ name: 'CHECKPOINT_DIRTY_PFN_LIST', pfns: a });
}

/** Incremental decoder of back-channel bytes (records may be split across pushes). */
export class BackChannelDecoder {
  private buf = new Uint8Array(0);

  push(chunk: Uint8Array): BackRecord[] {
    const b = new Uint8Array(this.buf.length + chunk.length);
    b.set(this.buf);
    b.set(chunk, this.buf.length);
    this.buf = b;
    const out: BackRecord[] = [];
    for (;;) {
      if (this.buf.length < 8) break;
      const dv = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
      const type = dv.getUint32(0, true);
      const len = dv.getUint32(4, true);
      const total = 8 + len + ((8 - (len % 8)) % 8);
      if (this.buf.length < total) break;
      if (type === LibxlType.CHECKPOINT_STATE) {
        if (len !== 4) throw new Error(`back channel: CHECKPOINT_STATE body of ${len} bytes (must be 4)`);
        out.push({ kind: 'state', state: dv.getUint32(8, true) });
      } else if (type === LibxcType.CHECKPOINT_DIRTY_PFN_LIST) {
        if (len % 8 !== 0)
          throw new Error(
            `back channel: CHECKPOINT_DIRTY_PFN_LIST body of ${len} bytes (not a multiple of 8)`,
          );
        const pfns = new BigUint64Array(len / 8);
        for (let i = 0; i < pfns.length; i++) pfns[i] = dv.getBigUint64(8 + i * 8, true);
        out.push({ kind: 'dirty', pfns });
      } else {
        throw new Error(`back channel: unexpected record type 0x${type.toString(16)}`);
      }
      this.buf = this.buf.subarray(total);
    }
    return out;
  }
}
