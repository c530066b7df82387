// Child processes of the tests (the CLI, fixtures) and their JSON-lines output, and the listeners
// that report their port: shared by the replication, disk and CLI tests.
import { spawn, type ChildProcess } from 'node:child_process';

/** A listener's onListening callback and the port it reports. */
export function listeningPort(): { onListening: (port: number) => void; port: Promise<number> } {
  let onListening!: (port: number) => void;
  const port = new Promise<number>((r) => (onListening = r));
  return { onListening, port };
}

export class Proc {
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  stderr = '';
  private waiters: (() => void)[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(script: string, args: string[]) {
    this.child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    this.child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      buf += s;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        this.lines.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
      for (const w of this.waiters.splice(0)) w();
    });
    this.child.stderr!.setEncoding('utf8').on('data', (s: string) => {
      this.stderr += s;
    });
    this.exited = new Promise((resolve) =>
      this.child.on('exit', (code, signal) => resolve({ code, signal })),
    );
    void this.exited.then(() => {
      for (const w of this.waiters.splice(0)) w();
    });
  }

  get json(): Record<string, unknown>[] {
    return this.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  /** Wait for a stdout JSON line matching `pred` (rejects if the process exits first). */
  async waitFor(
    pred: (j: Record<string, unknown>) => boolean,
    what: string,
  ): Promise<Record<string, unknown>> {
    for (;;) {
      const hit = this.json.find(pred);
      if (hit) return hit;
      if (this.child.exitCode !== null || this.child.signalCode !== null)
        throw new Error(`process exited before ${what}; stderr:\n${this.stderr}`);
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  kill(sig: NodeJS.Signals = 'SIGTERM'): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(sig);
  }
}

/**
 * `remus-receive` on the mock host directory `host`, listening on 127.0.0.1 (a free port, plain TCP,
 * JSON lines): the backup of a replication test. `cli` is the CLI script to run; `extra` its options.
 */
export async function startBackupProcess(
  cli: string,
  host: string,
  extra: string[] = [],
): Promise<{ proc: Proc; port: number }> {
  const proc = new Proc(cli, [
    'remus-receive',
    '--host',
    host,
    '--listen',
    '127.0.0.1:0',
    '--insecure',
    '--json',
    ...extra,
  ]);
  const l = await proc.waitFor((j) => typeof j.listening === 'number', 'the listening port');
  return { proc, port: l.listening as number };
}

/**
 * `remus DOMID tcp://127.0.0.1:PORT` on the mock host directory `host` (plain TCP): the primary of a
 * replication test. `cli` is the CLI script to run; `extra` its options.
 */
export function startPrimaryProcess(
  cli: string,
  domid: number,
  port: number,
  host: string,
  extra: string[],
): Proc {
  return new Proc(cli, [
    'remus',
    String(domid),
    `tcp://127.0.0.1:${port}`,
    '--host',
    host,
    '--insecure',
    ...extra,
  ]);
}
