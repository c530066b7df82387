// Toolstack-layer restore (libxl's role): read the xl header and config, build or check the
// destination domain, read libxl records, hand the stream to the libxc engine at LIBXC_CONTEXT,
// read the libxl part of each checkpoint (up to CHECKPOINT_END) when the engine asks, apply
// emulator state, and finally unpause (or leave paused). A half-restored domain is destroyed, or
// left paused when asked, and the error says which.
import { StreamError, StreamErrorCode, StreamReader, type StreamInput, type StreamItem, type StreamWarning } from '../stream/index.js';
import type { Hypervisor } from '../xen/types.js';
import { StreamCursor } from '../engine/cursor.js';
import { MigrationError, MigrationErrorCode } from '../engine/errors.js';
import { libxcRestore } from '../engine/restore/restore.js';
import type { CheckpointResult, RestoreCallbacks, RestoreStats, RestoreStreamType } from '../engine/restore/types.js';
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
   * Called once per restored domain, before any unpause.
   */
  finish?(domid: number): Promise<unknown> | unknown;
  /**
   * The domain is cleared to run (a migration's receiver was cleared by the sender, or a restore is
   * about to unpause): it takes its name, which finish() may have left as "<name>--incoming" while
   * another domain (the migration's source on the same host) held it. Throws if it cannot.
   */
  start?(domid: number): Promise<unknown> | unknown;
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
  return new StreamError(StreamErrorCode.ERR_ORDER, detail, { offset: item.offset, recordIndex: item.index, recordType: item.name, layer: item.layer });
}

