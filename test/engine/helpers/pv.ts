// Helpers for the PV engine tests: mock hosts in temp dirs, in-memory streams, stream decoding.
import { Writable } from 'node:stream';
import { StreamCursor } from '../../../src/engine/cursor.js';
import { libxcRestore } from '../../../src/engine/restore/restore.js';
import type { RestoreOps } from '../../../src/engine/restore/types.js';
import { libxcSave } from '../../../src/engine/save/save.js';
import type { SaveCallbacks, SaveStats } from '../../../src/engine/save/types.js';
import { StreamReader, StreamWriter, type LibxcRecord } from '../../../src/stream/index.js';
import type { Hypervisor } from '../../../src/xen/types.js';

export { PV_VECTOR } from '../../fixtures/vectors.js';

export { tempHost } from '../../support/hosts.js';

/** A Writable collecting everything written to it. */
export class Sink extends Writable {
  chunks: Buffer[] = [];
  constructor() {
    super({ highWaterMark: 1 << 20 });
  }
  override _write(chunk: Buffer, _e: BufferEncoding, cb: () => void): void {
    this.chunks.push(Buffer.from(chunk));
    cb();
  }
  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

/** libxc stream of a domain (non-live unless told), suspended with SHUTDOWN_suspend or paused. */
export async function saveLibxc(
  xen: Hypervisor,
  domid: number,
  opts: {
    live?: boolean;
    suspend?: () => Promise<void>;
    callbacks?: Partial<SaveCallbacks>;
    onStats?: (s: SaveStats) => void;
  } = {},
): Promise<Buffer> {
  const sink = new Sink();
  const out = new StreamWriter(sink);
  const stats = await libxcSave({
    xen,
    domid,
    out,
    live: opts.live ?? false,
    callbacks: {
      suspend:
        opts.suspend ??
        (async () => {
          xen.shutdown(domid, 2);
        }),
      ...opts.callbacks,
    },
  });
  opts.onStats?.(stats);
  await out.end();
  return sink.bytes();
}

export async function restoreLibxc(xen: Hypervisor, domid: number, stream: Uint8Array, ops?: RestoreOps) {
  const cursor = new StreamCursor(stream, { validator: { reserved: 'warn', padding: 'warn' } });
  return libxcRestore({ xen, domid, cursor, ...(ops ? { ops } : {}) });
}

export interface Decoded {
  pages: Map<number, { type: number; data: Uint8Array | null }>;
  records: LibxcRecord[];
}

/** All libxc records of a stream (the last PAGE_DATA per pfn wins), from bytes or chunks. */
export async function decode(input: Uint8Array | AsyncIterable<Uint8Array>): Promise<Decoded> {
  const r = new StreamReader(input);
  const pages = new Map<number, { type: number; data: Uint8Array | null }>();
  const records: LibxcRecord[] = [];
  for await (const it of r) {
    if (it.kind !== 'record' || it.layer !== 'libxc') continue;
    const rec = it.record;
    if (rec.name === 'PAGE_DATA') {
      let d = 0;
      for (let i = 0; i < rec.count; i++) {
        const t = rec.types[i]!;
        const has = t <= 4 || (t >= 9 && t <= 12);
        pages.set(rec.pfns[i]!, { type: t, data: has ? rec.data!.slice(d * 4096, (d + 1) * 4096) : null });
        if (has) d++;
      }
      continue;
    }
    records.push(rec);
  }
  return { pages, records };
}

export interface Digest {
  /** per pfn: type, sha256 of the page (null without data), sha256 with bytes 32..88 zeroed */
  pages: Map<number, { type: number; hash: string | null; hashMasked: string | null }>;
  /** full data of the pfns `keep` selects (they must be known from earlier records) */
  kept: Map<number, Uint8Array>;
  records: LibxcRecord[];
}

/** Like decode(), but pages are kept as hashes (a 128 MiB guest stays small). */
export async function digest(
  input: Uint8Array | AsyncIterable<Uint8Array>,
  keep: (pfn: number, records: LibxcRecord[]) => boolean = () => false,
): Promise<Digest> {
  const { createHash } = await import('node:crypto');
  const r = new StreamReader(input);
  const pages: Digest['pages'] = new Map();
  const kept = new Map<number, Uint8Array>();
  const records: LibxcRecord[] = [];
  for await (const it of r) {
    if (it.kind !== 'record' || it.layer !== 'libxc') continue;
    const rec = it.record;
    if (rec.name !== 'PAGE_DATA') {
      records.push(rec);
      continue;
    }
    let d = 0;
    for (let i = 0; i < rec.count; i++) {
      const t = rec.types[i]!;
      const pfn = rec.pfns[i]!;
      const has = t <= 4 || (t >= 9 && t <= 12);
      if (!has) {
        pages.set(pfn, { type: t, hash: null, hashMasked: null });
        continue;
      }
      const page = rec.data!.subarray(d * 4096, (d + 1) * 4096);
      d++;
      const masked = Buffer.from(page);
      masked.fill(0, 32, 88);
      pages.set(pfn, {
        type: t,
        hash: createHash('sha256').update(page).digest('hex'),
        hashMasked: createHash('sha256').update(masked).digest('hex'),
      });
      if (keep(pfn, records)) kept.set(pfn, page.slice());
    }
  }
  return { pages, kept, records };
}
