// Toolstack-layer restore (libxl's role): read the xl header and config, build or check the
// destination domain, read libxl records, hand the stream to the libxc engine at LIBXC_CONTEXT,
// read the libxl part of each checkpoint (up to CHECKPOINT_END) when the engine asks, apply
// emulator state, and finally unpause (or leave paused). A half-restored domain is destroyed, or
// left paused when asked, and the error says which.
import {
  StreamError,
  StreamErrorCode,
  StreamReader,
  type StreamInput,
  type StreamItem,
  type StreamWarning,
} from '../stream/index.js';
import type { Hypervisor } from '../xen/types.js';
import { StreamCursor } from '../engine/cursor.js';
import { MigrationError, MigrationErrorCode } from '../engine/errors.js';
import { libxcRestore } from '../engine/restore/restore.js';
import type {
  CheckpointResult,
  RestoreCallbacks,
  RestoreStats,
  RestoreStreamType,
} from '../engine/restore/types.js';
import { domainTypeOf, parseDomainConfig, type DomainConfig } from './config.js';
import { noEmulator, type EmulatorState, type EmulatorStateProvider } from './emulator.js';

export interface DomainBuilder {
  /**
   * What this builder can set up beyond memory and vCPUs (e.g. "device-vbd", "device-vif"): a
   * xenmig receiver announces them before any page is sent, so a sender refuses a guest whose
   * devices the receiver could not recreate.
   */
  readonly capabilities?: readonly string[];
  /**
   * Create an empty, paused domain for the config; returns its domid. Refuses (throws, creating
   * nothing) a config it cannot build completely, e.g. a device it cannot attach.
   */
  create(config: DomainConfig): Promise<number> | number;
  destroy(domid: number): Promise<void> | void;
  /**
   * After the stream, while the domain is still paused: whatever the toolstack must add before the
   * guest may run (real hosts: grant table seed, xenstore entries, introduction to xenstored).
   * Called once per restored domain, before any unpause; may return a promise (awaited).
   */
  finish?(domid: number): unknown;
  /**
   * The domain is cleared to run (a migration's receiver was cleared by the sender, or a restore is
   * about to unpause): it takes its name, which finish() may have left as "<name>--incoming" while
   * another domain (the migration's source on the same host) held it. Throws (or rejects) if it cannot.
   */
  start?(domid: number): unknown;
}

export interface DomainRestoreOptions {
  xen: Hypervisor;
  input: StreamInput | StreamReader | StreamCursor;
  /** restore into this existing (created, empty) domain ... */
  domid?: number;
  /** ... or build one from the stream's config */
  builder?: DomainBuilder;
  /** config when the stream has no xl header (libxl / libxc streams) and a domain must be built */
  config?: DomainConfig;
  paused?: boolean;
  /** what happens to a half-restored domain: 'destroy' (default) or 'pause' */
  onFailure?: 'destroy' | 'pause';
  streamType?: RestoreStreamType;
  callbacks?: RestoreCallbacks;
  emulator?: EmulatorStateProvider;
  signal?: AbortSignal;
  /** reserved fields / padding: 'error' (default, strict) or 'warn' */
  strictness?: 'error' | 'warn';
  /** called once the domain exists (before memory arrives) */
  onDomain?: (domid: number) => void;
  /** the stream may carry more after END (e.g. a migration handshake): stop there */
  stopAtEnd?: boolean;
  /** Remus, HVM: load register state at each applied checkpoint (the backup is resumable as is) */
  completeEachCheckpoint?: boolean;
  /** libxl records of the caller's own (Remus disk replication: src/disk/replica.ts) */
  extraRecords?: ExtraRecordHandler;
}

/**
 * Unknown libxl records the caller handles: offered before LIBXC_CONTEXT ('head') and in each
 * checkpoint's libxl part ('checkpoint'); take() returns false for a record it does not know.
 * commit() runs at CHECKPOINT_END (before the checkpoint is acknowledged), discard() when a
 * checkpoint is abandoned.
 */
