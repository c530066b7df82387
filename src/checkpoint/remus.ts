// Remus / COLO primary: an initial live migration into the backup, then a checkpoint every interval
// (suspend → dirty set → end-of-checkpoint records → CHECKPOINT → resume → emulator records +
// CHECKPOINT_END → wait for ACK(n) → release held output → sleep the rest of the interval). No END
// while replicating: the stream ends by EOF. The seam between the libxc and
// toolstack layers is the callbacks: src/checkpoint/README.md.
//
// Split brain: the primary owns the guest while the backup acknowledges. When ACKs stop (timeout,
// broken channel) the primary either pauses the guest (default: the backup may be taking over) or
// keeps it running unreplicated (`onBackupLoss: 'continue'`), and logs the decision with the
// checkpoint numbers. Before the first ACK no replica exists that could take over: the guest keeps
// running and the result says 'no-replica'. A guest is never lost: it is paused or running here.
import { openSync, closeSync } from 'node:fs';
import { CheckpointState, encodeLibxcRecord, encodeLibxlRecord, StreamWriter } from '../stream/index.js';
import type { Hypervisor } from '../xen/types.js';
import { openXen, type XenOptions } from '../toolstack/host.js';
import { saveDomain, sourceConfig, suspendDomain, resumeDomain, zeroCopySafe } from '../toolstack/save.js';
import { requiredDeviceCapabilities } from '../toolstack/devices.js';
import { MigrationError, MigrationErrorCode } from '../engine/errors.js';
import { lockDomain } from '../toolstack/domain-lock.js';
import type { DomainConfig } from '../toolstack/config.js';
import type { EmulatorStateProvider } from '../toolstack/emulator.js';
import type { RoundStats, SaveCallbacks, SaveStats } from '../engine/save/types.js';
import type { Readable } from 'node:stream';
import {
  ControlConnection,
  openDestination,
  readExactly,
  XL_MIGRATE_RECEIVER_BANNER,
  type Channel,
  type TlsMaterial,
} from '../transport/index.js';
import { BackChannelDecoder, STATE_NAMES, type BackRecord } from './backchannel.js';
import type { CheckpointStat, Logger, OutputComparator, ReplicationHooks } from './types.js';
import type { NetBuffer } from '../netbuf/buffer.js';
import type { DiskReplication } from '../disk/primary.js';
import { primaryDiskHooks, type PrimaryDiskHooks } from '../disk/primary-hooks.js';

