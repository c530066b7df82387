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
import type { RestoreStats } from '../engine/restore/types.js';
import { suspendDomain } from '../toolstack/save.js';
import { CONTROL_PROTOCOL_VERSION, ControlConnection, listen, TransportTimeoutError, writeAll, XL_MIGRATE_RECEIVER_BANNER, type Channel, type TlsMaterial } from '../transport/index.js';
import { encodeDirtyPfns, encodeState, STATE_NAMES } from './backchannel.js';
import type { Logger } from './types.js';

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
  constructor(private readonly inner: ReadableByteSource, rs: NodeJS.ReadableStream) {
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
  const log: Logger = opts.log ?? ((l) => process.stderr.write(l + '\n'));
  const { xen, owned } = openXen(opts);
  const colo = !!opts.colo;
  const failoverTimeoutMs = opts.failoverTimeoutMs ?? 5000;
  const initialTimeoutMs = opts.initialTimeoutMs ?? 120_000;
  let listener: Awaited<ReturnType<typeof listen>> | null = null;
  let channel: Channel | undefined = opts.channel;
  let domid: number | null = null;
  let applied = 0;
  let hb: { stop(): void } | null = null;
  let watchdog: NodeJS.Timeout | null = null;
  try {
    const opened = await openReceiverChannel(opts);
    listener = opened.listener;
    channel = opened.channel;
    const ch = channel;
    const conn = new ControlConnection(ch.readable, ch.writable);
    let sendChain: Promise<void> = Promise.resolve();
    const send = (m: Parameters<ControlConnection['send']>[0]) => {
      sendChain = sendChain.then(() => conn.send(m, { timeoutMs: failoverTimeoutMs }).catch(() => undefined));
      return sendChain;
    };
    const xl = opts.protocol === 'xl';
    const sendRaw = (b: Uint8Array) => {
      sendChain = sendChain.then(() => writeAll(ch.writable, b, { timeoutMs: failoverTimeoutMs }).catch(() => undefined));
      return sendChain;
    };
    // the builder first: READY announces the devices it can recreate at failover
    const builder = opts.builder ?? (await defaultBuilder(xen));
    if (xl) {
      await sendRaw(XL_MIGRATE_RECEIVER_BANNER);
    } else {
      const capabilities = ['remus', 'colo', `failover-timeout-ms=${failoverTimeoutMs}`, ...(builder?.capabilities ?? [])];
      await send({ type: 'READY', protocol: CONTROL_PROTOCOL_VERSION, version: '0.1.0', capabilities });
      hb = conn.startHeartbeat(opts.heartbeatMs ?? 250);
    }

    const source = new WatchedSource(new ReadableByteSource(ch.readable), ch.readable);
    watchdog = setInterval(
      () => {
        const limit = applied > 0 ? failoverTimeoutMs : Math.max(failoverTimeoutMs, initialTimeoutMs);
        if (Date.now() - source.lastDataAt > limit) ch.destroy(new TransportTimeoutError('data from the primary', limit));
      },
      Math.min(100, failoverTimeoutMs / 4),
    );
    watchdog.unref();
    const streamType = colo ? 'colo' : 'remus';
    const cursor = new StreamCursor(source, { reader: { lazyPageData: true }, validator: { streamType, reserved: 'error', padding: 'error' } });
    let svmRunning = false;
    const back = (b: Uint8Array) => (xl ? sendRaw(b) : send({ type: 'BACKCHANNEL', data: b }));
    const trace = opts.trace ?? (() => {});
    const sendState = async (state: number) => {
      await back(encodeState(state));
      trace(`send ${STATE_NAMES[state]}`, applied);
    };

    let stats: RestoreStats;
    try {
      const r = await restoreDomain({
        xen,
        input: cursor,
        ...(builder ? { builder } : {}),
        paused: true,
        streamType,
        completeEachCheckpoint: !colo,
        onDomain: (d) => {
          domid = d;
        },
        ...(opts.signal ? { signal: opts.signal } : {}),
        ...(opts.emulator ? { emulator: opts.emulator } : {}),
        callbacks: {
          checkpointApplied: async (n) => {
            applied = n;
            await opts.onCheckpoint?.(n, xen, domid!);
            if (!colo && !xl) await send({ type: 'ACK', checkpoint: n });
          },
          ...(colo
            ? {
                postcopy: async () => {
                  await sendState(CheckpointState.SVM_READY);
                  const d = domid!;
                  const info = xen.domainInfo(d);
                  if (!svmRunning) {
                    // first checkpoint: start the SVM and track what it dirties
                    xen.logDirtyEnable(d);
                    svmRunning = true;
                  }
                  if (info.shutdown) xen.resume(d, true);
                  if (xen.domainInfo(d).paused) xen.unpause(d);
                  await sendState(CheckpointState.SVM_RESUMED);
                  await opts.onResumed?.(applied, xen, d);
                  return 'ok' as const;
                },
                waitCheckpoint: async () => {
                  let item;
                  try {
                    item = await cursor.next();
                  } catch {
                    return 'failover' as const;
                  }
                  if (!item) return 'failover' as const;
                  if (item.kind === 'record' && item.layer === 'libxl' && item.record.name === 'CHECKPOINT_STATE' && item.record.controlId === CheckpointState.NEW) {
                    trace('recv NEW', applied);
                    return 'ok' as const;
                  }
                  if (item.kind === 'record' && item.layer === 'libxc' && item.record.name === 'END') {
                    // the primary ended replication: let the engine see END (the replica is discarded)
                    cursor.unshift(item);
                    return 'ok' as const;
                  }
                  throw new Error(`COLO secondary: expected CHECKPOINT_STATE(NEW), got ${item.name}`);
                },
                suspend: async () => {
                  await suspendDomain(xen, domid!, 60_000);
                  await sendState(CheckpointState.SVM_SUSPENDED);
                  return 'ok' as const;
                },
                sendDirtyPfns: async (pfns: Float64Array) => {
                  await back(encodeDirtyPfns(pfns));
                  trace(`send DIRTY_PFN_LIST(${[...pfns].join(',')})`, applied);
                },
              }
            : {}),
        },
      });
      stats = r.stats;
      domid = r.domid;
    } catch (e) {
      // before the first complete checkpoint: nothing to take over (restoreDomain destroyed it)
      log(`backup: replication failed before a complete checkpoint: ${(e as Error).message}`);
      return { domid, outcome: 'failed', checkpoint: applied, guest: domid === null ? 'none' : 'destroyed', stats: null, cause: e as Error };
    }
    const d = domid!;
    if (stats.endedBy === 'END') {
      log(`backup: the primary ended replication after checkpoint ${applied}; replica discarded (no takeover)`);
      if (builder) await builder.destroy(d);
      else xen.destroy(d);
      return { domid: d, outcome: 'discarded', checkpoint: applied, guest: 'destroyed', stats };
    }
    const cause = (stats as RestoreStats & { failoverCause?: Error }).failoverCause;
    // split brain guard: take over no earlier than the timeout after the primary's last byte
    const wait = source.lastDataAt + failoverTimeoutMs - Date.now();
    log(`backup: primary lost (${cause?.message ?? 'stream ended'}); failover to checkpoint ${applied} in ${Math.max(0, Math.round(wait))} ms`);
    await sleep(wait);
    await opts.onFailover?.(applied, xen, d);
    let guest: ReplicaResult['guest'] = 'paused';
    // the replica takes the guest's name (built as "<name>--incoming" if the primary had it here)
    if (builder?.start) await builder.start(d);
    if (!opts.paused) {
      const info = xen.domainInfo(d);
      if (info.shutdown) xen.resume(d, colo);
      if (xen.domainInfo(d).paused) xen.unpause(d);
      guest = 'running';
    }
    log(`backup: failover complete: domain ${d} ${guest} from checkpoint ${applied}`);
    return { domid: d, outcome: 'failover', checkpoint: applied, guest, stats, ...(cause ? { cause } : {}) };
  } finally {
    hb?.stop();
    if (watchdog) clearInterval(watchdog);
    try {
      channel?.destroy();
    } catch {
      /* gone */
    }
    await listener?.close();
    if (owned) xen.close();
  }
}
