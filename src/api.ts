// The scripting API: save, restore, migrate and receive as promises, with AbortSignal, progress,
// replaceable callbacks and a precopy policy. The CLI is a thin shell over these.
import { open as openFile, type FileHandle } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import { ReadableByteSource } from './stream/readable-source.js';
import type { StreamInput, StreamWarning } from './stream/index.js';
import { MigrationError, MigrationErrorCode } from './engine/errors.js';
import { makePrecopyPolicy, type PolicyOptions, type PrecopyPolicy } from './engine/policy.js';
import type { SaveCallbacks, SaveProgress, SaveStats } from './engine/save/types.js';
import type { RestoreStats } from './engine/restore/types.js';
import { saveDomain, type SaveFormat } from './toolstack/save.js';
import { restoreDomain, type DomainBuilder } from './toolstack/restore.js';
import type { DomainConfig } from './toolstack/config.js';
import type { EmulatorStateProvider } from './toolstack/emulator.js';
import { hostNames, type DomainNames } from './toolstack/names.js';
import { destroyDomain } from './toolstack/destroy.js';
import { sendDomain } from './toolstack/migrate.js';
import { defaultBuilder, openXen, type XenOptions } from './toolstack/host.js';
import { lockDomain } from './toolstack/domain-lock.js';
import { setPipeSizer } from './transport/pipe.js';
import { addonPipeSizer } from './xen/loader.js';
import {
  openDestination,
  receiverHandshake,
  type Channel,
  type ReceiverResult,
  type SenderResult,
} from './transport/index.js';
import {
  openReceiverChannel,
  type ConnectionOptions,
  type ReceiverChannelOptions,
} from './transport/receiver.js';

export { defaultBuilder, mockBuilder, openXen, type XenOptions } from './toolstack/host.js';
export {
  openReceiverChannel,
  type ConnectionOptions,
  type ReceiverChannelOptions,
} from './transport/receiver.js';

// ---------------------------------------------------------------------------------------------
// common options

// Stream pipes (stdio towards ssh or xl, FIFOs) get 1 MiB buffers through the addon's fcntl; the
// addon is looked up at the first pipe, not at import
let pipeSizer: ((fd: number, bytes: number) => number) | null | undefined;
setPipeSizer((fd, bytes) => {
  pipeSizer ??= addonPipeSizer();
  if (!pipeSizer) throw new Error('no addon with setPipeSize');
  return pipeSizer(fd, bytes);
});

export interface TransferOptions extends XenOptions {
  signal?: AbortSignal;
  onProgress?: (p: SaveProgress) => void;
  /** replace any libxc-layer callback (suspend, postcopy, checkpoint, precopyPolicy, ...) */
  callbacks?: Partial<SaveCallbacks>;
  /** the precopy policy, or the knobs of the built-in one */
  policy?: PrecopyPolicy | PolicyOptions;
  /** bandwidth cap for the live rounds, bytes/s */
  bandwidth?: number;
  emulator?: EmulatorStateProvider;
  config?: DomainConfig;
}

function policyOf(p: TransferOptions['policy']): PrecopyPolicy | undefined {
  if (!p) return undefined;
  return typeof p === 'function' ? p : makePrecopyPolicy(p);
}

// ---------------------------------------------------------------------------------------------
// save / restore

export interface SaveOptions extends TransferOptions {
  live?: boolean;
  /** after a successful save: resume the guest (default: destroy it, as `xl save`) */
  keepRunning?: boolean;
  format?: SaveFormat;
}

export interface SaveResult {
  domid: number;
  stats: SaveStats;
  /** what happened to the source after the save */
  source: 'destroyed' | 'running';
}

/**
 * Open a save file for writing, before the domain is touched: a missing directory, a directory or
 * a file that cannot be written is an ERR_SAVE_FILE error (with the errno's code as `errno`).
 * Opened off the main thread: a FIFO waits for its reader without blocking signals.
 */
export async function openSaveFile(path: string, domid: number): Promise<FileHandle> {
  try {
    return await openFile(path, 'w', 0o600);
  } catch (e) {
    const x = e as NodeJS.ErrnoException;
    const why =
      x.code === 'ENOENT'
        ? 'its directory does not exist'
        : x.code === 'EISDIR'
          ? 'it is a directory'
          : x.code === 'EACCES'
            ? 'permission denied'
            : x.message;
    throw Object.assign(
      new MigrationError(
        MigrationErrorCode.ERR_SAVE_FILE,
        `cannot write the save file ${path}: ${why}; domain ${domid} was not touched`,
        { cause: e },
      ),
      { path },
    );
  }
}

