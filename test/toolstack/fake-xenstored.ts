// A small xenstored for tests: the xs_wire protocol (16-byte header: type, req id, tx id, length)
// on a unix socket, over a flat map of paths. Enough for src/toolstack/xenstore.ts: READ, WRITE,
// MKDIR, RM, DIRECTORY, SET_PERMS, INTRODUCE, RELEASE, RESUME, WATCH (an event at once, as xenstored
// sends, and on fire()); errors as XS_ERROR with an errno name.
import net from 'node:net';
import { join } from 'node:path';

const T = {
  DIRECTORY: 1,
  READ: 2,
  INTRODUCE: 8,
  RELEASE: 9,
  WRITE: 11,
  MKDIR: 12,
  RM: 13,
  SET_PERMS: 14,
  ERROR: 16,
  RESUME: 18,
  WATCH: 4,
  WATCH_EVENT: 15,
} as const;

export interface FakeXenstored {
  path: string;
  /** path → value ('' for a directory node) */
  tree: Map<string, string>;
  /** every request, in order: "WRITE /local/domain/1/name" */
  log: string[];
  /** send a watch event for `path` to every connection watching exactly it (e.g. @releaseDomain) */
  fire(path: string): void;
  close(): Promise<void>;
}

function frame(type: number, id: number, body: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32LE(type, 0);
  h.writeUInt32LE(id, 4);
  h.writeUInt32LE(0, 8);
  h.writeUInt32LE(body.length, 12);
  return Buffer.concat([h, body]);
}

function parents(p: string): string[] {
  const out: string[] = [];
  for (let i = p.indexOf('/', 1); i > 0; i = p.indexOf('/', i + 1)) out.push(p.slice(0, i));
  return out;
}

export async function startFakeXenstored(
  dir: string,
  initial: Record<string, string> = {},
): Promise<FakeXenstored> {
  const tree = new Map<string, string>();
  const log: string[] = [];
  const put = (p: string, v: string) => {
    for (const q of parents(p)) if (!tree.has(q)) tree.set(q, '');
    tree.set(p, v);
  };
  for (const [k, v] of Object.entries(initial)) put(k, v);
  const path = join(dir, `xenstored-${process.pid}-${Date.now()}.sock`);
  const watches: { sock: net.Socket; path: string; token: string }[] = [];
  const event = (w: { sock: net.Socket; path: string; token: string }) =>
    w.sock.write(frame(T.WATCH_EVENT, 0, Buffer.from(`${w.path}\0${w.token}\0`)));
  const server = net.createServer((sock) => {
    sock.on('close', () => {
      for (let i = watches.length - 1; i >= 0; i--) if (watches[i]!.sock === sock) watches.splice(i, 1);
    });
    let buf = Buffer.alloc(0);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 16 && buf.length >= 16 + buf.readUInt32LE(12)) {
        const type = buf.readUInt32LE(0);
        const id = buf.readUInt32LE(4);
        const len = buf.readUInt32LE(12);
        const body = buf.subarray(16, 16 + len);
        buf = buf.subarray(16 + len);
        const parts = body.toString('utf8').split('\0');
        const p = parts[0] ?? '';
        let reply: Buffer;
        let rtype: number = type;
        const err = (e: string) => {
          rtype = T.ERROR;
          return Buffer.from(e + '\0');
        };
        const ok = Buffer.from('OK\0');
        switch (type) {
          case T.READ:
            reply = tree.has(p) ? Buffer.from(tree.get(p)!) : err('ENOENT');
            break;
          case T.WRITE: {
            const z = body.indexOf(0);
            put(p, body.subarray(z + 1).toString('utf8'));
            reply = ok;
            break;
          }
          case T.MKDIR:
            if (!tree.has(p)) put(p, '');
            reply = ok;
            break;
          case T.RM:
            if (!tree.has(p)) reply = err('ENOENT');
            else {
              for (const k of [...tree.keys()]) if (k === p || k.startsWith(p + '/')) tree.delete(k);
              reply = ok;
            }
            break;
          case T.DIRECTORY:
            if (!tree.has(p)) reply = err('ENOENT');
            else {
              const kids = [...tree.keys()]
                .filter((k) => k.startsWith(p + '/') && !k.slice(p.length + 1).includes('/'))
                .map((k) => k.slice(p.length + 1));
              reply = Buffer.from(kids.map((k) => k + '\0').join(''));
            }
            break;
          case T.SET_PERMS:
            reply = tree.has(p) ? ok : err('ENOENT');
            break;
          case T.WATCH: {
            const w = { sock, path: p, token: parts[1] ?? '' };
            watches.push(w);
            // the reply first, then the initial event (xenstored's order)
            setImmediate(() => event(w));
            reply = ok;
            break;
          }
          case T.INTRODUCE:
          case T.RELEASE:
          case T.RESUME:
            reply = ok;
            break;
          default:
            reply = err('EINVAL');
        }
        log.push(`${Object.entries(T).find(([, v]) => v === type)?.[0] ?? type} ${p}`);
        sock.write(frame(rtype, id, reply));
      }
    });
    sock.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return {
    path,
    tree,
    log,
    fire: (p: string) => {
      for (const w of watches) if (w.path === p) event(w);
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
