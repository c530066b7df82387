// The hostile-input generator: structure-aware mutations of valid streams of every layer (xl
// header and config, libxl records, libxc headers and records), truncations at record boundaries,
// page-table attacks and endless streams. Pure functions of (corpus, seed, case index): a case is
// reproduced from its seed and index alone.
import { clone, encodeSegment, frameRecord, join, libxcEnd, type Segment } from '../frame.js';

export interface Rng {
  next(): number;
  int(n: number): number;
  pick<T>(a: readonly T[]): T;
  chance(p: number): boolean;
}

/** splitmix32 over (seed, index): each case has its own independent stream of numbers. */
export function caseRng(seed: number, index: number): Rng {
  let s = (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca6b)) >>> 0;
  const next = () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x21f0aaad) >>> 0;
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97) >>> 0;
    return (z ^ (z >>> 15)) >>> 0;
  };
  return {
    next,
    int: (n) => next() % n,
    pick: (a) => a[next() % a.length]!,
    chance: (p) => next() / 2 ** 32 < p,
  };
}

export interface Base {
  name: string;
  kind: 'hvm' | 'pv';
  format: 'xl' | 'libxl' | 'libxc';
  remus: boolean;
  segs: Segment[];
  /** the libxl JSON config of the guest (for formats without an xl header) */
  config: string;
}

export type Input = Buffer | (() => AsyncIterable<Uint8Array>);

export interface Case {
  index: number;
  base: string;
  target: 'verify' | 'restore' | 'receive' | 'remus';
  /** what was done to the base stream (for the report) */
  ops: string[];
  input: Input;
}

const U32S = [
  0, 1, 2, 7, 8, 0x7f, 0x80, 0xff, 0x100, 0x3ff, 0x400, 0x401, 0xfff, 0x1000, 0xffff, 0x10000, 0x7fffffff,
  0x80000000, 0xfffffffe, 0xffffffff,
];
const U64S = [
  0n,
  1n,
  0xfffn,
  0x1000n,
  0xfffffn,
  0x100000n,
  0xfffffffn,
  0x10000000n,
  0xffffffffn,
  0x100000000n,
  (1n << 52n) - 1n,
  1n << 52n,
  (1n << 63n) - 1n,
  1n << 63n,
  (1n << 64n) - 1n,
];

function u32(r: Rng): number {
  return r.chance(0.8) ? r.pick(U32S) : r.next();
}
function u64(r: Rng): bigint {
  return r.chance(0.8) ? r.pick(U64S) : (BigInt(r.next()) << 32n) | BigInt(r.next());
}

// Writes only inside the buffer (offsets come from mutated count fields and can be anything).
function putU32(b: Buffer, off: number, v: number): void {
  if (off >= 0 && off + 4 <= b.length) b.writeUInt32LE(v >>> 0, off);
}
function putU64(b: Buffer, off: number, v: bigint): void {
  if (off >= 0 && off + 8 <= b.length) b.writeBigUInt64LE(BigInt.asUintN(64, v), off);
}

const records = (segs: Segment[]) => segs.map((s, i) => [s, i] as const).filter(([s]) => s.kind === 'record');

