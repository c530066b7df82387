// The control protocol between a Remus primary and a disk daemon (`xenmig disk serve`), on a unix
// socket opened once per replication. Frames: u32 length (big-endian) of what follows, u8 op (a
// request) or status (a reply), payload. Requests are answered in order, one at a time.
//
//   HELLO  1                        -> OK json {name, size, blockSize, epoch}
//   START  2                        -> OK                   tracking on, epoch 1 open
//   ROTATE 3  u32 n                 -> OK u32 blocks        epoch n closed, n+1 open (in the pause)
//   FETCH  4  u32 n, u32 maxBlocks  -> CHUNK* then OK u32 blocks
//                                      CHUNK: u32 count, count x u64 block, count x blockSize data
//   READ   5  u64 offset, u32 len   -> OK data              the initial copy (len <= 4 MiB)
//   STOP   6                        -> OK                   tracking off
// Status: 0 OK, 1 ERROR (UTF-8 message), 2 CHUNK. The connection closing is STOP: a primary that
// dies leaves nothing tracked behind.
import { createConnection, type Socket } from 'node:net';
import { ByteReader, EndOfInput, writeOut } from './bytes.js';
import { DiskError, DiskErrorCode } from './errors.js';
import type { ReplicatedImage } from './image.js';

export const CtlOp = { HELLO: 1, START: 2, ROTATE: 3, FETCH: 4, READ: 5, STOP: 6 } as const;
export const CtlStatus = { OK: 0, ERROR: 1, CHUNK: 2 } as const;
export const MAX_READ = 4 << 20;
const MAX_REQUEST_FRAME = 64;
const MAX_FETCH_BLOCKS = 4096;

function frame(code: number, payload: Uint8Array = new Uint8Array(0)): Buffer {
  const b = Buffer.allocUnsafe(5 + payload.length);
  b.writeUInt32BE(1 + payload.length, 0);
  b[4] = code;
  b.set(payload, 5);
  return b;
}

export interface HelloInfo {
  name: string;
  size: number;
  blockSize: number;
  /** the open epoch (0: not tracking) */
  epoch: number;
}

