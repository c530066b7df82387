// xenmig's own control protocol: small typed, length-framed messages.
//
// Frame (all integers big-endian):
//
//   offset size field
//   0      4    magic   0x584D4347 ("XMCG")
//   4      4    type    (MessageType below)
//   8      4    length  body length in bytes
//   12     n    body
//
// Bodies:
//   READY              (1) receiver→sender  JSON {"protocol":1,"version":"x.y.z","capabilities":[...]}
//   DONE               (2) sender→receiver  empty — the stream was written completely
//   RECEIVED           (3) receiver→sender  empty — domain received and consistent (still paused)
//   CLEARED_TO_UNPAUSE (4) both directions  empty — sender→receiver: source stopped and renamed away,
//                                            you may run it; receiver→sender (after RESULT≠0): my copy
//                                            is gone, you may resume yours
//   RESULT             (5) receiver→sender  i32 status (0 = the guest runs on the receiver)
//   ACK                (6) receiver→sender  u64 checkpoint number (Remus/COLO: checkpoint n applied)
//   HEARTBEAT          (7) both directions  u64 sequence number
//   ERROR              (8) both directions  JSON {"code":"...","message":"..."}
//   BACKCHANNEL        (9) receiver→sender  opaque bytes (COLO back-channel records between xenmig peers)
//
// Limits: JSON bodies ≤ 64 KiB, fixed bodies exactly their size, BACKCHANNEL ≤ 128 MiB (libxc's
// REC_LENGTH_MAX). Anything else is a ProtocolError: EBADMAGIC, EBADTYPE, ETOOLONG, EBADBODY.

import type { Readable, Writable } from 'node:stream';
import { PeerReportedError, ProtocolError } from './errors.js';
import { readExactly, writeAll, type WaitOptions } from './io.js';

export const CONTROL_MAGIC = 0x584d4347;
export const CONTROL_HEADER_SIZE = 12;
export const CONTROL_PROTOCOL_VERSION = 1;
export const MAX_JSON_BODY = 64 * 1024;
export const MAX_BACKCHANNEL_BODY = 128 * 1024 * 1024;

export const MessageType = {
  READY: 1,
  DONE: 2,
  RECEIVED: 3,
  CLEARED_TO_UNPAUSE: 4,
  RESULT: 5,
  ACK: 6,
  HEARTBEAT: 7,
  ERROR: 8,
  BACKCHANNEL: 9,
} as const;
export type MessageTypeName = keyof typeof MessageType;

export type ControlMessage =
  | { type: 'READY'; protocol: number; version: string; capabilities: string[] }
  | { type: 'DONE' }
  | { type: 'RECEIVED' }
  | { type: 'CLEARED_TO_UNPAUSE' }
  | { type: 'RESULT'; status: number }
  | { type: 'ACK'; checkpoint: number }
  | { type: 'HEARTBEAT'; seq: number }
  | { type: 'ERROR'; code: string; message: string }
  | { type: 'BACKCHANNEL'; data: Uint8Array };

export type MessageOf<T extends MessageTypeName> = Extract<ControlMessage, { type: T }>;

const NAME_BY_CODE = new Map<number, MessageTypeName>(
  Object.entries(MessageType).map(([k, v]) => [v, k as MessageTypeName]),
);

function u64(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`not a u64-safe integer: ${n}`);
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

function jsonBody(v: unknown): Buffer {
  const b = Buffer.from(JSON.stringify(v), 'utf8');
  if (b.length > MAX_JSON_BODY) throw new RangeError(`control message body too long (${b.length})`);
  return b;
}

/** Encode one message as a frame. */
export function encodeMessage(m: ControlMessage): Buffer {
  let body: Buffer;
  switch (m.type) {
    case 'READY':
      body = jsonBody({ protocol: m.protocol, version: m.version, capabilities: m.capabilities });
      break;
    case 'DONE':
    case 'RECEIVED':
    case 'CLEARED_TO_UNPAUSE':
      body = Buffer.alloc(0);
      break;
    case 'RESULT':
      body = Buffer.alloc(4);
      body.writeInt32BE(m.status);
      break;
    case 'ACK':
      body = u64(m.checkpoint);
      break;
    case 'HEARTBEAT':
      body = u64(m.seq);
      break;
    case 'ERROR':
      body = jsonBody({ code: m.code, message: m.message });
      break;
    case 'BACKCHANNEL':
      if (m.data.length > MAX_BACKCHANNEL_BODY) throw new RangeError('BACKCHANNEL body too long');
      body = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
      break;
  }
  const h = Buffer.alloc(CONTROL_HEADER_SIZE);
  h.writeUInt32BE(CONTROL_MAGIC, 0);
  h.writeUInt32BE(MessageType[m.type], 4);
  h.writeUInt32BE(body.length, 8);
  return Buffer.concat([h, body]);
}