/** Save a domain to a file path, an fd, or a Writable. */
export async function save(
  domid: number,
  target: string | number | Writable,
  opts: SaveOptions = {},
): Promise<SaveResult> {
  const { xen, owned } = openXen(opts);
  let file: FileHandle | null = null;
  let lock: ReturnType<typeof lockDomain> | null = null;
  try {
    // refused before the domain is touched: another operation holds it, or the file cannot be written
    lock = lockDomain(xen, domid, 'save');
    if (typeof target === 'string') file = await openSaveFile(target, domid);
    const out = file ? file.fd : target;
    const policy = policyOf(opts.policy);
    const r = await saveDomain({
      xen,
      domid,
      out: out as Writable | number,
      live: opts.live ?? false,
      ...(opts.format ? { format: opts.format } : {}),
      ...(opts.callbacks ? { callbacks: opts.callbacks } : {}),
      ...(policy ? { precopyPolicy: policy } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      ...(opts.bandwidth ? { bandwidth: opts.bandwidth } : {}),
      ...(opts.emulator ? { emulator: opts.emulator } : {}),
      ...(opts.config ? { config: opts.config } : {}),
    });
    if (file) {
      const f = file;
      file = null;
      await f.close();
    }
    if (opts.keepRunning) {
      await r.resumeSource();
      return { domid, stats: r.stats, source: 'running' };
    }
    await destroyDomain(xen, domid);
    return { domid, stats: r.stats, source: 'destroyed' };
  } finally {
    await file?.close().catch(() => undefined);
    lock?.release();
    if (owned) xen.close();
  }
}

export interface RestoreOptions extends XenOptions {
  /** restore into this existing, empty domain (default: build one from the stream's config) */
  domid?: number;
  paused?: boolean;
  onFailure?: 'destroy' | 'pause';
  signal?: AbortSignal;
  emulator?: EmulatorStateProvider;
  config?: DomainConfig;
  builder?: DomainBuilder;
  strictness?: 'error' | 'warn';
}

export interface RestoreResult {
  domid: number;
  stats: RestoreStats;
  config: DomainConfig | null;
  /** what the stream validator let through with a warning (e.g. unknown optional records) */
  warnings: StreamWarning[];
}

/** Restore from a file path, fd, Readable or bytes. */
export async function restore(
  source: string | number | Readable | Uint8Array,
  opts: RestoreOptions = {},
): Promise<RestoreResult> {
  const { xen, owned } = openXen(opts);
  // restoring into an existing domain: it is ours for the restore (restoreDomain then checks that it
  // is empty and never ran); a domain the restore builds is new and nobody else's
  let lock: ReturnType<typeof lockDomain> | null = null;
  try {
    if (opts.domid !== undefined) lock = lockDomain(xen, opts.domid, 'restore');
    const input: StreamInput = isReadable(source) ? new ReadableByteSource(source) : (source as StreamInput);
    const builder = opts.builder ?? (opts.domid === undefined ? await defaultBuilder(xen) : undefined);
    const r = await restoreDomain({
      xen,
      input,
      ...(opts.domid !== undefined ? { domid: opts.domid } : {}),
      ...(builder ? { builder } : {}),
      paused: opts.paused ?? false,
      onFailure: opts.onFailure ?? 'destroy',
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.emulator ? { emulator: opts.emulator } : {}),
      ...(opts.config ? { config: opts.config } : {}),
      ...(opts.strictness ? { strictness: opts.strictness } : {}),
    });
    return { domid: r.domid, stats: r.stats, config: r.config, warnings: r.warnings };
  } finally {
    lock?.release();
    if (owned) xen.close();
  }
}

function isReadable(x: unknown): x is Readable {
  return (
    !!x &&
    typeof x === 'object' &&
    typeof (x as Readable).read === 'function' &&
    typeof (x as Readable).on === 'function'
  );
}

// ---------------------------------------------------------------------------------------------
// migrate / receive

export interface MigrateOptions extends TransferOptions, ConnectionOptions {
  /** an already open channel (otherwise DEST is opened) */
  channel?: Channel;
  live?: boolean;
  /**
   * Where domain names live, for the handover rename (the stopped source becomes
   * "<name>--migratedaway" before the receiver is cleared to start, and gets its name back if it
   * resumes). Default: xenstore on a real host, none on the mock; `null` leaves names alone.
   */
  names?: DomainNames | null;
}

/** Names on this host: xenstore on a real host with a xenstored, none otherwise. */
export const defaultNames = hostNames;

export interface MigrateResult {
  domid: number;
  stats: SaveStats | null;
  handshake: SenderResult;
  /** ms from the suspend to the receiver's RESULT (the guest's downtime as the sender sees it) */
  downtimeMs: number | null;
  /**
   * Sender-side milestones, ms after the suspend callback started (null when no suspend happened):
   * streamEnd = the last stream byte was handed to the channel; received = the receiver's RECEIVED
   * arrived (it has read and applied the complete stream: the destination holds the full state);
   * handshakeDone = the handshake returned (RESULT read, channel closed, source destroyed) — the
   * instant downtimeMs is taken at, so it includes the channel's close, not only guest downtime.
   */
  timings: { streamEndMs: number | null; receivedMs: number | null; handshakeDoneMs: number | null };
}