export interface ExtraRecordHandler {
  take(type: number, body: Uint8Array, where: 'head' | 'checkpoint'): boolean;
  commit(): void | Promise<void>;
  discard(): void;
}

export interface DomainRestoreResult {
  domid: number;
  config: DomainConfig | null;
  stats: RestoreStats;
  format: string;
  unpaused: boolean;
  /** what the stream validator let through with a warning (e.g. unknown optional records) */
  warnings: StreamWarning[];
}

function orderError(item: StreamItem, detail: string): StreamError {
  return new StreamError(StreamErrorCode.ERR_ORDER, detail, {
    offset: item.offset,
    recordIndex: item.index,
    recordType: item.name,
    layer: item.layer,
  });
}

export async function restoreDomain(opts: DomainRestoreOptions): Promise<DomainRestoreResult> {
  return new ToolstackRestore(opts).run();
}

/** One restore at the toolstack layer (libxl's stream reader): its cursor, domain and emulator records. */
class ToolstackRestore {
  private readonly xen: Hypervisor;
  private readonly streamType: RestoreStreamType;
  private readonly emulator: EmulatorStateProvider;
  private readonly cursor: StreamCursor;
  private domid: number | undefined;
  /** the domain is this restore's (built here), not one it was given */
  private built = false;
  private config: DomainConfig | null;
  private pendingEmu: EmulatorState[] = [];

  constructor(private readonly opts: DomainRestoreOptions) {
    this.xen = opts.xen;
    this.streamType = opts.streamType ?? 'plain';
    this.emulator = opts.emulator ?? noEmulator;
    this.domid = opts.domid;
    this.config = opts.config ?? null;
    const strict = opts.strictness ?? 'error';
    this.cursor =
      opts.input instanceof StreamCursor
        ? opts.input
        : new StreamCursor(opts.input, {
            reader: { lazyPageData: true, ...(opts.stopAtEnd ? { afterEnd: 'stop' as const } : {}) },
            validator: { streamType: this.streamType, reserved: strict, padding: strict },
            ...(opts.signal ? { signal: opts.signal } : {}),
          });
  }

  async run(): Promise<DomainRestoreResult> {
    const { xen, opts, cursor } = this;
    const callbacks: RestoreCallbacks = { ...opts.callbacks };
    if (this.streamType !== 'plain')
      callbacks.checkpoint = opts.callbacks?.checkpoint ?? (() => this.checkpoint());
    // An existing domain: refused before the stream is read unless it is empty and never ran. On any
    // failure later it is never destroyed (this restore did not create it): it is left paused.
    if (opts.domid !== undefined) checkEmptyNeverRan(xen, opts.domid);
    try {
      const format = await this.readHeaders();
      const target = await this.ensureDomain();
      const stats = await libxcRestore({
        xen,
        domid: target,
        cursor,
        streamType: this.streamType,
        callbacks,
        ...(opts.signal ? { signal: opts.signal } : {}),
        ...(opts.completeEachCheckpoint ? { completeEachCheckpoint: true } : {}),
      });
      if (stats.endedBy === 'END') await this.readTrailer(format);
      await this.applyEmulator();
      if (this.built && opts.builder?.finish) await opts.builder.finish(target);
      const unpaused = opts.paused ? false : await this.startGuest(target);
      return {
        domid: target,
        config: this.config,
        stats,
        format,
        unpaused,
        warnings: cursor.validator.warnings,
      };
    } catch (e) {
      await this.afterFailure(e);
      throw e;
    }
  }

  /** The xl header (its config), the libxl header and records up to LIBXC_CONTEXT; the stream's format. */
  private async readHeaders(): Promise<string> {
    const { cursor } = this;
    let item = await cursor.next();
    if (item?.kind === 'xl-header') {
      const text = item.header.configText;
      if (text !== undefined && !this.opts.config) this.config = parseDomainConfig(text);
      item = await cursor.next();
    }
    const format = cursor.reader.summary.format ?? 'libxc';
    if (item?.kind === 'libxl-header') {
      // libxl records until LIBXC_CONTEXT
      for (;;) {
        item = await cursor.next();
        if (!item)
          throw new MigrationError(
            MigrationErrorCode.ERR_INCOMPLETE,
            'libxl stream ended before LIBXC_CONTEXT',
          );
        if (item.kind === 'record' && item.layer === 'libxl' && item.record.name === 'LIBXC_CONTEXT') break;
        if (!this.takeEmulator(item) && !this.takeExtra(item, 'head'))
          throw orderError(item, `${item.name} before LIBXC_CONTEXT`);
      }
    } else if (item) {
      cursor.unshift(item); // bare libxc stream: the image header is next
    }
    return format;
  }

