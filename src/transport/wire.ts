// The two encodings of the migration handshake ("wires"). One state machine (handshake.ts) drives
// both: xenmig's typed control messages (control.ts) and xl's fixed strings (xl.ts).

import type { Channel } from './channel.js';
import type { WaitOptions } from './io.js';

/** What the sender learns about the receiver from its READY (xenmig) or banner (xl). */
export interface PeerInfo {
  protocol: 'xenmig' | 'xl';
  version?: string;
  capabilities: string[];
}

/**
 * Handshake messages. send* write on channel.writable, await* read from channel.readable, so the same
 * wire object serves both sides: e.g. sendCleared() is the sender's "cleared to unpause" on the
 * forward direction, and the receiver's "you may resume" on the reverse direction after RESULT ≠ 0.
 */
export interface HandshakeWire {
  readonly name: 'xenmig' | 'xl';
  /** receiver → sender, first thing on the reverse direction */
  sendReady(o?: WaitOptions): Promise<void>;
  awaitReady(o?: WaitOptions): Promise<PeerInfo>;
  /** sender → receiver after the stream (xl has none: no-op / resolves at once) */
  sendDone(o?: WaitOptions): Promise<void>;
  awaitDone(o?: WaitOptions): Promise<void>;
  /** receiver → sender: domain received and consistent */
  sendReceived(o?: WaitOptions): Promise<void>;
  awaitReceived(o?: WaitOptions): Promise<void>;
  /** "cleared to unpause" (either direction) */
  sendCleared(o?: WaitOptions): Promise<void>;
  awaitCleared(o?: WaitOptions): Promise<void>;
  /** receiver → sender: unpause result, 0 = the guest runs on the receiver */
  sendResult(status: number, o?: WaitOptions): Promise<void>;
  awaitResult(o?: WaitOptions): Promise<number>;
  /** best-effort error report to the peer (xl has no such message: no-op) */
  sendError(code: string, message: string, o?: WaitOptions): Promise<void>;
}

export type WireFactory = (channel: Channel) => HandshakeWire;
