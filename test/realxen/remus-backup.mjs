// Remus backup for the rig (step 5): receiveReplica() on stdin/stdout with the real-host builder;
// at failover the builder finishes the replica (grant seed, xenstore, console) before it is resumed.
// Writes its result to /tmp/remus-backup.json. Nothing may be printed on stdout (the channel).
import { writeFileSync } from 'node:fs';
import { receiveReplica } from '../../dist/checkpoint/index.js';
import { openHypervisor } from '../../dist/xen/index.js';
import { xenBuilder } from '../../dist/toolstack/xen-builder.js';

const xen = openHypervisor({ flavour: 'system' });
const builder = xenBuilder(xen);
const out = '/tmp/remus-backup.json';
try {
  const r = await receiveReplica({
    xen,
    builder,
    // the primary may send nothing for several seconds while it scans a PVH guest's gfn space under
    // TCG (the initial round has no heartbeats): 5 s (the default) declared it lost before checkpoint 1
    failoverTimeoutMs: 30_000,
    log: (l) => process.stderr.write(`backup: ${l}\n`),
    onFailover: async (n, _x, domid) => {
      process.stderr.write(`backup: failover at checkpoint ${n}, finishing domid ${domid}\n`);
      await builder.finish(domid);
    },
  });
  writeFileSync(out, JSON.stringify({ outcome: r.outcome, domid: r.domid, checkpoint: r.checkpoint, guest: r.guest, cause: r.cause ? String(r.cause.message) : undefined }));
} catch (e) {
  writeFileSync(out, JSON.stringify({ outcome: 'error', error: String(e?.stack ?? e) }));
} finally {
  xen.close();
}
