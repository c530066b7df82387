// Remus backup / COLO secondary: receives the checkpointed stream, buffers each checkpoint
// completely (libxc up to CHECKPOINT, libxl up to CHECKPOINT_END), applies it only then, and
// acknowledges it with ACK(n) on the reverse direction. Heartbeats go back while idle.
//
// Failover: when the stream ends, breaks, or no byte arrives for `failoverTimeoutMs`, the replica
// is resumed from the last complete checkpoint (the restore engine discards a partial one). Split
// brain guard: the takeover happens no earlier than `failoverTimeoutMs` after the last byte from the
// primary, even when the link dropped at once; the primary pauses its guest when ACKs stop for its
// ack timeout, so with failoverTimeoutMs > the primary's ack timeout + interval the two never run
// together. A libxc END (the primary's deliberate stop) discards the replica instead: no takeover.
import { ReadableByteSource } from '../stream/readable-source.js';
import { CheckpointState, type ByteSource } from '../stream/index.js';
import type { Hypervisor } from '../xen/types.js';
import { defaultBuilder, openXen, type XenOptions } from '../toolstack/host.js';
import { openReceiverChannel } from '../transport/receiver.js';
import { StreamCursor } from '../engine/cursor.js';
import { restoreDomain, type DomainBuilder } from '../toolstack/restore.js';
import type { EmulatorStateProvider } from '../toolstack/emulator.js';
import type { RestoreCallbacks, RestoreStats } from '../engine/restore/types.js';
import { suspendDomain } from '../toolstack/save.js';
import {
  CONTROL_PROTOCOL_VERSION,
  ControlConnection,
  listen,
  TransportTimeoutError,
  writeAll,
  XL_MIGRATE_RECEIVER_BANNER,
  type Channel,
  type TlsMaterial,
} from '../transport/index.js';
import { encodeDirtyPfns, encodeState, STATE_NAMES } from './backchannel.js';
import type { Logger } from './types.js';
import { replicaDiskHooks, type DiskReplicaSet } from '../disk/replica-hooks.js';

export interface ReplicaOptions extends XenOptions {
  /** COLO secondary instead of a Remus backup */
  colo?: boolean;
  /** listen on host:port (TCP); default: stdin/stdout */
  listen?: { host?: string; port: number };
  channel?: Channel;
  tls?: TlsMaterial;
  insecure?: boolean;
  onListening?: (port: number) => void;
  /** no byte from the primary for this long = failover; also the takeover delay (default 5000) */
  failoverTimeoutMs?: number;
  /**
   * Before the first checkpoint there is nothing to take over, and a primary may be silent for a
   * while (it scans a large gfn space before its first page): it is declared lost after this long
   * without a byte (default 120000), or when the link closes.
   */
  initialTimeoutMs?: number;
  /** HEARTBEAT period on the reverse direction (default 250 ms) */
  heartbeatMs?: number;
  builder?: DomainBuilder;
  emulator?: EmulatorStateProvider;
  /** leave the replica paused after a failover (default: unpause it) */
  paused?: boolean;
  signal?: AbortSignal;
  log?: Logger;
  /** test hook: checkpoint n was applied completely (the replica is paused and consistent) */
  onCheckpoint?: (n: number, xen: Hypervisor, domid: number) => void | Promise<void>;
  /** test hook: the replica holds this checkpoint and is about to be resumed */
  onFailover?: (n: number, xen: Hypervisor, domid: number) => void | Promise<void>;
  /** test hook (COLO): the SVM runs again after checkpoint n */
  onResumed?: (n: number, xen: Hypervisor, domid: number) => void | Promise<void>;
  /** 'xenmig' (default) or 'xl' (as `xl migrate-receive -r`: banner, no ACKs/heartbeats, raw COLO records) */
  protocol?: 'xenmig' | 'xl';
  /** test hook: each COLO state-exchange step ('send SVM_READY', 'recv NEW', ...) */
  trace?: (event: string, checkpoint: number) => void;
  /** Remus disk replication: the backup's images (src/disk/replica.ts); applied at each CHECKPOINT_END */
  disks?: DiskReplicaSet;
}

