// Exact reads and confirmed writes on Node streams, with timeouts and abort, that never hang on a
// vanished peer: EOF, 'close' and 'error' all reject the pending operation.
//
// readExactly() uses Readable.read(n), which returns either exactly n bytes or null (or, at EOF, the
// short remainder). It therefore never consumes a byte beyond what was asked for: bytes that follow
// (e.g. the migration stream after a control message, or a control message after the stream) stay in
// the Readable for the next consumer. Split chunks are coalesced by Node.

import type { Readable, Writable } from 'node:stream';
import { PeerClosedError, TransportTimeoutError, TransportError, asError } from './errors.js';

export interface WaitOptions {
  /** reject with TransportTimeoutError after this many ms (0 / undefined = no timeout) */
  timeoutMs?: number;
  /** reject with the signal's reason when aborted */
  signal?: AbortSignal;
  /** what we are waiting for, for error messages */
  what?: string;
}

/** Read exactly n bytes (n ≥ 0). Rejects with PeerClosedError on EOF/close before n bytes arrived. */
export function readExactly(r: Readable, n: number, opts: WaitOptions = {}): Promise<Buffer> {
  const what = opts.what ?? `${n} bytes`;
  if (n === 0) return Promise.resolve(Buffer.alloc(0));
  return new Promise<Buffer>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    const cleanup = () => {
      settled = true;
      if (timer) clearTimeout(timer);
      r.off('readable', tryRead);
      r.off('end', onEnd);
      r.off('error', onError);
      r.off('close', onClose);
      opts.signal?.removeEventListener('abort', onAbort);
    };
    const fail = (e: Error) => {
      if (settled) return;
      cleanup();
      reject(e);
    };
    const onEnd = () => fail(new PeerClosedError(what, 'end of stream'));
    const onError = (e: Error) => fail(new PeerClosedError(what, e.message, { cause: e }));
    const onClose = () => {
      // 'close' may come right after the last 'readable'; give a pending read a chance first.
      tryRead();
      const err = (r as Readable & { errored?: Error | null }).errored;
      fail(
        err
          ? new PeerClosedError(what, err.message, { cause: err })
          : new PeerClosedError(what, 'stream closed'),
      );
    };
    const onAbort = () =>
      fail(asError(opts.signal?.reason ?? new TransportError('EABORTED', `aborted waiting for ${what}`)));
    function tryRead() {
      if (settled) return;
      const b = r.read(n) as Buffer | null;
      if (b !== null) {
        if (b.length < n) {
          fail(new PeerClosedError(what, `truncated: got ${b.length} of ${n} bytes`));
        } else {
          cleanup();
          resolve(b);
        }
        return;
      }
      if (r.readableEnded) onEnd();
    }
    if (opts.signal?.aborted) return onAbort();
    const errored = (r as Readable & { errored?: Error | null }).errored;
    if (errored) return onError(errored);
    if (r.destroyed && r.readableLength < n) return onClose();
    r.on('readable', tryRead);
    r.on('end', onEnd);
    r.on('error', onError);
    r.on('close', onClose);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    if (opts.timeoutMs && opts.timeoutMs > 0) {
      const ms = opts.timeoutMs;
      timer = setTimeout(() => fail(new TransportTimeoutError(what, ms)), ms);
    }
    tryRead();
  });
}

/**
 * Write a buffer and resolve once the stream has accepted it (the write callback ran: handed to the
 * kernel for sockets/pipes/files). Rejects on error, on a destroyed stream, or on timeout.
 */
export function writeAll(w: Writable, data: Uint8Array, opts: WaitOptions = {}): Promise<void> {
  const what = opts.what ?? `writing ${data.length} bytes`;
  return new Promise<void>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    const cleanup = () => {
      settled = true;
      if (timer) clearTimeout(timer);
      w.off('error', onError);
      w.off('close', onClose);
      opts.signal?.removeEventListener('abort', onAbort);
    };
    const fail = (e: Error) => {
      if (settled) return;
      cleanup();
      reject(e);
    };
    const onError = (e: Error) => fail(new PeerClosedError(what, e.message, { cause: e }));
    const onClose = () => fail(new PeerClosedError(what, 'stream closed before the write completed'));
    const onAbort = () =>
      fail(asError(opts.signal?.reason ?? new TransportError('EABORTED', `aborted ${what}`)));
    if (opts.signal?.aborted) return onAbort();
    if (w.destroyed || w.writableEnded) return fail(new PeerClosedError(what, 'stream already closed'));
    w.on('error', onError);
    w.on('close', onClose);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    if (opts.timeoutMs && opts.timeoutMs > 0) {
      const ms = opts.timeoutMs;
      timer = setTimeout(() => fail(new TransportTimeoutError(what, ms)), ms);
    }
    w.write(data, (err) => {
      if (err) fail(new PeerClosedError(what, err.message, { cause: err }));
      else if (!settled) {
        cleanup();
        resolve();
      }
    });
  });
}

/** End a writable and wait until it finished (all data flushed) or failed. */
export function endWritable(w: Writable, opts: WaitOptions = {}): Promise<void> {
  const what = opts.what ?? 'closing the stream';
  return new Promise<void>((resolve, reject) => {
    if (w.writableFinished) return resolve();
    if (w.destroyed) return reject(new PeerClosedError(what, 'stream already destroyed'));
    let timer: NodeJS.Timeout | undefined;
    const done = (e?: Error) => {
      if (timer) clearTimeout(timer);
      w.off('finish', onFinish);
      w.off('error', onError);
      w.off('close', onClose);
      if (e) reject(e);
      else resolve();
    };
    const onFinish = () => done();
    const onError = (e: Error) => done(new PeerClosedError(what, e.message, { cause: e }));
    const onClose = () =>
      w.writableFinished ? done() : done(new PeerClosedError(what, 'closed before finishing'));
    w.on('finish', onFinish);
    w.on('error', onError);
    w.on('close', onClose);
    if (opts.timeoutMs && opts.timeoutMs > 0) {
      const ms = opts.timeoutMs;
      timer = setTimeout(() => done(new TransportTimeoutError(what, ms)), ms);
    }
    if (!w.writableEnded) w.end();
  });
}

/**
 * `p`, or a rejection with `reason(signal)` as soon as `signal` aborts (a wait on a stalled peer or
 * input must not keep an interrupted operation alive). The default reason is the signal's own, as an
 * Error. An abandoned `p` may still settle later: its rejection is swallowed here.
 */
export function raceAbort<T>(
  p: Promise<T>,
  signal: AbortSignal | undefined,
  reason: (signal: AbortSignal) => unknown = (s) => asError(s.reason),
): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) {
    p.catch(() => undefined);
    return Promise.reject(reason(signal));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      p.catch(() => undefined);
      reject(reason(signal));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
