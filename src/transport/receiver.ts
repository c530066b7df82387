// The receiving end of a migration connection: a given channel, a TCP listener's first client
// (mutual TLS or --insecure), or stdin/stdout. Used by the API's receive and by the Remus backup.
import { listen } from './tcp.js';
import { stdioChannel } from './fd.js';
import type { Channel } from './channel.js';
import type { TlsMaterial } from './tcp.js';
import type { HandshakeProtocol } from './handshake.js';

export interface ConnectionOptions {
  tls?: TlsMaterial;
  insecure?: boolean;
  /** ssh: the command run remotely (default: xenmig receive -) */
  remoteCommand?: string[];
  /** ssh: the ssh program and leading arguments (default ['ssh']) */
  sshCommand?: string[];
  protocol?: HandshakeProtocol;
}

export interface ReceiverChannelOptions extends ConnectionOptions {
  listen?: { host?: string; port: number };
  channel?: Channel;
  onListening?: (port: number) => void;
  /** TCP: bound on a client's TLS handshake + transport hello (default 10 s); slower ones are refused */
  helloTimeoutMs?: number;
  /** TCP: the connection is dropped when the sender sends nothing for this long (default 60 s; 0 = off) */
  idleTimeoutMs?: number;
  /** TCP: a client was refused (failed authentication, bad hello, hello timeout); it is closed */
  onRefused?: (err: Error, remote: string) => void;
}

/** Defaults of the receiving side's idle bounds (README: "Resource bounds"). */
export const DEFAULT_HELLO_TIMEOUT_MS = 10_000;
export const DEFAULT_IDLE_TIMEOUT_MS = 60_000;

/**
 * The receiver's end of a migration connection: the given channel, else one accepted on
 * `listen` (mutual TLS or --insecure), else stdin/stdout. The listener (if any) is the caller's
 * to close.
 */
export async function openReceiverChannel(
  opts: ReceiverChannelOptions,
): Promise<{ channel: Channel; listener: Awaited<ReturnType<typeof listen>> | null }> {
  if (opts.channel) return { channel: opts.channel, listener: null };
  if (!opts.listen) return { channel: stdioChannel({ role: 'receiver' }), listener: null };
  const listener = await listen({
    ...(opts.listen.host ? { host: opts.listen.host } : {}),
    port: opts.listen.port,
    ...(opts.tls ? { tls: opts.tls } : {}),
    ...(opts.insecure ? { insecure: true } : {}),
    helloTimeoutMs: opts.helloTimeoutMs ?? DEFAULT_HELLO_TIMEOUT_MS,
    idleTimeoutMs: opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
  });
  if (opts.onRefused) listener.on('refused', opts.onRefused);
  opts.onListening?.(listener.address().port);
  try {
    const channel = await listener.accept();
    // one migration per listener: later clients are not accepted (closing completes when it ends)
    void listener.close();
    return { channel, listener };
  } catch (e) {
    await listener.close();
    throw e;
  }
}