export interface RemusOptions extends XenOptions {
  /** checkpoint interval, ms (default 200, as `xl remus`) */
  intervalMs?: number;
  /** discard the stream (`xl remus -b`): measures the primary's overhead, no backup, no ACKs */
  blackhole?: boolean;
  /** COLO instead of Remus: the secondary runs too; checkpoints on divergence or timer */
  colo?: boolean;
  /** ACK(n) must arrive within this many ms of CHECKPOINT_END (default max(2000, 10 × interval)) */
  ackTimeoutMs?: number;
  /** when ACKs stop after at least one ACK: pause the guest (default) or let it continue unreplicated */
  onBackupLoss?: 'pause' | 'continue';
  /** an open channel to the backup (else `dest` is opened) */
  channel?: Channel;
  tls?: TlsMaterial;
  insecure?: boolean;
  sshCommand?: string[];
  remoteCommand?: string[];
  hooks?: ReplicationHooks;
  /**
   * Network output buffering (src/netbuf/): set up before the guest is touched (a failure refuses
   * the replication), plugged in each suspend, epoch n released on ACK(n) (or, without ACKs, once
   * checkpoint n is written), everything released when the guest runs on here, removed at the end.
   * Remus only (COLO compares output instead).
   */
  netBuffer?: NetBuffer;
  /**
   * Disk replication (src/disk/): connected before the guest is touched (a failure refuses the
   * replication), the backup's READY must map every disk, the initial copy precedes the memory
   * stream, epoch n is rotated in checkpoint n's pause and its blocks close checkpoint n. Remus
   * with a xenmig backup only.
   */
  disks?: DiskReplication;
  /** COLO: divergence detector (default: none, checkpoints on the timer only) */
  comparator?: OutputComparator;
  /** copy the dirty set while suspended and transmit after the resume (default true) */
  staging?: boolean;
  /**
   * HVM guests that never balloon: keep foreign mappings across checkpoints (shorter pauses). A gfn
   * re-populated with a new frame would be read through its old mapping: off by default.
   */
  persistentMappings?: boolean;
  /** stop after this many checkpoints (tests, benchmarks) */
  maxCheckpoints?: number;
  emulator?: EmulatorStateProvider;
  config?: DomainConfig;
  signal?: AbortSignal;
  log?: Logger;
  /** the backup's READY must arrive within this many ms (default 30000) */
  readyTimeoutMs?: number;
  /**
   * 'xenmig' (default): READY, ACK(n), HEARTBEAT and BACKCHANNEL messages on the reverse direction.
   * 'xl': as `xl remus` ⇄ `xl migrate-receive -r`: the xl banner, then the stream; no
   * acknowledgements (checkpoints are not waited for); COLO back-channel records raw.
   */
  protocol?: 'xenmig' | 'xl';
  /** test hook: called while the guest is suspended for checkpoint n (e.g. record its checksum) */
  onSuspended?: (n: number, xen: Hypervisor, domid: number) => void | Promise<void>;
  /** called in the interval sleep (benchmarks: dirty a known set of pages) */
  onIdle?: (n: number) => void | Promise<void>;
  /** test hook: each COLO state-exchange step ('recv SVM_READY', 'send NEW', 'recv DIRTY_PFN_LIST(3)', ...) */
  trace?: (event: string, checkpoint: number) => void;
}

export interface RemusResult {
  domid: number;
  checkpoints: number;
  lastAcked: number;
  /** why replication ended ('refused': network buffering could not be set up, nothing was started; 'no-replica': lost before any replica existed, the guest runs on) */
  reason: 'stopped' | 'max-checkpoints' | 'backup-lost' | 'no-replica' | 'aborted' | 'refused';
  /** the guest on this host afterwards */
  guest: 'running' | 'paused';
  error?: Error;
  stats: SaveStats | null;
}

export interface RemusHandle extends AsyncIterable<CheckpointStat> {
  readonly domid: number;
  /**
   * resolves when replication ends; the error, if any, is in the result (it rejects only when the
   * hypervisor cannot be opened at all)
   */
  readonly done: Promise<RemusResult>;
  /** the last checkpoint the backup acknowledged */
  readonly lastAcked: number;
  /**
   * End replication after the current checkpoint. The guest keeps running here; the stream gets a
   * libxc END, which tells a xenmig backup to discard its replica (no takeover).
   */
  stop(): Promise<RemusResult>;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (ms <= 0) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

class BackupLost extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BackupLost';
  }
}

/** The reverse direction of the channel: ACKs, heartbeats, COLO back-channel records. */
class ReverseReader {
  lastAcked = 0;
  error: Error | null = null;
  lastSeenAt = Date.now();
  private waiters = new Set<() => void>();
  private readonly back: BackRecord[] = [];
  private readonly decoder = new BackChannelDecoder();
  private failed!: () => void;
  /** resolves when the back channel failed */
  readonly errored = new Promise<void>((resolve) => {
    this.failed = resolve;
  });

  constructor(
    private readonly conn: ControlConnection | null,
    private readonly raw: Readable | null = null,
  ) {}

  start(): void {
    void (async () => {
      try {
        if (this.raw) {
          // xl: the reverse direction carries bare back-channel records
          for await (const chunk of this.raw) {
            this.lastSeenAt = Date.now();
            this.back.push(...this.decoder.push(chunk as Uint8Array));
            this.wake();
          }
          throw new Error('the secondary closed the back channel');
        }
        for (;;) {
          const m = await this.conn!.receive({ skipHeartbeats: false });
          this.lastSeenAt = Date.now();
          if (m.type === 'ACK') this.lastAcked = Math.max(this.lastAcked, m.checkpoint);
          else if (m.type === 'BACKCHANNEL') this.back.push(...this.decoder.push(m.data));
          else if (m.type === 'ERROR') throw new BackupLost(`backup reported ${m.code}: ${m.message}`);
          this.wake();
        }
      } catch (e) {
        this.error = e instanceof Error ? e : new Error(String(e));
        this.failed();
        this.wake();
      }
    })();
  }

