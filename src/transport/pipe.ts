// Pipes carrying a migration stream get a 1 MiB buffer instead of Linux's 64 KiB (fcntl
// F_SETPIPE_SZ, through the addon's flat setPipeSize, handed in by setPipeSizer): a 4 MiB batch of
// pages then crosses in 4 writes instead of 64, and sender and receiver switch places 16 times less
// often. On one CPU (a dom0 with one vCPU) every switch costs both processes their warm caches.
// Best effort: an fd that is no pipe, a kernel limit (EPERM beyond /proc/sys/fs/pipe-max-size) or
// no sizer leave the pipe as it is.
import { fstatSync } from 'node:fs';

export const STREAM_PIPE_BYTES = 1 << 20;

/** fcntl(fd, F_SETPIPE_SZ, bytes) -> the capacity afterwards (throws on failure). */
export type PipeSizer = (fd: number, bytes: number) => number;
let sizer: PipeSizer | null = null;

/**
 * The call that resizes pipes: the transport layer has no native code of its own, the library's
 * entry (src/api.ts) hands it the addon's. Without one, pipes keep their size.
 */
export function setPipeSizer(fn: PipeSizer | null): void {
  sizer = fn;
}

/** Grow the pipe behind fd to `bytes` (if it is a pipe and smaller); its capacity afterwards, or null. */
export function growPipe(fd: number, bytes = STREAM_PIPE_BYTES): number | null {
  try {
    if (!fstatSync(fd).isFIFO()) return null;
    return sizer ? sizer(fd, bytes) : null;
  } catch {
    return null;
  }
}