export interface ReplicaResult {
  domid: number | null;
  /** failover: the replica took over; discarded: the primary ended replication; failed: no complete checkpoint */
  outcome: 'failover' | 'discarded' | 'failed';
  /** the last checkpoint applied (= the state the replica holds / resumed from) */
  checkpoint: number;
  guest: 'running' | 'paused' | 'destroyed' | 'none';
  stats: RestoreStats | null;
  cause?: Error;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));

/** A ByteSource that records when bytes last arrived (for the failover watchdog). */
class WatchedSource implements ByteSource {
  lastDataAt = Date.now();
  constructor(
    private readonly inner: ReadableByteSource,
    rs: NodeJS.ReadableStream,
  ) {
    rs.on('readable', () => {
      this.lastDataAt = Date.now();
    });
  }
  get position() {
    return this.inner.position;
  }
  private touch<T>(p: Promise<T>): Promise<T> {
    return p.then((v) => {
      this.lastDataAt = Date.now();
      return v;
    });
  }
  readExact(n: number) {
    return this.touch(this.inner.readExact(n));
  }
  readInto(t: Uint8Array) {
    return this.touch(this.inner.readInto(t));
  }
  peek(n: number) {
    return this.touch(this.inner.peek(n));
  }
  skip(n: number) {
    return this.touch(this.inner.skip(n));
  }
  close() {
    return this.inner.close();
  }
}

export async function receiveReplica(opts: ReplicaOptions = {}): Promise<ReplicaResult> {
  const { xen, owned } = openXen(opts);
  const backup = new Backup(xen, opts);
  try {
    return await backup.run();
  } finally {
    await backup.close();
    if (owned) xen.close();
  }
}

/** One replication run of the backup: the link, the checkpoints, then failover or discard. */
class Backup {
  private readonly log: Logger;
  private readonly colo: boolean;
  private readonly xl: boolean;
  private readonly failoverTimeoutMs: number;
  private readonly trace: (event: string, checkpoint: number) => void;
  private listener: Awaited<ReturnType<typeof listen>> | null = null;
  private channel: Channel | undefined;
  private conn: ControlConnection | null = null;
  private sendChain: Promise<void> = Promise.resolve();
  private domid: number | null = null;
  private applied = 0;
  private hb: { stop(): void } | null = null;
  private watchdog: NodeJS.Timeout | null = null;
  private svmRunning = false;

  constructor(
    private readonly xen: Hypervisor,
    private readonly opts: ReplicaOptions,
  ) {
    this.log = opts.log ?? ((l) => process.stderr.write(l + '\n'));
    this.colo = !!opts.colo;
    this.xl = opts.protocol === 'xl';
    this.failoverTimeoutMs = opts.failoverTimeoutMs ?? 5000;
    this.trace = opts.trace ?? (() => {});
    this.channel = opts.channel;
  }

  async run(): Promise<ReplicaResult> {
    const { xen, opts, colo } = this;
    const opened = await openReceiverChannel(opts);
    this.listener = opened.listener;
    const ch = (this.channel = opened.channel);
    this.conn = new ControlConnection(ch.readable, ch.writable);
    // the builder first: READY announces the devices it can recreate at failover
    const disks = replicaDiskHooks(opts.disks, { colo, xl: this.xl, log: this.log });
    const builder = disks.builder(opts.builder ?? (await defaultBuilder(xen)));
    await this.greet(builder, disks.capabilities);
    const source = new WatchedSource(new ReadableByteSource(ch.readable), ch.readable);
    this.startWatchdog(ch, source);
    const streamType = colo ? 'colo' : 'remus';
    const validator = { streamType, reserved: 'error', padding: 'error' } as const;
    const cursor = new StreamCursor(source, { reader: { lazyPageData: true }, validator });
    let stats: RestoreStats;
    try {
      const r = await restoreDomain({
        xen,
        input: cursor,
        ...(builder ? { builder } : {}),
        paused: true,
        streamType,
        completeEachCheckpoint: !colo,
        ...(disks.records ? { extraRecords: disks.records } : {}),
        onDomain: (d) => {
          this.domid = d;
        },
        ...(opts.signal ? { signal: opts.signal } : {}),
        ...(opts.emulator ? { emulator: opts.emulator } : {}),
        callbacks: this.callbacks(cursor),
      });
      stats = r.stats;
      this.domid = r.domid;
    } catch (e) {
      // before the first complete checkpoint: nothing to take over (restoreDomain destroyed it)
      const { domid, applied } = this;
      this.log(`backup: replication failed before a complete checkpoint: ${(e as Error).message}`);
      const guest = domid === null ? 'none' : 'destroyed';
      return { domid, outcome: 'failed', checkpoint: applied, guest, stats: null, cause: e as Error };
    }
    if (stats.endedBy === 'END') return this.discard(builder, stats);
    return this.failover(builder, stats, source);
  }

