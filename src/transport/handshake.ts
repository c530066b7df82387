// The migration handshake state machines, for both roles and both wires (xenmig control messages, or
// xl's fixed strings). The engine plugs in the domain actions as callbacks.
//
// Safety rule (as xl's): the receiver runs the guest only after it has read CLEARED_TO_UNPAUSE; the
// sender sends CLEARED_TO_UNPAUSE only after its source is stopped and renamed away, and from that
// moment on it resumes the source only on positive proof that the receiver does not run the guest:
// RESULT ≠ 0 followed by the receiver's own CLEARED_TO_UNPAUSE (sent after it destroyed its copy).
//
// Outcomes by failure point (S = sender, R = receiver; "runs" = where the guest runs at the end).
// Each row is a test in test/transport/handshake.test.ts, for both wires (xl: banner / "ready to
// unpause" / GO / report+byte / GO back stand for READY / RECEIVED / CLEARED / RESULT / CLEARED back;
// xl has no DONE and no ERROR — there the peer learns of an abort by EOF):
//
//  failure point                                      S outcome     R outcome       runs
//  ────────────────────────────────────────────────── ───────────── ─────────────── ───────────
//  link lost before READY; garbage/other version/     not-started   discarded       source
//    missing capability/timeout instead of READY
//  link lost after READY, during the stream, around   resumed       discarded       source
//    DONE or RECEIVED; sender's sendStream fails
//  receiver's receiveStream fails (ERROR → S aborts   resumed       discarded       source
//    its stream at once)
//  no RECEIVED in time                                resumed       discarded       source
//  sender's prepareHandover (rename) fails            resumed       discarded       source
//  R not cleared (EOF/garbage/timeout): RESULT≠0,     resumed       discarded       source
//    discard, CLEARED back (if R's RESULT≠0 is
//    already there when S is about to clear, S
//    resumes without clearing)
//  R's unpause fails (≠0 or throws): RESULT≠0,        resumed       discarded       source
//    discard, CLEARED back
//  success                                            handed-over   running         destination
//  link lost after CLEARED reached R, or before/      in-doubt      running         destination
//    instead of RESULT (incl. RESULT timeout)
//  link lost after CLEARED left S, before R got it    in-doubt      discarded       NONE (*)
//  R's unpause fails and the link is lost before      in-doubt      discarded       NONE (*)
//    CLEARED comes back
//  R's unpause fails and its discard fails too        in-doubt      discard-failed  NONE (*)
//  resumeSource itself fails                          resume-failed discarded       NONE
//
// (*) The unavoidable window (the two generals problem; xl calls it "failed_badly" and prints that
// the domain state is undefined): a sender that has sent CLEARED_TO_UNPAUSE and then loses the link
// cannot know whether the receiver got it. It never resumes then: at most one copy runs, never two;
// the source stays stopped and renamed ("in-doubt", onInDoubt is called) for an operator or a
// higher layer to resolve. Every other failure of the link or of one step ends with exactly one
// copy running.
//
// The channel is closed by the handshake: gracefully on success, destroyed (so the peer sees EOF at
// once instead of waiting for a timeout) on failure.

import type { Channel } from './channel.js';
import { ControlConnection, CONTROL_PROTOCOL_VERSION, UnexpectedMessageError } from './control.js';
import {
  PeerReportedError,
  ProtocolError,
  TransportError,
  TransportTimeoutError,
  asError,
} from './errors.js';
import { raceAbort, type WaitOptions } from './io.js';
import type { HandshakeWire, PeerInfo } from './wire.js';
import { xlWire } from './xl.js';

export type HandshakeProtocol = 'xenmig' | 'xl';

export interface HandshakeTimeouts {
  /** sender: wait for READY / the xl banner (default 60 s) */
  ready: number;
  /** sender: wait for RECEIVED after the stream was written (default 300 s) */
  received: number;
  /** receiver: wait for DONE after the stream was read (default 60 s) */
  done: number;
  /** receiver: wait for CLEARED_TO_UNPAUSE after RECEIVED (default 120 s) */
  cleared: number;
  /** sender: wait for RESULT after CLEARED_TO_UNPAUSE (default 120 s) */
  result: number;
  /** sender: wait for the receiver's CLEARED_TO_UNPAUSE after RESULT ≠ 0 (default 120 s) */
  clearedBack: number;
  /** bound on each best-effort send on a failure path (default 2 s) */
  bestEffort: number;
}

