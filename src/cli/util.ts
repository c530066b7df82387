// Shared pieces of the command line: option parsing (sizes, rates, hosts), error reporting
// (`xenmig: CODE: message`), TTY-only progress, log lines, signals as an AbortSignal.
import { InvalidArgumentError, type Command } from 'commander';
import { readFileSync } from 'node:fs';
import type { XenOptions } from '../api.js';
import type { TlsMaterial } from '../transport/index.js';
import { parseDomainConfig, type DomainConfig } from '../toolstack/config.js';

/** Exit statuses. */
export const EXIT = {
  OK: 0,
  /** the operation failed (invalid stream, failed save/restore/migration with the source running) */
  FAILED: 1,
  /** bad command line */
  USAGE: 2,
  /** migration failed and the guest may not run anywhere (in-doubt / resume failed) */
  IN_DOUBT: 3,
  /** interrupted (SIGINT 130 / SIGTERM 143) — the operation was aborted cleanly */
  SIGINT: 130,
  SIGTERM: 143,
} as const;

export class UsageError extends Error {
  readonly code = 'ERR_USAGE';
}

// ---------------------------------------------------------------------------------------------
// values

const UNITS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/** "100M", "64MiB", "4096", "1.5G": binary multiples, bytes. */
export function parseSize(s: string, what = 'size'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*$/.exec(s);
  if (!m)
    throw new InvalidArgumentError(`${what} must be a number with an optional K/M/G/T suffix, got "${s}"`);
  const n = Math.round(Number(m[1]) * UNITS[m[2]!.toUpperCase()]!);
  if (!Number.isSafeInteger(n) || n <= 0)
    throw new InvalidArgumentError(`${what} must be positive, got "${s}"`);
  return n;
}

export function parseIntArg(what: string, min = 0, max = Number.MAX_SAFE_INTEGER) {
  return (s: string): number => {
    if (!/^\d+$/.test(s.trim())) throw new InvalidArgumentError(`${what} must be an integer, got "${s}"`);
    const n = Number(s);
    if (n < min || n > max) throw new InvalidArgumentError(`${what} must be in ${min}..${max}, got ${n}`);
    return n;
  };
}

export function parseDomid(s: string): number {
  return parseIntArg('DOMID', 0, 0x7fef)(s);
}

/** A domain argument, as xl reads one: digits are a domid, anything else a name (resolveDomain looks it up). */
export function parseDomain(s: string): number | string {
  if (/^\s*\d+\s*$/.test(s)) return parseDomid(s);
  if (!s || s.includes('/'))
    throw new InvalidArgumentError(`DOMAIN must be a domid or a domain name, got "${s}"`);
  return s;
}

/** What a domain argument is, in --help. */
export const DOMAIN_ARG = 'domain id or name (names: xenmig list)';

export function choice<T extends string>(what: string, values: readonly T[]) {
  return (s: string): T => {
    if (!(values as readonly string[]).includes(s))
      throw new InvalidArgumentError(`${what} must be one of ${values.join(', ')}, got "${s}"`);
    return s as T;
  };
}

/** Split a command given as one string into words (single/double quotes and backslashes as in sh). */
export function splitWords(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let has = false;
  let q: '"' | "'" | null = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (q === "'") {
      if (c === "'") q = null;
      else cur += c;
    } else if (q === '"') {
      if (c === '"') q = null;
      else if (c === '\\' && i + 1 < s.length && '"\\$`'.includes(s[i + 1]!)) cur += s[++i];
      else cur += c;
    } else if (c === "'" || c === '"') {
      q = c;
      has = true;
    } else if (c === '\\' && i + 1 < s.length) {
      cur += s[++i];
      has = true;
    } else if (/\s/.test(c)) {
      if (has || cur) out.push(cur);
      cur = '';
      has = false;
    } else cur += c;
  }
  if (q) throw new InvalidArgumentError(`unterminated quote in "${s}"`);
  if (has || cur) out.push(cur);
  return out;
}

// ---------------------------------------------------------------------------------------------
// common options

export function addHostOptions(cmd: Command): Command {
  return cmd
    .option('--host <dir>', 'mock host directory (default $XENMIG_MOCK_HOST)')
    .option(
      '--flavour <flavour>',
      'hypervisor: system (real Xen) or mock',
      choice('flavour', ['system', 'mock'] as const),
    );
}

