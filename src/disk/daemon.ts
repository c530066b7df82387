// The disk daemon (`xenmig disk serve`): serves one image over NBD on a unix socket (dom0's
// nbd-client makes it /dev/nbdN, the guest's vbd) and answers a Remus primary on a control socket.
// Long-lived: it must run before the guest boots and for as long as the guest uses the disk.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { existsSync, rmSync } from 'node:fs';
import { ReplicatedImage, type ImageOptions } from './image.js';
import { serveNbdConnection } from './nbd.js';
import { serveControlConnection } from './control.js';
import { DiskError, DiskErrorCode } from './errors.js';

export interface DiskServeOptions extends ImageOptions {
  /** NBD unix socket path */
  socket: string;
  /** control unix socket path (for `xenmig remus --disk NAME=PATH`) */
  control: string;
  /** largest NBD request, bytes (default 32 MiB) */
  maxRequest?: number;
  log?: (l: string) => void;
}

export interface DiskServer {
  readonly image: ReplicatedImage;
  close(): Promise<void>;
}

/** A socket path that nothing listens on any more is removed; one in use is refused. */
async function claimSocketPath(path: string): Promise<void> {
  if (!existsSync(path)) return;
  const live = await new Promise<boolean>((resolve) => {
    const s = createConnection(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (live) throw new DiskError(DiskErrorCode.ERR_DISK_SETUP, `${path}: another server listens there`);
  rmSync(path, { force: true });
}

function listenOn(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', (e) =>
      reject(
        new DiskError(DiskErrorCode.ERR_DISK_SETUP, `cannot listen on ${path}: ${e.message}`, { cause: e }),
      ),
    );
    server.listen(path, () => resolve());
  });
}

export async function serveDisk(imagePath: string, opts: DiskServeOptions): Promise<DiskServer> {
  const log = opts.log ?? (() => {});
  if (opts.socket === opts.control)
    throw new DiskError(DiskErrorCode.ERR_DISK_SETUP, '--socket and --control must be two paths');
  const image = new ReplicatedImage(imagePath, opts);
  const servers: Server[] = [];
  const sockets = new Set<Socket>();
  const track = (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  };
  try {
    await claimSocketPath(opts.socket);
    await claimSocketPath(opts.control);
    let clients = 0;
    const nbd = createServer((sock) => {
      track(sock);
      const id = ++clients;
      log(`nbd: client ${id} connected`);
      void serveNbdConnection(sock, image, {
        ...(opts.maxRequest ? { maxRequest: opts.maxRequest } : {}),
        log,
      }).then((r) =>
        log(
          `nbd: client ${id} ${r.reason} after ${r.requests} requests${r.error ? `: ${r.error.message}` : ''}`,
        ),
      );
    });
    servers.push(nbd);
    await listenOn(nbd, opts.socket);
    const ctl = createServer((sock) => {
      track(sock);
      void serveControlConnection(sock, image, log);
    });
    servers.push(ctl);
    await listenOn(ctl, opts.control);
  } catch (e) {
    for (const s of servers) s.close();
    image.close();
    throw e;
  }
  log(
    `disk: serving ${imagePath} (${image.size} bytes, ${image.blockSize}-byte blocks) on ${opts.socket}, control ${opts.control}`,
  );
  return {
    image,
    close: async () => {
      const closed = Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
      for (const s of sockets) s.destroy();
      await closed;
      image.close();
      rmSync(opts.socket, { force: true });
      rmSync(opts.control, { force: true });
    },
  };
}
