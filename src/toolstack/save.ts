// Toolstack-layer save (libxl's role): the xl header with the domain config, the libxl stream
// around the libxc one (LIBXC_CONTEXT ... emulator records, END), the suspend/resume policy, and the
// guarantee that a guest is never lost: if anything fails after the source was suspended, it is
// resumed before the error is reported.
import { encodeLibxlHeader, encodeLibxlRecord, encodeXlHeader, StreamWriter } from '../stream/index.js';
import type { Writable } from 'node:stream';
import { Socket } from 'node:net';
import { WriteStream } from 'node:fs';
import type { Hypervisor } from '../xen/types.js';
import { abortError, MigrationError, MigrationErrorCode } from '../engine/errors.js';
import { libxcSave, SHUTDOWN_SUSPEND } from '../engine/save/save.js';
import type { SaveCallbacks, SaveStats, StreamType } from '../engine/save/types.js';
import type { PrecopyPolicy } from '../engine/policy.js';
import { configFromDomain, withKind, withName, type DomainConfig } from './config.js';
import { checkSourceDevices } from './devices.js';
import { qemuDeviceModel } from './qmp.js';
import { noEmulator, type EmulatorState, type EmulatorStateProvider } from './emulator.js';
import {
  hasDeviceModel,
  requestSuspend,
  type Xenstore,
  suspendsThroughXenstore,
  xenstoredPath,
  xenstoreResume,
} from './xenstore.js';
import { hostNames } from './names.js';
import { libxlStoredConfig } from './libxl-config.js';

export type SaveFormat = 'xl' | 'libxl' | 'libxc';

export interface DomainSaveOptions {
  xen: Hypervisor;
  domid: number;
  /** where the stream goes: a Writable, an fd, or a StreamWriter already positioned */
  out: Writable | number | StreamWriter;
  /** 'xl' (default: what `xl save` writes and `xl restore` reads), 'libxl' or bare 'libxc' */
  format?: SaveFormat;
  /** domain config for the xl header; default: a minimal one from the domain's info */
  config?: DomainConfig;
  live?: boolean;
  streamType?: StreamType;
  /** replace any libxc-layer callback (suspend, postcopy, checkpoint, ...) */
  callbacks?: Partial<SaveCallbacks>;
  precopyPolicy?: PrecopyPolicy;
  emulator?: EmulatorStateProvider;
  signal?: AbortSignal;
  bandwidth?: number;
  staging?: boolean;
  /** ms to wait for the guest to reach the suspended state (libxl: 60 s) */
  suspendTimeoutMs?: number;
  onProgress?: SaveCallbacks['progress'];
  /** page views go to `out` uncopied (default: when `out` is an fd, a socket or a file stream) */
  zeroCopy?: boolean;
  /** checkpoints, HVM, no ballooning: keep foreign mappings across checkpoints (see libxcSave) */
  persistentMappings?: boolean;
  /** toolstack records after the libxl header, before LIBXC_CONTEXT (Remus: the initial disk copy) */
  beforeLibxc?: (w: StreamWriter) => Promise<void>;
  /** toolstack records of each checkpoint, before its CHECKPOINT_END (Remus: the epoch's disk blocks) */
  checkpointRecords?: (w: StreamWriter) => Promise<void>;
}

/**
 * The device model provider a save uses when the caller gives none: an HVM guest on a real host whose
 * QEMU answers on libxl's QMP socket gets the QMP provider (save and live migration to xl are proven
 * on the rig: steps 10.2 and 10.3); everything else has no device model (PV, PVH, the mock), and an
 * HVM guest without one is refused (emulatorRefusal says why). Checkpointed streams (Remus, COLO) of
 * HVM guests are not proven on real Xen yet: they use QMP only with XENMIG_HVM_QMP=1.
 */
