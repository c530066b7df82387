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
  if (!o.host || o.host.startsWith('-'))
    throw new TransportConfigError(`bad ssh host ${JSON.stringify(o.host)}`);
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
export function sshChannel(o: SshOptions): Promise<Channel> {
  const label = `ssh ${o.user ? o.user + '@' : ''}${o.host}${o.port ? ':' + o.port : ''}`;
  return spawnChannel(sshArgv(o), { ...o, label, kind: 'ssh' });
}

export interface SpawnChannelOptions {
  /** for messages (default: argv[0]) */
  label?: string;
  kind?: 'ssh' | 'fd';
  forwardStderr?: boolean;
  env?: NodeJS.ProcessEnv;
  /** default 'sender' (the child is the receiver) */
  role?: ChannelRole;
  idleTimeoutMs?: number;
  exitTimeoutMs?: number;
}

/**
 * Run a command and use its stdin (bytes to the peer) and stdout (bytes from the peer) as a channel:
 * the generic "pipe to a program" transport that ssh is a case of (also `sh -c '...'` runes as xl
 * uses them). Rejects if the program cannot be started.
 */
export async function spawnChannel(argv: string[], o: SpawnChannelOptions = {}): Promise<Channel> {
  if (argv.length === 0) throw new TransportConfigError('empty command');
  const child: ChildProcess = spawn(argv[0]!, argv.slice(1), {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: o.env ?? process.env,
  });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  child.on('error', () => undefined); // e.g. kill() after exit; exit is observed below
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
  const label = o.label ?? argv[0]!;
  const exitMs = o.exitTimeoutMs ?? 10_000;
  let closing = false;
  const channel = new Channel({
    kind: o.kind ?? 'fd',
    role: o.role ?? 'sender',
    description: label,
    readable: { stream: stdout },
    writable: { stream: stdin },
    readFd: pipeFd(stdout),
    writeFd: pipeFd(stdin),
    idleTimeoutMs: o.idleTimeoutMs,
    drainOnCloseMs: exitMs,
    async onClose(err) {
      closing = true;
      let killed = false;
      if (child.exitCode === null && child.signalCode === null) {
        // after an error (often EPIPE because the child is dying) give it a moment to exit by itself
        const grace = err ? 200 : exitMs;
        const t = setTimeout(() => ((killed = true), child.kill('SIGTERM')), grace);
        const t2 = setTimeout(() => child.kill('SIGKILL'), grace + 5_000);
        await exited;
        clearTimeout(t);
        clearTimeout(t2);
      }
      const { code, signal } = await exited;
      // a child that failed by itself explains a broken pipe better than EPIPE does
      if (err && !killed && !(err instanceof ChildExitError) && (code !== 0 || signal !== null)) {
        throw new ChildExitError(label, code, signal, stderr, { cause: err });
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
