// save / restore end to end (separate processes, two mock hosts): memory and state identical after
// a round trip through a file or a pipe; every format xenmig writes verifies; the real PVH `xl save`
// vector restores into a mock HVM domain and saves again to an equivalent, valid stream.
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  checksum,
  CLI,
  cleanEnv,
  cli,
  createDomain,
  domainState,
  gunzipVector,
  listDomains,
  ok,
  readAtSuspend,
  REPO,
  startCli,
  startWorkload,
  tempDir,
  tempHost,
  until,
} from './helpers.js';

const tmp = tempDir('xenmig-e2e-save-');
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});
afterAll(() => tmp.cleanup());

function hosts(n: number): string[] {
  return Array.from({ length: n }, () => {
    const h = tempHost();
    cleanups.push(h.cleanup);
    return h.dir;
  });
}

const stateWithoutDomid = (s: Record<string, unknown>) => {
  const { domid: _d, ...rest } = s;
  return rest;
};

describe('save and restore', () => {
  it('save to a file, restore on another host: memory and register state identical; the source is destroyed (as xl save)', async () => {
    const [A, B] = hosts(2);
    const d = await createDomain(A!, 'hvm', '16M', 2);
    await cli(['mock', 'workload', String(d), '--rate', '5000', '--duration', '1', '--host', A!]);
    const c0 = await checksum(A!, d);
    const s0 = await domainState(A!, d);
    const file = join(tmp.dir, 'plain.xl');
    await ok(['save', String(d), file, '--host', A!]);
    expect(await listDomains(A!)).toEqual([]);
    const r = await cli(['restore', file, '--host', B!]);
    expect(r.code, r.stderr).toBe(0);
    const nd = Number(r.stdout.trim());
    const [dest] = await listDomains(B!);
    expect(dest).toMatchObject({ domid: nd, type: 'hvm', state: 'running' });
    expect(await checksum(B!, nd)).toBe(c0);
    expect(stateWithoutDomid(await domainState(B!, nd))).toEqual(stateWithoutDomid(s0));
  });

  it('live save while a workload runs, --keep-running, --max-iterations 1: one live round; the file restores to the checksum taken at suspend; the source and its workload go on', async () => {
    const [A, B] = hosts(2);
    const d = await createDomain(A!, 'hvm', '16M');
    const w = await startWorkload(A!, d, 400);
    const file = join(tmp.dir, 'live.xl');
    const rec = join(tmp.dir, 'live-at-suspend.json');
    const s = await cli([
      'save',
      String(d),
      file,
      '--live',
      '--keep-running',
      '--max-iterations',
      '1',
      '--checksum-at-suspend',
      rec,
      '--json',
      '--host',
      A!,
    ]);
    expect(s.code, s.stderr).toBe(0);
    const q = JSON.parse(s.stdout);
    expect(q.status).toBe('completed');
    expect(q.xenmig.source).toBe('running');
    expect((q.xenmig.rounds as { kind: string }[]).map((x) => x.kind)).toEqual(['live', 'final']);
    expect(q.ram.transferred).toBeLessThanOrEqual(statSync(file).size);
    const [src] = await listDomains(A!);
    expect(src!.state).toBe('running');
    expect(w.child.exitCode).toBeNull();
    w.child.kill('SIGINT');
    expect((await w.done).code).toBe(0);
    const nd = Number(await ok(['restore', file, '--host', B!]));
    expect(await checksum(B!, nd)).toBe(readAtSuspend(rec).checksum);
  });

  it('save to - piped into restore - on another host (two processes, one pipe)', async () => {
    const [A, B] = hosts(2);
    const d = await createDomain(A!, 'hvm', '16M');
    const c0 = await checksum(A!, d);
    const restoreP = spawn(process.execPath, [CLI, 'restore', '-', '--host', B!], {
      cwd: REPO,
      env: cleanEnv(),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const saveP = spawn(process.execPath, [CLI, 'save', String(d), '-', '--host', A!], {
      cwd: REPO,
      env: cleanEnv(),
      stdio: ['ignore', restoreP.stdin, 'pipe'],
    });
    restoreP.stdin.destroy();
    let out = '';
    restoreP.stdout.setEncoding('utf8').on('data', (x: string) => (out += x));
    const codes = await Promise.all(
      [saveP, restoreP].map((p) => new Promise<number | null>((res) => p.on('close', (c) => res(c)))),
    );
    expect(codes).toEqual([0, 0]);
    expect(await checksum(B!, Number(out.trim()))).toBe(c0);
  });

  it.each(['xl', 'libxl', 'libxc'] as const)(
    'a %s file written by xenmig passes xenmig verify (auto-detected and with --format)',
    async (format) => {
      const [A] = hosts(1);
      const d = await createDomain(A!, 'hvm', '8M');
      const file = join(tmp.dir, `f.${format}`);
      await ok(['save', String(d), file, '--format', format, '--keep-running', '--host', A!]);
      const auto = JSON.parse(await ok(['verify', file, '--json']));
      expect(auto.valid).toBe(true);
      expect(auto.format).toBe(format);
      expect(auto.facts.domainType).toBe(2);
      expect(auto.facts.dataPages).toBeGreaterThanOrEqual(2048);
      await ok(['verify', file, '--format', format]);
      const first = JSON.parse((await ok(['inspect', file, '--json'])).split('\n')[0]!);
      expect(first.type).toBe({ xl: 'XL_HEADER', libxl: 'LIBXL_HEADER', libxc: 'IMAGE_HEADER' }[format]);
    },
  );

  it('SIGINT during a live save: exit 130 with ERR_ABORTED, the guest keeps running (not destroyed), the partial file does not verify', async () => {
    const [A] = hosts(1);
    const d = await createDomain(A!, 'hvm', '16M');
    const file = join(tmp.dir, 'interrupted.xl');
    const run = startCli(['save', String(d), file, '--live', '--bandwidth', '1M', '--host', A!]);
    await until(
      async () => existsSync(file) && statSync(file).size > 1 << 20,
      'the save to be under way',
      2000,
      25,
    );
    run.child.kill('SIGINT');
    const r = await run.done;
    expect(r.code).toBe(130);
    expect(r.stderr).toMatch(/^xenmig: ERR_ABORTED: /m);
    const [dom] = await listDomains(A!);
    expect(dom).toMatchObject({ domid: d, state: 'running' });
    const v = await cli(['verify', file]);
    expect(v.code).toBe(1);
  });

  it('restore --paused leaves the domain paused', async () => {
    const [A, B] = hosts(2);
    const d = await createDomain(A!, 'hvm', '8M');
    const file = join(tmp.dir, 'paused.xl');
    await ok(['save', String(d), file, '--host', A!]);
    const nd = Number(await ok(['restore', file, '--paused', '--host', B!]));
    expect((await listDomains(B!)).find((x) => x.domid === nd)!.paused).toBe(true);
  });

  it('a truncated file fails restore with ERR_TRUNCATED; the half-restored domain is destroyed, or left paused with --on-failure pause', async () => {
    const [A, B] = hosts(2);
    const d = await createDomain(A!, 'hvm', '8M');
    const file = join(tmp.dir, 'whole.xl');
    await ok(['save', String(d), file, '--host', A!]);
    const cut = join(tmp.dir, 'cut.xl');
    const bytes = readFileSync(file);
    const { writeFileSync } = await import('node:fs');
    writeFileSync(cut, bytes.subarray(0, bytes.length >> 1));
    const r1 = await cli(['restore', cut, '--host', B!]);
    expect(r1.code).toBe(1);
    expect(r1.stderr).toMatch(/^xenmig: ERR_TRUNCATED: /m);
    expect(r1.stderr).toContain('destroyed');
    expect(await listDomains(B!)).toEqual([]);
    const r2 = await cli(['restore', cut, '--on-failure', 'pause', '--host', B!]);
    expect(r2.code).toBe(1);
    const left = await listDomains(B!);
    expect(left.length).toBe(1);
    expect(left[0]!.paused).toBe(true);
  });
});

describe('the real PVH vector', () => {
  it('restores into a mock HVM domain; saving that domain again gives a valid stream with the same pages and register records', async () => {
    const [B, C] = hosts(2);
    const vec = await gunzipVector('xl-save-pvh-128M.xlsave.gz', tmp.dir);
    const r = await cli(['restore', vec, '--host', B!]);
    expect(r.code, r.stderr).toBe(0);
    const d = Number(r.stdout.trim());
    const [dom] = await listDomains(B!);
    expect(dom).toMatchObject({ domid: d, type: 'hvm', state: 'running' });
    const again = join(tmp.dir, 'pvh-again.xl');
    await ok(['save', String(d), again, '--keep-running', '--host', B!]);
    const [v0, v1] = await Promise.all([ok(['verify', vec, '--json']), ok(['verify', again, '--json'])]).then(
      (x) => x.map((s) => JSON.parse(s) as { valid: boolean; facts: Record<string, unknown> }),
    );
    expect(v1.valid).toBe(true);
    expect(v1.facts.domainType).toBe(2);
    expect(v1.facts.dataPages).toBe(v0.facts.dataPages);
    // the register records are byte-identical (TSC: the incarnation goes up by one, as on Xen)
    /** one line of `inspect --json` (X86_TSC_INFO lines have the incarnation) */
    type InspectItem = { type: string; offset: number; size: number; incarnation: number };
    const items = async (f: string) =>
      (await ok(['inspect', f, '--json'])).split('\n').map((l) => JSON.parse(l) as InspectItem);
    const [i0, i1] = await Promise.all([items(vec), items(again)]);
    const b0 = readFileSync(vec);
    const b1 = readFileSync(again);
    const raw = (b: Buffer, its: { type: string; offset: number; size: number }[], t: string) => {
      const it = its.find((x) => x.type === t)!;
      return b.subarray(it.offset, it.offset + it.size);
    };
    for (const t of ['HVM_CONTEXT', 'HVM_PARAMS', 'X86_CPUID_POLICY', 'X86_MSR_POLICY'])
      expect(raw(b1, i1, t).equals(raw(b0, i0, t)), t).toBe(true);
    const tsc0 = i0.find((x) => x.type === 'X86_TSC_INFO');
    const tsc1 = i1.find((x) => x.type === 'X86_TSC_INFO');
    expect({ ...tsc1, offset: 0, index: 0, incarnation: 0, summary: '' }).toEqual({
      ...tsc0,
      offset: 0,
      index: 0,
      incarnation: 0,
      summary: '',
    });
    expect(tsc1!.incarnation).toBe(tsc0!.incarnation + 1);
    // and its memory: the re-saved file restores to the same guest
    const d2 = Number(await ok(['restore', again, '--host', C!]));
    expect(await checksum(C!, d2)).toBe(await checksum(B!, d));
  });
});
