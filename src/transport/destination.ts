// Destinations as written on the command line, and opening them.
//
//   -                              stdin/stdout (the far end of an ssh pipe, or a shell pipe)
//   ssh://[user@]host[:port]       spawn ssh (see ssh.ts); IPv6 hosts in brackets
//   tcp://host:port                TCP: mutual TLS unless insecure (see tcp.ts); IPv6 in brackets
//   file:///path, or anything else a file path (save/restore)

import type { Channel, ChannelRole } from './channel.js';
import { TransportConfigError } from './errors.js';
import { fileChannel, stdioChannel } from './fd.js';
import { sshChannel, type SshOptions } from './ssh.js';
import { connectTcp, type TcpCommonOptions } from './tcp.js';

export type Destination =
  | { kind: 'stdio' }
  | { kind: 'ssh'; host: string; user?: string; port?: number }
  | { kind: 'tcp'; host: string; port: number }
  | { kind: 'file'; path: string };

function parsePort(s: string, what: string): number {
  if (!/^\d+$/.test(s)) throw new TransportConfigError(`bad port in ${what}`);
  const n = Number(s);
  if (n < 1 || n > 65535) throw new TransportConfigError(`port out of range in ${what}`);
  return n;
}

function splitHostPort(hp: string, what: string): { host: string; port?: number } {
  let host: string;
  let rest: string;
  if (hp.startsWith('[')) {
    const end = hp.indexOf(']');
    if (end < 0) throw new TransportConfigError(`unterminated [ in ${what}`);
    host = hp.slice(1, end);
    rest = hp.slice(end + 1);
    if (rest && !rest.startsWith(':')) throw new TransportConfigError(`junk after ] in ${what}`);
    rest = rest.slice(1);
  } else {
    const i = hp.lastIndexOf(':');
    if (i >= 0 && hp.indexOf(':') !== i)
      throw new TransportConfigError(`IPv6 addresses must be in brackets in ${what}`);
    host = i >= 0 ? hp.slice(0, i) : hp;
    rest = i >= 0 ? hp.slice(i + 1) : '';
    if (i >= 0 && rest === '') throw new TransportConfigError(`empty port in ${what}`);
  }
  if (!host) throw new TransportConfigError(`missing host in ${what}`);
  if (/[\s/?#]/.test(host) || host.startsWith('-')) throw new TransportConfigError(`bad host in ${what}`);
  return rest ? { host, port: parsePort(rest, what) } : { host };
}

export function parseDestination(s: string): Destination {
  if (s === '-') return { kind: 'stdio' };
  const m = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/i.exec(s);
  if (!m) {
    if (s === '') throw new TransportConfigError('empty destination');
    return { kind: 'file', path: s };
  }
  const scheme = m[1]!.toLowerCase();
  const rest = m[2]!;
  switch (scheme) {
    case 'file':
      if (!rest.startsWith('/')) throw new TransportConfigError(`file:// needs an absolute path: ${s}`);
      return { kind: 'file', path: decodeURIComponent(rest) };
    case 'ssh': {
      const auth = rest.replace(/\/$/, '');
      if (auth.includes('/')) throw new TransportConfigError(`ssh destination takes no path: ${s}`);
      const at = auth.lastIndexOf('@');
      const user = at >= 0 ? auth.slice(0, at) : undefined;
      if (user === '') throw new TransportConfigError(`empty user in ${s}`);
      const { host, port } = splitHostPort(at >= 0 ? auth.slice(at + 1) : auth, s);
      return {
        kind: 'ssh',
        host,
        ...(user !== undefined ? { user } : {}),
        ...(port !== undefined ? { port } : {}),
      };
    }
    case 'tcp': {
      const auth = rest.replace(/\/$/, '');
      if (auth.includes('/') || auth.includes('@'))
        throw new TransportConfigError(`tcp destination is tcp://host:port: ${s}`);
      const { host, port } = splitHostPort(auth, s);
      if (port === undefined) throw new TransportConfigError(`tcp destination needs a port: ${s}`);
      return { kind: 'tcp', host, port };
    }
    default:
      throw new TransportConfigError(
        `unknown destination scheme ${scheme}:// (use -, ssh://, tcp://, file:// or a path)`,
      );
  }
}

export interface OpenOptions {
  /** this end's role (default 'sender') */
  role?: ChannelRole;
  /** ssh: everything but host/user/port */
  ssh?: Omit<SshOptions, 'host' | 'user' | 'port' | 'role'>;
  /** tcp: security and timeouts */
  tcp?: TcpCommonOptions & { servername?: string; connectTimeoutMs?: number };
}

/** Open a parsed (or string) destination as a channel. */
export async function openDestination(d: Destination | string, o: OpenOptions = {}): Promise<Channel> {
  const dest = typeof d === 'string' ? parseDestination(d) : d;
  const role = o.role ?? 'sender';
  switch (dest.kind) {
    case 'stdio':
      return stdioChannel({ role });
    case 'file':
      return fileChannel(dest.path, { role });
    case 'ssh':
      return sshChannel({ ...o.ssh, host: dest.host, user: dest.user, port: dest.port, role });
    case 'tcp':
      return connectTcp({ ...(o.tcp ?? {}), host: dest.host, port: dest.port, role });
  }
}