export function defaultEmulator(
  xen: Hypervisor,
  domid: number,
  config: DomainConfig,
  streamType: StreamType = 'plain',
): EmulatorStateProvider {
  if (xen.flavour !== 'system' || config.kind !== 'hvm') return noEmulator;
  if (streamType !== 'plain' && process.env.XENMIG_HVM_QMP !== '1') return noEmulator;
  const dm = qemuDeviceModel();
  return dm.present(domid) ? dm : noEmulator;
}

/** Why an HVM guest has no device model provider (for the refusal), given defaultEmulator's inputs. */
export function emulatorRefusal(xen: Hypervisor, domid: number, streamType: StreamType = 'plain'): string {
  if (xen.flavour !== 'system') return 'this host (the mock) runs no device model';
  if (streamType !== 'plain' && process.env.XENMIG_HVM_QMP !== '1')
    return 'Remus/COLO of an HVM guest with a device model is not yet proven on real Xen (XENMIG_HVM_QMP=1 tries it; xl remus works)';
  return `no device model answers on libxl's QMP socket ${qemuDeviceModel().socketPath(domid)}`;
}

/** Sinks that are done with a chunk once its write completed (the kernel has copied it). */
export function zeroCopySafe(out: Writable | number | StreamWriter): boolean {
  return typeof out === 'number' || out instanceof Socket || out instanceof WriteStream;
}

export interface DomainSaveResult {
  stats: SaveStats;
  config: DomainConfig;
  /** the source is suspended (plain save) — the caller destroys, resumes or hands it over */
  suspended: boolean;
  /** run the source again: the domain, and its device model if the save stopped one */
  resumeSource(): Promise<void>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Default suspend, as libxl without a suspend event channel: xenstore control/shutdown for guests with PV drivers on a real host, else SHUTDOWN_suspend. */
export async function suspendDomain(
  xen: Hypervisor,
  domid: number,
  timeoutMs = 60_000,
  signal?: AbortSignal,
): Promise<void> {
  // real host, guest with PV drivers: ask through xenstore, as libxl does (test/realxen), and wait
  // on its @releaseDomain watch; else a remote SHUTDOWN_suspend, polled
  const xs = suspendsThroughXenstore(xen, domid) ? await requestSuspend(domid) : null;
  if (!xs) xen.shutdown(domid, SHUTDOWN_SUSPEND);
  try {
    await waitSuspended(xen, domid, timeoutMs, signal, xs);
  } finally {
    xs?.close();
  }
}

/**
 * Until the domain reports SHUTDOWN_suspend. With a watch (xs): a check per @releaseDomain event,
 * and every 25 ms in case one is missed (or a xenstored fires none); without: every 5 ms. On one
 * CPU, polling takes time from the guest that is suspending (each check is a hypercall, and every
 * wake-up a pass of the event loop).
 */
async function waitSuspended(
  xen: Hypervisor,
  domid: number,
  timeoutMs: number,
  signal: AbortSignal | undefined,
  xs: Xenstore | null,
): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    const info = xen.domainInfo(domid);
    if (info.shutdown && info.shutdownReason === SHUTDOWN_SUSPEND) return;
    if (info.shutdown)
      throw new MigrationError(
        MigrationErrorCode.ERR_NOT_SUSPENDED,
        `guest shut down with reason ${info.shutdownReason} instead of suspending`,
        { domid },
      );
    if (Date.now() - t0 > timeoutMs)
      throw new MigrationError(
        MigrationErrorCode.ERR_NOT_SUSPENDED,
        `guest did not suspend within ${timeoutMs} ms`,
        { domid },
      );
    if (signal?.aborted) throw abortError(signal);
    if (xs) await xs.nextEvent(25);
    else await sleep(5);
  }
}

/**
 * Resume a suspended source (cooperative resume, as libxl does after a failed migration and after
 * each checkpoint). The guest runs when this returns; the promise settles once xenstored has been
 * told (XS_RESUME, real hosts: without it xenstored keeps the domain marked as shut down and a later
 * suspend by libxl waits for a shutdown it never reports). Never rejects: a failed XS_RESUME is a
 * warning, the guest runs either way.
 */
