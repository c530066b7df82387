// Scratch directories and mock hosts for the tests: one place for what every test area needs.
// A mock host is a directory; guest memory lives in it, so hosts go to /dev/shm when it exists.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { openMockHost, type MockHypervisor } from '../../src/xen/hypervisor.js';

/** tmpfs when the machine has one (guest memory, thousands of small files), else the temp dir. */
export const SCRATCH_ROOT = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();

export interface Scratch {
  dir: string;
  /** removes the directory and everything in it */
  cleanup(): void;
}

/** A fresh directory under the temp dir (or under `root`). */
export function scratchDir(prefix: string, root: string = tmpdir()): Scratch {
  const dir = mkdtempSync(join(root, prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A fresh, empty mock host directory (other processes open it with --host / XENMIG_MOCK_HOST). */
export function tempHost(prefix = 'xenmig-test-host-'): Scratch {
  return scratchDir(prefix, SCRATCH_ROOT);
}

/** A scratch root with the paths of two hosts in it (a, b; created when first opened). */
export function hostDirs(prefix: string): { root: string; a: string; b: string } {
  const { dir: root } = tempHost(prefix);
  return { root, a: join(root, 'hostA'), b: join(root, 'hostB') };
}

/** A mock host opened in this process, in a scratch directory of its own; close() removes it. */
export function scratchMockHost(prefix: string): { xen: MockHypervisor; dir: string; close(): void } {
  const { dir, cleanup } = tempHost(prefix);
  const xen = openMockHost(join(dir, 'host'));
  return {
    xen,
    dir,
    close: () => {
      xen.close();
      cleanup();
    },
  };
}

/** Two mock hosts of one test file; see useMockHostPair. */
export interface MockHostPair {
  root: string;
  a: string;
  b: string;
  /** switches this process to the host in `dir` and returns it */
  on(dir: string): MockHypervisor;
  A(): MockHypervisor;
  B(): MockHypervisor;
}

/**
 * Two mock host directories (a, b) under one scratch root, made before the file's tests (after
 * `before`, e.g. a build check) and removed after them; with `open`, both hosts are created at the
 * start. The mock keeps one current host per process: on / A / B switch to a host before each use.
 * Call at the top level of a test file.
 */
export function useMockHostPair(
  prefix: string,
  o: { before?: () => void; open?: boolean } = {},
): MockHostPair {
  let host: MockHypervisor | null = null;
  const pair: MockHostPair = {
    root: '',
    a: '',
    b: '',
    on: (dir) => (host = openMockHost(dir)),
    A: () => pair.on(pair.a),
    B: () => pair.on(pair.b),
  };
  beforeAll(() => {
    o.before?.();
    Object.assign(pair, hostDirs(prefix));
    if (o.open) {
      pair.B();
      pair.A();
    }
  });
  afterAll(() => {
    host?.close();
    if (pair.root) rmSync(pair.root, { recursive: true, force: true });
  });
  return pair;
}

/**
 * A mock host of its own for the tests of the calling describe block (or file): opened before them,
 * closed and removed after them. Its fields are set once the tests run.
 */
export function useScratchMockHost(prefix: string): { xen: MockHypervisor; dir: string } {
  const h = {} as { xen: MockHypervisor; dir: string };
  let host: ReturnType<typeof scratchMockHost> | null = null;
  beforeAll(() => {
    host = scratchMockHost(prefix);
    Object.assign(h, { xen: host.xen, dir: host.dir });
  });
  afterAll(() => host?.close());
  return h;
}
