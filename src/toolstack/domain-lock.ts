// Exclusive ownership of a domain for one operation: save, migrate, remus/colo, restore into it.
// A second operation on a domain already held is refused with ERR_DOMAIN_BUSY before it touches the
// domain, naming the holder (pid, operation, since when) and what to do.
//
// Mechanism: one lock file per domain, `<dir>/domain-<domid>-<uuid>.lock`, locked with an
// open-file-description record lock (fcntl F_OFD_SETLK, the addon's flat `lockFile`). Why not an
// O_EXCL file with a pid in it: the kernel drops an fcntl lock when its holder dies in any way
// (SIGKILL, OOM kill, a crash), so there is no stale lock to detect and no takeover to race on; a
// pid liveness check has to deal with pid reuse and with two successors taking over one stale file
// (a rename/recreate sequence that one of them can lose without noticing). Node has no flock/fcntl,
// hence the addon call. OFD locks also conflict with classic POSIX fcntl locks, which is what libxl
// uses for its own per-domain lock (see probeLibxlLock).
//
// The file's content (JSON: pid, operation, since, domid, uuid, hostname, argv) only describes the
// holder for the busy message; the lock is the fcntl lock, never the file's existence. A holder
// removes the file while still holding it when it ends (as libxl does with its lock file); an
// acquirer that locked a file that was removed meanwhile (its inode is no longer the path's) tries
// again. A killed holder leaves the file: the next operation locks it and overwrites the content.
//
// Where: a mock host keeps its locks in `<host dir>/xenmig-locks`; a real host in /run/xenmig
// (XENMIG_LOCK_DIR overrides). A domain is named by domid and uuid (Xen's domain handle), so a
// later domain that gets the same domid is another lock.
import {
  closeSync,
  fstatSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readSync,
  statSync,
  unlinkSync,
  writeSync,
  constants,
} from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Hypervisor, MockHost } from '../xen/types.js';
import { loadAddon, selectFlavour } from '../xen/loader.js';
import { XEN_LIB_DIR } from './libxl-config.js';

export type DomainOperation = 'save' | 'migrate' | 'remus' | 'colo' | 'restore';

export const SYSTEM_LOCK_DIR = '/run/xenmig';
export const NIL_UUID = '00000000-0000-0000-0000-000000000000';

export interface LockHolder {
  pid: number;
  operation: string;
  /** ISO time the holder took the lock */
  since: string;
  domid: number;
  uuid: string;
  hostname?: string;
  argv?: string[];
}

export class DomainBusyError extends Error {
  readonly code = 'ERR_DOMAIN_BUSY';
  constructor(
    readonly domid: number,
    /** who holds it (null when the lock file says nothing readable) */
    readonly holder: LockHolder | null,
    readonly lockPath: string,
    message: string,
  ) {
    super(message);
    this.name = 'DomainBusyError';
  }
}

export interface DomainLock {
  readonly domid: number;
  readonly path: string;
  readonly operation: DomainOperation;
  /** Give the domain up (idempotent). The kernel does the same if this process dies. */
  release(): void;
  [Symbol.dispose](): void;
}

export interface LockOptions {
  /** where the lock files live (default: see lockDirFor) */
  dir?: string;
  /**
   * libxl's userdata directory, to refuse while libxl holds its own lock on the domain; null = do
   * not look (default: XEN_LIB_DIR on a real host, null on the mock)
   */
  libxlDir?: string | null;
}

/** The lock directory of the host `xen` talks to. */
export function lockDirFor(xen: Hypervisor): string {
  if (xen.flavour === 'mock' && typeof (xen as unknown as Partial<MockHost>).dir === 'string') {
    return join((xen as unknown as MockHost).dir, 'xenmig-locks');
  }
  return process.env.XENMIG_LOCK_DIR || SYSTEM_LOCK_DIR;
}

type LockFn = (fd: number, op: 0 | 1 | 2) => boolean;

function lockFn(flavour: 'system' | 'mock'): LockFn {
  // either flavour of the addon has the call; prefer the one already in use
  let first: unknown;
  for (const f of [flavour, flavour === 'mock' ? 'system' : 'mock'] as const) {
    try {
      const { addon } = loadAddon({ flavour: f });
      if (typeof addon.lockFile === 'function') return addon.lockFile.bind(addon);
    } catch (e) {
      first ??= e;
    }
  }
  throw Object.assign(
    new Error(
      `the xenmig addon has no lockFile call (rebuild it: npm run build:native)${first ? `: ${(first as Error).message}` : ''}`,
    ),
    {
      code: 'ERR_XENMIG_ADDON',
    },
  );
}

const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

function readAll(fd: number): string {
  const chunks: Buffer[] = [];
  const b = Buffer.alloc(4096);
  let pos = 0;
  for (let i = 0; i < 16; i++) {
    const n = readSync(fd, b, 0, b.length, pos);
    if (n <= 0) break;
    chunks.push(Buffer.from(b.subarray(0, n)));
    pos += n;
  }
  return Buffer.concat(chunks).toString('utf8');
}

function parseHolder(text: string): LockHolder | null {
  try {
    const h = JSON.parse(text) as Partial<LockHolder>;
    if (typeof h.pid !== 'number' || typeof h.operation !== 'string' || typeof h.since !== 'string')
      return null;
    return h as LockHolder;
  } catch {
    return null;
  }
}

/** The holder described by a locked file (it may be between taking the lock and writing: retry briefly). */
function readHolder(fd: number): LockHolder | null {
  for (let i = 0; i < 40; i++) {
    const h = parseHolder(readAll(fd));
    if (h) return h;
    sleepSync(5);
  }
  return null;
}

