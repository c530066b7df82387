// Remus backup for the rig (step 5): receiveReplica() on stdin/stdout with the library's defaults for
// a real host (xenBuilder builds the replica; it is finished — grant seed, xenstore, console — after
// the last complete checkpoint and takes the guest's name at failover). Writes its result to
// /tmp/remus-backup.json. Nothing may be printed on stdout (the channel).
import { writeFileSync } from 'node:fs';
import { receiveReplica } from '../../dist/checkpoint/index.js';
import { openHypervisor } from '../../dist/xen/index.js';

const xen = openHypervisor({ flavour: 'system' });
const out = '/tmp/remus-backup.json';
try {
  const r = await receiveReplica({
    xen,
    // under TCG one checkpoint of a PVH guest takes many seconds (it walks a 4 GiB gfn space);
    // the default 5 s would declare a live primary lost
    failoverTimeoutMs: 30_000,
    log: (l) => process.stderr.write(`backup: ${l}\n`),
  });
  writeFileSync(out, JSON.stringify({ outcome: r.outcome, domid: r.domid, checkpoint: r.checkpoint, guest: r.guest, cause: r.cause ? String(r.cause.message) : undefined }));
} catch (e) {
  writeFileSync(out, JSON.stringify({ outcome: 'error', error: String(e?.stack ?? e) }));
} finally {
  xen.close();
}
