// The sending side of a live migration at the toolstack layer (libxl's role in `xl migrate`): the
// guest's requirements checked before the link carries anything, the stream saved into the
// handshake, the handover rename of the stopped source, and its resume or destroy at the end.
import { StreamWriter } from '../stream/index.js';
import type { Hypervisor } from '../xen/types.js';
import { abortError } from '../engine/errors.js';
import type { PrecopyPolicy } from '../engine/policy.js';
import type { SaveCallbacks, SaveProgress, SaveStats } from '../engine/save/types.js';
import {
  senderHandshake,
  type Channel,
  type HandshakeProtocol,
  type SenderResult,
} from '../transport/index.js';
import type { DomainConfig } from './config.js';
import { destroyDomain } from './destroy.js';
import { checkSourceDevices, requiredDeviceCapabilities } from './devices.js';
import { noEmulator, type EmulatorStateProvider } from './emulator.js';
import { MIGRATED_AWAY_SUFFIX, type DomainNames } from './names.js';
import {
  defaultEmulator,
  emulatorRefusal,
  resumeDomain,
  saveDomain,
  sourceConfig,
  suspendDomain,
  zeroCopySafe,
} from './save.js';

export interface SendDomainOptions {
  xen: Hypervisor;
  domid: number;
  channel: Channel;
  live: boolean;
  /** where names live for the handover rename; null leaves names alone */
  names: DomainNames | null;
  protocol?: HandshakeProtocol;
  callbacks?: Partial<SaveCallbacks>;
  precopyPolicy?: PrecopyPolicy;
  signal?: AbortSignal;
  onProgress?: (p: SaveProgress) => void;
  bandwidth?: number;
  emulator?: EmulatorStateProvider;
  config?: DomainConfig;
}

export interface SendDomainResult {
  stats: SaveStats | null;
  handshake: SenderResult;
  /** ms from the suspend to the handshake's end (null when no suspend happened) */
  downtimeMs: number | null;
  timings: { streamEndMs: number | null; receivedMs: number | null; handshakeDoneMs: number | null };
}

/**
 * Migrate domain `domid` over `channel`. Throws (with `handshake` and `sourceRuns` on the error)
 * when the guest was not handed over; the source then runs again.
 */
export async function sendDomain(opts: SendDomainOptions): Promise<SendDomainResult> {
  const { xen, domid } = opts;
  // what the guest needs is known before the link carries anything: refused here, the source is
  // untouched; a xenmig receiver must announce the device kinds it can recreate (READY)
  const config = await sourceConfig(xen, domid, opts.config);
  const emulator = opts.emulator ?? defaultEmulator(xen, domid, config);
  checkSourceDevices(config, {
    emulator: emulator !== noEmulator,
    domid,
    ...(opts.emulator ? {} : { why: emulatorRefusal(xen, domid) }),
  });
  const requiredCapabilities = opts.protocol === 'xl' ? [] : requiredDeviceCapabilities(config);
  return new MigrationSender(opts, config, emulator).run(requiredCapabilities);
}

/** The sender's handshake callbacks and what they measure. */
class MigrationSender {
  private stats: SaveStats | null = null;
  private suspendedAt = 0;
  private streamEndAt = 0;
  private receivedAt = 0;
  /** the source's name before the handover rename, once renamed */
  private renamedFrom: string | null = null;
  /** resumes the source and its device model, once the stream was saved */
  private resumeSaved: (() => Promise<void>) | null = null;
  private streamDone = false;

  constructor(
    private readonly opts: SendDomainOptions,
    private readonly config: DomainConfig,
    private readonly emulator: EmulatorStateProvider,
  ) {}

