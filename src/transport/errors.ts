// Typed errors of the transport layer. Every error carries a stable `code` so callers (engine, CLI)
// can branch without parsing messages.

export class TransportError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TransportError';
    this.code = code;
  }
}

/** The peer closed (EOF) or the connection broke while we were waiting for `what`. */
export class PeerClosedError extends TransportError {
  constructor(what: string, detail?: string, options?: { cause?: unknown }) {
    super(
      'EPEERCLOSED',
      `peer closed the connection while waiting for ${what}${detail ? ` (${detail})` : ''}`,
      options,
    );
    this.name = 'PeerClosedError';
  }
}

/** Nothing arrived (or a write did not complete) within the configured time. */
export class TransportTimeoutError extends TransportError {
  constructor(what: string, ms: number) {
    super('ETIMEDOUT', `timed out after ${ms} ms waiting for ${what}`);
    this.name = 'TransportTimeoutError';
  }
}

/** Bytes on the wire are not what the protocol allows (bad magic, unknown type, oversize, bad body). */
export class ProtocolError extends TransportError {
  constructor(code: string, message: string) {
    super(code, message);
    this.name = 'ProtocolError';
  }
}

/** The peer reported an error through the control protocol (ERROR message). */
export class PeerReportedError extends TransportError {
  readonly peerCode: string;
  constructor(peerCode: string, message: string) {
    super('EPEERERROR', `peer reported ${peerCode}: ${message}`);
    this.name = 'PeerReportedError';
    this.peerCode = peerCode;
  }
}

/** A connection was refused at the transport level (TLS authentication, transport hello mismatch). */
export class ConnectionRefusedError extends TransportError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EREFUSED', message, options);
    this.name = 'ConnectionRefusedError';
  }
}

/** Wrong options (e.g. TCP without TLS credentials and without insecure: true). */
export class TransportConfigError extends TransportError {
  constructor(message: string) {
    super('EINVAL', message);
    this.name = 'TransportConfigError';
  }
}

/** The ssh (or other transport) child process exited before the channel was closed by us. */
export class ChildExitError extends TransportError {
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly stderr: string;
  constructor(
    command: string,
    exitCode: number | null,
    signal: string | null,
    stderr: string,
    options?: { cause?: unknown },
  ) {
    super(
      'ECHILDEXIT',
      `${command} exited ${signal ? `on signal ${signal}` : `with status ${exitCode}`}` +
        (stderr.trim() ? `: ${stderr.trim().split('\n').slice(-3).join(' | ')}` : ''),
      options,
    );
    this.name = 'ChildExitError';
    this.exitCode = exitCode;
    this.signal = signal;
    this.stderr = stderr;
  }
}

export function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}