  async close(): Promise<void> {
    this.hb?.stop();
    if (this.watchdog) clearInterval(this.watchdog);
    try {
      this.channel?.destroy();
    } catch {
      /* gone */
    }
    await this.listener?.close();
  }

  private send(m: Parameters<ControlConnection['send']>[0]): Promise<void> {
    const conn = this.conn!;
    this.sendChain = this.sendChain.then(() =>
      conn.send(m, { timeoutMs: this.failoverTimeoutMs }).catch(() => undefined),
    );
    return this.sendChain;
  }

  private sendRaw(b: Uint8Array): Promise<void> {
    const ch = this.channel!;
    const timeoutMs = this.failoverTimeoutMs;
    this.sendChain = this.sendChain.then(() =>
      writeAll(ch.writable, b, { timeoutMs }).catch(() => undefined),
    );
    return this.sendChain;
  }

  /** xl's banner, or READY (with the devices the builder can recreate, the disks it replicates) and heartbeats. */
  private async greet(builder: DomainBuilder | undefined, diskCapabilities: string[]): Promise<void> {
    if (this.xl) {
      await this.sendRaw(XL_MIGRATE_RECEIVER_BANNER);
      return;
    }
    const capabilities = [
      'remus',
      'colo',
      `failover-timeout-ms=${this.failoverTimeoutMs}`,
      ...(builder?.capabilities ?? []),
      ...diskCapabilities,
    ];
    await this.send({ type: 'READY', protocol: CONTROL_PROTOCOL_VERSION, version: '0.1.0', capabilities });
    this.hb = this.conn!.startHeartbeat(this.opts.heartbeatMs ?? 250);
  }

  /** No byte from the primary for the failover timeout (before the first checkpoint: the initial one) drops the link. */
  private startWatchdog(ch: Channel, source: WatchedSource): void {
    const { failoverTimeoutMs } = this;
    const initialTimeoutMs = this.opts.initialTimeoutMs ?? 120_000;
    this.watchdog = setInterval(
      () => {
        const limit = this.applied > 0 ? failoverTimeoutMs : Math.max(failoverTimeoutMs, initialTimeoutMs);
        if (Date.now() - source.lastDataAt > limit)
          ch.destroy(new TransportTimeoutError('data from the primary', limit));
      },
      Math.min(100, failoverTimeoutMs / 4),
    );
    this.watchdog.unref();
  }

  /** The restore engine's callbacks: ACK each applied checkpoint; COLO: the secondary's side of the exchange. */
  private callbacks(cursor: StreamCursor): RestoreCallbacks {
    const checkpointApplied = async (n: number) => {
      this.applied = n;
      await this.opts.onCheckpoint?.(n, this.xen, this.domid!);
      if (!this.colo && !this.xl) await this.send({ type: 'ACK', checkpoint: n });
    };
    if (!this.colo) return { checkpointApplied };
    return {
      checkpointApplied,
      postcopy: () => this.svmResume(),
      waitCheckpoint: () => this.waitNew(cursor),
      suspend: async () => {
        await suspendDomain(this.xen, this.domid!, 60_000);
        await this.sendState(CheckpointState.SVM_SUSPENDED);
        return 'ok' as const;
      },
      sendDirtyPfns: async (pfns: Float64Array) => {
        await this.back(encodeDirtyPfns(pfns));
        this.trace(`send DIRTY_PFN_LIST(${[...pfns].join(',')})`, this.applied);
      },
    };
  }