export const DEFAULT_HANDSHAKE_TIMEOUTS: HandshakeTimeouts = {
  ready: 60_000,
  received: 300_000,
  done: 60_000,
  cleared: 120_000,
  result: 120_000,
  clearedBack: 120_000,
  bestEffort: 2_000,
};

export interface HandshakeOptions {
  protocol?: HandshakeProtocol;
  timeouts?: Partial<HandshakeTimeouts>;
  /** xenmig: our version string in READY (receiver) */
  version?: string;
  /** xenmig: capabilities we announce in READY (receiver) */
  capabilities?: string[];
  /** xenmig: capabilities the receiver must announce (sender); missing → abort before the stream */
  requiredCapabilities?: string[];
}

// ------------------------------------------------------------------------------------------------
// xenmig wire

export function xenmigWire(
  ch: Channel,
  opts: Pick<HandshakeOptions, 'version' | 'capabilities'> = {},
): HandshakeWire {
  const conn = new ControlConnection(ch.readable, ch.writable);
  return {
    name: 'xenmig',
    sendReady: (o) =>
      conn.send(
        {
          type: 'READY',
          protocol: CONTROL_PROTOCOL_VERSION,
          version: opts.version ?? '0',
          capabilities: opts.capabilities ?? [],
        },
        o,
      ),
    async awaitReady(o): Promise<PeerInfo> {
      const m = await conn.expect('READY', o);
      if (m.protocol !== CONTROL_PROTOCOL_VERSION) {
        throw new ProtocolError(
          'EPROTONOSUPPORT',
          `receiver speaks control protocol ${m.protocol}, we speak ${CONTROL_PROTOCOL_VERSION}`,
        );
      }
      return { protocol: 'xenmig', version: m.version, capabilities: m.capabilities };
    },
    sendDone: (o) => conn.send({ type: 'DONE' }, o),
    awaitDone: async (o) => void (await conn.expect('DONE', o)),
    sendReceived: (o) => conn.send({ type: 'RECEIVED' }, o),
    awaitReceived: async (o) => void (await conn.expect('RECEIVED', o)),
    sendCleared: (o) => conn.send({ type: 'CLEARED_TO_UNPAUSE' }, o),
    awaitCleared: async (o) => void (await conn.expect('CLEARED_TO_UNPAUSE', o)),
    sendResult: (status, o) => conn.send({ type: 'RESULT', status }, o),
    awaitResult: async (o) => (await conn.expect('RESULT', o)).status,
    sendError: (code, message, o) => conn.send({ type: 'ERROR', code, message: message.slice(0, 4000) }, o),
  };
}

function makeWire(ch: Channel, opts: HandshakeOptions): HandshakeWire {
  return (opts.protocol ?? 'xenmig') === 'xl' ? xlWire(ch) : xenmigWire(ch, opts);
}

// ------------------------------------------------------------------------------------------------
// sender

export interface SenderCallbacks {
  /**
   * Write the whole migration stream on channel.writable (or channel.writeFd). The engine suspends
   * the guest in here. `signal` aborts when the receiver reports an error or goes away mid-stream.
   */
  sendStream(channel: Channel, signal: AbortSignal): Promise<void>;
  /**
   * The receiver has the domain (RECEIVED). The source is stopped; make sure it cannot be run under
   * its name any more (xl renames it to "<name>--migratedaway"). Throwing aborts the migration: the
   * source is resumed. xl calls this point "onCleared": right before CLEARED_TO_UNPAUSE is sent.
   */
  prepareHandover(): Promise<void>;
  /**
   * Before the handover (or after a proven failure at the receiver): make the source run again (undo
   * the rename if done, resume if suspended). Must be idempotent: it is called whenever sendStream
   * was started, also if the guest was never suspended.
   */
  resumeSource(reason: Error): Promise<void>;
  /** RESULT = 0: the guest runs on the receiver; destroy the source. */
  destroySource(): Promise<void>;
  /** The link broke after CLEARED_TO_UNPAUSE was sent: the source stays stopped and renamed. */
  onInDoubt?(reason: Error): Promise<void> | void;
}