export async function restoreDomain(opts: DomainRestoreOptions): Promise<DomainRestoreResult> {
  const { xen } = opts;
  const streamType = opts.streamType ?? 'plain';
  const emulator = opts.emulator ?? noEmulator;
  const strict = opts.strictness ?? 'error';
  const cursor =
    opts.input instanceof StreamCursor
      ? opts.input
      : new StreamCursor(opts.input, {
          reader: { lazyPageData: true, ...(opts.stopAtEnd ? { afterEnd: 'stop' as const } : {}) },
          validator: { streamType, reserved: strict, padding: strict },
          ...(opts.signal ? { signal: opts.signal } : {}),
        });

  let domid: number | undefined = opts.domid;
  let built = false;
  let config: DomainConfig | null = opts.config ?? null;
  let pendingEmu: EmulatorState[] = [];

  const ensureDomain = async (): Promise<number> => {
    if (domid !== undefined) {
      if (config) {
        const want = domainTypeOf(config.kind);
        const have = xen.domainInfo(domid).type;
        if (want !== have)
          throw new MigrationError(MigrationErrorCode.ERR_DOMAIN_MISMATCH, `stream config is a ${config.kind} guest but domain ${domid} is ${have}`, { domid });
      }
      return domid;
    }
    if (!opts.builder) throw new MigrationError(MigrationErrorCode.ERR_DOMAIN_MISMATCH, 'no destination domain: give a domid or a domain builder');
    if (!config) throw new MigrationError(MigrationErrorCode.ERR_DOMAIN_MISMATCH, 'the stream carries no domain config (no xl header): give one');
    domid = await opts.builder.create(config);
    built = true;
    opts.onDomain?.(domid);
    return domid;
  };

  const takeEmulator = (item: StreamItem): boolean => {
    if (item.kind !== 'record' || item.layer !== 'libxl') return false;
    const r = item.record;
    if (r.name === 'EMULATOR_XENSTORE_DATA' || r.name === 'EMULATOR_CONTEXT') {
      let s = pendingEmu.find((e) => e.emulatorId === r.emulatorId && e.index === r.index);
      if (!s) {
        s = { emulatorId: r.emulatorId, index: r.index };
        pendingEmu.push(s);
      }
      if (r.name === 'EMULATOR_XENSTORE_DATA') s.xenstore = r.entries;
      else s.context = r.data;
      return true;
    }
    return false;
  };
  const takeExtra = (item: StreamItem, where: 'head' | 'checkpoint'): boolean =>
    !!opts.extraRecords && item.kind === 'record' && item.layer === 'libxl' && item.record.name === 'UNKNOWN' && opts.extraRecords.take(item.record.type, item.record.body, where);
  const applyEmulator = async () => {
    const list = pendingEmu;
    pendingEmu = [];
    for (const s of list) await emulator.restore(domid!, s);
  };

  // the libxl part of a checkpoint: buffered until CHECKPOINT_END, then processed
  const checkpoint = async (): Promise<CheckpointResult> => {
    const held: StreamItem[] = [];
    try {
      for (;;) {
        const item = await cursor.next();
        if (!item) return 'failover';
        if (item.kind === 'record' && item.layer === 'libxl' && item.record.name === 'CHECKPOINT_END') break;
        if (!takeExtra(item, 'checkpoint')) held.push(item);
      }
    } catch {
      opts.extraRecords?.discard();
      return 'failover';
    }
    try {
      for (const item of held) {
        if (!takeEmulator(item)) throw orderError(item, `${item.name} not allowed in the libxl part of a checkpoint`);
      }
      await applyEmulator();
      await opts.extraRecords?.commit();
      return 'success';
    } catch {
      return 'error';
    }
  };
  const callbacks: RestoreCallbacks = { ...opts.callbacks };
  if (streamType !== 'plain') callbacks.checkpoint = opts.callbacks?.checkpoint ?? checkpoint;

  // An existing domain: refused before the stream is read unless it is empty and never ran. On any
  // failure later it is never destroyed (this restore did not create it): it is left paused.
  if (opts.domid !== undefined) checkEmptyNeverRan(xen, opts.domid);

  let stats: RestoreStats | null = null;
  try {
    // headers
    let item = await cursor.next();
    if (item?.kind === 'xl-header') {
      const text = item.header.configText;
      if (text !== undefined && !opts.config) config = parseDomainConfig(text);
      item = await cursor.next();
    }
    const format = cursor.reader.summary.format ?? 'libxc';
    if (item?.kind === 'libxl-header') {
      // libxl records until LIBXC_CONTEXT
      for (;;) {
        item = await cursor.next();
        if (!item) throw new MigrationError(MigrationErrorCode.ERR_INCOMPLETE, 'libxl stream ended before LIBXC_CONTEXT');
        if (item.kind === 'record' && item.layer === 'libxl' && item.record.name === 'LIBXC_CONTEXT') break;
        if (!takeEmulator(item) && !takeExtra(item, 'head')) throw orderError(item, `${item.name} before LIBXC_CONTEXT`);
      }
      item = null;
    } else if (item) {
      cursor.unshift(item); // bare libxc stream: the image header is next
    }
    const target = await ensureDomain();
    stats = await libxcRestore({
      xen,
      domid: target,
      cursor,
      streamType,
      callbacks,
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.completeEachCheckpoint ? { completeEachCheckpoint: true } : {}),
    });
    if (stats.endedBy === 'END' && format !== 'libxc' && streamType === 'plain') {
      // libxl records after the libxc stream, up to END
      for (;;) {
        const it = await cursor.next();
        if (!it) throw new MigrationError(MigrationErrorCode.ERR_INCOMPLETE, 'libxl stream ended without END');
        if (it.kind === 'record' && it.layer === 'libxl' && it.record.name === 'END') break;
        if (!takeEmulator(it)) throw orderError(it, `${it.name} after the libxc stream`);
      }
      if (!opts.stopAtEnd) {
        // trailing bytes are an error: the reader checks them when asked for more
        const extra = await cursor.next();
        if (extra) throw orderError(extra, `${extra.name} after END`);
        cursor.finish();
      }
    } else if (stats.endedBy === 'END' && format === 'libxc' && !opts.stopAtEnd) {
      const extra = await cursor.next();
      if (extra) throw orderError(extra, `${extra.name} after END`);
      cursor.finish();
    }
    await applyEmulator();
    if (built && opts.builder?.finish) await opts.builder.finish(target);
    let unpaused = false;
    if (!opts.paused) {
      if (built && opts.builder?.start) await opts.builder.start(target);
      const info = xen.domainInfo(target);
      if (info.shutdown) xen.resume(target, false);
      if (xen.domainInfo(target).paused) xen.unpause(target);
      unpaused = true;
    }
    return { domid: target, config, stats, format, unpaused, warnings: cursor.validator.warnings };
  } catch (e) {
    if (domid !== undefined) {
      const what = opts.onFailure ?? 'destroy';
      try {
        if (what === 'destroy' && built) {
          if (opts.builder) await opts.builder.destroy(domid);
          else xen.destroy(domid);
          Object.assign(e as object, { destination: 'destroyed', domid });
        } else {
          // asked to keep it, or not ours to destroy: paused — as the hypervisor confirms
          const state = pauseIfPresent(xen, domid);
          const destination = state === 'paused' ? (built ? 'left paused' : 'left paused (it was not created by this restore)') : state;
          Object.assign(e as object, { destination, domid });
        }
      } catch (de) {
        Object.assign(e as object, { destination: 'cleanup failed', cleanupError: de, domid });
      }
    }
    throw e;
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
