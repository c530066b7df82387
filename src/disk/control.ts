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

/** One primary's control connection, as the daemon sees it. */
interface ControlSession {
  readonly sock: Socket;
  readonly img: ReplicatedImage;
  readonly log: (l: string) => void;
  /** this connection started tracking (and stops it when it ends) */
  started: boolean;
}

/** A request's handler and the payload length its op takes. `m` is the frame: op byte, then payload. */
interface ControlHandler {
  readonly payload: number;
  run(s: ControlSession, m: Buffer): Promise<void>;
}

function refuse(message: string, offset?: number): DiskError {
  return new DiskError(DiskErrorCode.ERR_DISK_CONTROL, message, { offset });
}

function ok(s: ControlSession, p?: Uint8Array): Promise<void> {
  return writeOut(s.sock, frame(CtlStatus.OK, p));
}

function okCount(s: ControlSession, n: number): Promise<void> {
  const p = Buffer.allocUnsafe(4);
  p.writeUInt32BE(n, 0);
  return ok(s, p);
}

const controlHandlers: Partial<Record<number, ControlHandler>> = {
  [CtlOp.HELLO]: {
    payload: 0,
    run: (s) => {
      const { img } = s;
      const hello: HelloInfo = {
        name: img.name,
        size: img.size,
        blockSize: img.blockSize,
        epoch: img.trackingEpoch,
      };
      return ok(s, Buffer.from(JSON.stringify(hello)));
    },
  },
  [CtlOp.START]: {
    payload: 0,
    run: (s) => {
      if (s.started || s.img.trackingEpoch !== 0)
        throw refuse('another primary replicates this disk already');
      s.img.start();
      s.started = true;
      s.log(`disk: replication started (epoch 1 open)`);
      return ok(s);
    },
  },
  [CtlOp.ROTATE]: {
    payload: 4,
    run: (s, m) => {
      if (!s.started) throw refuse('ROTATE before START');
      return okCount(s, s.img.rotate(m.readUInt32BE(1)));
    },
  },
  [CtlOp.FETCH]: { payload: 8, run: fetchEpoch },
  [CtlOp.READ]: {
    payload: 12,
    run: (s, m) => {
      const off = Number(m.readBigUInt64BE(1));
      const len = m.readUInt32BE(9);
      if (len > MAX_READ || off + len > s.img.size)
        throw refuse(`READ ${off} +${len} outside the image (${s.img.size} bytes) or over ${MAX_READ}`);
      return ok(s, s.img.read(off, len));
    },
  },
  [CtlOp.STOP]: {
    payload: 0,
    run: (s) => {
      if (s.started) s.img.stop();
      s.started = false;
      return ok(s);
    },
  },
};

/** FETCH: the closed epoch's blocks in CHUNK frames, then OK with their count. */
async function fetchEpoch(s: ControlSession, m: Buffer): Promise<void> {
  const { img } = s;
  if (!s.started) throw refuse('FETCH before START');
  const n = m.readUInt32BE(1);
  // a chunk stays under 16 MiB of data
  const max = Math.max(1, Math.min(MAX_FETCH_BLOCKS, (16 << 20) / img.blockSize, m.readUInt32BE(5)));
  let total = 0;
  for await (const c of img.fetch(n, max)) {
    const head = Buffer.allocUnsafe(4 + 8 * c.blocks.length);
    head.writeUInt32BE(c.blocks.length, 0);
    c.blocks.forEach((b, i) => head.writeBigUInt64BE(BigInt(b), 4 + 8 * i));
    await writeOut(s.sock, frame(CtlStatus.CHUNK, Buffer.concat([head, c.data])));
    total += c.blocks.length;
  }
  await okCount(s, total);
}

/** Reads one request frame and answers it; a refused request (a DiskError) is answered ERROR. */
async function serveControlRequest(s: ControlSession, rd: ByteReader): Promise<void> {
  const at = rd.position;
  const len = (await rd.read(4)).readUInt32BE(0);
  if (len < 1 || len > MAX_REQUEST_FRAME) throw refuse(`control request of ${len} bytes`, at);
  const m = await rd.read(len);
  const op = m[0]!;
  try {
    const handler = controlHandlers[op];
    if (!handler) throw refuse(`unknown control op ${op}`, at + 4);
    if (m.length !== 1 + handler.payload)
      throw refuse(`control op ${op} with ${m.length - 1} payload bytes (${handler.payload})`, at);
    await handler.run(s, m);
  } catch (e) {
    if (!(e instanceof DiskError)) throw e;
    // a refused request: the connection stays usable
    await writeOut(s.sock, frame(CtlStatus.ERROR, Buffer.from(e.message)));
  }
}

/** Daemon side: serve one primary's control connection. Never throws; tracking stops when it ends. */
export async function serveControlConnection(
  sock: Socket,
  img: ReplicatedImage,
  log: (l: string) => void = () => {},
): Promise<void> {
  const rd = new ByteReader(sock, 1 << 16);
  const s: ControlSession = { sock, img, log, started: false };
  try {
    for (;;) await serveControlRequest(s, rd);
  } catch (e) {
    if (!(e instanceof EndOfInput)) log(`disk: control connection dropped: ${(e as Error).message}`);
  } finally {
    if (s.started) {
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
