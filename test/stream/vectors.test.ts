// The real `xl save` files from Xen 4.17: parse, validate, and re-encode byte for byte.
import { describe, it, expect } from 'vitest';
import { createReadStream } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { join } from 'node:path';
import { StreamReader, StreamValidator, StreamWriter, type StreamItem } from '../../src/stream/index.js';
import { VECTORS } from './helpers.js';

/** Gunzipped vector as chunks, hashing the input on the way. */
async function* gunzipHashed(file: string, hash: ReturnType<typeof createHash>): AsyncGenerator<Uint8Array> {
  for await (const c of createReadStream(join(VECTORS, file)).pipe(createGunzip({ chunkSize: 1 << 20 }))) {
    hash.update(c as Buffer);
    yield c as Buffer;
  }
}

interface Outcome {
  inHash: string;
  outHash: string;
  inBytes: number;
  outBytes: number;
  items: StreamItem[]; // non-PAGE_DATA items only
  facts: ReturnType<StreamValidator['finish']>;
}

async function roundTrip(file: string): Promise<Outcome> {
  const inHash = createHash('sha256');
  const outHash = createHash('sha256');
  let outBytes = 0;
  const sink = new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _enc, cb) {
      outHash.update(chunk);
      outBytes += chunk.length;
      cb();
    },
  });
  const reader = new StreamReader(gunzipHashed(file, inHash));
  const writer = new StreamWriter(sink);
  const validator = new StreamValidator();
  const items: StreamItem[] = [];
  for await (const item of reader) {
    validator.check(item);
    await writer.writeItem(item);
    if (!(item.kind === 'record' && item.name === 'PAGE_DATA')) items.push(item);
  }
  const facts = validator.finish(reader.summary);
  await writer.end();
  return {
    inHash: inHash.digest('hex'),
    outHash: outHash.digest('hex'),
    inBytes: reader.summary.bytes,
    outBytes,
    items,
    facts,
  };
}

describe('real xl save vectors (Xen 4.17)', () => {
  it('PV: parses, validates, re-encodes byte-identically', async () => {
    const r = await roundTrip('xl-save-pv-128M.xlsave.gz');
    expect(r.outBytes).toBe(r.inBytes);
    expect(r.outHash).toBe(r.inHash);
    expect(r.inBytes).toBe(134492577);
    const names = r.items.map((i) => `${i.layer}:${i.name}`);
    expect(names.slice(0, 5)).toEqual([
      'xl:XL_HEADER',
      'libxl:LIBXL_HEADER',
      'libxl:LIBXC_CONTEXT',
      'libxc:IMAGE_HEADER',
      'libxc:DOMAIN_HEADER',
    ]);
    expect(r.facts.firstLibxcRecord).toBe('X86_PV_INFO');
    expect(r.facts.guestWidth).toBe(8);
    expect(r.facts.ptLevels).toBe(4);
    expect(r.facts.domainType).toBe(1);
    expect(r.facts.version).toBe(3);
    expect(r.facts.xenVersion).toEqual([4, 17]);
    expect(r.facts.ended).toBe(true);
    expect(r.facts.counts['libxc:PAGE_DATA']).toBe(32);
    expect(r.facts.dataPages).toBeGreaterThan(30000);
    const xl = r.items[0]!;
    expect(xl.kind === 'xl-header' && JSON.parse(xl.header.configText!).c_info.type).toBe('pv');
    expect(names.at(-1)).toBe('libxl:END');
  });

  it('PVH: parses, validates, re-encodes byte-identically', async () => {
    const r = await roundTrip('xl-save-pvh-128M.xlsave.gz');
    expect(r.outHash).toBe(r.inHash);
    expect(r.inBytes).toBe(142660366);
    expect(r.facts.domainType).toBe(2);
    expect(r.facts.firstLibxcRecord).toBe('X86_CPUID_POLICY');
    const ctx = r.items.find((i) => i.kind === 'record' && i.name === 'HVM_CONTEXT');
    expect(ctx && ctx.kind === 'record' && ctx.bodyLength).toBe(2504);
    const params = r.items.find((i) => i.kind === 'record' && i.name === 'HVM_PARAMS');
    expect(params).toBeDefined();
    if (params?.kind === 'record' && params.record.name === 'HVM_PARAMS') {
      expect(params.record.params.length).toBe(8);
      expect(params.record.params.some((p) => p.index === 1n)).toBe(true); // STORE_PFN
    }
    expect(r.facts.counts['libxc:PAGE_DATA']).toBe(1020);
    expect(r.facts.ended).toBe(true);
  });
});