  /** After the libxc END: the libxl records up to its END (plain libxl streams), then nothing more. */
  private async readTrailer(format: string): Promise<void> {
    const { cursor, opts } = this;
    if (format !== 'libxc' && this.streamType === 'plain') {
      // libxl records after the libxc stream, up to END
      for (;;) {
        const it = await cursor.next();
        if (!it)
          throw new MigrationError(MigrationErrorCode.ERR_INCOMPLETE, 'libxl stream ended without END');
        if (it.kind === 'record' && it.layer === 'libxl' && it.record.name === 'END') break;
        if (!this.takeEmulator(it)) throw orderError(it, `${it.name} after the libxc stream`);
      }
    } else if (format !== 'libxc') {
      return;
    }
    if (opts.stopAtEnd) return;
    // trailing bytes are an error: the reader checks them when asked for more
    const extra = await cursor.next();
    if (extra) throw orderError(extra, `${extra.name} after END`);
    cursor.finish();
  }

  /** The domain the memory goes into: the given one (of the stream's type), or one built from the config. */
  private async ensureDomain(): Promise<number> {
    const { xen, opts, config } = this;
    if (this.domid !== undefined) {
      const domid = this.domid;
      if (config) {
        const want = domainTypeOf(config.kind);
        const have = xen.domainInfo(domid).type;
        if (want !== have) {
          const msg = `stream config is a ${config.kind} guest but domain ${domid} is ${have}`;
          throw new MigrationError(MigrationErrorCode.ERR_DOMAIN_MISMATCH, msg, { domid });
        }
      }
      return domid;
    }
    if (!opts.builder)
      throw new MigrationError(
        MigrationErrorCode.ERR_DOMAIN_MISMATCH,
        'no destination domain: give a domid or a domain builder',
      );
    if (!config)
      throw new MigrationError(
        MigrationErrorCode.ERR_DOMAIN_MISMATCH,
        'the stream carries no domain config (no xl header): give one',
      );
    const domid = (this.domid = await opts.builder.create(config));
    this.built = true;
    opts.onDomain?.(domid);
    return domid;
  }

  /** An emulator record (xenstore data, context): kept until applied. False for any other item. */
  private takeEmulator(item: StreamItem): boolean {
    if (item.kind !== 'record' || item.layer !== 'libxl') return false;
    const r = item.record;
    if (r.name !== 'EMULATOR_XENSTORE_DATA' && r.name !== 'EMULATOR_CONTEXT') return false;
    let s = this.pendingEmu.find((e) => e.emulatorId === r.emulatorId && e.index === r.index);
    if (!s) {
      s = { emulatorId: r.emulatorId, index: r.index };
      this.pendingEmu.push(s);
    }
    if (r.name === 'EMULATOR_XENSTORE_DATA') s.xenstore = r.entries;
    else s.context = r.data;
    return true;
  }

  /** A record of the caller's own (an unknown libxl record its extraRecords handler takes). */
  private takeExtra(item: StreamItem, where: 'head' | 'checkpoint'): boolean {
    const extra = this.opts.extraRecords;
    if (!extra || item.kind !== 'record' || item.layer !== 'libxl' || item.record.name !== 'UNKNOWN')
      return false;
    return extra.take(item.record.type, item.record.body, where);
  }

  private async applyEmulator(): Promise<void> {
    const list = this.pendingEmu;
    this.pendingEmu = [];
    for (const s of list) await this.emulator.restore(this.domid!, s);
  }