/** A typed field of a libxc record set to an interesting value. */
function mutateLibxc(s: Segment, r: Rng, ops: string[]): void {
  const b = s.bytes;
  switch (s.type) {
    case 0x01: {
      // PAGE_DATA: count u32, reserved u32, pfn words, pages
      const count = b.length >= 4 ? b.readUInt32LE(0) : 0;
      const what = r.int(6);
      if (what === 0) {
        putU32(b, 0, u32(r));
        ops.push('PAGE_DATA.count');
      } else if (what <= 2 && count > 0) {
        const i = r.int(Math.min(count, Math.max(1, (b.length - 8) >> 3)));
        const word = b.length >= 16 + 8 * i ? b.readBigUInt64LE(8 + 8 * i) : 0n;
        const pfn = what === 1 ? BigInt.asUintN(52, u64(r)) : word & ((1n << 52n) - 1n);
        const type = what === 2 ? BigInt(r.int(16)) : word >> 60n;
        putU64(b, 8 + 8 * i, (type << 60n) | pfn | (r.chance(0.1) ? BigInt(r.int(256)) << 52n : 0n));
        ops.push(what === 1 ? `PAGE_DATA.pfn[${i}]` : `PAGE_DATA.type[${i}]`);
      } else if (what === 3) {
        putU32(b, 4, u32(r));
        ops.push('PAGE_DATA.reserved');
      } else {
        // page contents (for PV these may be page tables: PTEs with wild frames)
        const at = 8 + 8 * count + r.int(Math.max(1, b.length - 8 - 8 * count));
        // `at` passes 2^31 when the count is huge: align arithmetically (`& ~7` would wrap it negative)
        if (r.chance(0.5)) putU64(b, at - (at % 8), (u64(r) << 12n) | BigInt(r.int(0x1000)));
        else if (at < b.length) b[at] = r.int(256);
        ops.push('PAGE_DATA.page');
      }
      return;
    }
    case 0x02: // X86_PV_INFO: width u8, levels u8, reserved
      b[r.int(Math.max(1, b.length))] = r.pick([0, 1, 3, 4, 8, 0xff]);
      ops.push('PV_INFO');
      return;
    case 0x03: // X86_PV_P2M_FRAMES: start u32, end u32, frames u64[]
      if (r.chance(0.5)) putU32(b, r.chance(0.5) ? 0 : 4, u32(r));
      else putU64(b, 8 + 8 * r.int(Math.max(1, (b.length - 8) >> 3)), u64(r));
      ops.push('P2M_FRAMES');
      return;
    case 0x04:
    case 0x05:
    case 0x06:
    case 0x0c: // vCPU records: vcpu id u32, reserved u32, context
      if (r.chance(0.3)) putU32(b, 0, u32(r));
      else putU64(b, 8 + 8 * r.int(Math.max(1, (b.length - 8) >> 3)), u64(r));
      ops.push(`VCPU(0x${s.type.toString(16)})`);
      return;
    case 0x0a: // HVM_PARAMS: count u32, reserved u32, (index u64, value u64)[]
      if (r.chance(0.3)) putU32(b, 0, u32(r));
      else putU64(b, 8 + 8 * r.int(Math.max(1, (b.length - 8) >> 3)), u64(r));
      ops.push('HVM_PARAMS');
      return;
    default:
      if (b.length >= 4) {
        const off = 4 * r.int(b.length >> 2);
        if (r.chance(0.5)) putU32(b, off, u32(r));
        else putU64(b, off & ~7, u64(r));
      }
      ops.push(`field(0x${s.type.toString(16)})`);
  }
}

/** The xl header's config (JSON) rewritten with a hostile value, or one of its fixed fields. */
function mutateXlHeader(s: Segment, r: Rng, ops: string[]): void {
  const b = s.bytes;
  const i = b.indexOf('{');
  const j = b.lastIndexOf('}');
  if (r.chance(0.7) && i > 0 && j > i) {
    let cfg: Record<string, unknown>;
    try {
      cfg = JSON.parse(b.subarray(i, j + 1).toString('utf8')) as Record<string, unknown>;
    } catch {
      cfg = {};
    }
    const bi = (cfg['b_info'] ??= {}) as Record<string, unknown>;
    const ci = (cfg['c_info'] ??= {}) as Record<string, unknown>;
    const v = r.pick<unknown>([0, -1, 1, 4, 1024, 2 ** 31, 2 ** 40, 2 ** 53, 1e300, 'x', null, [], {}]);
    const field = r.int(5);
    if (field === 0) bi['max_memkb'] = v;
    else if (field === 1) bi['target_memkb'] = v;
    else if (field === 2) bi['max_vcpus'] = v;
    else if (field === 3) ci['type'] = r.pick(['hvm', 'pv', 'pvh', 'x', 7]);
    else ci['name'] = r.pick(['', 'a'.repeat(300), '../../etc', 'x\u0000y', 5]);
    ops.push(`xl.config.${['max_memkb', 'target_memkb', 'max_vcpus', 'type', 'name'][field]}`);
    const text = Buffer.from(JSON.stringify(cfg) + '\0', 'utf8');
    const head = Buffer.from(b.subarray(0, 48));
    head.writeUInt32LE(4 + text.length, 44);
    const lenField = Buffer.alloc(4);
    lenField.writeUInt32LE(text.length, 0);
    s.bytes = Buffer.concat([head, lenField, text]);
    return;
  }
  const off = r.pick([32, 36, 40, 44, 48, 4 * r.int(b.length >> 2)]);
  putU32(b, off, u32(r));
  ops.push(`xl.header@${off}`);
}

