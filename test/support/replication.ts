// The backup side of in-process replication tests: receiveReplica listening on the loopback.
import { receiveReplica, type ReplicaOptions, type ReplicaResult } from '../../src/checkpoint/index.js';

/**
 * receiveReplica on 127.0.0.1 (a free port, plain TCP, no log) with `opts` on top, and the tcp:// URL
 * its primary connects to, once it listens. Rejects when the backup ends before it listens.
 */
export async function inProcessBackup(
  opts: Omit<ReplicaOptions, 'listen' | 'onListening' | 'insecure'>,
): Promise<{ backup: Promise<ReplicaResult>; url: string }> {
  let onListening!: (port: number) => void;
  const listening = new Promise<number>((r) => (onListening = r));
  const backup = receiveReplica({
    listen: { host: '127.0.0.1', port: 0 },
    insecure: true,
    log: () => {},
    ...opts,
    onListening,
  });
  const ended = backup.then(() => {
    throw new Error('the backup ended before it listened');
  });
  const port = await Promise.race([listening, ended]);
  return { backup, url: `tcp://127.0.0.1:${port}` };
}
