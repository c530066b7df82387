// The device model of an HVM guest (QEMU, "qemu-xen"), spoken to over QMP as libxl does: on libxl's
// per-domain socket (<run dir>/qmp-libxl-<domid>), one JSON object per line, a greeting, then
// `qmp_capabilities`; commands answered by {"return": ...} or {"error": {"class", "desc"}} with our
// `id`, events ({"event": ...}) interleaved and ignored.
//
// What a save needs from it, in libxl's order:
//   switch log-dirty   `xen-set-global-dirty-log {"enable": true|false}` (libxc's switch_qemu_logdirty:
//                      on at the engine's setup, off at its cleanup) — QEMU's own writes to guest
//                      memory (emulated DMA) then reach the dirty bitmap
//   after the suspend  `stop`, then `xen-save-devices-state {"filename", "live"}`: the device state
//                      blob (EMULATOR_CONTEXT), plus the physmap keys from xenstore
//                      (<dm path>/physmap/<id>/{start_addr,size,name}: EMULATOR_XENSTORE_DATA)
//   source resumes     `cont`
import { connect, type Socket } from 'node:net';
import { existsSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { EmulatorId } from '../stream/index.js';
import type { EmulatorState, EmulatorStateProvider } from './emulator.js';
import { Xenstore, xenstoredPath } from './xenstore.js';

export class QmpError extends Error {
  readonly code = 'ERR_QMP';
  constructor(
    message: string,
    /** QMP's error class (e.g. "GenericError", "CommandNotFound"), when QEMU answered with one */
    readonly qmpClass?: string,
  ) {
    super(message);
    this.name = 'QmpError';
  }
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
  command: string;
}

/** One QMP connection (commands one after another or concurrently; answers matched by id). */
export class Qmp {
  #sock: Socket;
  #buf = '';
  #next = 1;
  #pending = new Map<number, Pending>();
  #closed: Error | null = null;
  /** QEMU's version from the greeting */
  version: { major: number; minor: number; micro: number } | null = null;

  private constructor(sock: Socket) {
    this.#sock = sock;
  }

  /** Connect, read the greeting, negotiate capabilities. */
  static async connect(path: string, opts: { timeoutMs?: number } = {}): Promise<Qmp> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const sock = connect(path);
    const q = new Qmp(sock);
    const greeting = new Promise<Record<string, unknown>>((resolve, reject) => {
      const t = setTimeout(
        () => reject(new QmpError(`QMP ${path}: no greeting within ${timeoutMs} ms`)),
        timeoutMs,
      );
      q.#onGreeting = (g) => {
        clearTimeout(t);
        resolve(g);
      };
      sock.once('error', (e) => {
        clearTimeout(t);
        reject(new QmpError(`QMP ${path}: ${e.message}`));
      });
    });
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => q.#data(d));
    sock.on('error', (e) => q.#fail(new QmpError(`QMP ${path}: ${e.message}`)));
    sock.on('close', () => q.#fail(new QmpError(`QMP ${path}: connection closed`)));
    try {
      const g = await greeting;
      const v = (
        (g['QMP'] as Record<string, unknown> | undefined)?.['version'] as
          { qemu?: { major: number; minor: number; micro: number } } | undefined
      )?.qemu;
      q.version = v ?? null;
      await q.execute('qmp_capabilities', undefined, { timeoutMs });
      return q;
    } catch (e) {
      sock.destroy();
      throw e;
    }
  }

  #onGreeting: ((g: Record<string, unknown>) => void) | null = null;

  #data(d: string): void {
    this.#buf += d;
    if (this.#buf.length > 16 << 20) return this.#fail(new QmpError('QMP: a message longer than 16 MiB'));
    for (let nl = this.#buf.indexOf('\n'); nl >= 0; nl = this.#buf.indexOf('\n')) {
      const line = this.#buf.slice(0, nl).trim();
      this.#buf = this.#buf.slice(nl + 1);
      if (!line) continue;
      let m: Record<string, unknown>;
      try {
        m = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return this.#fail(new QmpError(`QMP: not JSON: ${line.slice(0, 200)}`));
      }
      if ('QMP' in m) {
        this.#onGreeting?.(m);
        this.#onGreeting = null;
        continue;
      }
      if ('event' in m) continue;
      const id = typeof m['id'] === 'number' ? m['id'] : -1;
      const p = this.#pending.get(id);
      if (!p) continue;
      this.#pending.delete(id);
      clearTimeout(p.timer);
      if ('error' in m) {
        const err = (m['error'] ?? {}) as { class?: string; desc?: string };
        p.reject(
          new QmpError(
            `QMP ${p.command}: ${err.desc ?? 'error'}${err.class ? ` (${err.class})` : ''}`,
            err.class,
          ),
        );
      } else p.resolve(m['return']);
    }
  }

  #fail(e: Error): void {
    if (this.#closed) return;
    this.#closed = e;
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.reject(e);
    }
    this.#pending.clear();
    this.#sock.destroy();
  }

  /** Run a command; resolves its "return" value. */
  execute(
    command: string,
    args?: Record<string, unknown>,
    opts: { timeoutMs?: number } = {},
  ): Promise<unknown> {
    if (this.#closed) return Promise.reject(this.#closed);
    const id = this.#next++;
    const timeoutMs = opts.timeoutMs ?? 30_000;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new QmpError(`QMP ${command}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer, command });
      this.#sock.write(JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id }) + '\n');
    });
  }

  close(): void {
    this.#fail(new QmpError('QMP: closed'));
  }
}

export interface QemuDeviceModelOptions {
  /** libxl's run directory (default /var/run/xen): the socket is <runDir>/qmp-libxl-<domid> */
  runDir?: string;
  /** where QEMU writes the device state (default /var/lib/xen, as libxl) */
  stateDir?: string;
  /** xenstored socket (default: the usual ones) */
  xenstorePath?: string;
  timeoutMs?: number;
}

/** A device-model provider over QMP, plus the two calls a save makes outside save/restore. */
export interface QemuDeviceModel extends EmulatorStateProvider {
  /** the QMP socket of a domain's device model */
  socketPath(domid: number): string;
  /** whether the domain has a device model reachable here */
  present(domid: number): boolean;
}

async function withQmp<T>(path: string, timeoutMs: number, f: (q: Qmp) => Promise<T>): Promise<T> {
  const q = await Qmp.connect(path, { timeoutMs });
  try {
    return await f(q);
  } finally {
    q.close();
  }
}

/** The physmap entries under the device model's xenstore directory, as libxl saves them. */
async function physmapEntries(domid: number, xenstorePath?: string): Promise<[string, string][]> {
  if (!xenstoredPath(xenstorePath)) return [];
  const s = await Xenstore.open(xenstorePath);
  try {
    const root = `/local/domain/0/device-model/${domid}`;
    const ids = await s.directory(`${root}/physmap`).catch(() => [] as string[]);
    const out: [string, string][] = [];
    for (const id of ids)
      for (const k of ['start_addr', 'size', 'name']) {
        const key = `physmap/${id}/${k}`;
        const v = await s.read(`${root}/${key}`);
        if (v === null) throw new QmpError(`device model of domain ${domid}: ${root}/${key} is missing`);
        out.push([key, v]);
      }
    return out;
  } finally {
    s.close();
  }
}

/** QEMU ("qemu-xen") device models as libxl runs them (see the file comment). */
export function qemuDeviceModel(opts: QemuDeviceModelOptions = {}): QemuDeviceModel {
  const runDir = opts.runDir ?? '/var/run/xen';
  const stateDir = opts.stateDir ?? '/var/lib/xen';
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const socketPath = (domid: number) => join(runDir, `qmp-libxl-${domid}`);
  return {
    socketPath,
    present: (domid) => existsSync(socketPath(domid)),
    async switchLogdirty(domid: number, enable: boolean) {
      await withQmp(socketPath(domid), timeoutMs, (q) =>
        q.execute('xen-set-global-dirty-log', { enable }, { timeoutMs }),
      );
    },
    async save(domid: number, o: { live?: boolean } = {}): Promise<EmulatorState> {
      const file = join(stateDir, `qemu-save.${domid}`);
      const context = await withQmp(socketPath(domid), timeoutMs, async (q) => {
        await q.execute('stop', undefined, { timeoutMs });
        // the `live` argument exists since QEMU 2.11 (as libxl checks)
        const v = q.version;
        const hasLive = !v || v.major > 2 || (v.major === 2 && v.minor >= 11);
        await q.execute(
          'xen-save-devices-state',
          { filename: file, ...(hasLive ? { live: o.live ?? false } : {}) },
          { timeoutMs },
        );
        try {
          return new Uint8Array(readFileSync(file));
        } finally {
          try {
            unlinkSync(file);
          } catch {
            /* QEMU's file; gone already */
          }
        }
      });
      const xenstore = await physmapEntries(domid, opts.xenstorePath);
      return {
        emulatorId: EmulatorId.QEMU_UPSTREAM,
        index: 0,
        context,
        ...(xenstore.length ? { xenstore } : {}),
      };
    },
    async resume(domid: number) {
      await withQmp(socketPath(domid), timeoutMs, (q) => q.execute('cont', undefined, { timeoutMs }));
    },
    async restore(domid: number) {
      throw new QmpError(
        `domain ${domid}: xenmig cannot start a device model with saved state; restore HVM guests with xl restore`,
      );
    },
  };
}