export interface FrameHeader {
  type: MessageTypeName;
  length: number;
}

/** Validate a 12-byte header; throws ProtocolError on garbage. */
export function decodeHeader(h: Uint8Array): FrameHeader {
  const b = Buffer.from(h.buffer, h.byteOffset, h.byteLength);
  const magic = b.readUInt32BE(0);
  if (magic !== CONTROL_MAGIC) {
    throw new ProtocolError(
      'EBADMAGIC',
      `bad control message magic 0x${magic.toString(16).padStart(8, '0')} (expected 0x584d4347 "XMCG")`,
    );
  }
  const code = b.readUInt32BE(4);
  const type = NAME_BY_CODE.get(code);
  if (!type) throw new ProtocolError('EBADTYPE', `unknown control message type ${code}`);
  const length = b.readUInt32BE(8);
  const max = maxBody(type);
  if (length > max.max)
    throw new ProtocolError('ETOOLONG', `${type} body of ${length} bytes exceeds ${max.max}`);
  if (max.exact !== undefined && length !== max.exact) {
    throw new ProtocolError('EBADBODY', `${type} body must be ${max.exact} bytes, got ${length}`);
  }
  return { type, length };
}

function maxBody(t: MessageTypeName): { max: number; exact?: number } {
  switch (t) {
    case 'READY':
    case 'ERROR':
      return { max: MAX_JSON_BODY };
    case 'DONE':
    case 'RECEIVED':
    case 'CLEARED_TO_UNPAUSE':
      return { max: 0, exact: 0 };
    case 'RESULT':
      return { max: 4, exact: 4 };
    case 'ACK':
    case 'HEARTBEAT':
      return { max: 8, exact: 8 };
    case 'BACKCHANNEL':
      return { max: MAX_BACKCHANNEL_BODY };
  }
}