function mutateSegment(s: Segment, r: Rng, ops: string[]): void {
  if (s.kind === 'xl-header') return mutateXlHeader(s, r, ops);
  if (s.kind !== 'record') {
    const off = 4 * r.int(Math.max(1, s.bytes.length >> 2));
    putU32(s.bytes, off, u32(r));
    ops.push(`${s.kind}@${off}`);
    return;
  }
  if (s.layer === 'libxc') return mutateLibxc(s, r, ops);
  // libxl records: emulator id / index / body
  if (s.bytes.length >= 4) putU32(s.bytes, 4 * r.int(s.bytes.length >> 2), u32(r));
  else s.bytes = Buffer.from(Array.from({ length: r.int(16) }, () => r.int(256)));
  ops.push(`libxl(0x${s.type.toString(16)})`);
}

/** Raw record bytes whose length field lies about the body. */
function lyingRecord(s: Segment, r: Rng): Buffer {
  const b = Buffer.from(encodeSegment(s));
  const len = s.bytes.length;
  b.writeUInt32LE(
    r.pick([
      0,
      len + 1,
      len + 8,
      Math.max(0, len - 1),
      Math.max(0, len - 8),
      0x7fffffff,
      0xffffffff,
      128 * 2 ** 20,
      128 * 2 ** 20 + 1,
    ]) >>> 0,
    4,
  );
  return b;
}

const KNOWN_LIBXC = [
  0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11,
  0x12, 0x13, 0x7fffffff, 0x80000000, 0x80000123, 0xffffffff,
];
const KNOWN_LIBXL = [0, 1, 2, 3, 4, 5, 6, 0x80000001];

function randomRecord(r: Rng, layer: 'libxc' | 'libxl'): Segment {
  const type = r.pick(layer === 'libxc' ? KNOWN_LIBXC : KNOWN_LIBXL);
  const len = r.pick([0, 4, 8, 16, 24, 4096, 4104, 8 + r.int(64)]);
  const body = Buffer.alloc(len);
  for (let i = 0; i + 4 <= len; i += 4) if (r.chance(0.3)) body.writeUInt32LE(u32(r) >>> 0, i);
  return { kind: 'record', layer, type, name: 'random', bytes: body, offset: -1 };
}

/** Cap on the bytes an "endless" stream produces in-process (the targets must refuse it earlier or fail at its end). */
export const ENDLESS_BYTES = Number(process.env.XENMIG_CAMPAIGN_ENDLESS_BYTES ?? 1 << 20);

function endless(prefix: Buffer, unit: Buffer, cap: number): () => AsyncIterable<Uint8Array> {
  const block = Buffer.concat(
    Array.from({ length: Math.max(1, Math.floor((256 << 10) / unit.length)) }, () => unit),
  );
  return async function* () {
    yield prefix;
    for (let n = prefix.length; n < cap; n += block.length) yield block;
  };
}

export type Attack = (stream: Buffer) => Promise<Buffer>;