function busyMessage(domid: number, holder: LockHolder | null, path: string): string {
  if (!holder)
    return `domain ${domid} is held by another xenmig operation (lock ${path}, holder not described yet); wait until it ends and retry`;
  const other = holder.hostname && holder.hostname !== hostname() ? ` on ${holder.hostname}` : '';
  return (
    `domain ${domid} is held by xenmig ${holder.operation} (pid ${holder.pid}${other}, since ${holder.since}; lock ${path}): ` +
    `one operation per domain at a time — wait until it ends, or stop it (kill ${holder.pid}; it gives the guest back ` +
    `before it exits, and even a killed holder's lock is released by the kernel, so there is nothing to clean up)`
  );
}

/**
 * Take domain `domid` for `operation`, or throw DomainBusyError (ERR_DOMAIN_BUSY) when another
 * operation holds it. Reads the domain's info (uuid) but changes nothing on it. Synchronous.
 */
export function lockDomain(
  xen: Hypervisor,
  domid: number,
  operation: DomainOperation,
  opts: LockOptions = {},
): DomainLock {
  const info = xen.domainInfo(domid); // ESRCH for a domain that does not exist
  const uuid = info.uuid ?? NIL_UUID;
  const dir = opts.dir ?? lockDirFor(xen);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const path = join(dir, `domain-${domid}-${uuid}.lock`);
  const lock = lockFn(xen.flavour);
  const fd = takeLockFile(path, domid, lock);
  const holder: LockHolder = {
    pid: process.pid,
    operation,
    since: new Date().toISOString(),
    domid,
    uuid,
    hostname: hostname(),
    argv: process.argv.slice(1),
  };
  try {
    ftruncateSync(fd, 0);
    writeSync(fd, JSON.stringify(holder) + '\n', 0);
    const libxlDir =
      opts.libxlDir === undefined
        ? xen.flavour === 'system'
          ? (process.env.XEN_LIB_DIR ?? XEN_LIB_DIR)
          : null
        : opts.libxlDir;
    if (libxlDir) probeLibxlLock(libxlDir, domid, uuid, lock);
  } catch (e) {
    release(path, fd);
    throw e;
  }
  let held = true;
  const out: DomainLock = {
    domid,
    path,
    operation,
    release() {
      if (!held) return;
      held = false;
      release(path, fd);
    },
    [Symbol.dispose]() {
      out.release();
    },
  };
  return out;
}

/**
 * Opens and locks the lock file at `path`; the locked descriptor. Throws DomainBusyError when another
 * process holds it; retries when the file it locked was removed (by the holder before it) meanwhile.
 */
function takeLockFile(path: string, domid: number, lock: LockFn): number {
  for (let attempt = 0; ; attempt++) {
    const fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o644);
    let got: boolean;
    try {
      got = lock(fd, 1);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    if (!got) {
      const holder = readHolder(fd);
      closeSync(fd);
      throw new DomainBusyError(domid, holder, path, busyMessage(domid, holder, path));
    }
    if (sameFile(fd, path)) return fd;
    closeSync(fd);
    if (attempt >= 100)
      throw Object.assign(new Error(`cannot take the lock ${path}: it keeps being replaced`), {
        code: 'ERR_DOMAIN_BUSY',
      });
  }
}

/** Whether `fd` is still the file at `path` (the holder before us may have removed it after we opened it). */
function sameFile(fd: number, path: string): boolean {
  try {
    const a = fstatSync(fd);
    const b = statSync(path);
    return a.ino === b.ino && a.dev === b.dev;
  } catch {
    return false;
  }
}

function release(path: string, fd: number): void {
  // remove the file while still holding the lock (an acquirer that opened it meanwhile sees the
  // inode change and retries), then drop the lock by closing
  try {
    unlinkSync(path);
  } catch {
    /* already gone */
  }
  closeSync(fd);
}

/**
 * libxl's per-domain lock (libxl__lock_domain_userdata): a POSIX fcntl write lock on
 * <XEN_LIB_DIR>/userdata-l.<domid>.<uuid>.domain-userdata-lock, held while libxl changes a domain's
 * stored state (create, destroy, device add/remove, config updates) — but not across `xl save`,
 * `xl migrate` or `xl remus`. Refuse while it is held (xl is in the middle of changing the domain);
 * otherwise take it for a moment and let go as libxl does (remove the file, then close). It is not
 * kept for the operation: xenmig's own `xl destroy` of a migrated source, `xl list -l` and the
 * operator's xl commands would wait on it for as long as the operation (or a Remus run) lasts.
 */
export function probeLibxlLock(
  libxlDir: string,
  domid: number,
  uuid: string,
  lock: LockFn = lockFn(selectFlavour()),
): void {
  const path = join(libxlDir, `userdata-l.${domid}.${uuid}.domain-userdata-lock`);
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o666);
  } catch {
    return; // no libxl state directory (xl not installed) or not writable: nothing to interlock with
  }
  let got = false;
  try {
    got = lock(fd, 1);
    if (got) unlinkSync(path);
  } catch {
    /* removed meanwhile: libxl recreates it when it locks */
  } finally {
    closeSync(fd);
  }
  if (!got) {
    const holder: LockHolder = { pid: 0, operation: 'libxl (xl)', since: 'unknown', domid, uuid };
    throw new DomainBusyError(
      domid,
      holder,
      path,
      `domain ${domid} is locked by libxl (an xl command is changing it; lock ${path}): wait until it ends and retry`,
    );
  }
}
