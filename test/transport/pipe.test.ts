// Stream pipes get a 1 MiB buffer (F_SETPIPE_SZ through the addon): proven by what a pipe takes
// without a reader, and that the fd channels grow the FIFOs they are given.
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { growPipe, setPipeSizer, STREAM_PIPE_BYTES } from '../../src/transport/pipe.js';
import { writableFromFd } from '../../src/transport/fd.js';
import { addonPipeSizer } from '../../src/xen/loader.js';

/** Bytes a non-blocking write can put into the pipe before EAGAIN (nobody reads). */
function capacity(fd: number): number {
  const chunk = Buffer.alloc(64 * 1024);
  let n = 0;
  for (;;) {
    try {
      const k = writeSync(fd, chunk);
      n += k;
      if (k < chunk.length) return n;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EAGAIN') return n;
      throw e;
    }
  }
}

describe('stream pipes: 1 MiB buffers', () => {
  let dir: string;
  const fds: number[] = [];
  const fifo = () => {
    const p = join(dir, `f${fds.length}`);
    execFileSync('mkfifo', [p]);
    // read-write: a FIFO opened so needs no peer; non-blocking so a full pipe says EAGAIN
    const fd = openSync(p, constants.O_RDWR | constants.O_NONBLOCK);
    fds.push(fd);
    return fd;
  };
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'xenmig-pipe-'));
    // what src/api.ts registers
    setPipeSizer(addonPipeSizer());
  });
  afterEach(() => {
    setPipeSizer(null);
    while (fds.length) closeSync(fds.pop()!);
    rmSync(dir, { recursive: true, force: true });
  });

  it('growPipe gives a FIFO 1 MiB: it then holds 1 MiB without a reader, where a plain one holds 64 KiB', () => {
    const plain = fifo();
    expect(capacity(plain)).toBe(64 * 1024);
    const grown = fifo();
    expect(growPipe(grown)).toBeGreaterThanOrEqual(STREAM_PIPE_BYTES);
    expect(capacity(grown)).toBe(STREAM_PIPE_BYTES);
  });

  it('without a sizer (the transport built alone) pipes keep their size', () => {
    setPipeSizer(null);
    const fd = fifo();
    expect(growPipe(fd)).toBeNull();
    expect(capacity(fd)).toBe(64 * 1024);
  });

  it('a regular file is left alone', () => {
    const f = join(dir, 'file');
    writeFileSync(f, '');
    const fd = openSync(f, 'r+');
    fds.push(fd);
    expect(growPipe(fd)).toBeNull();
  });

  it('writableFromFd grows the FIFO it writes to', () => {
    const fd = fifo();
    const w = writableFromFd(fd, { autoClose: false });
    try {
      expect(capacity(fd)).toBe(STREAM_PIPE_BYTES);
    } finally {
      w.destroy();
    }
  });
});