export type SenderStep =
  'ready' | 'stream' | 'done' | 'received' | 'prepare' | 'clear' | 'result' | 'cleared-back' | 'finished';
export type SenderOutcome = 'not-started' | 'handed-over' | 'resumed' | 'resume-failed' | 'in-doubt';

export interface SenderResult {
  outcome: SenderOutcome;
  /** whether the guest runs on the source at the end, as far as the sender knows */
  sourceRuns: boolean;
  /** the step that failed, or 'finished' */
  step: SenderStep;
  /** the failure (also set on 'handed-over' if destroying the source failed) */
  error?: Error;
  /** RESULT status from the receiver, when one was read */
  status?: number;
  peer?: PeerInfo;
}

export async function senderHandshake(
  channel: Channel,
  cb: SenderCallbacks,
  opts: HandshakeOptions = {},
): Promise<SenderResult> {
  let wire: HandshakeWire;
  try {
    wire = makeWire(channel, opts);
  } catch (e) {
    channel.destroy(asError(e));
    return { outcome: 'not-started', sourceRuns: true, step: 'ready', error: asError(e) };
  }
  const s = new SenderSteps(channel, cb, opts, wire);
  // each step answers null to go on, or the result it ended the handshake with
  return (
    (await s.ready()) ??
    (await s.stream()) ??
    (await s.confirm()) ??
    (await s.clear()) ??
    (await s.conclude())
  );
}

/** The sender's side of the handshake, step by step (SenderStep names where it failed). */
class SenderSteps {
  private readonly t: HandshakeTimeouts;
  private step: SenderStep = 'ready';
  private peer: PeerInfo | undefined;
  private streamStarted = false;
  private received!: Promise<Settled<void>>;
  private result!: Promise<Settled<number>>;

  constructor(
    private readonly channel: Channel,
    private readonly cb: SenderCallbacks,
    private readonly opts: HandshakeOptions,
    private readonly wire: HandshakeWire,
  ) {
    this.t = { ...DEFAULT_HANDSHAKE_TIMEOUTS, ...opts.timeouts };
  }

  /** Failure before CLEARED_TO_UNPAUSE left: the receiver cannot run the guest; resume the source. */
  private async abortBeforeHandover(e: unknown): Promise<SenderResult> {
    const { step, peer, t } = this;
    const err = asError(e);
    await bestEffort(
      this.wire.sendError(codeOf(err), err.message, { timeoutMs: t.bestEffort }),
      t.bestEffort,
    );
    this.channel.destroy(err);
    if (!this.streamStarted) return { outcome: 'not-started', sourceRuns: true, step, error: err, peer };
    try {
      await this.cb.resumeSource(err);
      return { outcome: 'resumed', sourceRuns: true, step, error: err, peer };
    } catch (e2) {
      const error = new AggregateError(
        [err, asError(e2)],
        `resuming the source failed after: ${err.message}`,
      );
      return { outcome: 'resume-failed', sourceRuns: false, step, error, peer };
    }
  }

  /** Failure after CLEARED_TO_UNPAUSE may have reached the receiver: never resume. */
  private async inDoubt(e: unknown, status?: number): Promise<SenderResult> {
    const err = asError(e);
    this.channel.destroy(err);
    try {
      await this.cb.onInDoubt?.(err);
    } catch {
      /* reporting only */
    }
    return { outcome: 'in-doubt', sourceRuns: false, step: this.step, error: err, peer: this.peer, status };
  }

  /** READY, with every capability the guest needs. */
  async ready(): Promise<SenderResult | null> {
    try {
      const peer = (this.peer = await this.wire.awaitReady({ timeoutMs: this.t.ready }));
      const missing = (this.opts.requiredCapabilities ?? []).filter((c) => !peer.capabilities.includes(c));
      if (missing.length)
        throw new ProtocolError('ENOTSUP', `receiver lacks capabilities: ${missing.join(', ')}`);
      return null;
    } catch (e) {
      return this.abortBeforeHandover(e);
    }
  }