  private wake(): void {
    const w = [...this.waiters];
    this.waiters.clear();
    for (const f of w) f();
  }

  private async until<T>(test: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    const t0 = Date.now();
    for (;;) {
      const v = test();
      if (v !== undefined) return v;
      if (this.error)
        throw new BackupLost(`back channel failed while waiting for ${what}: ${this.error.message}`);
      const left = timeoutMs - (Date.now() - t0);
      if (left <= 0) throw new BackupLost(`no ${what} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          this.waiters.delete(f);
          resolve();
        }, left);
        const f = () => {
          clearTimeout(t);
          resolve();
        };
        this.waiters.add(f);
      });
    }
  }

  waitAck(n: number, timeoutMs: number): Promise<number> {
    return this.until(() => (this.lastAcked >= n ? this.lastAcked : undefined), timeoutMs, `ACK(${n})`);
  }

  /** Next back-channel record, which must be the given kind (and state). */
  async nextBack(
    want: { kind: 'state'; state: number } | { kind: 'dirty' },
    timeoutMs: number,
  ): Promise<BackRecord> {
    const name =
      want.kind === 'state' ? `CHECKPOINT_STATE(${STATE_NAMES[want.state]})` : 'CHECKPOINT_DIRTY_PFN_LIST';
    const r = await this.until(() => this.back.shift(), timeoutMs, name);
    if (r.kind !== want.kind || (want.kind === 'state' && r.kind === 'state' && r.state !== want.state)) {
      const got =
        r.kind === 'state'
          ? `CHECKPOINT_STATE(${STATE_NAMES[r.state] ?? r.state})`
          : 'CHECKPOINT_DIRTY_PFN_LIST';
      throw new BackupLost(`back channel: expected ${name}, got ${got}`);
    }
    return r;
  }
}

/** Start replicating domain `domid` to `dest` (tcp://, ssh://, -, or a file path = no ACKs). */
export function remus(domid: number, dest: string, opts: RemusOptions = {}): RemusHandle {
  const queue: CheckpointStat[] = [];
  const readers: ((r: IteratorResult<CheckpointStat>) => void)[] = [];
  let finished = false;
  let stopRequested = false;
  let lastAcked = 0;
  const push = (s: CheckpointStat) => {
    const r = readers.shift();
    if (r) r({ value: s, done: false });
    else {
      queue.push(s);
      // nobody iterating: keep the latest stats only (replication runs for days)
      if (queue.length > 1000) queue.shift();
    }
  };
  const end = () => {
    finished = true;
    for (const r of readers.splice(0)) r({ value: undefined, done: true });
  };
  const stopCtl = new AbortController();
  // aborting = a deliberate stop (END: the backup discards its replica), never a silent drop that
  // the backup would answer with a takeover while this guest still runs
  opts.signal?.addEventListener(
    'abort',
    () => {
      stopRequested = true;
      stopCtl.abort();
    },
    { once: true },
  );
  const done = runLocked(domid, dest, opts, {
    push,
    stopRequested: () => stopRequested,
    stopSignal: stopCtl.signal,
    acked: (n) => {
      lastAcked = n;
    },
  }).finally(end);
  return {
    domid,
    done,
    get lastAcked() {
      return lastAcked;
    },
    stop() {
      stopRequested = true;
      stopCtl.abort();
      return done;
    },
    [Symbol.asyncIterator]() {
      return {
        next: () =>
          new Promise<IteratorResult<CheckpointStat>>((resolve) => {
            const s = queue.shift();
            if (s) resolve({ value: s, done: false });
            else if (finished) resolve({ value: undefined, done: true });
            else readers.push(resolve);
          }),
        return: async () => ({ value: undefined, done: true }),
      };
    },
  };
}

interface RunCtl {
  push(s: CheckpointStat): void;
  stopRequested(): boolean;
  stopSignal: AbortSignal;
  acked(n: number): void;
}

/** The domain is this replication's for its whole run: a second operation on it is refused (ERR_DOMAIN_BUSY). */
async function runLocked(domid: number, dest: string, opts: RemusOptions, ctl: RunCtl): Promise<RemusResult> {
  const { xen, owned } = openXen(opts);
  try {
    const lock = lockDomain(xen, domid, opts.colo ? 'colo' : 'remus');
    try {
      return await run(domid, dest, { ...opts, xen }, ctl);
    } finally {
      lock.release();
    }
  } finally {
    if (owned) xen.close();
  }
}

async function run(domid: number, dest: string, opts: RemusOptions, ctl: RunCtl): Promise<RemusResult> {
  const log: Logger = opts.log ?? ((l) => process.stderr.write(l + '\n'));
  const netBuffer = opts.netBuffer ?? null;
  if (netBuffer) {
    try {
      if (opts.colo) throw new Error('network buffering is for Remus; COLO compares the output instead');
      netBuffer.setup();
    } catch (e) {
      const error = e instanceof Error ? e : new Error(String(e));
      log(`primary: replication of domain ${domid} refused, guest untouched: ${error.message}`);
      return { domid, checkpoints: 0, lastAcked: 0, reason: 'refused', guest: 'running', error, stats: null };
    }
  }
  const disks = primaryDiskHooks(opts.disks, opts);
  if (disks) {
    try {
      await disks.setup();
    } catch (e) {
      netBuffer?.teardown();
      const error = e instanceof Error ? e : new Error(String(e));
      log(`primary: replication of domain ${domid} refused, guest untouched: ${error.message}`);
      return { domid, checkpoints: 0, lastAcked: 0, reason: 'refused', guest: 'running', error, stats: null };
    }
  }
  const { xen, owned } = openXen(opts);
  try {
    return await new Primary(xen, domid, dest, opts, ctl, log, netBuffer, disks).run();
  } finally {
    if (owned) xen.close();
  }
}

/** One replication run of the primary: the link, the checkpoint callbacks, the end. */
class Primary {
  private intervalMs: number;
  private readonly ackTimeoutMs: number;
  private readonly colo: boolean;
  private readonly hooks: ReplicationHooks;
  private readonly trace: (event: string, checkpoint: number) => void;
  private readonly t0 = performance.now();
  private channel: Channel | null = null;
  private nullFd: number | null = null;
  private reverse: ReverseReader | null = null;
  private out!: StreamWriter;
  private zeroCopy = false;
  private checkpoints = 0;
  private reason: RemusResult['reason'] = 'stopped';
  private stats: SaveStats | null = null;
  private lastAcked = 0;
  /** checkpoint n's disk rotate, in flight from the suspend to the resume */
  private rotating: Promise<void> | null = null;
  // the checkpoint being taken, and what is measured of it
  private current = 0;
  private suspendAt = 0;
  private pauseMs = 0;
  private suspendMs = 0;
  private bytesAt = 0;
  private secondaryDirty = 0;
  private lost: BackupLost | null = null;

  constructor(
    private readonly xen: Hypervisor,
    private readonly domid: number,
    private readonly dest: string,
    private readonly opts: RemusOptions,
    private readonly ctl: RunCtl,
    private readonly log: Logger,
    private readonly netBuffer: NetBuffer | null,
    private readonly disks: PrimaryDiskHooks | null,
  ) {
    this.intervalMs = opts.intervalMs ?? 200;
    this.ackTimeoutMs = opts.ackTimeoutMs ?? Math.max(2000, 10 * this.intervalMs);
    this.colo = !!opts.colo;
    this.hooks = opts.hooks ?? {};
    this.trace = opts.trace ?? (() => {});
  }

  async run(): Promise<RemusResult> {
    const { domid, opts } = this;
    let failure: Error | undefined;
    try {
      await this.openLink();
      const disks = this.disks;
      await disks?.start();
      const r = await saveDomain({
        ...(disks
          ? {
              beforeLibxc: disks.beforeLibxc,
              checkpointRecords: (w: StreamWriter) => disks.checkpointRecords(this.current, w),
            }
          : {}),
        xen: this.xen,
        domid,
        out: this.out,
        zeroCopy: this.zeroCopy,
        format: 'xl',
        live: true,
        streamType: this.colo ? 'colo' : 'remus',
        staging: opts.staging ?? true,
        ...(opts.persistentMappings ? { persistentMappings: true } : {}),
        ...(opts.emulator ? { emulator: opts.emulator } : {}),
        ...(opts.config ? { config: opts.config } : {}),
        callbacks: this.callbacks(),
      });
      this.stats = r.stats;
      if (this.lost) throw this.lost;
      if (this.reason !== 'max-checkpoints') this.reason = opts.signal?.aborted ? 'aborted' : 'stopped';
      // (an abort is handled as stop(): see remus())
      await this.endStream();
      this.log(
        `primary: replication of domain ${domid} ${this.reason} after checkpoint ${this.checkpoints} ` +
          `(last acknowledged ${this.lastAcked}); guest keeps running here`,
      );
    } catch (e) {
      failure = e instanceof Error ? e : new Error(String(e));
      this.reason = opts.signal?.aborted && !(e instanceof BackupLost) ? 'aborted' : 'backup-lost';
    } finally {
      try {
        this.channel?.destroy();
      } catch {
        /* gone */
      }
      if (this.nullFd !== null) closeSync(this.nullFd);
    }
    const guest = failure ? await this.afterFailure(failure) : 'running';
    closeNetBuffer(this.netBuffer, guest, this.log);
    await this.disks?.stop();
    await this.hooks.stopped?.(failure ? failure.message : this.reason, this.lastAcked);
    const { checkpoints, lastAcked, reason, stats } = this;
    return { domid, checkpoints, lastAcked, reason, guest, ...(failure ? { error: failure } : {}), stats };
  }

  /** The stream's destination: /dev/null (blackhole), or the backup with its handshake. */
  private async openLink(): Promise<void> {
    const { opts, colo } = this;
    if (opts.blackhole) {
      this.nullFd = openSync('/dev/null', 'w');
      this.out = new StreamWriter(this.nullFd);
      this.zeroCopy = true;
      return;
    }
    const channel = (this.channel =
      opts.channel ??
      (await openDestination(this.dest, {
        role: 'sender',
        ssh: {
          ...(opts.sshCommand ? { sshCommand: opts.sshCommand } : {}),
          // the far end is the backup: `xenmig receive --remus|--colo` on stdin/stdout (xl: `xl migrate-receive -r`)
          remoteCommand:
            opts.remoteCommand ??
            (opts.protocol === 'xl'
              ? ['xl', 'migrate-receive', '-r', ...(colo ? ['--colo'] : [])]
              : ['xenmig', 'receive', colo ? '--colo' : '--remus']),
        },
        tcp: { ...(opts.tls ? { tls: opts.tls } : {}), ...(opts.insecure ? { insecure: true } : {}) },
      })));
    if (channel.kind !== 'file' && opts.protocol === 'xl') await this.expectXlBanner(channel);
    else if (channel.kind !== 'file') await this.expectReady(channel);
    else if (colo) throw new Error('COLO needs a back channel (tcp://, ssh:// or -), not a file');
    this.out = new StreamWriter(channel.writable);
    this.zeroCopy = zeroCopySafe(channel.writable);
  }

  /** xl's receiver: its banner; it never acknowledges, its COLO secondary writes raw records back. */
  private async expectXlBanner(channel: Channel): Promise<void> {
    const got = await readExactly(channel.readable, XL_MIGRATE_RECEIVER_BANNER.length, {
      timeoutMs: this.opts.readyTimeoutMs ?? 30_000,
      what: 'the xl migration banner',
    });
    if (!got.equals(XL_MIGRATE_RECEIVER_BANNER))
      throw new Error(
        `xl migration: unexpected data instead of the banner: ${JSON.stringify(got.toString('latin1').slice(0, 60))}`,
      );
    if (this.colo) {
      this.reverse = new ReverseReader(null, channel.readable);
      this.reverse.start();
    }
  }

  /** A xenmig backup: READY with the capabilities this guest needs, then ACKs on the reverse direction. */
  private async expectReady(channel: Channel): Promise<void> {
    const conn = new ControlConnection(channel.readable, channel.writable);
    const ready = await conn.expect('READY', { timeoutMs: this.opts.readyTimeoutMs ?? 30_000 });
    const need = this.colo ? 'colo' : 'remus';
    if (!ready.capabilities.includes(need))
      throw new Error(`the backup does not offer ${need} (capabilities: ${ready.capabilities.join(', ')})`);
    // a replica that would lose the guest's disks or NICs at failover is no replica
    const config = await sourceConfig(this.xen, this.domid, this.opts.config);
    const devices = requiredDeviceCapabilities(config).filter((c) => !ready.capabilities.includes(c));
    if (devices.length)
      throw new MigrationError(
        MigrationErrorCode.ERR_UNSUPPORTED_DEVICE,
        `the backup cannot recreate the guest's devices (${devices.join(', ')} not offered)`,
        { domid: this.domid },
      );
    this.disks?.checkBackup(ready.capabilities);
    this.reverse = new ReverseReader(conn);
    this.reverse.start();
    // The forward direction is the Xen stream: nothing but checkpoints can go there. They are
    // the primary's heartbeat, so checkpoint at least twice per backup failover timeout.
    const fo = ready.capabilities.map((c) => /^failover-timeout-ms=(\d+)$/.exec(c)).find((m) => m);
    if (fo) {
      const maxGap = Math.floor(Number(fo[1]) / 2);
      if (this.intervalMs > maxGap) {
        this.log(
          `primary: interval ${this.intervalMs} ms capped at ${maxGap} ms (half the backup's failover timeout: checkpoints are the heartbeat)`,
        );
        this.intervalMs = maxGap;
      }
    }
  }

  /** The libxc engine's callbacks: the toolstack's side of each checkpoint. */
  private callbacks(): Partial<SaveCallbacks> {
    return {
      suspend: () => this.suspend(),
      secondaryDirtyPfns: () => this.secondaryDirtyPfns(),
      postcopy: () => this.postcopy(),
      // called after the toolstack wrote the emulator records and CHECKPOINT_END
      checkpoint: (round) => this.checkpoint(round),
      waitCheckpoint: (round) => this.waitCheckpoint(round),
    };
  }

  private async suspend(): Promise<void> {
    const n = (this.current = this.checkpoints + 1);
    this.suspendAt = performance.now();
    await suspendDomain(this.xen, this.domid, 60_000);
    this.suspendMs = performance.now() - this.suspendAt;
    // what the guest sent up to this suspend is epoch n: held until checkpoint n is safe
    this.netBuffer?.plug(n);
    // the disks' epoch boundary: asked now, awaited before the guest resumes (postcopy), so that the
    // daemon's round trip overlaps the copy of the checkpoint's pages instead of adding to the pause
    if (this.disks) {
      const r = this.disks.rotate(n);
      r.catch(() => {}); // awaited in postcopy; a save that fails before it has its own error
      this.rotating = r;
    }
    await this.hooks.postsuspend?.(n);
    await this.opts.onSuspended?.(n, this.xen, this.domid);
    // COLO, after the first checkpoint: the SVM suspends too
    if (this.colo && n > 1) await this.recvState(CheckpointState.SVM_SUSPENDED);
  }

  private async secondaryDirtyPfns(): Promise<BigUint64Array> {
    const r = await this.reverse!.nextBack({ kind: 'dirty' }, this.ackTimeoutMs);
    const pfns = (r as { pfns: BigUint64Array }).pfns;
    this.secondaryDirty = pfns.length;
    this.trace(`recv DIRTY_PFN_LIST(${[...pfns].join(',')})`, this.current);
    return pfns;
  }

  private async postcopy(): Promise<void> {
    const rotating = this.rotating;
    this.rotating = null;
    await rotating; // no write of the resumed guest may fall into epoch n
    await this.hooks.preresume?.(this.current);
    if (this.colo) await this.recvState(CheckpointState.SVM_READY);
    const told = resumeDomain(this.xen, this.domid); // the guest runs from here; xenstored is told below
    this.pauseMs = performance.now() - this.suspendAt;
    await told;
    if (this.colo) await this.recvState(CheckpointState.SVM_RESUMED);
  }

  /** Remus: wait for ACK(n), report, sleep the rest of the interval. COLO: only count. */
  private async checkpoint(round: RoundStats): Promise<'again' | 'stop'> {
    const n = ++this.checkpoints;
    // COLO: the secondary resumes with this state; the wait happens in waitCheckpoint
    if (this.colo) return 'again';
    let ackMs = 0;
    try {
      ackMs = await this.waitAck(n);
    } catch (e) {
      this.lost = e as BackupLost;
      this.finishCheckpoint(n, round, -1);
      return 'stop';
    }
    // no ACKs (xl's receiver, blackhole, a file): checkpoint n is safe once written (as libxl)
    if (!this.reverse) this.netBuffer?.release(n);
    this.finishCheckpoint(n, round, ackMs);
    if (this.stopAfter(n)) return 'stop';
    await this.opts.onIdle?.(n);
    await sleep(this.intervalMs - (performance.now() - this.suspendAt), this.ctl.stopSignal);
    return this.stopping() ? 'stop' : 'again';
  }

  /** COLO: the secondary runs checkpoint n; wait for divergence or the timer, then ask for the next. */
  private async waitCheckpoint(round: RoundStats): Promise<'again' | 'stop'> {
    const n = this.checkpoints;
    const reverse = this.reverse!;
    // the secondary runs with checkpoint n: the output up to it may go
    await this.hooks.commit?.(n);
    this.lastAcked = n;
    this.ctl.acked(n);
    this.finishCheckpoint(n, round, 0);
    if (this.stopAfter(n)) return 'stop';
    await this.opts.onIdle?.(n);
    const ac = new AbortController();
    const due = Math.max(0, this.intervalMs - (performance.now() - this.suspendAt));
    const timer = sleep(due, AbortSignal.any([ac.signal, this.ctl.stopSignal]));
    const diverged = this.opts.comparator
      ? this.opts.comparator(ac.signal).catch(() => undefined)
      : new Promise<void>(() => {});
    await Promise.race([timer, diverged, reverse.errored]);
    ac.abort();
    if (reverse.error) {
      this.lost = new BackupLost(`back channel failed: ${reverse.error.message}`);
      return 'stop';
    }
    if (this.stopping()) return 'stop';
    await this.out.writeRaw(encodeLibxlRecord({ name: 'CHECKPOINT_STATE', controlId: CheckpointState.NEW }));
    this.trace('send NEW', n);
    return 'again';
  }

  private stopping(): boolean {
    return this.ctl.stopRequested() || !!this.opts.signal?.aborted;
  }

  /** After checkpoint n: the checkpoint limit, or a stop asked for. */
  private stopAfter(n: number): boolean {
    if (this.opts.maxCheckpoints && n >= this.opts.maxCheckpoints) {
      this.reason = 'max-checkpoints';
      return true;
    }
    return this.stopping();
  }

  private async recvState(state: number): Promise<void> {
    await this.reverse!.nextBack({ kind: 'state', state }, this.ackTimeoutMs);
    this.trace(`recv ${STATE_NAMES[state]}`, this.current);
  }

  /** ms until the backup acknowledged checkpoint n (0 without a back channel); its output may go. */
  private async waitAck(n: number): Promise<number> {
    if (!this.reverse) return 0;
    const t = performance.now();
    this.lastAcked = await this.reverse.waitAck(n, this.ackTimeoutMs);
    this.ctl.acked(this.lastAcked);
    this.netBuffer?.release(n);
    await this.hooks.commit?.(n);
    return performance.now() - t;
  }

  /** The checkpoint's statistics; its dirty set is the engine's round (the final log-dirty CLEAN). */
  private finishCheckpoint(n: number, round: RoundStats, ackMs: number): void {
    const bytes = this.out.bytesWritten - this.bytesAt;
    this.bytesAt = this.out.bytesWritten;
    const dirtyPages = round.dirtyPages + this.secondaryDirty;
    const atMs = performance.now() - this.t0;
    const disk = this.opts.disks ? { diskBlocks: this.opts.disks.last.blocks } : {};
    this.ctl.push({
      checkpoint: n,
      dirtyPages,
      bytes,
      pauseMs: this.pauseMs,
      suspendMs: this.suspendMs,
      ackMs,
      atMs,
      ...disk,
    });
    this.secondaryDirty = 0;
  }

  /** A deliberate end: a libxc END tells a xenmig backup to discard its replica (no takeover). */
  private async endStream(): Promise<void> {
    if (!this.channel) return;
    // COLO: the stream resumes after a CHECKPOINT_STATE(NEW); END follows it
    if (this.colo && this.checkpoints > 0) {
      await this.out.writeRaw(
        encodeLibxlRecord({ name: 'CHECKPOINT_STATE', controlId: CheckpointState.NEW }),
      );
    }
    await this.out.writeRaw(encodeLibxcRecord({ name: 'END' }));
    // close gracefully: destroying a socket with unread heartbeats in it sends RST, and the
    // backup could lose the END
    await this.channel.close({ timeoutMs: 2000 }).catch(() => undefined);
  }

  /** The guest after a failure: never lost; paused when a replica may take over (onBackupLoss). */
  private async afterFailure(failure: Error): Promise<RemusResult['guest']> {
    const { xen, domid, opts, checkpoints, lastAcked } = this;
    const onLoss = opts.onBackupLoss ?? 'pause';
    let guest: RemusResult['guest'] = 'running';
    // A replica may exist once the backup acknowledged a checkpoint (without ACKs — xl's protocol, a
    // file — once one was written whole). Before that there is nothing that could take over: pausing
    // would only stop the guest, so it keeps running and the error says why.
    const withoutAcks = opts.protocol === 'xl' || this.channel?.kind === 'file';
    const replicaMayExist = opts.blackhole ? false : withoutAcks ? checkpoints > 0 : lastAcked > 0;
    // the guest must not be lost: it is running (saveDomain resumed it) or we pause it here
    try {
      await resumeIfSuspended(xen, domid);
      if (this.reason === 'backup-lost' && onLoss === 'pause' && replicaMayExist) {
        xen.pause(domid);
        guest = 'paused';
      }
    } catch (pe) {
      this.log(`primary: could not ${onLoss} domain ${domid}: ${(pe as Error).message}`);
    }
    if (!replicaMayExist && this.reason === 'backup-lost') this.reason = 'no-replica';
    this.log(
      this.reason === 'no-replica'
        ? `primary: no replica of domain ${domid} was ever established (no checkpoint acknowledged): ${failure.message}; ` +
            `nothing can take over, so the guest keeps running here, unreplicated`
        : `primary: backup lost after checkpoint ${checkpoints} (last acknowledged ${lastAcked}): ${failure.message}; ` +
            (guest === 'paused'
              ? `guest paused here (the backup may take over; resume it by hand if it does not)`
              : 'guest continues here unreplicated'),
    );
    return guest;
  }
}

/**
 * The end of replication: a guest that runs on here lets its held output go (it is the only copy
 * now); a paused guest's held output is dropped (its replica may take over). Then everything set up
 * for buffering is removed.
 */
function closeNetBuffer(b: NetBuffer | null, guest: RemusResult['guest'], log: Logger): void {
  if (!b) return;
  if (guest === 'running') {
    try {
      b.releaseAll();
    } catch (e) {
      log(`primary: releasing the held network output failed: ${(e as Error).message}`);
    }
  }
  b.teardown();
}

function resumeIfSuspended(xen: Hypervisor, domid: number): Promise<void> {
  const info = xen.domainInfo(domid);
  return info.shutdown ? resumeDomain(xen, domid) : Promise.resolve();
}
