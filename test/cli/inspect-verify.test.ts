// xenmig inspect / verify on the real `xl save` vectors (PV and PVH, 128 MiB) and on broken files.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { createReadStream, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createGunzip } from 'node:zlib';
import {
  CLI,
  cleanEnv,
  cli,
  createDomain,
  gunzipVector,
  ok,
  REPO,
  tempDir,
  tempHost,
  VECTORS,
  type Done,
} from './helpers.js';

const tmp = tempDir('xenmig-cli-inspect-');
let pv = '';
let pvh = '';

beforeAll(async () => {
  [pv, pvh] = await Promise.all([
    gunzipVector('xl-save-pv-128M.xlsave.gz', tmp.dir),
    gunzipVector('xl-save-pvh-128M.xlsave.gz', tmp.dir),
  ]);
});
afterAll(() => tmp.cleanup());

interface Line {
  offset: number;
  index: number;
  layer: string;
  type: string;
  length: number;
  size: number;
  summary: string;
  [k: string]: unknown;
}

async function inspectJson(file: string, extra: string[] = []): Promise<Line[]> {
  const r = await cli(['inspect', file, '--json', ...extra]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Line);
}

/** Pipe a gzipped vector through gunzip into `xenmig ARGS` on stdin (a real pipe). */
function pipeVector(name: string, args: string[]): Promise<Done> {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: REPO,
    env: cleanEnv(),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  createReadStream(join(VECTORS, name)).pipe(createGunzip()).pipe(child.stdin);
  child.stdin.on('error', () => undefined);
  return new Promise((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
}

describe('xenmig verify', () => {
  it.each([
    ['PV', () => pv, 'x86 PV'],
    ['PVH', () => pvh, 'x86 HVM'],
  ])(
    'accepts the real %s vector (exit 0, its domain type, nothing on stderr when piped)',
    async (_n, file, dt) => {
      const r = await cli(['verify', file()]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('OK: xl stream');
      expect(r.stdout).toContain(dt);
      expect(r.stderr).toBe('');
    },
  );

  it('reads - from a pipe (fast path) with the same result as from the file', async () => {
    const [fromPipe, fromFile] = await Promise.all([
      pipeVector('xl-save-pvh-128M.xlsave.gz', ['verify', '-', '--json']),
      cli(['verify', pvh, '--json']),
    ]);
    expect(fromPipe.code).toBe(0);
    expect(fromPipe.stderr).toBe('');
    const a = JSON.parse(fromPipe.stdout);
    const b = JSON.parse(fromFile.stdout);
    expect(a.valid).toBe(true);
    expect(a.facts).toEqual(b.facts);
    expect(a.facts.bytes).toBe(statSync(pvh).size);
  });

  it('--json reports the facts (domain type, version, page counts)', async () => {
    const r = await cli(['verify', pv, '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.valid).toBe(true);
    expect(j.format).toBe('xl');
    expect(j.facts.domainType).toBe(1);
    expect(j.facts.guestWidth).toBe(8);
    expect(j.facts.ended).toBe(true);
    expect(j.facts.dataPages).toBeGreaterThan(0);
  });

  it('--format must match the file: a libxc-only reading of an xl file fails with ERR_BAD_MARKER', async () => {
    const r = await cli(['verify', pvh, '--format', 'libxc']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^xenmig: ERR_BAD_MARKER: .*offset 0/m);
  });

  it('--stream-type auto accepts a plain stream (no checkpoints)', async () => {
    const r = await cli(['verify', pvh, '--stream-type', 'auto', '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.facts.checkpoints).toBe(0);
    expect(j.facts.ended).toBe(true);
  });
});

describe('xenmig inspect', () => {
  it.each([
    ['PV', () => pv],
    ['PVH', () => pvh],
  ])(
    '%s vector: items tile the file exactly (offset + size = next offset = file size at the end)',
    async (_n, file) => {
      const lines = await inspectJson(file(), ['--no-fold']);
      expect(lines[0]!.type).toBe('XL_HEADER');
      expect(lines[0]!.offset).toBe(0);
      for (let i = 1; i < lines.length; i++)
        expect(lines[i]!.offset).toBe(lines[i - 1]!.offset + lines[i - 1]!.size);
      const last = lines[lines.length - 1]!;
      expect(last.offset + last.size).toBe(statSync(file()).size);
      expect(last.type).toBe('END');
      expect(last.layer).toBe('libxl');
    },
  );

  it('folding: consecutive PAGE_DATA records become one line whose counts add up to the unfolded ones and to verify’s', async () => {
    const [folded, unfolded, v] = await Promise.all([
      inspectJson(pvh),
      inspectJson(pvh, ['--no-fold']),
      cli(['verify', pvh, '--json']),
    ]);
    const pd = (ls: Line[]) => ls.filter((l) => l.type === 'PAGE_DATA');
    expect(pd(folded).length).toBeLessThan(pd(unfolded).length);
    const sum = (ls: Line[], k: string) => pd(ls).reduce((a, l) => a + (l[k] as number), 0);
    expect(sum(folded, 'count')).toBe(sum(unfolded, 'count'));
    expect(sum(folded, 'records')).toBe(pd(unfolded).length);
    const facts = JSON.parse(v.stdout).facts;
    expect(sum(unfolded, 'count')).toBe(facts.pageEntries);
    expect(sum(unfolded, 'dataPages')).toBe(facts.dataPages);
    expect(pd(unfolded).length).toBe(facts.counts['libxc:PAGE_DATA']);
    // non-page items are the same in both views
    expect(folded.filter((l) => l.type !== 'PAGE_DATA')).toEqual(
      unfolded.filter((l) => l.type !== 'PAGE_DATA'),
    );
  });

  it('decodes the PV records: guest width, vCPU ids, P2M frames, page-table types', async () => {
    const lines = await inspectJson(pv);
    const dh = lines.find((l) => l.type === 'DOMAIN_HEADER')!;
    expect(dh.domainType).toBe('x86 PV');
    const info = lines.find((l) => l.type === 'X86_PV_INFO')!;
    expect(info.guestWidth).toBe(8);
    expect(info.ptLevels).toBe(4);
    const vcpus = lines.filter((l) => l.type === 'X86_PV_VCPU_BASIC').map((l) => l.vcpu);
    expect(vcpus.length).toBeGreaterThan(0);
    expect(vcpus).toEqual([...vcpus].sort((a, b) => (a as number) - (b as number)));
    const types = lines
      .filter((l) => l.type === 'PAGE_DATA')
      .flatMap((l) => Object.keys(l.pageTypes as object));
    expect(types.some((t) => /L[1-4]TAB/.test(t))).toBe(true);
    expect(lines.some((l) => l.type === 'X86_PV_P2M_FRAMES' && (l.frames as number) > 0)).toBe(true);
  });

  it('decodes the PVH records: HVM context vCPUs, HVM params by name, TSC', async () => {
    const lines = await inspectJson(pvh);
    expect(lines.find((l) => l.type === 'DOMAIN_HEADER')!.domainType).toBe('x86 HVM');
    const ctx = lines.find((l) => l.type === 'HVM_CONTEXT')!;
    expect((ctx.vcpus as number[]).length).toBeGreaterThan(0);
    expect(ctx.saveTypes).toContain('CPU');
    const params = lines.find((l) => l.type === 'HVM_PARAMS')!.params as { name: string }[];
    expect(params.map((p) => p.name)).toContain('STORE_PFN');
    const tsc = lines.find((l) => l.type === 'X86_TSC_INFO')!;
    expect(typeof tsc.khz).toBe('number');
    const xl = lines[0]!;
    expect((xl.config as { kind: string }).kind).toBe('pvh');
  });

  it('text output: one line per item with offset, layer, type, length and summary', async () => {
    const [t, j] = await Promise.all([cli(['inspect', pvh]), inspectJson(pvh)]);
    expect(t.code).toBe(0);
    const lines = t.stdout.trim().split('\n');
    expect(lines.length).toBe(j.length);
    lines.forEach((l, i) => {
      const [dec, hex, layer, type, len] = l.trim().split(/\s+/);
      expect(Number(dec)).toBe(j[i]!.offset);
      expect(Number(hex)).toBe(j[i]!.offset);
      expect(layer).toBe(j[i]!.layer);
      expect(type).toBe(j[i]!.type);
      expect(Number(len)).toBe(j[i]!.length);
    });
  });

  it('reads - from a pipe', async () => {
    const [p, f] = await Promise.all([
      pipeVector('xl-save-pv-128M.xlsave.gz', ['inspect', '-', '--json']),
      cli(['inspect', pv, '--json']),
    ]);
    expect(p.code).toBe(0);
    expect(p.stdout).toBe(f.stdout);
  });
});

describe('broken files', () => {
  const t = tempDir('xenmig-cli-broken-');
  afterAll(() => t.cleanup());
  let lines: Line[] = [];
  let bytes: Buffer;
  beforeAll(async () => {
    lines = await inspectJson(pvh, ['--no-fold']);
    bytes = readFileSync(pvh);
  });
  const write = (name: string, b: Buffer | Uint8Array) => {
    const p = join(t.dir, name);
    writeFileSync(p, b);
    return p;
  };

  it('truncated inside a PAGE_DATA record: ERR_TRUNCATED at that record, exit 1; inspect prints the items before it', async () => {
    const rec = lines.filter((l) => l.type === 'PAGE_DATA')[3]!;
    const f = write('cut.xl', bytes.subarray(0, rec.offset + 100));
    const v = await cli(['verify', f]);
    expect(v.code).toBe(1);
    expect(v.stderr).toMatch(
      new RegExp(`^xenmig: ERR_TRUNCATED: .*#${rec.index}.*offset ${rec.offset}\\b`, 'm'),
    );
    const j = await cli(['verify', f, '--json']);
    const e = JSON.parse(j.stdout).error;
    expect(e).toMatchObject({
      code: 'ERR_TRUNCATED',
      recordIndex: rec.index,
      recordType: 'PAGE_DATA',
      offset: rec.offset,
    });
    const ins = await cli(['inspect', f, '--json', '--no-fold']);
    expect(ins.code).toBe(1);
    expect(ins.stderr).toContain('ERR_TRUNCATED');
    expect(ins.stdout.trim().split('\n').length).toBe(rec.index);
  });

  it('a non-zero reserved field is ERR_RESERVED at its offset; --lenient accepts it with a warning', async () => {
    const ih = lines.find((l) => l.type === 'IMAGE_HEADER')!;
    const b = Buffer.from(bytes);
    b[ih.offset + 20] = 0x5a; // image header reserved u32
    const f = write('reserved.xl', b);
    const strict = await cli(['verify', f]);
    expect(strict.code).toBe(1);
    expect(strict.stderr).toMatch(new RegExp(`^xenmig: ERR_RESERVED: .*offset ${ih.offset + 20}\\b`, 'm'));
    const lenient = await cli(['verify', f, '--lenient']);
    expect(lenient.code).toBe(0);
    expect(lenient.stderr).toMatch(/warning: ERR_RESERVED/);
  });

  it('bytes after the final END: ERR_TRAILING_DATA at the old end of file', async () => {
    const f = write('trailing.xl', Buffer.concat([bytes, Buffer.alloc(8)]));
    const r = await cli(['verify', f]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`ERR_TRAILING_DATA: .*offset ${bytes.length}\\b`));
  });

  it('garbage is ERR_BAD_MARKER, an empty file ERR_TRUNCATED, a missing file an error; all exit non-zero', async () => {
    const g = await cli(['verify', write('garbage', Buffer.from('hello, this is not a stream at all'))]);
    expect(g.code).toBe(1);
    expect(g.stderr).toMatch(/^xenmig: ERR_BAD_MARKER: /m);
    const e = await cli(['inspect', write('empty', Buffer.alloc(0))]);
    expect(e.code).toBe(1);
    expect(e.stderr).toMatch(/^xenmig: ERR_TRUNCATED: /m);
    const m = await cli(['verify', join(t.dir, 'does-not-exist')]);
    expect(m.code).not.toBe(0);
    expect(m.stderr).toMatch(/^xenmig: ENOENT: /m);
  });

  it('a record body_length above 128 MiB: ERR_RECORD_TOO_LONG at the length field', async () => {
    const rec = lines.find((l) => l.type === 'X86_TSC_INFO')!;
    const b = Buffer.from(bytes);
    b.writeUInt32LE(0x10000000, rec.offset + 4);
    const r = await cli(['verify', write('long.xl', b), '--json']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).error).toMatchObject({
      code: 'ERR_RECORD_TOO_LONG',
      offset: rec.offset + 4,
      recordIndex: rec.index,
    });
  });

  it('bad options are usage errors (exit 2)', async () => {
    const r = await cli(['verify', pvh, '--format', 'nonsense']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--format');
  });
});

describe('checkpointed (Remus) streams', () => {
  it('inspect numbers the checkpoints; verify detects a checkpointed stream by itself', async () => {
    const h = tempHost();
    try {
      const d = await createDomain(h.dir, 'hvm', '8M');
      const file = join(h.dir, 'remus.xl');
      await ok(['remus', String(d), file, '--max-checkpoints', '3', '--interval-ms', '50', '--host', h.dir]);
      const lines = await inspectJson(file);
      const ck = lines.filter((l) => l.type === 'CHECKPOINT').map((l) => l.checkpoint);
      const ends = lines.filter((l) => l.type === 'CHECKPOINT_END').map((l) => l.checkpoint);
      expect(ck).toEqual([1, 2, 3]);
      expect(ends).toEqual([1, 2, 3]);
      // each CHECKPOINT_END directly follows its CHECKPOINT
      lines.forEach((l, i) => l.type === 'CHECKPOINT_END' && expect(lines[i - 1]!.type).toBe('CHECKPOINT'));
      const remus = JSON.parse((await cli(['verify', file, '--stream-type', 'remus', '--json'])).stdout);
      expect(remus.valid).toBe(true);
      expect(remus.facts.checkpoints).toBe(3);
      const auto = JSON.parse((await cli(['verify', file, '--json'])).stdout);
      expect(auto.valid).toBe(true);
      expect(auto.facts.checkpoints).toBe(3);
      const plain = await cli(['verify', file, '--stream-type', 'plain']);
      expect(plain.code).toBe(1);
      expect(plain.stderr).toMatch(/^xenmig: ERR_ORDER: .*CHECKPOINT/m);
    } finally {
      h.cleanup();
    }
  });
});