export function resumeDomain(xen: Hypervisor, domid: number): Promise<void> {
  const info = xen.domainInfo(domid);
  if (!info.shutdown && !info.paused) return Promise.resolve();
  if (info.shutdown) xen.resume(domid, true);
  const after = xen.domainInfo(domid);
  if (after.paused) xen.unpause(domid);
  if (!info.shutdown || xen.flavour !== 'system' || !xenstoredPath()) return Promise.resolve();
  return xenstoreResume(domid).catch((e: unknown) => {
    process.emitWarning(
      `domain ${domid} runs again, but xenstored was not told (XS_RESUME): ${(e as Error).message}`,
      'XenmigWarning',
    );
  });
}

/**
 * The config a save carries: the caller's, else on a real host libxl's stored config, else a minimal
 * one; either under the domain's live name in xenstore (libxl refreshes c_info.name the same way: a
 * stored config can lag behind a rename, e.g. an xl Remus replica's still says "<name>--incoming"
 * after its failover). An HVM domain without a stored config whose device model is registered in
 * xenstore is an "hvm" guest (not PVH), so that it is refused rather than saved without its QEMU.
 */
export async function sourceConfig(
  xen: Hypervisor,
  domid: number,
  given?: DomainConfig,
): Promise<DomainConfig> {
  if (given) return given;
  const info = xen.domainInfo(domid);
  const liveName =
    (await hostNames(xen)
      ?.name(domid)
      .catch(() => null)) ?? null;
  const stored = xen.flavour === 'system' ? libxlStoredConfig(domid, info) : null;
  if (stored) return liveName ? withName(stored, liveName) : stored;
  const config = configFromDomain(info, liveName ?? undefined);
  if (info.type === 'hvm' && xen.flavour === 'system' && (await hasDeviceModel(domid)))
    return withKind(config, 'hvm');
  return config;
}

export function toWriter(out: Writable | number | StreamWriter): StreamWriter {
  return out instanceof StreamWriter ? out : new StreamWriter(out);
}

/** What a save learns as it goes: whether the guest is suspended now, and the device model's state. */
interface SaveProgress {
  suspended: boolean;
  emulatorState: EmulatorState | null;
}

/**
 * Save a domain: xl header, libxl header, LIBXC_CONTEXT, the libxc stream, emulator records, END.
 * On any failure after the guest was suspended, the guest is resumed and the error rethrown (with
 * `guestResumed: true`). On success the guest stays suspended; the caller decides its fate.
 */
export async function saveDomain(opts: DomainSaveOptions): Promise<DomainSaveResult> {
  const { xen, domid } = opts;
  const format = opts.format ?? 'xl';
  const config = await sourceConfig(xen, domid, opts.config);
  const streamType = opts.streamType ?? 'plain';
  const emulator = opts.emulator ?? defaultEmulator(xen, domid, config, streamType);
  // before the first byte: what no destination could restore from this stream
  checkSourceDevices(config, {
    emulator: emulator !== noEmulator,
    domid,
    ...(opts.emulator ? {} : { why: emulatorRefusal(xen, domid, streamType) }),
  });
  const w = toWriter(opts.out);
  const state: SaveProgress = { suspended: false, emulatorState: null };
  /** the device model was stopped by save(): it must run again wherever the guest resumes here */
  const resumeEmulator = async () => {
    if (!state.emulatorState || !emulator.resume) return;
    await emulator.resume(domid);
  };
  const callbacks = saveCallbacks(opts, emulator, w, state, resumeEmulator);
  try {
    await writeLibxlPrefix(w, format, config, opts);
    const stats = await libxcSave({
      xen,
      domid,
      out: w,
      live: opts.live ?? false,
      streamType: opts.streamType ?? 'plain',
      callbacks,
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.bandwidth ? { bandwidth: opts.bandwidth } : {}),
      ...(opts.staging !== undefined ? { staging: opts.staging } : {}),
      ...(opts.persistentMappings ? { persistentMappings: true } : {}),
      zeroCopy: opts.zeroCopy ?? zeroCopySafe(opts.out),
    });
    if (format !== 'libxc' && (opts.streamType ?? 'plain') === 'plain') {
      if (state.emulatorState) await writeEmulatorRecords(w, state.emulatorState);
      await w.writeRaw(encodeLibxlRecord({ name: 'END' }));
    }
    const resumeSource = () => resumeDomain(xen, domid).then(resumeEmulator);
    return { stats, config, suspended: state.suspended, resumeSource };
  } catch (e) {
    if (state.suspended) {
      try {
        await resumeDomain(xen, domid);
        await resumeEmulator();
        Object.assign(e as object, { guestResumed: true });
      } catch (re) {
        Object.assign(e as object, { guestResumed: false, resumeError: re });
      }
    }
    throw e;
  }
}

