// Remus primary for the rig's step 5.xl: replicates DOMID with xl's Remus wire (banner, no
// acknowledgements) to `xl migrate-receive -r`, spawned on a pipe as `xl remus` runs it through ssh,
// and prints one JSON line per checkpoint sent on stdout. The guest's vifs are buffered (IFB + plug
// qdisc); towards xl, which never acknowledges, an epoch is released once its checkpoint is written. The scenario freezes this process,
// destroys the guest and kills the process to simulate the primary host's failure.
// Usage: node remus-primary.mjs DOMID CONFIG.json
import { readFileSync } from 'node:fs';
import { remus } from '../../dist/checkpoint/index.js';
import { openHypervisor } from '../../dist/xen/index.js';
import { parseDomainConfig } from '../../dist/toolstack/config.js';
import { spawnChannel } from '../../dist/transport/index.js';
import { createNetBuffer, vifInterfaces } from '../../dist/netbuf/index.js';

const domid = Number(process.argv[2]);
const config = parseDomainConfig(readFileSync(process.argv[3], 'utf8'));
const xen = openHypervisor({ flavour: 'system' });
// The backup's stderr goes to a file, not through this process: when the primary dies, a backup
// writing its log into a pipe nobody reads would die of SIGPIPE/EPIPE instead of failing over.
const channel = await spawnChannel(['sh', '-c', 'exec xl migrate-receive -r 2>>/tmp/remus-backup.log'], {
  role: 'sender',
  label: 'remus-backup',
});
const log = (l) => process.stderr.write(`primary: ${l}\n`);
const netBuffer = createNetBuffer({ interfaces: vifInterfaces(config.json, domid), backend: 'plug', log });
const h = remus(domid, '-', { xen, channel, config, netBuffer, protocol: 'xl', intervalMs: 1000, log });
for await (const st of h)
  process.stdout.write(
    JSON.stringify({
      checkpoint: st.checkpoint,
      pauseMs: st.pauseMs,
      dirtyPages: st.dirtyPages,
      atMs: st.atMs,
    }) + '\n',
  );
const r = await h.done;
process.stdout.write(
  JSON.stringify({ done: r.reason, error: r.error ? String(r.error.message) : undefined }) + '\n',
);
