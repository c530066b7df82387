// The addon against the mock libxenctrl (docker/mock): every call, its error paths, and the
// memory semantics the engines rely on (log-dirty, pause, mappings, page I/O).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  bitmapBytes,
  isXenError,
  openMockHost,
  SHUTDOWN,
  type MockHypervisor,
  type Mapping,
} from '../../src/xen/index.js';
import { ensureBuilt, hasMockSources, mockAddonPath } from './helpers.js';
import v8 from 'node:v8';
import vm from 'node:vm';

function exposeGc(): () => void {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

const PAGE = 4096;
const shm = existsSync('/dev/shm') ? '/dev/shm' : '/tmp';

function expectXenError(fn: () => unknown, code: string, syscall?: string | RegExp): Error {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a XenError').toBeDefined();
  expect(isXenError(err), `not a XenError: ${String(err)}`).toBe(true);
  const x = err as Error & { code: string; errno: number; syscall: string };
  expect(x.code).toBe(code);
  expect(x.errno).toBeGreaterThan(0);
  if (syscall instanceof RegExp) expect(x.syscall).toMatch(syscall);
  else if (syscall) expect(x.syscall).toBe(syscall);
  return x;
}

function fill(buf: Uint8Array, seed: number): void {
  let x = seed >>> 0 || 1;
  for (let i = 0; i < buf.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf[i] = x & 0xff;
  }
}

function bitsSet(bitmap: Uint8Array, pages: number): number[] {
  const out: number[] = [];
  for (let p = 0; p < pages; p++) if (bitmap[p >> 3]! & (1 << (p & 7))) out.push(p);
  return out;
}

function range(n: number, start = 0): bigint[] {
  return Array.from({ length: n }, (_, i) => BigInt(start + i));
}

/** A FIFO, both ends non-blocking so page I/O takes its EAGAIN + poll path (Node has no pipe(2)). */
function fifo(dir: string, name: string): { r: number; w: number; close(): void } {
  const path = join(dir, name);
  const mk = spawnSync('mkfifo', [path]);
  if (mk.status !== 0) throw new Error(`mkfifo failed: ${mk.stderr.toString()}`);
  const r = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const w = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
  let closed = false;
  return {
    r,
    w,
    close() {
      if (closed) return;
      closed = true;
      for (const fd of [r, w])
        try {
          closeSync(fd);
        } catch {
          /* already closed by the test */
        }
    },
  };
}

describe.runIf(hasMockSources)('addon against the mock', () => {
  let dir: string;
  let hv: MockHypervisor;
  let hvm: number; // 1024-page HVM domain, running
  const HVM_PAGES = 1024;

  beforeAll(() => {
    ensureBuilt();
    dir = mkdtempSync(join(shm, 'xenmig-addon-test-'));
    hv = openMockHost(dir);
    hvm = hv.createDomain({ type: 'hvm', pages: HVM_PAGES, vcpus: 2 });
  });

  afterAll(() => {
    try {
      hv?.close();
    } finally {
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  });

  describe('handle, version, domains', () => {
    it('is the mock flavour on the chosen host directory', () => {
      expect(hv.flavour).toBe('mock');
      expect(hv.dir).toBe(dir);
    });

    it('reports Xen 4.17', () => {
      expect(hv.version()).toEqual({ major: 4, minor: 17 });
    });

    it('describes an HVM domain', () => {
      const info = hv.domainInfo(hvm);
      expect(info).toMatchObject({
        domid: hvm,
        type: 'hvm',
        dying: false,
        paused: false,
        shutdown: false,
        shutdownReason: null,
        maxVcpuId: 1,
        onlineVcpus: 2,
        guestWidth: 8,
        maxPfn: HVM_PAGES - 1,
      });
      expect(info.totPages).toBeGreaterThanOrEqual(HVM_PAGES);
      expect(info.maxPages).toBeGreaterThanOrEqual(info.totPages);
      expect(hv.nrGpfns(hvm)).toBe(HVM_PAGES);
      expect(hv.maxGpfn(hvm)).toBe(HVM_PAGES - 1);
    });

    it('describes a PV domain (64-bit, shared info frame, max pfn from Xen)', () => {
      const pv = hv.createDomain({ type: 'pv', pages: 512 });
      try {
        const info = hv.domainInfo(pv);
        expect(info.type).toBe('pv');
        expect(info.guestWidth).toBe(8);
        expect(info.sharedInfoFrame).toBeGreaterThan(0);
        expect(info.maxPfn).toBeGreaterThanOrEqual(511);
      } finally {
        hv.destroyDomain(pv);
      }
    });

    it('lists domains (ids and infos)', () => {
      expect(hv.listDomainIds()).toContain(hvm);
      const infos = hv.listDomains();
      expect(infos.map((i) => i.domid)).toContain(hvm);
      expect(infos.find((i) => i.domid === hvm)!.type).toBe('hvm');
    });

    it('fails for a domain that does not exist: ESRCH from the named libxenctrl call', () => {
      const missing = 0x7000;
      const e = expectXenError(() => hv.domainInfo(missing), 'ESRCH', /^xc_domain_getinfo/);
      expect(e.message).toContain(`domid ${missing}`);
      expectXenError(() => hv.pause(missing), 'ESRCH', 'xc_domain_pause');
      expectXenError(() => hv.unpause(missing), 'ESRCH', 'xc_domain_unpause');
      expectXenError(() => hv.nrGpfns(missing), 'ESRCH', 'xc_domain_nr_gpfns');
      expectXenError(() => hv.logDirtyEnable(missing), 'ESRCH', 'xc_shadow_control');
      expectXenError(() => hv.vcpuContextGet(missing, 0), 'ESRCH', 'xc_vcpu_getcontext');
      expectXenError(() => hv.hvmContextGet(missing), 'ESRCH', 'xc_domain_hvm_getcontext');
      expectXenError(() => hv.tscInfoGet(missing), 'ESRCH', 'xc_domain_get_tsc_info');
      expectXenError(() => hv.map(missing, new BigUint64Array([0n]), 'r'), 'ESRCH', 'xenforeignmemory_map');
      expect((e as Error & { errno: number }).errno).toBe(3);
    });

    it('validates arguments in TypeScript before any native call', () => {
      expect(() => hv.domainInfo(-1)).toThrow(RangeError);
      expect(() => hv.domainInfo(0x7ff0)).toThrow(/domid must be in 0\.\.32751, got 32752/);
      expect(() => hv.domainInfo(1.5)).toThrow(TypeError);
      expect(() => hv.domainInfo('1' as never)).toThrow(/domid must be a number/);
      expect(() => hv.pause(NaN)).toThrow(TypeError);
      expect(() => hv.shutdown(hvm, 256)).toThrow(RangeError);
      expect(() => hv.resume(hvm, 1 as never)).toThrow(/fast must be a boolean/);
      expect(() => hv.vcpuContextGet(hvm, -1)).toThrow(RangeError);
      expect(() => hv.vcpuContextSet(hvm, 0, new Uint8Array(6000))).toThrow(/ctx must be 1\.\.5168 bytes/);
      expect(() => hv.vcpuMsrsSet(hvm, 0, new Uint8Array(17))).toThrow(/multiple of 16/);
      expect(() => hv.hvmParamGet(hvm, 39)).toThrow(RangeError);
      expect(() => hv.hvmParamSet(hvm, 1, 5 as never)).toThrow(/value must be a bigint/);
      expect(() => hv.hvmParamSet(hvm, 1, -1n)).toThrow(RangeError);
      expect(() => hv.cpuPolicySet(hvm, new Uint8Array(25), new Uint8Array(0))).toThrow(/multiple of 24/);
      expect(() => hv.map(hvm, new BigUint64Array(0), 'r')).toThrow(/frames must not be empty/);
      expect(() => hv.map(hvm, new BigUint64Array([1n << 40n]), 'r')).toThrow(/beyond the largest frame/);
      // the check reads 32-bit halves: the entry's index and value are named, also in a subarray
      const big = new BigUint64Array([0n, (1n << 40n) - 1n, 1n << 32n, (1n << 40n) + 7n]);
      expect(() => hv.pfnTypes(hvm, big.subarray(1))).toThrow(/frames\[2\] = 1099511627783 is beyond/);
      expect(() => hv.populatePhysmap(hvm, new BigUint64Array([1n << 63n]))).toThrow(/gfns\[0\]/);
      expect(() => hv.map(hvm, [0n] as never, 'r')).toThrow(/BigUint64Array/);
      expect(() => hv.map(hvm, new BigUint64Array([0n]), 'w' as never)).toThrow(/prot must be/);
      expect(() => hv.pfnTypes(hvm, new BigUint64Array([~0n & 0xffffffffffffffffn]))).toThrow(RangeError);
      expect(() => hv.logDirtyClean(hvm, new Uint8Array(8), 65)).toThrow(
        /bitmap too small: 65 pages need 16 bytes, got 8/,
      );
      expect(() => hv.logDirtyPeek(hvm, new Uint8Array(8), 0)).toThrow(RangeError);
      expect(() => hv.logDirtyClean(hvm, new Uint16Array(8) as never, 64)).toThrow(TypeError);
      expect(() => hv.guestWrite(hvm, 0, 4000, new Uint8Array(200))).toThrow(/data must be 1\.\.96 bytes/);
      expect(() => hv.createDomain({ type: 'kvm' as never, pages: 1 })).toThrow(TypeError);
      expect(() => hv.createDomain({ type: 'hvm', pages: 0 })).toThrow(RangeError);
    });

    it('a pfn beyond the domain is the mock guest-write error, not a crash', () => {
      expect(() => hv.guestWrite(hvm, HVM_PAGES + 10, 0, new Uint8Array(4))).toThrow();
    });
  });

  describe('mappings', () => {
    it('maps a batch as ONE ArrayBuffer, coherent with other mappings of the same frames', () => {
      const frames = new BigUint64Array(range(16, 100));
      const w = hv.map(hvm, frames, 'rw');
      const r = hv.map(hvm, frames, 'r');
      try {
        expect(w.pages).toBe(16);
        expect(w.bytes.byteLength).toBe(16 * PAGE);
        expect(w.bytes.buffer.byteLength).toBe(16 * PAGE);
        expect(Array.from(w.errors)).toEqual(new Array(16).fill(0));
        const pat = new Uint8Array(16 * PAGE);
        fill(pat, 7);
        w.bytes.set(pat);
        expect(Buffer.compare(r.bytes, pat)).toBe(0);
        expect(w.domid).toBe(hvm);
        expect(w.mapped).toBe(true);
      } finally {
        w.unmap();
        r.unmap();
      }
    });

    it('reports per-page errors in errors[], not by throwing; failed pages read as zeros', () => {
      const frames = new BigUint64Array([1n, 2n, BigInt(HVM_PAGES + 5000), 3n]);
      const m = hv.map(hvm, frames, 'r');
      try {
        expect(m.errors[0]).toBe(0);
        expect(m.errors[1]).toBe(0);
        expect(m.errors[2]).toBeGreaterThan(0);
        expect(m.errors[3]).toBe(0);
        const bad = m.bytes.subarray(2 * PAGE, 3 * PAGE);
        expect(bad.every((b) => b === 0)).toBe(true);
      } finally {
        m.unmap();
      }
    });

    it('unmap() detaches the ArrayBuffer: length 0, no access to freed memory, idempotent', () => {
      const m = hv.map(hvm, new BigUint64Array(range(4)), 'rw');
      const view = m.bytes;
      const buffer = view.buffer;
      view[0] = 0xaa;
      m.unmap();
      expect(m.mapped).toBe(false);
      expect(m.bytes.byteLength).toBe(0);
      expect(view.byteLength).toBe(0);
      expect(buffer.byteLength).toBe(0);
      expect(view[0]).toBeUndefined();
      expect(() => new Uint8Array(buffer)).toThrow(/detached/);
      m.unmap();
      expect(() => m[Symbol.dispose]()).not.toThrow();
    });

    it('Symbol.dispose unmaps (using)', () => {
      let kept: Mapping | undefined;
      {
        using m = hv.map(hvm, new BigUint64Array([5n]), 'r');
        kept = m;
        expect(m.mapped).toBe(true);
      }
      expect(kept!.mapped).toBe(false);
      expect(kept!.bytes.byteLength).toBe(0);
    });

    it('mapping a destroyed domain fails; an existing mapping stays safe to unmap', () => {
      const d = hv.createDomain({ type: 'hvm', pages: 64 });
      const m = hv.map(d, new BigUint64Array(range(4)), 'rw');
      m.bytes[0] = 1;
      hv.destroyDomain(d);
      expectXenError(() => hv.map(d, new BigUint64Array(range(4)), 'r'), 'ESRCH', 'xenforeignmemory_map');
      expectXenError(() => hv.domainInfo(d), 'ESRCH');
      m.unmap();
      expect(m.bytes.byteLength).toBe(0);
    });

    it('maps and unmaps 100,000 batches with stable RSS', async () => {
      const gc = exposeGc();
      const frames = new BigUint64Array(range(8, 200));
      // in chunks of 1,000 with an event-loop turn between them, as an engine awaits its I/O
      // per batch: Node runs external-buffer finalizers from the event loop, so a single
      // synchronous burst holds ~0.5 KiB per mapping until it yields (not a leak, a high-water mark)
      const round = async (n: number) => {
        for (let done = 0; done < n; done += 1000) {
          for (let i = done; i < done + 1000; i++) {
            const m = hv.map(hvm, frames, i & 1 ? 'r' : 'rw');
            if (m.bytes[i % (8 * PAGE)] === 256) throw new Error('unreachable');
            m.unmap();
          }
          await new Promise((r) => setImmediate(r));
        }
      };
      const settle = async () => {
        for (let i = 0; i < 3; i++) {
          gc();
          await sleep(10); // finalizers of external buffers run from the event loop
        }
      };
      await round(10_000);
      await settle();
      const before = process.memoryUsage().rss;
      const mapsBefore = readFileSync('/proc/self/maps', 'utf8').split('\n').length;
      await round(90_000);
      await settle();
      const after = process.memoryUsage().rss;
      const mapsAfter = readFileSync('/proc/self/maps', 'utf8').split('\n').length;
      console.log(
        `map/unmap x90,000: RSS ${(before / 2 ** 20).toFixed(1)} -> ${(after / 2 ** 20).toFixed(1)} MiB`,
      );
      expect(mapsAfter - mapsBefore).toBeLessThan(50); // no mapping left behind
      const growth = after - before;
      // leaked mappings would show in /proc/self/maps (and hit vm.max_map_count); leaked native
      // objects of ~200 B per mapping would be ~18 MiB over 90,000
      expect(growth).toBeLessThan(16 * 1024 * 1024);
    }, 300_000);

    it('a mapping dropped without unmap() is released by its finalizer', async () => {
      const gc = exposeGc();
      const countMaps = () => readFileSync('/proc/self/maps', 'utf8').split('\n').length;
      gc();
      await sleep(10);
      const base = countMaps();
      (() => {
        for (let i = 0; i < 2000; i++)
          hv.map(hvm, new BigUint64Array([BigInt(i % 500), BigInt(600 + (i % 100))]), 'r');
      })();
      const peak = countMaps();
      expect(peak - base).toBeGreaterThanOrEqual(1000);
      for (let i = 0; i < 10 && countMaps() - base > 100; i++) {
        gc();
        await sleep(20);
      }
      expect(countMaps() - base).toBeLessThan(100);
    });
  });

  describe('log-dirty', () => {
    it('PEEK reports guest writes without clearing; CLEAN reports each write exactly once', () => {
      const pages = hv.nrGpfns(hvm);
      const bitmap = new Uint8Array(bitmapBytes(pages));
      hv.logDirtyEnable(hvm);
      try {
        hv.logDirtyClean(hvm, bitmap, pages); // start from a clean log
        expect(bitsSet(bitmap, pages).every((p) => p < pages)).toBe(true);
        hv.logDirtyClean(hvm, bitmap, pages);
        expect(bitsSet(bitmap, pages)).toEqual([]);

        for (const p of [3, 70, 130, 1023]) hv.guestWrite(hvm, p, 8, new Uint8Array([1, 2, 3]));
        bitmap.fill(0xff);
        const peek1 = hv.logDirtyPeek(hvm, bitmap, pages);
        expect(bitsSet(bitmap, pages)).toEqual([3, 70, 130, 1023]);
        expect(peek1.dirtyCount).toBe(4);
        bitmap.fill(0);
        hv.logDirtyPeek(hvm, bitmap, pages);
        expect(bitsSet(bitmap, pages)).toEqual([3, 70, 130, 1023]);

        const clean = hv.logDirtyClean(hvm, bitmap, pages);
        expect(bitsSet(bitmap, pages)).toEqual([3, 70, 130, 1023]);
        expect(clean.dirtyCount).toBe(4);
        hv.logDirtyClean(hvm, bitmap, pages);
        expect(bitsSet(bitmap, pages)).toEqual([]);
      } finally {
        hv.logDirtyOff(hvm);
      }
    });

    it("a workload's writes appear in CLEAN exactly once, within its hot set", async () => {
      const pages = hv.nrGpfns(hvm);
      const bitmap = new Uint8Array(bitmapBytes(pages));
      hv.logDirtyEnable(hvm);
      try {
        hv.logDirtyClean(hvm, bitmap, pages);
        const before = hv.checksum(hvm);
        const writes = await hv.workload(hvm, { rate: 20_000, hot: 64, seed: 42, durationMs: 150 });
        expect(writes).toBeGreaterThan(0);
        expect(hv.checksum(hvm)).not.toBe(before);
        const stats = hv.logDirtyClean(hvm, bitmap, pages);
        const dirty = bitsSet(bitmap, pages);
        expect(dirty.length).toBeGreaterThan(0);
        expect(dirty.length).toBeLessThanOrEqual(Math.min(64, writes));
        expect(stats.dirtyCount).toBe(dirty.length);
        hv.logDirtyClean(hvm, bitmap, pages);
        expect(bitsSet(bitmap, pages)).toEqual([]);
      } finally {
        hv.logDirtyOff(hvm);
      }
    });

    it('CLEAN needs log-dirty on; errors carry the libxen log line', () => {
      const pages = hv.nrGpfns(hvm);
      let err: unknown;
      try {
        hv.logDirtyClean(hvm, new Uint8Array(bitmapBytes(pages)), pages);
      } catch (e) {
        err = e;
      }
      // as Xen (paging_log_dirty_op): EINVAL while log-dirty is off
      expect(err, 'CLEAN with log-dirty off must fail').toBeDefined();
      expect(isXenError(err)).toBe(true);
      expect((err as Error & { code: string }).code).toBe('EINVAL');
      expect((err as Error & { syscall: string }).syscall).toBe('xc_logdirty_control');
      expect((err as Error).message).toMatch(/^xc_logdirty_control failed: .+: .+/);
    });
  });

  describe('pause, shutdown, resume', () => {
    it('pause blocks guest writes: checksum stable while paused, changes after unpause', async () => {
      const ac = new AbortController();
      const done = hv.workload(hvm, { rate: 5_000, hot: 128, seed: 9, signal: ac.signal });
      try {
        await sleep(50);
        hv.pause(hvm);
        expect(hv.domainInfo(hvm).paused).toBe(true);
        const c1 = hv.checksum(hvm);
        await sleep(150);
        expect(hv.checksum(hvm)).toBe(c1);
        hv.unpause(hvm);
        expect(hv.domainInfo(hvm).paused).toBe(false);
        const deadline = Date.now() + 10_000; // generous: CI machines are busy
        while (hv.checksum(hvm) === c1 && Date.now() < deadline) await sleep(20);
        expect(hv.checksum(hvm)).not.toBe(c1);
      } finally {
        ac.abort();
      }
      expect(await done).toBeGreaterThan(0);
    });

    it('shutdown with a reason is visible in domainInfo; resume clears it', () => {
      const d = hv.createDomain({ type: 'hvm', pages: 64 });
      try {
        hv.shutdown(d, SHUTDOWN.suspend);
        const info = hv.domainInfo(d);
        expect(info.shutdown).toBe(true);
        expect(info.shutdownReason).toBe(SHUTDOWN.suspend);
        hv.resume(d, true);
        expect(hv.domainInfo(d).shutdown).toBe(false);
        hv.shutdown(d, SHUTDOWN.suspend);
        hv.resume(d, false);
        expect(hv.domainInfo(d).shutdown).toBe(false);
        hv.destroy(d);
        expectXenError(() => hv.domainInfo(d), 'ESRCH');
      } finally {
        try {
          hv.destroyDomain(d);
        } catch {
          /* destroyed above */
        }
      }
    });
  });

  describe('page I/O', () => {
    it('writePages + readPages round-trip a set of pages exactly through a pipe', async () => {
      const src = hv.createDomain({ type: 'hvm', pages: 512 });
      const dst = hv.createDomain({ type: 'hvm', pages: 512, populate: true });
      const p = fifo(dir, 'roundtrip');
      try {
        const frames = new BigUint64Array(range(300));
        const ms = hv.map(src, frames, 'rw');
        const md = hv.map(dst, frames, 'rw');
        const pat = new Uint8Array(300 * PAGE);
        fill(pat, 1234);
        ms.bytes.set(pat);
        // a shuffled selection with runs (merged iovecs) and gaps; larger than the pipe buffer
        const idx: number[] = [];
        for (let i = 0; i < 300; i++) if (i % 7 !== 3) idx.push(i);
        for (let i = idx.length - 1; i >= 3; i -= 5) [idx[i], idx[i - 3]] = [idx[i - 3]!, idx[i]!];
        expect(new Set(idx).size).toBe(idx.length);
        const indices = Uint32Array.from(idx);
        const before = Uint8Array.from(md.bytes);
        const [nw, nr] = await Promise.all([
          hv.writePages(p.w, new Uint8Array(0), ms, indices),
          hv.readPages(p.r, md, indices),
        ]);
        expect(nw).toBe(indices.length * PAGE);
        expect(nr).toBe(indices.length * PAGE);
        for (let i = 0; i < 300; i++) {
          const got = md.bytes.subarray(i * PAGE, (i + 1) * PAGE);
          if (i % 7 !== 3)
            expect(Buffer.compare(got, pat.subarray(i * PAGE, (i + 1) * PAGE)), `page ${i}`).toBe(0);
          else
            expect(
              Buffer.compare(got, before.subarray(i * PAGE, (i + 1) * PAGE)),
              `page ${i} untouched`,
            ).toBe(0);
        }
        ms.unmap();
        md.unmap();
      } finally {
        p.close();
        hv.destroyDomain(src);
        hv.destroyDomain(dst);
      }
    });

    it('writePages writes the header, then the pages in index order', async () => {
      const m = hv.map(hvm, new BigUint64Array(range(4, 40)), 'rw');
      const file = join(dir, 'out.bin');
      const fd = openSync(file, 'w');
      try {
        fill(m.bytes, 77);
        const header = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        const n = await hv.writePages(fd, header, m, new Uint32Array([2, 0, 3]));
        expect(n).toBe(12 + 3 * PAGE);
        const out = readFileSync(file);
        const want = Buffer.concat([
          header,
          m.bytes.subarray(2 * PAGE, 3 * PAGE),
          m.bytes.subarray(0, PAGE),
          m.bytes.subarray(3 * PAGE, 4 * PAGE),
        ]);
        expect(Buffer.compare(out, want)).toBe(0);
      } finally {
        closeSync(fd);
        m.unmap();
      }
    });

    it('readPages rejects with ENODATA on EOF; writePages with EPIPE when nobody reads', async () => {
      const m = hv.map(hvm, new BigUint64Array(range(2, 50)), 'rw');
      const p = fifo(dir, 'eof');
      try {
        writeSync(p.w, new Uint8Array(PAGE + 100));
        closeSync(p.w);
        await expect(hv.readPages(p.r, m, new Uint32Array([0, 1]))).rejects.toMatchObject({
          code: 'ENODATA',
          syscall: 'readv',
        });
      } finally {
        p.close();
      }
      const q = fifo(dir, 'epipe');
      try {
        closeSync(q.r);
        await expect(hv.writePages(q.w, new Uint8Array(4), m, new Uint32Array([0]))).rejects.toMatchObject({
          code: 'EPIPE',
          errno: 32,
          syscall: 'writev',
        });
      } finally {
        q.close();
        m.unmap();
      }
    });

    it('running workloads do not starve page I/O (workloads have their own threads)', async () => {
      const ac = new AbortController();
      const runs = Array.from({ length: 5 }, (_, k) =>
        hv.workload(hvm, { rate: 200, hot: 16, seed: k, signal: ac.signal }),
      );
      const m = hv.map(hvm, new BigUint64Array(range(2, 900)), 'r');
      const file = join(dir, 'starve.bin');
      const fd = openSync(file, 'w');
      try {
        const n = await Promise.race([
          hv.writePages(fd, new Uint8Array(0), m, new Uint32Array([0, 1])),
          sleep(5000).then(() => -1),
        ]);
        expect(n).toBe(2 * PAGE);
      } finally {
        closeSync(fd);
        m.unmap();
        ac.abort();
      }
      for (const r of await Promise.all(runs)) expect(r).toBeGreaterThanOrEqual(0);
    });

    it('validates page I/O arguments', async () => {
      const r = hv.map(hvm, new BigUint64Array([1n, BigInt(HVM_PAGES + 9999)]), 'r');
      try {
        await expect(hv.readPages(0, r, new Uint32Array([0]))).rejects.toThrow(/prot 'rw'/);
        await expect(hv.writePages(1, new Uint8Array(0), r, new Uint32Array([2]))).rejects.toThrow(
          RangeError,
        );
        await expect(hv.writePages(1, new Uint8Array(0), r, new Uint32Array([1]))).rejects.toThrow(
          /failed to map/,
        );
        await expect(hv.writePages(-1, new Uint8Array(0), r, new Uint32Array([0]))).rejects.toThrow(
          RangeError,
        );
        await expect(hv.writePages(1, new Uint8Array(0), {} as never, new Uint32Array([0]))).rejects.toThrow(
          TypeError,
        );
        await expect(hv.writePages(1, new Uint8Array(0), r, [0] as never)).rejects.toThrow(/Uint32Array/);
      } finally {
        r.unmap();
      }
      await expect(hv.writePages(1, new Uint8Array(0), r, new Uint32Array([0]))).rejects.toThrow(/unmapped/);
    });

    it('unmap() during readPages detaches at once and defers the real unmap', async () => {
      const m = hv.map(hvm, new BigUint64Array(range(2, 60)), 'rw');
      const p = fifo(dir, 'inflight');
      try {
        const pending = hv.readPages(p.r, m, new Uint32Array([0, 1]));
        await sleep(20);
        m.unmap();
        expect(m.mapped).toBe(false);
        expect(m.bytes.byteLength).toBe(0);
        writeSync(p.w, new Uint8Array(2 * PAGE).fill(5));
        expect(await pending).toBe(2 * PAGE);
      } finally {
        p.close();
      }
      // the data landed in guest memory even though JS had let go of the mapping
      const check = hv.map(hvm, new BigUint64Array(range(2, 60)), 'r');
      expect(check.bytes.every((b) => b === 5)).toBe(true);
      check.unmap();
    });
  });

  describe('physmap, page types, M2P (PV)', () => {
    it('populatePhysmap backs an empty HVM domain', () => {
      const d = hv.createDomain({ type: 'hvm', pages: 4096, populate: false });
      try {
        expect(hv.domainInfo(d).paused).toBe(true);
        const hole = new BigUint64Array([20n]);
        hv.pfnTypes(d, hole);
        expect(hole[0]! >> 28n).toBe(0xfn); // XTAB: nothing there yet
        const gfns = new BigUint64Array(range(16));
        hv.populatePhysmap(d, gfns);
        expect(Array.from(gfns)).toEqual(range(16));
        const m = hv.map(d, new BigUint64Array(range(16)), 'rw');
        expect(Array.from(m.errors)).toEqual(new Array(16).fill(0));
        m.unmap();
        expect(hv.domainInfo(d).totPages).toBeGreaterThanOrEqual(16);
        // more than one hypercall batch (1024) in one call
        const rest = new BigUint64Array(range(2000, 16));
        hv.populatePhysmap(d, rest);
        const types = new BigUint64Array(range(2016));
        hv.pfnTypes(d, types);
        expect(types.every((t) => t >> 28n === 0n)).toBe(true); // NOTAB: all RAM now
        expect(hv.domainInfo(d).totPages).toBeGreaterThanOrEqual(2016);
      } finally {
        hv.destroyDomain(d);
      }
    });

    it('PV: maps by mfn (shared info, page tables from CR3); page types in bits 31-28; the M2P', () => {
      const pv = hv.createDomain({ type: 'pv', pages: 256 });
      const m2p = hv.mapM2p();
      try {
        const info = hv.domainInfo(pv);
        // shared info: arch.max_pfn (offset 3088 in the x86_64 layout) is the guest's pfn count
        const shinfo = hv.map(pv, new BigUint64Array([BigInt(info.sharedInfoFrame)]), 'r');
        expect(shinfo.errors[0]).toBe(0);
        const maxPfnField = new DataView(shinfo.bytes.buffer).getBigUint64(3088, true);
        expect(Number(maxPfnField)).toBe(info.maxPfn + 1);
        shinfo.unmap();

        // vCPU0's CR3 (ctrlreg[3] at offset 5008) names the L4 page table's mfn
        const ctx = hv.vcpuContextGet(pv, 0);
        const cr3 = new DataView(ctx.buffer, ctx.byteOffset).getBigUint64(5008, true);
        const l4 = cr3 >> 12n;
        expect(l4).toBeGreaterThan(0n);
        const types = new BigUint64Array([l4]);
        hv.pfnTypes(pv, types);
        expect(Number((types[0]! >> 28n) & 7n)).toBe(4); // L4TAB (maybe | LPINTAB)

        // follow a guest (non-Xen) L4 slot to an L3 table
        const l4map = hv.map(pv, new BigUint64Array([l4]), 'r');
        const ptes = new BigUint64Array(l4map.bytes.buffer);
        let l3 = 0n;
        for (let slot = 0; slot < 512 && !l3; slot++)
          if ((slot < 256 || slot > 271) && ptes[slot]! & 1n) l3 = (ptes[slot]! & 0x000ffffffffff000n) >> 12n;
        l4map.unmap();
        expect(l3).toBeGreaterThan(0n);
        const t3 = new BigUint64Array([l3]);
        hv.pfnTypes(pv, t3);
        expect(Number((t3[0]! >> 28n) & 7n)).toBe(3); // L3TAB

        // the M2P maps those frames back to pfns of the guest
        expect(m2p.maxMfn).toBeGreaterThan(Number(l4));
        expect(m2p.table.length).toBeGreaterThanOrEqual(m2p.maxMfn);
        expect(m2p.table[Number(l4)]!).toBeLessThanOrEqual(BigInt(info.maxPfn));
        expect(m2p.table[Number(l3)]!).toBeLessThanOrEqual(BigInt(info.maxPfn));

        // a pfn is not an mfn for PV: frame 0 fails per page (as on real Xen)
        const bad = hv.map(pv, new BigUint64Array([0n]), 'r');
        expect(bad.errors[0]).toBeGreaterThan(0);
        bad.unmap();
      } finally {
        m2p.unmap();
        hv.destroyDomain(pv);
      }
    });
  });

  describe('vCPU, HVM and platform state', () => {
    it('vCPU basic context round-trips', () => {
      hv.pause(hvm);
      try {
        const ctx = hv.vcpuContextGet(hvm, 0);
        expect(ctx.byteLength).toBe(5168);
        const changed = Uint8Array.from(ctx);
        changed[600] = (changed[600]! + 1) & 0xff; // user_regs.rax
        hv.vcpuContextSet(hvm, 0, changed);
        expect(Buffer.compare(hv.vcpuContextGet(hvm, 0), changed)).toBe(0);
        expect(hv.vcpuOnline(hvm, 0)).toBe(true);
        expect(hv.vcpuOnline(hvm, 1)).toBe(true);
        expect(() => hv.vcpuOnline(hvm, 5)).toThrow();
        expectXenError(() => hv.vcpuContextGet(hvm, 5), 'EINVAL', 'xc_vcpu_getcontext');
      } finally {
        hv.unpause(hvm);
      }
    });

    it('extended context, XSAVE and MSRs round-trip as opaque bytes', () => {
      const pv = hv.createDomain({ type: 'pv', pages: 128 });
      try {
        hv.pause(pv);
        const ext = hv.vcpuExtendedGet(pv, 0);
        expect(ext.byteLength).toBeGreaterThan(8);
        hv.vcpuExtendedSet(pv, 0, ext);
        expect(Buffer.compare(hv.vcpuExtendedGet(pv, 0), ext)).toBe(0);

        const xs = hv.vcpuXsaveGet(pv, 0);
        if (xs.byteLength > 0) {
          const x2 = Uint8Array.from(xs);
          x2[40] = x2[40]! ^ 0x5a;
          hv.vcpuXsaveSet(pv, 0, x2);
          expect(Buffer.compare(hv.vcpuXsaveGet(pv, 0), x2)).toBe(0);
        }

        const msrs = hv.vcpuMsrsGet(pv, 0);
        expect(msrs.byteLength % 16).toBe(0);
        hv.vcpuMsrsSet(pv, 0, msrs);
        expect(Buffer.compare(hv.vcpuMsrsGet(pv, 0), msrs)).toBe(0);
      } finally {
        hv.destroyDomain(pv);
      }
    });

    it('HVM context (size query + fetch), params, TSC info and CPU policy round-trip', () => {
      const d = hv.createDomain({ type: 'hvm', pages: 64 });
      const fresh = hv.createDomain({ type: 'hvm', pages: 64, populate: false }); // never ran
      try {
        hv.pause(d);
        const ctx = hv.hvmContextGet(d);
        expect(ctx.byteLength).toBeGreaterThan(0);
        hv.hvmContextSet(d, ctx);
        expect(Buffer.compare(hv.hvmContextGet(d), ctx)).toBe(0);

        hv.hvmParamSet(d, 1, 0x1234n); // STORE_PFN
        expect(hv.hvmParamGet(d, 1)).toBe(0x1234n);

        const tsc = { mode: 1, elapsedNsec: 123_456_789_000n, gtscKhz: 2_000_000, incarnation: 3 };
        hv.tscInfoSet(d, tsc);
        // as Xen's tsc_set_info: the incarnation moves on by one
        expect(hv.tscInfoGet(d)).toEqual({ ...tsc, incarnation: 4 });

        const pol = hv.cpuPolicyGet(d);
        expect(pol.cpuid.byteLength % 24).toBe(0);
        expect(pol.msrs.byteLength % 16).toBe(0);
        expect(pol.cpuid.byteLength).toBeGreaterThan(0);
        hv.cpuPolicySet(fresh, pol.cpuid, pol.msrs);
        const again = hv.cpuPolicyGet(fresh);
        expect(Buffer.compare(again.cpuid, pol.cpuid)).toBe(0);
        expect(Buffer.compare(again.msrs, pol.msrs)).toBe(0);

        // once a domain has run, Xen refuses a new CPU policy; the error carries libxc's log line
        const ran = hvm;
        const e = expectXenError(
          () => hv.cpuPolicySet(ran, pol.cpuid, pol.msrs),
          'EEXIST',
          'xc_set_domain_cpu_policy',
        );
        expect(e.message).toMatch(
          /^xc_set_domain_cpu_policy failed: File exists \(domid \d+, .*\): .*already run/,
        );
      } finally {
        hv.destroyDomain(d);
        hv.destroyDomain(fresh);
      }
    });

    it('HVM context of a PV guest fails with EINVAL (as on real Xen)', () => {
      const pv = hv.createDomain({ type: 'pv', pages: 64 });
      try {
        expectXenError(() => hv.hvmContextGet(pv), 'EINVAL', 'xc_domain_hvm_getcontext');
      } finally {
        hv.destroyDomain(pv);
      }
    });
  });

  it("libxen's messages go to the collecting logger, never to stderr", () => {
    const script = `
      const a = require(${JSON.stringify(mockAddonPath)});
      a.mock.setHost(${JSON.stringify(dir)});
      const h = new a.Interface();
      const out = [];
      for (const f of [() => h.domainInfo(30000), () => h.pause(30000), () => h.map(30000, new BigUint64Array([0n]), 1),
                       () => h.hvmParamGet(30000, 1), () => h.cpuPolicySet(${hvm}, new Uint8Array(0), new Uint8Array(0))]) {
        try { f(); out.push('ok'); } catch (e) { out.push(e.code + ' ' + e.syscall); }
      }
      out.push(h.lastLog().length > 0 ? 'logged' : 'nothing logged');
      process.stdout.write(out.join('\\n'));`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    const lines = r.stdout.split('\n');
    expect(lines.slice(0, 4)).toEqual([
      'ESRCH xc_domain_getinfo',
      'ESRCH xc_domain_pause',
      'ESRCH xenforeignmemory_map',
      'ESRCH xc_hvm_param_get',
    ]);
    expect(lines[5]).toBe('logged');
  });

  it('after close() every call fails with EBADF; mappings made before stay valid', () => {
    const other = openMockHost(dir);
    const m = other.map(hvm, new BigUint64Array([7n]), 'rw');
    other.close();
    expectXenError(() => other.domainInfo(hvm), 'EBADF');
    m.bytes[0] = 9;
    m.unmap();
    other.close();
  });
});