  /** The stream, while the reverse direction is watched for the receiver giving up. */
  async stream(): Promise<SenderResult | null> {
    // Watch the reverse direction while the stream is written: the next thing the receiver sends is
    // RECEIVED (after the stream) — or ERROR/EOF if it gives up, which must abort the stream at once.
    this.step = 'stream';
    const abort = new AbortController();
    const received = (this.received = settle(this.wire.awaitReceived({ signal: abort.signal })));
    void received.then((r) => {
      if (!r.ok && !abort.signal.aborted) abort.abort(r.error);
    });
    this.streamStarted = true;
    try {
      const sending = this.cb.sendStream(this.channel, abort.signal);
      sending.catch(() => undefined); // settled below or abandoned after an abort
      await raceAbort(sending, abort.signal);
      return null;
    } catch (e) {
      // prefer the receiver's reason (ERROR message) over our EPIPE
      const r = await Promise.race([received, delay(50).then(() => undefined)]);
      return this.abortBeforeHandover(r && !r.ok && r.error instanceof PeerReportedError ? r.error : e);
    }
  }

  /** DONE, the receiver's RECEIVED (it holds the whole state), then the toolstack's handover preparation. */
  async confirm(): Promise<SenderResult | null> {
    this.step = 'done';
    try {
      await this.wire.sendDone({ timeoutMs: this.t.done });
      this.step = 'received';
      const r = await withTimeout(this.received, this.t.received, 'RECEIVED');
      if (!r.ok) throw r.error;
      this.step = 'prepare';
      await this.cb.prepareHandover();
      return null;
    } catch (e) {
      return this.abortBeforeHandover(e);
    }
  }

  /** CLEARED_TO_UNPAUSE, unless the receiver already gave up (then the source may still resume). */
  async clear(): Promise<SenderResult | null> {
    const { channel, t } = this;
    this.step = 'clear';
    // Start reading the reply now: if the receiver is already gone (EOF/reset or an ERROR already
    // queued on the reverse direction), we learn it before CLEARED_TO_UNPAUSE leaves and can still
    // resume safely. The receiver never ends its direction before RESULT, so an early end is a failure.
    const result = (this.result = settle(this.wire.awaitResult({ timeoutMs: t.result })));
    const tick = new Promise<undefined>((res) => setImmediate(() => setImmediate(() => res(undefined))));
    const early = await Promise.race([result, tick]);
    if (early && !early.ok) return this.abortBeforeHandover(early.error);
    if (early?.ok) {
      // The receiver gave up before we cleared it (e.g. its CLEARED timeout fired): RESULT ≠ 0 says its
      // copy does not run, and without our CLEARED it may not run it — resume. RESULT = 0 here is a
      // peer that started the guest without permission: never resume then.
      if (early.value !== 0) {
        return this.abortBeforeHandover(
          new TransportError('EREMOTEFAIL', `receiver gave up before it was cleared (status ${early.value})`),
        );
      }
      return this.inDoubt(
        new ProtocolError('EUNEXPECTED', 'receiver reported a running guest before it was cleared'),
        early.value,
      );
    }
    if (!channel.isOpen || channel.writable.destroyed) {
      return this.abortBeforeHandover(
        channel.error ?? new TransportError('EPEERCLOSED', 'channel closed before CLEARED_TO_UNPAUSE'),
      );
    }
    try {
      await this.wire.sendCleared({ timeoutMs: t.result });
      return null;
    } catch (e) {
      return this.inDoubt(e); // some bytes may have left
    }
  }

  /** RESULT: 0 = the guest runs there, the source is destroyed; else, once cleared back, it resumes. */
  async conclude(): Promise<SenderResult> {
    const { channel, peer } = this;
    this.step = 'result';
    const r = await this.result;
    if (!r.ok) return this.inDoubt(r.error);
    const status = r.value;
    if (status === 0) {
      this.step = 'finished';
      await channel.close().catch(() => undefined);
      try {
        await this.cb.destroySource();
        return { outcome: 'handed-over', sourceRuns: false, step: 'finished', status, peer };
      } catch (e) {
        return {
          outcome: 'handed-over',
          sourceRuns: false,
          step: 'finished',
          status,
          peer,
          error: asError(e),
        };
      }
    }
    this.step = 'cleared-back';
    try {
      await this.wire.awaitCleared({ timeoutMs: this.t.clearedBack });
    } catch (e) {
      return this.inDoubt(e, status);
    }
    const err = new TransportError('EREMOTEFAIL', `receiver failed to start the guest (status ${status})`);
    await channel.close().catch(() => undefined);
    try {
      await this.cb.resumeSource(err);
      return { outcome: 'resumed', sourceRuns: true, step: 'finished', status, error: err, peer };
    } catch (e2) {
      const error = new AggregateError([err, asError(e2)], 'resuming the source failed');
      return { outcome: 'resume-failed', sourceRuns: false, step: 'finished', status, error, peer };
    }
  }
}