function parseJson(type: string, body: Buffer): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch {
    throw new ProtocolError('EBADBODY', `${type} body is not valid JSON`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new ProtocolError('EBADBODY', `${type} body is not a JSON object`);
  return v as Record<string, unknown>;
}

function readU64(type: string, b: Buffer): number {
  const v = b.readBigUInt64BE(0);
  if (v > BigInt(Number.MAX_SAFE_INTEGER))
    throw new ProtocolError('EBADBODY', `${type} counter out of range`);
  return Number(v);
}

/** Decode a body for a validated header. */
export function decodeBody(h: FrameHeader, body: Buffer): ControlMessage {
  switch (h.type) {
    case 'READY': {
      const o = parseJson('READY', body);
      if (
        typeof o.protocol !== 'number' ||
        typeof o.version !== 'string' ||
        !Array.isArray(o.capabilities) ||
        !o.capabilities.every((c) => typeof c === 'string')
      ) {
        throw new ProtocolError(
          'EBADBODY',
          'READY body needs protocol:number, version:string, capabilities:string[]',
        );
      }
      return {
        type: 'READY',
        protocol: o.protocol,
        version: o.version,
        capabilities: o.capabilities as string[],
      };
    }
    case 'ERROR': {
      const o = parseJson('ERROR', body);
      if (typeof o.code !== 'string' || typeof o.message !== 'string')
        throw new ProtocolError('EBADBODY', 'ERROR body needs code and message strings');
      return { type: 'ERROR', code: o.code, message: o.message };
    }
    case 'DONE':
    case 'RECEIVED':
    case 'CLEARED_TO_UNPAUSE':
      return { type: h.type };
    case 'RESULT':
      return { type: 'RESULT', status: body.readInt32BE(0) };
    case 'ACK':
      return { type: 'ACK', checkpoint: readU64('ACK', body) };
    case 'HEARTBEAT':
      return { type: 'HEARTBEAT', seq: readU64('HEARTBEAT', body) };
    case 'BACKCHANNEL':
      return { type: 'BACKCHANNEL', data: body };
  }
}

/**
 * Incremental decoder for arbitrary chunking (push bytes as they come; get whole messages out).
 * After a ProtocolError the decoder is poisoned: the framing is lost and every later push throws.
 */
export class ControlDecoder {
  #buf: Buffer = Buffer.alloc(0);
  #header: FrameHeader | undefined;
  #poisoned: ProtocolError | undefined;

  push(chunk: Uint8Array): ControlMessage[] {
    if (this.#poisoned) throw this.#poisoned;
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : Buffer.from(chunk);
    const out: ControlMessage[] = [];
    try {
      for (;;) {
        if (!this.#header) {
          if (this.#buf.length < CONTROL_HEADER_SIZE) break;
          this.#header = decodeHeader(this.#buf.subarray(0, CONTROL_HEADER_SIZE));
          this.#buf = this.#buf.subarray(CONTROL_HEADER_SIZE);
        }
        if (this.#buf.length < this.#header.length) break;
        const body = Buffer.from(this.#buf.subarray(0, this.#header.length));
        this.#buf = this.#buf.subarray(this.#header.length);
        const h = this.#header;
        this.#header = undefined;
        out.push(decodeBody(h, body));
      }
    } catch (e) {
      if (e instanceof ProtocolError) this.#poisoned = e;
      throw e;
    }
    return out;
  }

  /** bytes held that do not yet form a whole message */
  get pending(): number {
    return this.#buf.length + (this.#header ? CONTROL_HEADER_SIZE : 0);
  }
}

/** Read one message from a Readable without consuming a byte past its end. */
export async function readMessage(r: Readable, opts: WaitOptions = {}): Promise<ControlMessage> {
  const what = opts.what ?? 'a control message';
  const h = decodeHeader(await readExactly(r, CONTROL_HEADER_SIZE, { ...opts, what }));
  const body = await readExactly(r, h.length, { ...opts, what: `the body of ${h.type}` });
  return decodeBody(h, body);
}

export function writeMessage(w: Writable, m: ControlMessage, opts: WaitOptions = {}): Promise<void> {
  return writeAll(w, encodeMessage(m), { ...opts, what: opts.what ?? `sending ${m.type}` });
}

/** The peer sent a valid message, but not the one the protocol expects now. */
export class UnexpectedMessageError extends ProtocolError {
  readonly received: ControlMessage;
  constructor(expected: string, received: ControlMessage) {
    super('EUNEXPECTED', `expected ${expected}, got ${received.type}`);
    this.name = 'UnexpectedMessageError';
    this.received = received;
  }
}

export interface ReceiveOptions extends WaitOptions {
  /** skip HEARTBEAT messages (default true); each one restarts the timeout */
  skipHeartbeats?: boolean;
}

/**
 * Typed messages over one Readable (from the peer) and one Writable (to the peer), e.g.
 * `new ControlConnection(channel.readable, channel.writable)`.
 */
export class ControlConnection {
  readonly readable: Readable;
  readonly writable: Writable;
  /** ms timestamp of the last message (any type) received */
  lastReceivedAt = 0;
  #hbSeq = 0;

  constructor(readable: Readable, writable: Writable) {
    this.readable = readable;
    this.writable = writable;
  }

  send(m: ControlMessage, opts: WaitOptions = {}): Promise<void> {
    return writeMessage(this.writable, m, opts);
  }

  async receive(opts: ReceiveOptions = {}): Promise<ControlMessage> {
    for (;;) {
      const m = await readMessage(this.readable, opts);
      this.lastReceivedAt = Date.now();
      if (m.type === 'HEARTBEAT' && opts.skipHeartbeats !== false) continue;
      return m;
    }
  }

  /**
   * Receive the next message and require its type. An ERROR message becomes PeerReportedError;
   * any other type becomes UnexpectedMessageError.
   */
  async expect<T extends MessageTypeName>(type: T, opts: ReceiveOptions = {}): Promise<MessageOf<T>> {
    const m = await this.receive({ ...opts, what: opts.what ?? type });
    if (m.type === type) return m as MessageOf<T>;
    if (m.type === 'ERROR') throw new PeerReportedError(m.code, m.message);
    throw new UnexpectedMessageError(type, m);
  }

  /**
   * Send HEARTBEAT every intervalMs until stopped (Remus/COLO keep-alive on an otherwise quiet
   * direction). A failed send stops the heartbeat and is reported to onError.
   */
  startHeartbeat(intervalMs: number, onError?: (e: Error) => void): { stop(): void } {
    let stopped = false;
    const t = setInterval(() => {
      this.send({ type: 'HEARTBEAT', seq: ++this.#hbSeq }, { timeoutMs: intervalMs * 4 }).catch(
        (e: Error) => {
          if (stopped) return;
          stopped = true;
          clearInterval(t);
          onError?.(e);
        },
      );
    }, intervalMs);
    t.unref();
    return {
      stop() {
        stopped = true;
        clearInterval(t);
      },
    };
  }
}
