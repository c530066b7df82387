// A minimal xenstore client (the xs_wire protocol over xenstored's unix socket, or /dev/xen/xenbus),
// enough for a toolstack on a real host: read, write, mkdir, rm, set permissions, introduce and
// release a domain, watch a path. One request at a time; no transactions (tx id 0).
import { connect, type Socket } from 'node:net';
import { existsSync } from 'node:fs';
import { HvmParam } from '../xen/constants.js';

export const XS = {
  DIRECTORY: 1,
  READ: 2,
  WRITE: 11,
  MKDIR: 12,
  RM: 13,
  SET_PERMS: 14,
  INTRODUCE: 8,
  RELEASE: 9,
  GET_DOMAIN_PATH: 10,
  RESUME: 18,
  WATCH: 4,
  UNWATCH: 5,
  WATCH_EVENT: 15,
  ERROR: 16,
} as const;

export const XENSTORED_SOCKETS = ['/run/xenstored/socket', '/var/run/xenstored/socket'];

/** The xenstored socket to use: `path`, else $XENSTORED_PATH, else the first usual one that exists; null if none. */
export function xenstoredPath(path?: string): string | null {
  return path ?? process.env.XENSTORED_PATH ?? XENSTORED_SOCKETS.find((s) => existsSync(s)) ?? null;
}

export class XenstoreError extends Error {
  constructor(
    readonly code: string,
    readonly op: string,
    readonly path: string,
  ) {
    super(`xenstore ${op} ${path}: ${code}`);
  }
}

/** A permission entry as xenstore spells it: n (none), r, w, b (both) followed by a domid. */
export type XsPerm = `${'n' | 'r' | 'w' | 'b'}${number}`;

export class Xenstore {
  private buf = Buffer.alloc(0);
  private waiting: ((m: { type: number; body: Buffer }) => void) | null = null;
  private failed: Error | null = null;
  private chain: Promise<unknown> = Promise.resolve();
  private reqId = 1;
  /** called at the next watch event (of any watch on this connection) */
  private eventWaiters: (() => void)[] = [];

  private constructor(private readonly sock: Socket) {
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.drain();
    });
    sock.on('error', (e) => (this.failed = e));
    sock.on('close', () => (this.failed ??= new Error('xenstore connection closed')));
  }

  static async open(path?: string): Promise<Xenstore> {
    const p = xenstoredPath(path);
    if (!p) throw new Error(`no xenstored socket (tried ${XENSTORED_SOCKETS.join(', ')})`);
    const sock = connect(p);
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    return new Xenstore(sock);
  }

  close(): void {
    this.sock.destroy();
  }

  private drain(): void {
    while (this.buf.length >= 16) {
      const len = this.buf.readUInt32LE(12);
      if (this.buf.length < 16 + len) return;
      const type = this.buf.readUInt32LE(0);
      const body = this.buf.subarray(16, 16 + len);
      this.buf = this.buf.subarray(16 + len);
      if (type === XS.WATCH_EVENT) {
        // unsolicited (req id 0): wake whoever waits for one; the reply order is untouched
        for (const w of this.eventWaiters.splice(0)) w();
        continue;
      }
      const w = this.waiting;
      this.waiting = null;
      w?.({ type, body: Buffer.from(body) });
    }
  }

  /** One request; resolves with the reply body (XS_ERROR rejects with its errno name). */
  request(type: number, payload: Buffer, what: string): Promise<Buffer> {
    const run = async (): Promise<Buffer> => {
      if (this.failed) throw this.failed;
      const h = Buffer.alloc(16);
      h.writeUInt32LE(type, 0);
      h.writeUInt32LE(this.reqId++, 4);
      h.writeUInt32LE(0, 8);
      h.writeUInt32LE(payload.length, 12);
      const reply = new Promise<{ type: number; body: Buffer }>((resolve) => (this.waiting = resolve));
      this.sock.write(Buffer.concat([h, payload]));
      const r = await reply;
      if (r.type === XS.ERROR)
        throw new XenstoreError(r.body.toString('latin1').replace(/\0+$/, ''), opName(type), what);
      return r.body;
    };
    const p = this.chain.then(run, run);
    this.chain = p.catch(() => undefined);
    return p;
  }

  /** XS_WATCH: events for `path` (xenstored also sends one at once) wake nextEvent(). */
  async watch(path: string, token: string): Promise<void> {
    await this.request(XS.WATCH, Buffer.concat([z(path), z(token)]), path);
  }

  /** Resolves at the next watch event on this connection, or after `ms` (true: an event came). */
  nextEvent(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const done = (event: boolean) => {
        clearTimeout(timer);
        const i = this.eventWaiters.indexOf(onEvent);
        if (i >= 0) this.eventWaiters.splice(i, 1);
        resolve(event);
      };
      const onEvent = () => done(true);
      const timer = setTimeout(() => done(false), ms);
      this.eventWaiters.push(onEvent);
    });
  }

  async read(path: string): Promise<string | null> {
    try {
      const b = await this.request(XS.READ, z(path), path);
      return b.toString('utf8');
    } catch (e) {
      if (e instanceof XenstoreError && e.code === 'ENOENT') return null;
      throw e;
    }
  }

  async write(path: string, value: string): Promise<void> {
    await this.request(XS.WRITE, Buffer.concat([z(path), Buffer.from(value, 'utf8')]), path);
  }

  async mkdir(path: string): Promise<void> {
    await this.request(XS.MKDIR, z(path), path);
  }

  async rm(path: string): Promise<void> {
    try {
      await this.request(XS.RM, z(path), path);
    } catch (e) {
      if (!(e instanceof XenstoreError && e.code === 'ENOENT')) throw e;
    }
  }

  async setPerms(path: string, perms: XsPerm[]): Promise<void> {
    await this.request(XS.SET_PERMS, Buffer.concat([z(path), ...perms.map(z)]), path);
  }

  async directory(path: string): Promise<string[]> {
    const b = await this.request(XS.DIRECTORY, z(path), path);
    return b.toString('utf8').split('\0').filter(Boolean);
  }

  /** Tell xenstored the domain's ring is at `mfn` (gfn for HVM/PVH) with event channel `port`. */
  async introduce(domid: number, mfn: bigint | number, port: number): Promise<void> {
    await this.request(
      XS.INTRODUCE,
      Buffer.concat([z(String(domid)), z(String(mfn)), z(String(port))]),
      `domain ${domid}`,
    );
  }

  async release(domid: number): Promise<void> {
    await this.request(XS.RELEASE, z(String(domid)), `domain ${domid}`);
  }

  /** The domain runs again after a suspend (libxl's xs_resume_domain). */
  async resume(domid: number): Promise<void> {
    await this.request(XS.RESUME, z(String(domid)), `domain ${domid}`);
  }
}

