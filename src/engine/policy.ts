// Precopy policy: when to stop the live rounds and suspend the guest.
// libxc's default (xg_sr_save.c): stop-and-copy when fewer than 50 pages are dirty or after 5
// iterations. xenmig adds what xl lacks: a downtime target (the final round must fit in it,
// estimated from the measured send rate) and a bandwidth cap (enforced by the sender's pacing).
import { PAGE_SIZE } from '../xen/constants.js';

export type PrecopyDecision = 'continue' | 'stop-and-copy' | 'abort';

export interface PrecopyStats {
  /** live round just finished (0 before the first full pass) */
  iteration: number;
  /** pages written so far in the live phase */
  totalWritten: number;
  /** pages dirty now, or -1 when not yet known (checked after the round, before CLEAN) */
  dirtyCount: number;
  /** measured send rate so far, bytes per second (0 when unknown) */
  bytesPerSecond: number;
  /** elapsed time in the live phase, ms */
  elapsedMs: number;
}

export type PrecopyPolicy = (s: PrecopyStats) => PrecopyDecision;

export const SPP_TARGET_DIRTY_COUNT = 50;
export const SPP_MAX_ITERATIONS = 5;

export interface PolicyOptions {
  /** stop when fewer than this many pages are dirty (libxc: 50) */
  targetDirtyCount?: number;
  /** maximum live iterations (libxc: 5) */
  maxIterations?: number;
  /** expected downtime target: stop once the dirty set can be sent within it */
  downtimeMs?: number;
  /** abort (rather than stop-and-copy) when the downtime target is still unmet after maxIterations */
  abortOnMissedDowntime?: boolean;
}

/** Estimated time to send `pages` 4 KiB pages (plus their pfn words) at the measured rate. */
export function expectedDowntimeMs(pages: number, bytesPerSecond: number): number {
  if (pages <= 0) return 0;
  if (!(bytesPerSecond > 0)) return Infinity;
  return ((pages * (PAGE_SIZE + 8)) / bytesPerSecond) * 1000;
}

export function makePrecopyPolicy(opts: PolicyOptions = {}): PrecopyPolicy {
  const target = opts.targetDirtyCount ?? SPP_TARGET_DIRTY_COUNT;
  const maxIt = opts.maxIterations ?? SPP_MAX_ITERATIONS;
  const downtime = opts.downtimeMs;
  return (s) => {
    if (s.dirtyCount >= 0 && s.dirtyCount < target) return 'stop-and-copy';
    if (
      downtime !== undefined &&
      s.dirtyCount >= 0 &&
      expectedDowntimeMs(s.dirtyCount, s.bytesPerSecond) <= downtime
    ) {
      return 'stop-and-copy';
    }
    if (s.iteration >= maxIt) {
      if (
        downtime !== undefined &&
        opts.abortOnMissedDowntime &&
        s.dirtyCount >= 0 &&
        expectedDowntimeMs(s.dirtyCount, s.bytesPerSecond) > downtime
      ) {
        return 'abort';
      }
      return 'stop-and-copy';
    }
    return 'continue';
  };
}

/** libxc's built-in policy, exactly. */
export const defaultPrecopyPolicy: PrecopyPolicy = makePrecopyPolicy();

/**
 * Token-bucket pacing for a bandwidth cap. `await pacer.take(bytes)` sleeps as needed so that the
 * long-run rate stays at or below bytesPerSecond (bursts of up to one batch are allowed).
 */
export class Pacer {
  private start = performance.now();
  private sent = 0;
  constructor(private readonly bytesPerSecond: number | undefined) {}

  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    this.sent += bytes;
    const bps = this.bytesPerSecond;
    if (!bps || bps <= 0) return;
    const dueMs = (this.sent / bps) * 1000;
    const waitMs = dueMs - (performance.now() - this.start);
    if (waitMs > 1) {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        }, waitMs);
        const onAbort = () => {
          clearTimeout(t);
          reject(signal!.reason);
        };
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    }
  }
}