export function xenOptions(o: { host?: string; flavour?: 'system' | 'mock' }): XenOptions {
  const host = o.host ?? (process.env.XENMIG_MOCK_HOST || undefined);
  // a mock host directory (--host or XENMIG_MOCK_HOST) selects the mock flavour
  const flavour = o.flavour ?? (host ? 'mock' : undefined);
  return { ...(host ? { host } : {}), ...(flavour ? { flavour } : {}) };
}

/** --config FILE: the guest's libxl config (JSON, as `xl list -l` prints it) instead of its stored one. */
export function addConfigOption(cmd: Command): Command {
  return cmd.option(
    '--config <file>',
    "the guest's libxl config for the stream (JSON, as xl list -l prints it; default: the domain's stored config)",
  );
}

/** The config named by --config, or undefined; a file that is not a usable config is a usage error. */
export function configFrom(o: { config?: string }): DomainConfig | undefined {
  if (o.config === undefined) return undefined;
  let text: string;
  try {
    text = readFileSync(o.config, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read --config ${o.config}: ${(e as Error).message}`);
  }
  try {
    let j: unknown = JSON.parse(text);
    // `xl list -l DOMAIN` prints [{ "domid": N, "config": {...} }]
    if (Array.isArray(j)) j = j[0];
    const c = (j as { config?: unknown })?.config ?? j;
    return parseDomainConfig(JSON.stringify(c, null, 4) + '\n');
  } catch (e) {
    throw new UsageError(`--config ${o.config}: ${(e as Error).message}`);
  }
}

export function addTransferOptions(cmd: Command): Command {
  return addConfigOption(cmd)
    .option('--bandwidth <rate>', 'cap the live rounds at RATE bytes/s (K/M/G suffixes, binary)', (s) =>
      parseSize(s, 'bandwidth'),
    )
    .option(
      '--downtime-ms <n>',
      'stop the live rounds once the rest fits in N ms',
      parseIntArg('downtime-ms', 1),
    )
    .option(
      '--max-iterations <n>',
      'at most N live rounds (default 5, as libxc)',
      parseIntArg('max-iterations', 0, 1000),
    );
}

export function addOutputOptions(cmd: Command): Command {
  return cmd
    .option('--json', 'print the final statistics as JSON (QEMU query-migrate shape)')
    .option(
      '--log-format <fmt>',
      'log lines on stderr: text or json',
      choice('log-format', ['text', 'json'] as const),
      'text',
    );
}

export function tlsFrom(o: { cert?: string; key?: string; ca?: string }): TlsMaterial | undefined {
  const given = [o.cert, o.key, o.ca].filter((x) => x !== undefined).length;
  if (given === 0) return undefined;
  if (given !== 3) throw new UsageError('TLS needs all of --cert, --key and --ca (mutual authentication)');
  const read = (p: string, what: string) => {
    try {
      return readFileSync(p);
    } catch (e) {
      throw new UsageError(`cannot read ${what} ${p}: ${(e as Error).message}`);
    }
  };
  return { cert: read(o.cert!, '--cert'), key: read(o.key!, '--key'), ca: read(o.ca!, '--ca') };
}

// ---------------------------------------------------------------------------------------------
// logging

export type LogFormat = 'text' | 'json';

export class Log {
  constructor(
    readonly format: LogFormat = 'text',
    private readonly out: NodeJS.WriteStream = process.stderr,
  ) {}
  private clearProgress: (() => void) | null = null;

  setProgressClear(f: (() => void) | null): void {
    this.clearProgress = f;
  }

  line(level: 'info' | 'warn' | 'error', msg: string, fields: Record<string, unknown> = {}): void {
    this.clearProgress?.();
    if (this.format === 'json')
      this.out.write(
        JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }, jsonReplacer) + '\n',
      );
    else {
      const extra = Object.entries(fields)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v, jsonReplacer)}`)
        .join(' ');
      this.out.write(
        `xenmig: ${level === 'info' ? '' : level + ': '}${msg}${extra ? ' (' + extra + ')' : ''}\n`,
      );
    }
  }
  info(msg: string, fields?: Record<string, unknown>): void {
    this.line('info', msg, fields);
  }
  warn(msg: string, fields?: Record<string, unknown>): void {
    this.line('warn', msg, fields);
  }
}