  async run(requiredCapabilities: string[]): Promise<SendDomainResult> {
    const { opts } = this;
    const { channel, signal } = opts;
    // An abort (e.g. SIGINT) before the stream is complete drops the link: the handshake then fails
    // before CLEARED_TO_UNPAUSE and resumes the source, also when it waits for the peer (READY, a
    // blocked write). After the stream it is left to finish (dropping then could only leave it in doubt).
    const onAbort = () => {
      if (!this.streamDone) channel.destroy(abortError(signal));
    };
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    const handshake = await senderHandshake(
      channel,
      {
        sendStream: (ch, s) => this.sendStream(ch, s),
        prepareHandover: () => this.prepareHandover(),
        resumeSource: () => this.resumeSource(),
        destroySource: () => destroyDomain(opts.xen, opts.domid),
      },
      { ...(opts.protocol ? { protocol: opts.protocol } : {}), requiredCapabilities },
    );
    signal?.removeEventListener('abort', onAbort);
    const resultAt = performance.now();
    const { suspendedAt } = this;
    const downtimeMs = suspendedAt ? resultAt - suspendedAt : null;
    const since = (t: number) => (suspendedAt && t ? t - suspendedAt : null);
    const timings = {
      streamEndMs: since(this.streamEndAt),
      receivedMs: since(this.receivedAt),
      handshakeDoneMs: since(resultAt),
    };
    if (handshake.outcome !== 'handed-over') {
      const e = handshake.error ?? new Error(`migration failed at step ${handshake.step}`);
      Object.assign(e, { handshake, sourceRuns: handshake.sourceRuns });
      throw e;
    }
    return { stats: this.stats, handshake, downtimeMs, timings };
  }

  private async sendStream(ch: Channel, signal: AbortSignal): Promise<void> {
    const { opts } = this;
    const { xen, domid } = opts;
    const s = opts.signal ? AbortSignal.any([opts.signal, signal]) : signal;
    const userSuspend = opts.callbacks?.suspend;
    const r = await saveDomain({
      xen,
      domid,
      out: new StreamWriter(ch.writable),
      zeroCopy: zeroCopySafe(ch.writable),
      live: opts.live,
      callbacks: {
        ...opts.callbacks,
        suspend: async () => {
          this.suspendedAt = performance.now();
          if (userSuspend) await userSuspend();
          else await suspendDomain(xen, domid, 60_000, s);
        },
      },
      ...(opts.precopyPolicy ? { precopyPolicy: opts.precopyPolicy } : {}),
      signal: s,
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      ...(opts.bandwidth ? { bandwidth: opts.bandwidth } : {}),
      emulator: this.emulator,
      config: this.config,
    });
    this.stats = r.stats;
    this.resumeSaved = r.resumeSource;
    this.streamDone = true;
    this.streamEndAt = performance.now();
  }

  /** From here on the receiver may take the name: the source must not hold it (xl does this). */
  private async prepareHandover(): Promise<void> {
    const { names, domid } = this.opts;
    this.receivedAt = performance.now();
    const name = names ? await names.name(domid) : null;
    if (names && name && !name.endsWith(MIGRATED_AWAY_SUFFIX)) {
      await names.rename(domid, name + MIGRATED_AWAY_SUFFIX);
      this.renamedFrom = name;
    }
  }

  /** The receiver discarded its copy: the source gets its name back and runs again. */
  private async resumeSource(): Promise<void> {
    const { names, domid, xen } = this.opts;
    let renameError: unknown = null;
    if (names && this.renamedFrom !== null) {
      try {
        await names.rename(domid, this.renamedFrom);
        this.renamedFrom = null;
      } catch (e) {
        renameError = e;
      }
    }
    // the guest runs again even if it could not get its name back (it keeps "--migratedaway")
    await (this.resumeSaved ?? (() => resumeDomain(xen, domid)))();
    if (renameError) {
      const msg = `domain ${domid} resumed as ${this.renamedFrom}${MIGRATED_AWAY_SUFFIX}: ${(renameError as Error).message}`;
      process.emitWarning(msg, 'XenmigWarning');
    }
  }
}
