// The ssh transport, as `xl migrate` does it: spawn `ssh [opts] host <remote command>` and use the
// child's stdin as the forward direction and its stdout as the reverse direction. The remote end runs
// `xenmig receive -` (or `xl migrate-receive`) with the stream on its stdin (see stdioChannel).
//
// The ssh command is configurable (`sshCommand`), so tests and unusual setups can substitute a local
// program. ssh's stderr is kept (last 8 KiB) for error messages and optionally forwarded.
//
// fds: readFd / writeFd are our ends of the pipes to the ssh child (POSIX); see channel.ts for the
// rules on using them next to the Node streams.
//
// A child that exits before we closed the channel destroys the channel with ChildExitError (non-zero
// status or signal); a clean exit just ends the streams (EOF). close() ends stdin, waits for the
// child (bounded), then SIGTERMs it; destroy() SIGTERMs it at once (only this child, by its pid).

import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { Channel, type ChannelRole } from './channel.js';
import { ChildExitError, TransportConfigError } from './errors.js';

export interface SshOptions {
  host: string;
  user?: string;
  port?: number;
  /** the ssh program and leading arguments (default ['ssh']) */
  sshCommand?: string[];
  /** extra ssh options placed before the host (default ['-T', '-o', 'BatchMode=yes']) */
  sshOptions?: string[];
  /** command run on the remote host (default ['xenmig', 'receive', '-']); each word is shell-quoted */
  remoteCommand?: string[];
  /** forward ssh's stderr to ours as it arrives (default false; it is always kept for errors) */
  forwardStderr?: boolean;
  /** environment of the ssh process (default process.env) */
  env?: NodeJS.ProcessEnv;
  /** role of this end (default 'sender': the child is the receiver) */
  role?: ChannelRole;
  idleTimeoutMs?: number;
  /** close(): how long to wait for the child to exit before SIGTERM (default 10000 ms) */
  exitTimeoutMs?: number;
}

/** Quote one word for a POSIX shell (ssh hands the remote command to the remote user's shell). */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The argv that sshChannel spawns (exported for logging and tests). */
export function sshArgv(o: SshOptions): string[] {
  if (!o.host || o.host.startsWith('-')) throw new TransportConfigError(`bad ssh host ${JSON.stringify(o.host)}`);
  const cmd = o.sshCommand ?? ['ssh'];
  if (cmd.length === 0) throw new TransportConfigError('empty sshCommand');
  const argv = [...cmd, ...(o.sshOptions ?? ['-T', '-o', 'BatchMode=yes'])];
  if (o.port !== undefined) argv.push('-p', String(o.port));
  if (o.user !== undefined) argv.push('-l', o.user);
  argv.push(o.host, '--', (o.remoteCommand ?? ['xenmig', 'receive', '-']).map(shellQuote).join(' '));
  return argv;
}

function pipeFd(s: Readable | Writable): number | undefined {
  const fd = (s as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/** Spawn ssh and return the channel over its stdin/stdout. Rejects if ssh cannot be started. */
export async function sshChannel(o: SshOptions): Promise<Channel> {
  const argv = sshArgv(o);
  const child: ChildProcess = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], env: o.env ?? process.env });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    stderr = (stderr + d).slice(-8192);
    if (o.forwardStderr) process.stderr.write(d);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const stdin = child.stdin!;
  const stdout = child.stdout!;
  const label = `ssh ${o.user ? o.user + '@' : ''}${o.host}`;
  let closing = false;
  const channel = new Channel({
    kind: 'ssh',
    role: o.role ?? 'sender',
    description: `${label}${o.port ? ':' + o.port : ''}`,
    readable: { stream: stdout },
    writable: { stream: stdin },
    readFd: pipeFd(stdout),
    writeFd: pipeFd(stdin),
    idleTimeoutMs: o.idleTimeoutMs,
    drainOnCloseMs: o.exitTimeoutMs ?? 10_000,
    async onClose(err) {
      closing = true;
      if (child.exitCode === null && child.signalCode === null) {
        if (err) child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGTERM'), err ? 2_000 : (o.exitTimeoutMs ?? 10_000));
        const t2 = setTimeout(() => child.kill('SIGKILL'), (err ? 2_000 : (o.exitTimeoutMs ?? 10_000)) + 5_000);
        await exited;
        clearTimeout(t);
        clearTimeout(t2);
      }
    },
  });
  void exited.then(({ code, signal }) => {
    if (closing || (code === 0 && signal === null)) return;
    // let the last stdout bytes (e.g. an ERROR message) be read before tearing down
    const fail = () => channel.destroy(new ChildExitError(label, code, signal, stderr));
    if (stdout.readableEnded || stdout.destroyed) fail();
    else {
      stdout.once('end', fail);
      stdout.once('close', fail);
      setTimeout(fail, 1_000).unref();
    }
  });
  return channel;
}