export function jsonReplacer(_k: string, v: unknown): unknown {
  if (typeof v === 'bigint') return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : '0x' + v.toString(16);
  return v;
}

// ---------------------------------------------------------------------------------------------
// progress (TTY only)

export class Progress {
  private last = 0;
  private shown = false;
  readonly enabled: boolean;
  constructor(
    private readonly out: NodeJS.WriteStream = process.stderr,
    enabled?: boolean,
  ) {
    this.enabled =
      enabled ??
      (process.env.XENMIG_PROGRESS === '1' || (out.isTTY === true && !process.env.XENMIG_NO_PROGRESS));
  }
  update(text: string, force = false): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (!force && now - this.last < 100) return;
    this.last = now;
    const cols = this.out.columns || 100;
    this.out.write('\r' + text.slice(0, cols - 1).padEnd(Math.min(cols - 1, this.width)) + '\x1b[K');
    this.width = Math.max(this.width, Math.min(text.length, cols - 1));
    this.shown = true;
  }
  private width = 0;
  clear = (): void => {
    if (!this.enabled || !this.shown) return;
    this.out.write('\r\x1b[K');
    this.shown = false;
    this.width = 0;
  };
}

export function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const u = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${u[i]}`;
}

export function fmtRate(bytesPerSecond: number): string {
  return `${(bytesPerSecond / 1e6).toFixed(1)} MB/s`;
}

// ---------------------------------------------------------------------------------------------
// signals

/** SIGINT/SIGTERM abort the returned signal (once); a second one exits at once. */
export function signalAbort(): {
  signal: AbortSignal;
  received: () => NodeJS.Signals | null;
  dispose(): void;
} {
  const ac = new AbortController();
  let got: NodeJS.Signals | null = null;
  const on = (sig: NodeJS.Signals) => {
    if (got) {
      process.stderr.write(`xenmig: second ${sig}, exiting at once\n`);
      process.exit(sig === 'SIGINT' ? EXIT.SIGINT : EXIT.SIGTERM);
    }
    got = sig;
    const e = Object.assign(new Error(`interrupted by ${sig}`), { code: 'ERR_ABORTED' });
    ac.abort(e);
  };
  process.on('SIGINT', on);
  process.on('SIGTERM', on);
  return {
    signal: ac.signal,
    received: () => got,
    dispose() {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
    },
  };
}

export function signalExit(sig: NodeJS.Signals | null): number | null {
  if (sig === 'SIGINT') return EXIT.SIGINT;
  if (sig === 'SIGTERM') return EXIT.SIGTERM;
  return null;
}

// ---------------------------------------------------------------------------------------------
// errors

/** `CODE: message [where]` for any error (StreamError messages already start with their code). */
export function describeError(err: unknown): { code: string; text: string } {
  const e = err as { code?: unknown; message?: unknown; errors?: unknown[]; syscall?: unknown };
  const code = typeof e?.code === 'string' ? e.code : 'ERR_FAILED';
  let msg = typeof e?.message === 'string' ? e.message : String(err);
  if (typeof e?.syscall === 'string' && !msg.includes(e.syscall)) msg += ` (${e.syscall})`;
  if (msg.startsWith(code + ':')) msg = msg.slice(code.length + 1).trimStart();
  return { code, text: `${code}: ${msg}` };
}

export function printError(err: unknown, log?: Log): void {
  const { code, text } = describeError(err);
  if (log?.format === 'json') {
    const e = err as Record<string, unknown>;
    log.line('error', text, {
      code,
      ...(typeof e?.offset === 'number' ? { offset: e.offset } : {}),
      ...(typeof e?.recordIndex === 'number' ? { recordIndex: e.recordIndex } : {}),
      ...(typeof e?.recordType === 'string' ? { recordType: e.recordType } : {}),
    });
  } else {
    log?.setProgressClear(null);
    process.stderr.write(`xenmig: ${text}\n`);
  }
}

/** Write and wait until it is flushed (stdout may be a pipe). */
export function writeOut(s: string, stream: NodeJS.WriteStream = process.stdout): Promise<void> {
  return new Promise((resolve) => {
    if (!stream.write(s)) stream.once('drain', resolve);
    else resolve();
  });
}