/** Whether a device model (QEMU) is registered for the domain (libxl's device-model directory). */
export async function hasDeviceModel(domid: number, path?: string): Promise<boolean> {
  if (!xenstoredPath(path)) return false;
  const s = await Xenstore.open(path);
  try {
    return (await s.read(`/local/domain/0/device-model/${domid}/state`)) !== null;
  } finally {
    s.close();
  }
}

/** XS_RESUME for a domain that was suspended and runs again. */
export async function xenstoreResume(domid: number, path?: string): Promise<void> {
  const s = await Xenstore.open(path);
  try {
    await s.resume(domid);
  } finally {
    s.close();
  }
}

function z(s: string): Buffer {
  return Buffer.from(s + '\0', 'utf8');
}

function opName(t: number): string {
  return Object.entries(XS).find(([, v]) => v === t)?.[0] ?? `op ${t}`;
}

/**
 * How a guest must be asked to suspend (libxl_dom_suspend.c; reference §3.10): a guest with PV
 * drivers (every PV guest; an HVM/PVH guest with HVM_PARAM_CALLBACK_IRQ set) suspends cooperatively
 * when the toolstack writes control/shutdown = "suspend" (a remote SHUTDOWN_suspend would stop it
 * without its suspend hypercall, so its xenstore/console connections and, for PV, its start info
 * would not survive the restore). Only the system flavour on a real host has a xenstore.
 */
export function suspendsThroughXenstore(
  xen: {
    flavour: string;
    domainInfo(d: number): { type: string };
    hvmParamGet(d: number, i: number): bigint;
  },
  domid: number,
): boolean {
  if (xen.flavour !== 'system') return false;
  if (!xenstoredPath()) return false;
  if (xen.domainInfo(domid).type === 'pv') return true;
  try {
    return xen.hvmParamGet(domid, HvmParam.CALLBACK_IRQ) !== 0n;
  } catch {
    return false;
  }
}

/**
 * Writes control/shutdown = "suspend" for the guest and returns the open connection, watching
 * @releaseDomain (xenstored fires it when a domain shuts down, suspend included: libxl waits on the
 * same watch), so that the caller waits for SHUTDOWN_suspend on events instead of polling. The
 * caller closes it.
 */
export async function requestSuspend(domid: number): Promise<Xenstore> {
  const s = await Xenstore.open();
  try {
    await s.watch('@releaseDomain', `xenmig-suspend-${domid}`);
    await s.write(`/local/domain/${domid}/control/shutdown`, 'suspend');
    return s;
  } catch (e) {
    s.close();
    throw e;
  }
}
