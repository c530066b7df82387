// Network namespaces for the output-buffering tests: a "guest" namespace whose veth end g0
// (10.77.0.2) stands for the guest's NIC, and a "dom0" namespace holding its peer v0 (10.77.0.1,
// the vif). Processes run inside with `ip netns exec`; LineProc reads their stdout line by line.
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';

export const GUEST_IP = '10.77.0.2';
export const DOM0_IP = '10.77.0.1';

/** why namespaces cannot be used here, or null when they can */
export function netnsUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (ip netns)';
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return `ip netns unavailable: ${r.error?.message ?? r.stderr}`;
  return null;
}

function ip(...args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
}

export interface Topology {
  guest: string;
  dom0: string;
  destroy(): void;
}

export function makeTopology(tag: string): Topology {
  const guest = `xnb-g-${tag}`;
  const dom0 = `xnb-d-${tag}`;
  for (const ns of [guest, dom0]) spawnSync('ip', ['netns', 'del', ns]);
  ip('netns', 'add', guest);
  ip('netns', 'add', dom0);
  ip('-n', dom0, 'link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'g0', 'netns', guest);
  ip('-n', dom0, 'addr', 'add', `${DOM0_IP}/24`, 'dev', 'v0');
  ip('-n', guest, 'addr', 'add', `${GUEST_IP}/24`, 'dev', 'g0');
  for (const [ns, dev] of [
    [dom0, 'v0'],
    [guest, 'g0'],
    [dom0, 'lo'],
    [guest, 'lo'],
  ] as const)
    ip('-n', ns, 'link', 'set', dev, 'up');
  return {
    guest,
    dom0,
    destroy() {
      for (const ns of [guest, dom0]) spawnSync('ip', ['netns', 'del', ns]);
    },
  };
}

/** `ip netns exec NS` + cmd as a child whose stdout lines are awaited. */
export class LineProc {
  readonly child: ChildProcessWithoutNullStreams;
  readonly lines: string[] = [];
  stderr = '';
  #waiters: (() => void)[] = [];
  exited: Promise<number | null>;

  constructor(ns: string, cmd: string[]) {
    this.child = spawn('ip', ['netns', 'exec', ns, ...cmd], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stderr.on('data', (d) => (this.stderr += d));
    createInterface({ input: this.child.stdout }).on('line', (l) => {
      this.lines.push(l);
      for (const w of this.#waiters.splice(0)) w();
    });
    this.exited = new Promise((r) => this.child.on('exit', (code) => r(code)));
  }

  /** the next line matching `re` after index `from` (default: any line not yet returned) */
  async waitFor(re: RegExp, timeoutMs = 10_000): Promise<string> {
    const t0 = Date.now();
    for (;;) {
      const hit = this.lines.find((l) => re.test(l));
      if (hit !== undefined) {
        this.lines.splice(this.lines.indexOf(hit), 1);
        return hit;
      }
      if (Date.now() - t0 > timeoutMs)
        throw new Error(
          `no line matching ${re} within ${timeoutMs} ms; got ${JSON.stringify(this.lines)}; stderr: ${this.stderr}`,
        );
      await new Promise<void>((r) => {
        const t = setTimeout(r, 50);
        this.#waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  send(line: string): void {
    this.child.stdin.write(line + '\n');
  }

  /** sends a command and waits for its "ok"/"error" answer */
  async command(line: string): Promise<string> {
    this.send(line);
    return this.waitFor(/^(ok|error) /);
  }

  kill(sig: NodeJS.Signals = 'SIGTERM'): void {
    this.child.kill(sig);
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