/** Daemon side: serve one primary's control connection. Never throws; tracking stops when it ends. */
export async function serveControlConnection(
  sock: Socket,
  img: ReplicatedImage,
  log: (l: string) => void = () => {},
): Promise<void> {
  const rd = new ByteReader(sock, 1 << 16);
  let started = false;
  const ok = (p?: Uint8Array) => writeOut(sock, frame(CtlStatus.OK, p));
  try {
    for (;;) {
      const at = rd.position;
      const len = (await rd.read(4)).readUInt32BE(0);
      if (len < 1 || len > MAX_REQUEST_FRAME)
        throw new DiskError(DiskErrorCode.ERR_DISK_CONTROL, `control request of ${len} bytes`, {
          offset: at,
        });
      const m = await rd.read(len);
      const op = m[0]!;
      const need = (n: number) => {
        if (m.length !== 1 + n)
          throw new DiskError(
            DiskErrorCode.ERR_DISK_CONTROL,
            `control op ${op} with ${m.length - 1} payload bytes (${n})`,
            { offset: at },
          );
      };
      try {
        switch (op) {
          case CtlOp.HELLO:
            need(0);
            await ok(
              Buffer.from(
                JSON.stringify({
                  name: img.name,
                  size: img.size,
                  blockSize: img.blockSize,
                  epoch: img.trackingEpoch,
                } satisfies HelloInfo),
              ),
            );
            break;
          case CtlOp.START:
            need(0);
            if (started || img.trackingEpoch !== 0)
              throw new DiskError(
                DiskErrorCode.ERR_DISK_CONTROL,
                'another primary replicates this disk already',
              );
            img.start();
            started = true;
            log(`disk: replication started (epoch 1 open)`);
            await ok();
            break;
          case CtlOp.ROTATE: {
            need(4);
            if (!started) throw new DiskError(DiskErrorCode.ERR_DISK_CONTROL, 'ROTATE before START');
            const count = img.rotate(m.readUInt32BE(1));
            const p = Buffer.allocUnsafe(4);
            p.writeUInt32BE(count, 0);
            await ok(p);
            break;
          }
          case CtlOp.FETCH: {
            need(8);
            if (!started) throw new DiskError(DiskErrorCode.ERR_DISK_CONTROL, 'FETCH before START');
            const n = m.readUInt32BE(1);
            // a chunk stays under 16 MiB of data
            const max = Math.max(
              1,
              Math.min(MAX_FETCH_BLOCKS, (16 << 20) / img.blockSize, m.readUInt32BE(5)),
            );
            let total = 0;
            for await (const c of img.fetch(n, max)) {
              const head = Buffer.allocUnsafe(4 + 8 * c.blocks.length);
              head.writeUInt32BE(c.blocks.length, 0);
              c.blocks.forEach((b, i) => head.writeBigUInt64BE(BigInt(b), 4 + 8 * i));
              await writeOut(sock, frame(CtlStatus.CHUNK, Buffer.concat([head, c.data])));
              total += c.blocks.length;
            }
            const p = Buffer.allocUnsafe(4);
            p.writeUInt32BE(total, 0);
            await ok(p);
            break;
          }
          case CtlOp.READ: {
            need(12);
            const off = Number(m.readBigUInt64BE(1));
            const len = m.readUInt32BE(9);
            if (len > MAX_READ || off + len > img.size)
              throw new DiskError(
                DiskErrorCode.ERR_DISK_CONTROL,
                `READ ${off} +${len} outside the image (${img.size} bytes) or over ${MAX_READ}`,
              );
            await ok(img.read(off, len));
            break;
          }
          case CtlOp.STOP:
            need(0);
            if (started) img.stop();
            started = false;
            await ok();
            break;
          default:
            throw new DiskError(DiskErrorCode.ERR_DISK_CONTROL, `unknown control op ${op}`, {
              offset: at + 4,
            });
        }
      } catch (e) {
        if (!(e instanceof DiskError)) throw e;
        // a refused request: the connection stays usable
        await writeOut(sock, frame(CtlStatus.ERROR, Buffer.from(e.message)));
      }
    }
  } catch (e) {
    if (!(e instanceof EndOfInput)) log(`disk: control connection dropped: ${(e as Error).message}`);
  } finally {
    if (started) {
      img.stop();
      log('disk: the primary went away: replication stopped, nothing tracked');
    }
    sock.destroy();
  }
}

/** Primary side: one connection to a disk daemon. */
export class DiskControlClient {
  private rd: ByteReader;
  private chain: Promise<unknown> = Promise.resolve();

  /** a daemon that does not answer within this many ms is lost (the guest may be suspended meanwhile) */
  timeoutMs = 10_000;

  private constructor(
    private readonly sock: Socket,
    readonly path: string,
  ) {
    this.rd = new ByteReader(sock, 64 << 20);
  }