// ------------------------------------------------------------------------------------------------
// receiver

export interface ReceiverCallbacks {
  /**
   * Read the migration stream from channel.readable (or channel.readFd) and build the domain,
   * paused. Must not consume bytes past the end of the stream (the handshake continues on the same
   * direction); io.readExactly / Readable.read(n) / unshift make that easy.
   */
  receiveStream(channel: Channel): Promise<void>;
  /**
   * Cleared: rename the new domain to its real name and unpause it; return 0 when it runs, else a
   * non-zero status (xl convention: a negative libxl error code). Non-zero or a throw means the copy
   * does not run; it is then discarded and the sender is granted permission to resume.
   */
  unpause(): Promise<number>;
  /** Destroy the received (paused) copy. Called whenever receiveStream was started and we won't run. */
  discard(reason: Error): Promise<void>;
}

export type ReceiverStep =
  'ready' | 'stream' | 'done' | 'received' | 'cleared' | 'unpause' | 'result' | 'finished';
export type ReceiverOutcome = 'running' | 'discarded' | 'discard-failed';

export interface ReceiverResult {
  outcome: ReceiverOutcome;
  guestRuns: boolean;
  step: ReceiverStep;
  error?: Error;
  /** the unpause status reported (RESULT) */
  status?: number;
}

// RESULT status values follow xl's rc convention: 0 = running; libxl error codes are negative.
/** Status reported when the receiver was not cleared to unpause (xl's rc 1: byte 0xff on xl's wire). */
export const STATUS_NOT_CLEARED = 1;
/** Status reported when unpause threw without a numeric status (libxl ERROR_FAIL). */
export const STATUS_UNPAUSE_FAILED = -3;

export async function receiverHandshake(
  channel: Channel,
  cb: ReceiverCallbacks,
  opts: HandshakeOptions = {},
): Promise<ReceiverResult> {
  let wire: HandshakeWire;
  try {
    wire = makeWire(channel, opts);
  } catch (e) {
    channel.destroy(asError(e));
    return { outcome: 'discarded', guestRuns: false, step: 'ready', error: asError(e) };
  }
  const r = new ReceiverSteps(channel, cb, opts, wire);
  // each step answers null to go on, or the result it ended the handshake with
  return (await r.receive()) ?? (await r.awaitCleared()) ?? (await r.unpause());
}

/** The receiver's side of the handshake, step by step (ReceiverStep names where it failed). */
class ReceiverSteps {
  private readonly t: HandshakeTimeouts;
  private step: ReceiverStep = 'ready';
  private started = false;

  constructor(
    private readonly channel: Channel,
    private readonly cb: ReceiverCallbacks,
    opts: HandshakeOptions,
    private readonly wire: HandshakeWire,
  ) {
    this.t = { ...DEFAULT_HANDSHAKE_TIMEOUTS, ...opts.timeouts };
  }

  private async discardWith(err: Error, extra: Partial<ReceiverResult> = {}): Promise<ReceiverResult> {
    const { step } = this;
    if (!this.started) return { outcome: 'discarded', guestRuns: false, step, error: err, ...extra };
    try {
      await this.cb.discard(err);
      return { outcome: 'discarded', guestRuns: false, step, error: err, ...extra };
    } catch (e2) {
      const error = new AggregateError(
        [err, asError(e2)],
        `discarding the received copy failed after: ${err.message}`,
      );
      return { outcome: 'discard-failed', guestRuns: false, step, error, ...extra };
    }
  }