  private back(b: Uint8Array): Promise<void> {
    return this.xl ? this.sendRaw(b) : this.send({ type: 'BACKCHANNEL', data: b });
  }

  private async sendState(state: number): Promise<void> {
    await this.back(encodeState(state));
    this.trace(`send ${STATE_NAMES[state]}`, this.applied);
  }

  /** COLO: the SVM runs the checkpoint just applied (the first time: with log-dirty on). */
  private async svmResume(): Promise<'ok'> {
    const { xen } = this;
    await this.sendState(CheckpointState.SVM_READY);
    const d = this.domid!;
    const info = xen.domainInfo(d);
    if (!this.svmRunning) {
      // first checkpoint: start the SVM and track what it dirties
      xen.logDirtyEnable(d);
      this.svmRunning = true;
    }
    if (info.shutdown) xen.resume(d, true);
    if (xen.domainInfo(d).paused) xen.unpause(d);
    await this.sendState(CheckpointState.SVM_RESUMED);
    await this.opts.onResumed?.(this.applied, xen, d);
    return 'ok';
  }

  /** COLO: the primary's CHECKPOINT_STATE(NEW) (or its END) starts the next checkpoint. */
  private async waitNew(cursor: StreamCursor): Promise<'ok' | 'failover'> {
    let item;
    try {
      item = await cursor.next();
    } catch {
      return 'failover';
    }
    if (!item) return 'failover';
    const r = item.kind === 'record' ? item.record : null;
    if (r?.name === 'CHECKPOINT_STATE' && r.controlId === CheckpointState.NEW) {
      this.trace('recv NEW', this.applied);
      return 'ok';
    }
    if (item.kind === 'record' && item.layer === 'libxc' && item.record.name === 'END') {
      // the primary ended replication: let the engine see END (the replica is discarded)
      cursor.unshift(item);
      return 'ok';
    }
    throw new Error(`COLO secondary: expected CHECKPOINT_STATE(NEW), got ${item.name}`);
  }

  /** The primary ended replication (END): the replica is discarded, nothing takes over. */
  private async discard(builder: DomainBuilder | undefined, stats: RestoreStats): Promise<ReplicaResult> {
    const d = this.domid!;
    this.log(
      `backup: the primary ended replication after checkpoint ${this.applied}; replica discarded (no takeover)`,
    );
    if (builder) await builder.destroy(d);
    else this.xen.destroy(d);
    return { domid: d, outcome: 'discarded', checkpoint: this.applied, guest: 'destroyed', stats };
  }

  /** The primary is lost: the replica resumes from the last complete checkpoint, no earlier than the timeout. */
  private async failover(
    builder: DomainBuilder | undefined,
    stats: RestoreStats,
    source: WatchedSource,
  ): Promise<ReplicaResult> {
    const { xen, opts, applied } = this;
    const d = this.domid!;
    const cause = (stats as RestoreStats & { failoverCause?: Error }).failoverCause;
    // split brain guard: take over no earlier than the timeout after the primary's last byte
    const wait = source.lastDataAt + this.failoverTimeoutMs - Date.now();
    const inMs = Math.max(0, Math.round(wait));
    this.log(
      `backup: primary lost (${cause?.message ?? 'stream ended'}); failover to checkpoint ${applied} in ${inMs} ms`,
    );
    await sleep(wait);
    await opts.onFailover?.(applied, xen, d);
    let guest: ReplicaResult['guest'] = 'paused';
    // the replica takes the guest's name (built as "<name>--incoming" if the primary had it here)
    if (builder?.start) await builder.start(d);
    if (!opts.paused) {
      const info = xen.domainInfo(d);
      if (info.shutdown) xen.resume(d, this.colo);
      if (xen.domainInfo(d).paused) xen.unpause(d);
      guest = 'running';
    }
    this.log(`backup: failover complete: domain ${d} ${guest} from checkpoint ${applied}`);
    return { domid: d, outcome: 'failover', checkpoint: applied, guest, stats, ...(cause ? { cause } : {}) };
  }
}
