// Scratch directories and mock hosts for the tests: one place for what every test area needs.
// A mock host is a directory; guest memory lives in it, so hosts go to /dev/shm when it exists.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