export async function migrate(
  domid: number,
  dest: string,
  opts: MigrateOptions = {},
): Promise<MigrateResult> {
  const { xen, owned } = openXen(opts);
  let lock: ReturnType<typeof lockDomain> | null = null;
  try {
    // before anything else (even the connection): a second operation on the domain is refused here
    lock = lockDomain(xen, domid, 'migrate');
    const channel =
      opts.channel ??
      (await openDestination(dest, {
        role: 'sender',
        ssh: {
          ...(opts.sshCommand ? { sshCommand: opts.sshCommand } : {}),
          ...(opts.remoteCommand ? { remoteCommand: opts.remoteCommand } : {}),
        },
        tcp: { ...(opts.tls ? { tls: opts.tls } : {}), ...(opts.insecure ? { insecure: true } : {}) },
      }));
    const policy = policyOf(opts.policy);
    const r = await sendDomain({
      xen,
      domid,
      channel,
      live: opts.live ?? true,
      names: opts.names === undefined ? defaultNames(xen) : opts.names,
      ...(opts.protocol ? { protocol: opts.protocol } : {}),
      ...(opts.callbacks ? { callbacks: opts.callbacks } : {}),
      ...(policy ? { precopyPolicy: policy } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      ...(opts.bandwidth ? { bandwidth: opts.bandwidth } : {}),
      ...(opts.emulator ? { emulator: opts.emulator } : {}),
      ...(opts.config ? { config: opts.config } : {}),
    });
    return { domid, ...r };
  } finally {
    lock?.release();
    if (owned) xen.close();
  }
}

export interface ReceiveOptions
  extends
    XenOptions,
    ConnectionOptions,
    Pick<ReceiverChannelOptions, 'helloTimeoutMs' | 'idleTimeoutMs' | 'onRefused'> {
  /** listen on host:port (TCP); default: stdin/stdout */
  listen?: { host?: string; port: number };
  /** an already open channel */
  channel?: Channel;
  paused?: boolean;
  emulator?: EmulatorStateProvider;
  builder?: DomainBuilder;
  signal?: AbortSignal;
  /** called with the bound port once listening */
  onListening?: (port: number) => void;
  /**
   * Milestones: 'stream' = the sender's stream starts (READY sent), 'domain' = the destination domain
   * exists (its id given), 'received' = the whole stream was read and applied (before RECEIVED is
   * sent), 'unpause' = cleared to unpause, before the guest is started.
   */
  onStage?: (stage: 'stream' | 'domain' | 'received' | 'unpause', domid: number | null) => void;
}

export interface ReceiveResult {
  domid: number | null;
  stats: RestoreStats | null;
  handshake: ReceiverResult;
}

export async function receive(opts: ReceiveOptions = {}): Promise<ReceiveResult> {
  const { xen, owned } = openXen(opts);
  let listener: Awaited<ReturnType<typeof openReceiverChannel>>['listener'] = null;
  try {
    const opened = await openReceiverChannel(opts);
    listener = opened.listener;
    const channel = opened.channel;
    let domid: number | null = null;
    let stats: RestoreStats | null = null;
    const builder = opts.builder ?? (await defaultBuilder(xen));
    const handshake = await receiverHandshake(
      channel,
      {
        receiveStream: async (ch) => {
          opts.onStage?.('stream', null);
          const input = new ReadableByteSource(ch.readable);
          let r: Awaited<ReturnType<typeof restoreDomain>>;
          try {
            r = await restoreDomain({
              xen,
              input,
              ...(builder ? { builder } : {}),
              paused: true,
              stopAtEnd: true,
              onDomain: (d) => {
                domid = d;
                opts.onStage?.('domain', d);
              },
              ...(opts.signal ? { signal: opts.signal } : {}),
              ...(opts.emulator ? { emulator: opts.emulator } : {}),
            });
          } finally {
            // what was read past the stream's end belongs to the handshake that follows
            input.release();
          }
          domid = r.domid;
          stats = r.stats;
          opts.onStage?.('received', domid);
        },
        unpause: async () => {
          opts.onStage?.('unpause', domid);
          // cleared: the source has given up its name; the copy takes it (e.g. from "<name>--incoming")
          if (builder?.start) await builder.start(domid!);
          if (opts.paused) return 0;
          const info = xen.domainInfo(domid!);
          if (info.shutdown) xen.resume(domid!, false);
          xen.unpause(domid!);
          return 0;
        },
        discard: async () => {
          if (domid !== null) {
            try {
              if (builder) await builder.destroy(domid);
              else xen.destroy(domid);
            } catch {
              /* already gone */
            }
          }
        },
      },
      {
        ...(opts.protocol ? { protocol: opts.protocol } : {}),
        capabilities: [...(builder?.capabilities ?? [])],
      },
    );
    if (!handshake.guestRuns) {
      const e = handshake.error ?? new Error(`receive failed at step ${handshake.step}`);
      Object.assign(e, { handshake });
      throw e;
    }
    return { domid, stats, handshake };
  } finally {
    await listener?.close();
    if (owned) xen.close();
  }
}