/** What comes before the libxc stream: the xl header (format xl), the libxl header and LIBXC_CONTEXT. */
async function writeLibxlPrefix(
  w: StreamWriter,
  format: NonNullable<DomainSaveOptions['format']>,
  config: DomainConfig,
  opts: DomainSaveOptions,
): Promise<void> {
  if (format === 'xl') await w.writeRaw(encodeXlHeader({ configText: config.text }));
  if (format === 'libxc') return;
  if (opts.beforeLibxc) {
    await w.writeRaw(encodeLibxlHeader());
    await opts.beforeLibxc(w);
    await w.writeRaw(encodeLibxlRecord({ name: 'LIBXC_CONTEXT' }));
  } else await w.writeRaw(encodeLibxlHeader(), encodeLibxlRecord({ name: 'LIBXC_CONTEXT' }));
}

/**
 * The libxc save's callbacks: the caller's, wrapped so that suspend saves the device model, postcopy
 * resumes it, and each checkpoint writes the libxl records that follow the libxc part.
 */
function saveCallbacks(
  opts: DomainSaveOptions,
  emulator: EmulatorStateProvider,
  w: StreamWriter,
  state: SaveProgress,
  resumeEmulator: () => Promise<void>,
): SaveCallbacks {
  const { xen, domid } = opts;
  const user = opts.callbacks ?? {};
  const callbacks: SaveCallbacks = {
    ...user,
    suspend: async () => {
      if (user.suspend) await user.suspend();
      else await suspendDomain(xen, domid, opts.suspendTimeoutMs, opts.signal);
      state.suspended = true;
      // libxl saves the device model while the guest is suspended
      state.emulatorState = await emulator.save(domid, { live: opts.live ?? false });
    },
    postcopy: async () => {
      if (user.postcopy) await user.postcopy();
      else await resumeDomain(xen, domid);
      state.suspended = false;
      await resumeEmulator();
    },
    checkpoint: async (round) => {
      if (state.emulatorState) await writeEmulatorRecords(w, state.emulatorState);
      await opts.checkpointRecords?.(w);
      await w.writeRaw(encodeLibxlRecord({ name: 'CHECKPOINT_END' }));
      return user.checkpoint ? user.checkpoint(round) : 'stop';
    },
  };
  if (opts.precopyPolicy) callbacks.precopyPolicy = opts.precopyPolicy;
  if (opts.onProgress) callbacks.progress = opts.onProgress;
  if (emulator.switchLogdirty && !user.switchQemuLogdirty)
    callbacks.switchQemuLogdirty = (enable) => emulator.switchLogdirty!(domid, enable);
  return callbacks;
}

async function writeEmulatorRecords(w: StreamWriter, s: EmulatorState): Promise<void> {
  if (s.xenstore && s.xenstore.length)
    await w.writeRaw(
      encodeLibxlRecord({
        name: 'EMULATOR_XENSTORE_DATA',
        emulatorId: s.emulatorId,
        index: s.index,
        entries: s.xenstore,
      }),
    );
  if (s.context)
    await w.writeRaw(
      encodeLibxlRecord({
        name: 'EMULATOR_CONTEXT',
        emulatorId: s.emulatorId,
        index: s.index,
        data: s.context,
      }),
    );
}