/** One case. `ptAttack` rewrites a PV stream's page tables (self-references, cycles). */
export async function makeCase(
  bases: Base[],
  seed: number,
  index: number,
  ptAttack: (b: Buffer, r: Rng) => Promise<Buffer>,
): Promise<Case> {
  const r = caseRng(seed, index);
  const pickTarget = (): Case['target'] => {
    const x = r.int(100);
    return x < 40 ? 'verify' : x < 72 ? 'restore' : x < 88 ? 'receive' : 'remus';
  };
  const target = pickTarget();
  const pool =
    target === 'remus' ? bases.filter((b) => b.remus) : bases.filter((b) => !b.remus || target === 'verify');
  const base = r.pick(pool);
  const segs = clone(base.segs);
  const ops: string[] = [];
  const kind = r.int(100);
  let input: Input;
  if (kind < 8) {
    // truncation at a record boundary (every boundary is hit over the cases) or inside one
    const at = index % (segs.length + 1);
    const whole = join(segs);
    const off = r.chance(0.7) ? (at < segs.length ? segs[at]!.offset : whole.length) : r.int(whole.length);
    // segments keep their original offsets only while unmodified: this case modifies nothing else
    input = whole.subarray(0, off);
    ops.push(`truncate@${off}`);
  } else if (kind < 10) {
    // endless: a static prefix, then one record kind over and over
    const end = Math.max(1, libxcEnd(segs) >= 0 ? libxcEnd(segs) : segs.length - 1);
    const recs = records(segs.slice(0, end)).map(([s]) => s);
    const unit = r.chance(0.3)
      ? frameRecord(0x80000000 | r.int(0x1000000), Buffer.alloc(r.pick([0, 8, 64])))
      : encodeSegment(r.pick(recs));
    const cut = r.chance(0.5) ? end : 1 + r.int(end);
    input = endless(join(segs.slice(0, cut)), unit, ENDLESS_BYTES);
    ops.push(`endless(${unit.readUInt32LE(0).toString(16)})@${cut}`);
  } else if (kind < 17 && base.kind === 'pv') {
    input = await ptAttack(join(segs), r);
    ops.push('page-table attack');
  } else {
    const n = 1 + (r.chance(0.3) ? r.int(3) : 0);
    let raw: Buffer | null = null;
    for (let k = 0; k < n; k++) {
      const op = r.int(100);
      const recIdx = records(segs).map(([, i]) => i);
      if (op < 55) {
        // a field of any item, biased to the records that matter most
        const hot = segs
          .map((s, i) => [s, i] as const)
          .filter(([s]) => s.kind !== 'record' || [0x01, 0x03, 0x04, 0x0a, 0x09, 0x02].includes(s.type));
        const [s] = r.chance(0.7) && hot.length ? r.pick(hot) : r.pick(segs.map((s, i) => [s, i] as const));
        mutateSegment(s, r, ops);
      } else if (op < 62 && recIdx.length) {
        segs.splice(r.pick(recIdx), 1);
        ops.push('drop');
      } else if (op < 70 && recIdx.length) {
        const i = r.pick(recIdx);
        segs.splice(i + (r.chance(0.5) ? 1 : r.int(segs.length - i)), 0, {
          ...segs[i]!,
          bytes: Buffer.from(segs[i]!.bytes),
        });
        ops.push('duplicate');
      } else if (op < 76 && recIdx.length > 1) {
        const a = r.pick(recIdx);
        const b = r.pick(recIdx);
        [segs[a], segs[b]] = [segs[b]!, segs[a]!];
        ops.push('swap');
      } else if (op < 88) {
        const at = 1 + r.int(segs.length);
        const layer = base.format === 'libxc' || r.chance(0.7) ? 'libxc' : 'libxl';
        segs.splice(at, 0, randomRecord(r, layer));
        ops.push(`insert(${layer}:0x${segs[at]!.type.toString(16)})`);
      } else if (recIdx.length) {
        // a record whose length field lies (the rest of the stream follows as is)
        const i = r.pick(recIdx);
        raw = Buffer.concat([join(segs.slice(0, i)), lyingRecord(segs[i]!, r), join(segs.slice(i + 1))]);
        ops.push('length');
        break;
      }
    }
    input = raw ?? join(segs);
  }
  return { index, base: base.name, target, ops, input };
}