  /** The libxl part of a checkpoint: buffered until CHECKPOINT_END, then processed. */
  private async checkpoint(): Promise<CheckpointResult> {
    const held: StreamItem[] = [];
    try {
      for (;;) {
        const item = await this.cursor.next();
        if (!item) return 'failover';
        if (item.kind === 'record' && item.layer === 'libxl' && item.record.name === 'CHECKPOINT_END') break;
        if (!this.takeExtra(item, 'checkpoint')) held.push(item);
      }
    } catch {
      this.opts.extraRecords?.discard();
      return 'failover';
    }
    try {
      for (const item of held) {
        if (!this.takeEmulator(item))
          throw orderError(item, `${item.name} not allowed in the libxl part of a checkpoint`);
      }
      await this.applyEmulator();
      await this.opts.extraRecords?.commit();
      return 'success';
    } catch {
      return 'error';
    }
  }

  /** Unpause the restored guest (after its builder's start: it takes its name). */
  private async startGuest(target: number): Promise<boolean> {
    const { xen, opts } = this;
    if (this.built && opts.builder?.start) await opts.builder.start(target);
    const info = xen.domainInfo(target);
    if (info.shutdown) xen.resume(target, false);
    if (xen.domainInfo(target).paused) xen.unpause(target);
    return true;
  }

  /** A half-restored domain is destroyed (if built here and so asked) or left paused; the error says which. */
  private async afterFailure(e: unknown): Promise<void> {
    const { xen, opts, domid, built } = this;
    if (domid === undefined) return;
    const what = opts.onFailure ?? 'destroy';
    try {
      if (what === 'destroy' && built) {
        if (opts.builder) await opts.builder.destroy(domid);
        else xen.destroy(domid);
        Object.assign(e as object, { destination: 'destroyed', domid });
      } else {
        // asked to keep it, or not ours to destroy: paused — as the hypervisor confirms
        const state = pauseIfPresent(xen, domid);
        const destination =
          state === 'paused'
            ? built
              ? 'left paused'
              : 'left paused (it was not created by this restore)'
            : state;
        Object.assign(e as object, { destination, domid });
      }
    } catch (de) {
      Object.assign(e as object, { destination: 'cleanup failed', cleanupError: de, domid });
    }
  }
}

/**
 * Restore into an existing domain only when it is empty and never ran: no memory (tot_pages 0) and
 * no CPU time used (cpu_time 0: its vCPUs were never scheduled, i.e. it was created paused and never
 * unpaused). Without cpu_time from the hypervisor: no memory and paused. Anything else holds a guest
 * (or held one) that a restore would overwrite.
 */
export function checkEmptyNeverRan(xen: Hypervisor, domid: number): void {
  const info = xen.domainInfo(domid);
  const ran = info.cpuTime !== undefined ? info.cpuTime > 0 : !info.paused;
  if (info.totPages === 0 && !ran && !info.dying && !info.shutdown) return;
  const why = [
    info.totPages > 0 ? `it has ${info.totPages} pages of memory` : '',
    ran ? (info.cpuTime !== undefined ? 'it has already run' : 'it is not paused') : '',
    info.dying ? 'it is being destroyed' : '',
    info.shutdown ? 'it is shut down' : '',
  ].filter(Boolean);
  throw new MigrationError(
    MigrationErrorCode.ERR_DOMAIN_NOT_EMPTY,
    `refusing to restore into domain ${domid}: ${why.join(', ')}. A restore goes only into an empty domain that never ran ` +
      `(created paused, no memory); leave DOMID out to restore into a new domain. Domain ${domid} was not touched`,
  );
}

/** Pause domid if it still exists; what the hypervisor then says: 'paused', 'gone' or 'not paused'. */
function pauseIfPresent(xen: Hypervisor, domid: number): string {
  const state = () => {
    try {
      return xen.domainInfo(domid).paused ? 'paused' : 'not paused';
    } catch (e) {
      if ((e as { code?: string }).code === 'ESRCH') return 'gone';
      throw e;
    }
  };
  if (state() === 'not paused') xen.pause(domid);
  const s = state();
  return s === 'gone' ? 'gone (the domain no longer exists)' : s;
}