  static connect(path: string, timeoutMs = 5000): Promise<DiskControlClient> {
    return new Promise((resolve, reject) => {
      const s = createConnection(path);
      const t = setTimeout(() => {
        s.destroy();
        reject(
          new DiskError(
            DiskErrorCode.ERR_DISK_SETUP,
            `disk daemon at ${path}: no connection within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(t);
        s.setNoDelay?.(true);
        s.removeAllListeners('error');
        s.on('error', () => undefined);
        resolve(new DiskControlClient(s, path));
      });
      s.once('error', (e) => {
        clearTimeout(t);
        reject(
          new DiskError(
            DiskErrorCode.ERR_DISK_SETUP,
            `disk daemon at ${path}: ${e.message} (is \`xenmig disk serve\` running with --control ${path}?)`,
            { cause: e },
          ),
        );
      });
    });
  }

  close(): void {
    this.sock.destroy();
  }

  private async readFrame(): Promise<{ status: number; payload: Buffer }> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.sock.destroy();
        reject(
          new DiskError(
            DiskErrorCode.ERR_DISK_CONTROL,
            `disk daemon at ${this.path}: no answer within ${this.timeoutMs} ms`,
          ),
        );
      }, this.timeoutMs);
    });
    try {
      return await Promise.race([this.frame(), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async frame(): Promise<{ status: number; payload: Buffer }> {
    const len = (await this.rd.read(4)).readUInt32BE(0);
    if (len < 1 || len > 48 << 20)
      throw new DiskError(
        DiskErrorCode.ERR_DISK_CONTROL,
        `disk daemon at ${this.path}: reply frame of ${len} bytes`,
      );
    const f = await this.rd.read(len);
    return { status: f[0]!, payload: f.subarray(1) };
  }

  /** One request; onChunk receives CHUNK frames (FETCH). Requests are serialised. */
  request(
    op: number,
    payload: Uint8Array = new Uint8Array(0),
    onChunk?: (p: Buffer) => Promise<void> | void,
  ): Promise<Buffer> {
    const run = async () => {
      try {
        await writeOut(this.sock, frame(op, payload));
        for (;;) {
          const f = await this.readFrame();
          if (f.status === CtlStatus.CHUNK && onChunk) await onChunk(f.payload);
          else if (f.status === CtlStatus.OK) return f.payload;
          else if (f.status === CtlStatus.ERROR)
            throw new DiskError(
              DiskErrorCode.ERR_DISK_CONTROL,
              `disk daemon at ${this.path}: ${f.payload.toString('utf8')}`,
            );
          else
            throw new DiskError(
              DiskErrorCode.ERR_DISK_CONTROL,
              `disk daemon at ${this.path}: unexpected status ${f.status}`,
            );
        }
      } catch (e) {
        if (e instanceof DiskError) throw e;
        throw new DiskError(
          DiskErrorCode.ERR_DISK_CONTROL,
          `disk daemon at ${this.path}: ${(e as Error).message}`,
          { cause: e },
        );
      }
    };
    const p = this.chain.then(run, run);
    this.chain = p.catch(() => undefined);
    return p;
  }

  async hello(): Promise<HelloInfo> {
    return JSON.parse((await this.request(CtlOp.HELLO)).toString('utf8')) as HelloInfo;
  }

  async start(): Promise<void> {
    await this.request(CtlOp.START);
  }

  async rotate(n: number): Promise<number> {
    const p = Buffer.allocUnsafe(4);
    p.writeUInt32BE(n, 0);
    return (await this.request(CtlOp.ROTATE, p)).readUInt32BE(0);
  }

  /** Epoch n's blocks, chunk by chunk (the next chunk is read only after onChunk settled). */
  async fetch(
    n: number,
    maxBlocks: number,
    blockSize: number,
    onChunk: (blocks: number[], data: Buffer) => Promise<void>,
  ): Promise<number> {
    const p = Buffer.allocUnsafe(8);
    p.writeUInt32BE(n, 0);
    p.writeUInt32BE(maxBlocks, 4);
    const r = await this.request(CtlOp.FETCH, p, async (c) => {
      const count = c.readUInt32BE(0);
      if (count > MAX_FETCH_BLOCKS || c.length !== 4 + count * (8 + blockSize))
        throw new DiskError(
          DiskErrorCode.ERR_DISK_CONTROL,
          `disk daemon at ${this.path}: chunk of ${count} blocks in ${c.length} bytes`,
        );
      const blocks: number[] = [];
      for (let i = 0; i < count; i++) blocks.push(Number(c.readBigUInt64BE(4 + 8 * i)));
      await onChunk(blocks, c.subarray(4 + 8 * count));
    });
    return r.readUInt32BE(0);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const p = Buffer.allocUnsafe(12);
    p.writeBigUInt64BE(BigInt(offset), 0);
    p.writeUInt32BE(length, 8);
    const r = await this.request(CtlOp.READ, p);
    if (r.length !== length)
      throw new DiskError(
        DiskErrorCode.ERR_DISK_CONTROL,
        `disk daemon at ${this.path}: READ returned ${r.length} of ${length} bytes`,
      );
    return r;
  }

  async stop(): Promise<void> {
    await this.request(CtlOp.STOP);
  }
}
