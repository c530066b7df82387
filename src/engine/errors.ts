// Errors of the save/restore engines. Stream defects stay StreamError (src/stream); hypervisor
// failures stay XenError (src/xen); what the engines themselves decide is a MigrationError.
import { raceAbort } from '../transport/io.js';

export const MigrationErrorCode = {
  /** the domain did not reach the suspended state after the suspend callback */
  ERR_NOT_SUSPENDED: 'ERR_NOT_SUSPENDED',
  /** the precopy policy answered 'abort' */
  ERR_PRECOPY_ABORTED: 'ERR_PRECOPY_ABORTED',
  /** a page that must be sent could not be mapped */
  ERR_MAP_FAILED: 'ERR_MAP_FAILED',
  /** the hypervisor reported an unknown page type */
  ERR_PAGE_TYPE: 'ERR_PAGE_TYPE',
  /** stream and target domain disagree (type, page size, pfn outside the domain, ...) */
  ERR_DOMAIN_MISMATCH: 'ERR_DOMAIN_MISMATCH',
  /** a record the engine cannot apply (unsupported feature, inconsistent content) */
  ERR_UNSUPPORTED: 'ERR_UNSUPPORTED',
  /** the stream ended before a consistent state was reached */
  ERR_INCOMPLETE: 'ERR_INCOMPLETE',
  /** the operation was aborted (AbortSignal / SIGINT) */
  ERR_ABORTED: 'ERR_ABORTED',
  /** a callback failed or answered something unexpected */
  ERR_CALLBACK: 'ERR_CALLBACK',
  /** PV guest memory structures (p2m, page tables) inconsistent */
  ERR_PV_STATE: 'ERR_PV_STATE',
  /** another domain holds the name (a rename, or a domain that cannot take its name) */
  ERR_NAME_IN_USE: 'ERR_NAME_IN_USE',
  /** a device of the guest cannot be carried over (refused before the domain is touched) */
  ERR_UNSUPPORTED_DEVICE: 'ERR_UNSUPPORTED_DEVICE',
  /** setting up a device of the destination failed (the half-built domain is destroyed) */
  ERR_DEVICE: 'ERR_DEVICE',
  /** restore into an existing domain that is not empty or has already run */
  ERR_DOMAIN_NOT_EMPTY: 'ERR_DOMAIN_NOT_EMPTY',
  /** the save file cannot be opened for writing (missing directory, a directory, permissions) */
  ERR_SAVE_FILE: 'ERR_SAVE_FILE',
  /** no domain has that id or name on this host */
  ERR_NO_SUCH_DOMAIN: 'ERR_NO_SUCH_DOMAIN',
  /** more than one domain has that name */
  ERR_AMBIGUOUS_DOMAIN: 'ERR_AMBIGUOUS_DOMAIN',
} as const;
export type MigrationErrorCode = (typeof MigrationErrorCode)[keyof typeof MigrationErrorCode];

export class MigrationError extends Error {
  readonly code: MigrationErrorCode;
  readonly domid: number | undefined;
  readonly pfn: number | undefined;
  constructor(
    code: MigrationErrorCode,
    message: string,
    info: { domid?: number; pfn?: number; cause?: unknown } = {},
  ) {
    super(`${message}${info.domid !== undefined ? ` (domain ${info.domid})` : ''}`, { cause: info.cause });
    this.name = 'MigrationError';
    this.code = code;
    this.domid = info.domid;
    this.pfn = info.pfn;
  }
}

export function abortError(signal: AbortSignal | undefined): MigrationError {
  const r = signal?.reason as { message?: string } | undefined;
  return new MigrationError(MigrationErrorCode.ERR_ABORTED, `aborted${r?.message ? `: ${r.message}` : ''}`);
}

/** `p`, or the engine's abort error (ERR_ABORTED) as soon as `signal` aborts: raceAbort of transport/io. */
export function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  return raceAbort(p, signal, abortError);
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}
