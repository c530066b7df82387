// Channels over file descriptors: a file, any fd pair, and stdin/stdout.
//
// Streams are created lazily (see channel.ts): pipes and sockets get a net.Socket (libuv, non-blocking,
// no thread-pool reads that could block forever on a quiet pipe); regular files and block devices get
// fs streams. A terminal is refused: it is never a migration channel.

import { closeSync, createReadStream, createWriteStream, fstatSync, openSync } from 'node:fs';
import { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { isatty } from 'node:tty';
import { Channel, emptyReadable, refusingWritable, type ChannelKind, type ChannelRole } from './channel.js';
import { TransportConfigError } from './errors.js';
import { growPipe } from './pipe.js';

type FdKind = 'stream' | 'file';

function classify(fd: number): FdKind {
  const st = fstatSync(fd);
  if (st.isFIFO() || st.isSocket()) return 'stream';
  // /dev/null and friends behave like files; a tty would need a tty.ReadStream and is a mistake here
  if (st.isCharacterDevice() && isatty(fd)) {
    throw new TransportConfigError(`fd ${fd} is a terminal; refusing to use it as a migration channel`);
  }
  return 'file';
}

export interface FdStreamOptions {
  /** close the fd when the stream is destroyed (default true) */
  autoClose?: boolean;
  /** read/write chunk size for files (default 1 MiB) */
  highWaterMark?: number;
}

/** A Readable over fd (net.Socket for pipes/sockets, fs.ReadStream for files). */
export function readableFromFd(fd: number, opts: FdStreamOptions = {}): Readable {
  const autoClose = opts.autoClose ?? true;
  if (classify(fd) === 'stream') {
    growPipe(fd);
    const s = new Socket({ fd, readable: true, writable: false, allowHalfOpen: true });
    if (!autoClose) preventClose(s);
    return s;
  }
  return createReadStream('', { fd, autoClose, highWaterMark: opts.highWaterMark ?? 1 << 20 });
}

/** A Writable over fd (net.Socket for pipes/sockets, fs.WriteStream for files). */
export function writableFromFd(fd: number, opts: FdStreamOptions = {}): Writable {
  const autoClose = opts.autoClose ?? true;
  if (classify(fd) === 'stream') {
    growPipe(fd);
    const s = new Socket({ fd, readable: false, writable: true, allowHalfOpen: true });
    if (!autoClose) preventClose(s);
    return s;
  }
  return createWriteStream('', { fd, autoClose, highWaterMark: opts.highWaterMark ?? 1 << 20 });
}

function preventClose(s: Socket): void {
  // Like process.stdout for pipes: destroying the stream does not close the fd; it only stops reading
  // and lets the process exit.
  (s as unknown as { _destroy: (e: Error | null, cb: (e: Error | null) => void) => void })._destroy = (
    e,
    cb,
  ) => {
    const h = (s as unknown as { _handle?: { readStop?: () => void } })._handle;
    h?.readStop?.();
    s.unref();
    cb(e);
  };
}

export interface FdChannelOptions {
  role: ChannelRole;
  /** fd of bytes from the peer (undefined: none, e.g. a save file has no reverse direction) */
  readFd?: number;
  /** fd of bytes to the peer */
  writeFd?: number;
  /** close the fds when the channel closes (default true) */
  autoClose?: boolean;
  idleTimeoutMs?: number;
  kind?: ChannelKind;
  description?: string;
}

/** A channel over an fd pair (read side and write side may be the same fd, e.g. a socket). */
export function fdChannel(opts: FdChannelOptions): Channel {
  const autoClose = opts.autoClose ?? true;
  const { readFd, writeFd } = opts;
  if (readFd === undefined && writeFd === undefined)
    throw new TransportConfigError('fdChannel needs readFd or writeFd');
  const sameFd = readFd !== undefined && readFd === writeFd;
  // With one fd for both directions only one stream may close it: the writable closes, the readable not.
  const closeFd = (fd: number | undefined) => () => {
    if (fd !== undefined && autoClose) {
      try {
        closeSync(fd);
      } catch {
        /* already closed */
      }
    }
  };
  const readable =
    readFd === undefined
      ? { stream: emptyReadable() }
      : {
          stream: () => readableFromFd(readFd, { autoClose: autoClose && !sameFd }),
          disposeUnused: sameFd ? undefined : closeFd(readFd),
        };
  const writable =
    writeFd === undefined
      ? { stream: refusingWritable('this channel has no direction towards the peer') }
      : { stream: () => writableFromFd(writeFd, { autoClose }), disposeUnused: closeFd(writeFd) };
  return new Channel({
    kind: opts.kind ?? 'fd',
    role: opts.role,
    description: opts.description ?? `fd(read=${readFd ?? '-'}, write=${writeFd ?? '-'})`,
    readable,
    writable,
    readFd,
    writeFd,
    idleTimeoutMs: opts.idleTimeoutMs,
  });
}

export interface FileChannelOptions {
  /** 'sender' writes the file (save), 'receiver' reads it (restore) */
  role: ChannelRole;
  /** file mode when creating (default 0o600: a saved domain holds guest memory) */
  mode?: number;
  /** refuse to overwrite an existing file (default false) */
  exclusive?: boolean;
}

/**
 * A file as a channel: the sender writes the stream into it, the receiver reads it. There is no
 * reverse direction: the receiver's `writable` refuses writes, the sender's `readable` is empty.
 */
export function fileChannel(path: string, opts: FileChannelOptions): Channel {
  if (opts.role === 'sender') {
    const fd = openSync(path, opts.exclusive ? 'wx' : 'w', opts.mode ?? 0o600);
    return fdChannel({ role: 'sender', writeFd: fd, kind: 'file', description: `file ${path} (write)` });
  }
  const fd = openSync(path, 'r');
  return fdChannel({ role: 'receiver', readFd: fd, kind: 'file', description: `file ${path} (read)` });
}

/**
 * stdin/stdout as a channel (the far end of `ssh host xenmig receive`, or `xenmig send - | ...`).
 * Receiver: stdin = forward stream, stdout = reverse. Sender: stdout = forward, stdin = reverse.
 * Nothing else may write to stdout while the channel is open (log to stderr). The fds are not
 * closed when the channel closes unless closeFds is set (closing stdout is how a pipe peer sees EOF
 * before the process exits).
 */
export function stdioChannel(opts: {
  role: ChannelRole;
  closeFds?: boolean;
  idleTimeoutMs?: number;
}): Channel {
  const forwardIn = opts.role === 'receiver';
  return fdChannel({
    role: opts.role,
    readFd: 0,
    writeFd: 1,
    autoClose: opts.closeFds ?? false,
    kind: 'stdio',
    idleTimeoutMs: opts.idleTimeoutMs,
    description: forwardIn
      ? 'stdio (stream on stdin, replies on stdout)'
      : 'stdio (stream on stdout, replies on stdin)',
  });
}