  // Failure before we were cleared: tell the sender (best effort), drop the link so a sender blocked
  // in a write fails at once, discard our copy. The sender has not sent CLEARED, or will get our
  // RESULT ≠ 0 + CLEARED (see notCleared) — it resumes.
  private async fail(e: unknown): Promise<ReceiverResult> {
    const err = asError(e);
    const { t } = this;
    await bestEffort(
      this.wire.sendError(codeOf(err), err.message, { timeoutMs: t.bestEffort }),
      t.bestEffort,
    );
    this.channel.destroy(err);
    return this.discardWith(err);
  }

  /** A failure status (RESULT ≠ 0): our copy is discarded, then the sender may resume (CLEARED back). */
  private async reportFailure(err: Error, status: number): Promise<ReceiverResult> {
    const { t, channel } = this;
    await bestEffort(this.wire.sendResult(status, { timeoutMs: t.bestEffort }), t.bestEffort);
    const r = await this.discardWith(err, { status });
    if (r.outcome === 'discarded') {
      await bestEffort(this.wire.sendCleared({ timeoutMs: t.bestEffort }), t.bestEffort);
      // close gracefully: a reset could drop the RESULT/CLEARED bytes still in flight
      await channel.close({ timeoutMs: t.bestEffort }).catch(() => undefined);
    } else {
      channel.destroy(err); // no permission to resume: the sender ends in-doubt, nobody runs
    }
    return r;
  }

  /** READY, the stream, DONE, RECEIVED. */
  async receive(): Promise<ReceiverResult | null> {
    try {
      await this.wire.sendReady();
      this.step = 'stream';
      this.started = true;
      await this.cb.receiveStream(this.channel);
      this.step = 'done';
      await this.wire.awaitDone({ timeoutMs: this.t.done });
      this.step = 'received';
      await this.wire.sendReceived();
      return null;
    } catch (e) {
      return this.fail(e);
    }
  }

  /** CLEARED_TO_UNPAUSE; without it, as xl: failure reported, our copy destroyed, the sender may resume. */
  async awaitCleared(): Promise<ReceiverResult | null> {
    this.step = 'cleared';
    try {
      await this.wire.awaitCleared({ timeoutMs: this.t.cleared });
      return null;
    } catch (e) {
      return this.reportFailure(asError(e), STATUS_NOT_CLEARED);
    }
  }

  /** Unpause, and report it: RESULT 0 (we run) or the failure status. */
  async unpause(): Promise<ReceiverResult> {
    this.step = 'unpause';
    let status: number;
    let unpauseError: Error | undefined;
    try {
      status = await this.cb.unpause();
      if (!Number.isInteger(status)) throw new TypeError(`unpause returned ${String(status)}`);
    } catch (e) {
      unpauseError = asError(e);
      status = STATUS_UNPAUSE_FAILED;
    }
    this.step = 'result';
    if (status !== 0)
      return this.reportFailure(
        unpauseError ?? new TransportError('EUNPAUSE', `unpause failed with status ${status}`),
        status,
      );
    // We run. Whether or not the sender hears it, it will not resume (it sent CLEARED).
    let err: Error | undefined;
    try {
      await this.wire.sendResult(0, { timeoutMs: this.t.result });
      await this.channel.close();
    } catch (e) {
      err = asError(e);
      this.channel.destroy(err);
    }
    return { outcome: 'running', guestRuns: true, step: 'finished', status: 0, error: err };
  }
}

// ------------------------------------------------------------------------------------------------
// helpers

type Settled<T> = { ok: true; value: T } | { ok: false; error: Error };

function settle<T>(p: Promise<T>): Promise<Settled<T>> {
  return p.then(
    (value) => ({ ok: true as const, value }),
    (e: unknown) => ({ ok: false as const, error: asError(e) }),
  );
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

async function bestEffort(p: Promise<unknown>, ms: number): Promise<void> {
  p.catch(() => undefined);
  await Promise.race([p.catch(() => undefined), delay(ms)]);
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  if (!ms || ms <= 0) return p;
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new TransportTimeoutError(what, ms)), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

function codeOf(e: Error): string {
  const c = (e as { code?: unknown }).code;
  return typeof c === 'string' ? c : e instanceof UnexpectedMessageError ? 'EUNEXPECTED' : 'EFAIL';
}

export type { WaitOptions };
