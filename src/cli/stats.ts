// Final statistics in the shape of QEMU's query-migrate reply (status, total-time, downtime,
// setup-time, ram {...}), plus xenmig's own details (per-round list, handshake outcome).
import type { RoundStats, SaveProgress, SaveStats } from '../engine/save/types.js';
import { fmtBytes, fmtRate, Progress } from './util.js';
import { PAGE_SIZE } from '../xen/constants.js';

export interface QueryMigrate {
  status: 'completed' | 'failed' | 'cancelled';
  'total-time': number;
  downtime?: number;
  'setup-time'?: number;
  ram?: {
    transferred: number;
    total: number;
    duplicate: number;
    normal: number;
    'normal-bytes': number;
    remaining: number;
    mbps: number;
    'dirty-sync-count': number;
    'pages-per-second': number;
  };
  'error-desc'?: string;
  xenmig: Record<string, unknown>;
}

/** Times the command measured itself (ms since the command started). */
export class Clock {
  readonly t0 = performance.now();
  firstPageAt: number | null = null;
  now(): number {
    return performance.now() - this.t0;
  }
}

export function queryMigrate(a: {
  clock: Clock;
  stats: SaveStats | null;
  /** guest memory in bytes */
  guestBytes: number;
  downtimeMs: number | null;
  error?: unknown;
  cancelled?: boolean;
  extra?: Record<string, unknown>;
}): QueryMigrate {
  const total = Math.round(a.clock.now());
  const s = a.stats;
  const q: QueryMigrate = {
    status: a.error === undefined ? 'completed' : a.cancelled ? 'cancelled' : 'failed',
    'total-time': total,
    xenmig: { ...(a.extra ?? {}) },
  };
  if (a.downtimeMs !== null) q.downtime = Math.round(a.downtimeMs);
  if (a.clock.firstPageAt !== null) q['setup-time'] = Math.round(a.clock.firstPageAt);
  if (s) {
    const rounds: RoundStats[] = s.rounds;
    const secs = s.totalMs / 1000;
    q.ram = {
      transferred: s.bytes,
      total: a.guestBytes,
      // xenmig does not detect zero pages: every page with contents is sent as data ("normal");
      // page entries without contents (holes, pfns without a frame) are counted apart, in xenmig.holes
      duplicate: 0,
      normal: s.dataPages,
      'normal-bytes': s.dataPages * PAGE_SIZE,
      remaining: 0,
      mbps: secs > 0 ? Math.round(((s.bytes * 8) / secs / 1e6) * 1000) / 1000 : 0,
      'dirty-sync-count': rounds.length,
      'pages-per-second': secs > 0 ? Math.round(s.pages / secs) : 0,
    };
    q.xenmig = {
      ...q.xenmig,
      domid: s.domid,
      'domain-type': s.domainType,
      live: s.live,
      'suspended-ms': Math.round(s.suspendedMs),
      holes: s.pages - s.dataPages,
      rounds: rounds.map((r) => ({
        iteration: r.iteration,
        kind: r.kind,
        pages: r.pages,
        bytes: r.bytes,
        ms: Math.round(r.ms * 10) / 10,
      })),
      ...(s.phases ? { phases: s.phases } : {}),
    };
  }
  if (a.error !== undefined) {
    const e = a.error as { message?: string; code?: string };
    q['error-desc'] =
      `${e.code ? e.code + ': ' : ''}${e.message ?? (typeof a.error === 'string' ? a.error : JSON.stringify(a.error))}`;
  }
  // xenmig's own part last, after QEMU's fields
  const { xenmig, ...rest } = q;
  return { ...rest, xenmig };
}

/** The TTY progress bar for save/migrate. */
export function progressHandler(progress: Progress, clock: Clock): (p: SaveProgress) => void {
  let bytesAtFirst = 0;
  return (p) => {
    if (clock.firstPageAt === null && p.bytes > 0 && (p.phase === 'live' || p.phase === 'final')) {
      clock.firstPageAt = clock.now();
      bytesAtFirst = p.bytes;
    }
    if (!progress.enabled) return;
    // the engine's rate is known after the first round; until then measure it here
    const secs = clock.firstPageAt !== null ? (clock.now() - clock.firstPageAt) / 1000 : 0;
    const rate = p.bytesPerSecond > 0 ? p.bytesPerSecond : secs > 0.05 ? (p.bytes - bytesAtFirst) / secs : 0;
    const round = p.phase === 'live' ? `round ${p.iteration}` : p.phase;
    const dirty =
      p.phase === 'live' || p.phase === 'final' || p.phase === 'checkpoint'
        ? `  dirty ${p.roundPages - p.roundSent}/${p.roundPages} pages`
        : '';
    const dt =
      Number.isFinite(p.expectedDowntimeMs) && p.phase === 'live'
        ? `  exp. downtime ${Math.round(p.expectedDowntimeMs)} ms`
        : '';
    progress.update(`${round}${dirty}  ${fmtBytes(p.bytes)}  ${fmtRate(rate)}${dt}`, p.phase !== 'live');
  };
}

export function summaryLine(q: QueryMigrate): string {
  const parts = [`${q.status} in ${q['total-time']} ms`];
  if (q.ram)
    parts.push(
      `${q.ram['dirty-sync-count']} rounds`,
      `${q.ram.normal} pages`,
      `${fmtBytes(q.ram.transferred)}`,
      `${q.ram.mbps} Mbit/s`,
    );
  if (q.downtime !== undefined) parts.push(`downtime ${q.downtime} ms`);
  return parts.join(', ');
}
