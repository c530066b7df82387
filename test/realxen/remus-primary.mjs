// Remus primary for the rig (step 5): replicates DOMID to a xenmig backup (remus-backup.mjs, spawned
// on a pipe) and prints one JSON line per acknowledged checkpoint on stdout. The scenario SIGKILLs
// this process and destroys the guest to simulate the primary host's failure.
// With PROTOCOL=xl the backup is `xl migrate-receive -r` (xl's Remus wire: no acknowledgements).
// Usage: node remus-primary.mjs DOMID CONFIG.json [xenmig|xl]
import { readFileSync } from 'node:fs';
import { remus } from '../../dist/checkpoint/index.js';
import { openHypervisor } from '../../dist/xen/index.js';
import { parseDomainConfig } from '../../dist/toolstack/config.js';
import { spawnChannel } from '../../dist/transport/index.js';

const domid = Number(process.argv[2]);
const config = parseDomainConfig(readFileSync(process.argv[3], 'utf8'));
const xen = openHypervisor({ flavour: 'system' });
const protocol = process.argv[4] === 'xl' ? 'xl' : 'xenmig';
// The backup's stderr goes to a file, not through this process: when the primary dies, a backup
// writing its log into a pipe nobody reads would die of SIGPIPE/EPIPE instead of failing over.
const backup = protocol === 'xl' ? 'exec xl migrate-receive -r' : 'exec node test/realxen/remus-backup.mjs';
const channel = await spawnChannel(['sh', '-c', `${backup} 2>>/tmp/remus-backup.log`], { role: 'sender', label: 'remus-backup' });
const h = remus(domid, '-', { xen, channel, config, protocol, intervalMs: 1000, log: (l) => process.stderr.write(`primary: ${l}\n`) });
for await (const st of h) process.stdout.write(JSON.stringify({ checkpoint: st.checkpoint, lastAcked: h.lastAcked, pauseMs: st.pauseMs, dirtyPages: st.dirtyPages, atMs: st.atMs }) + '\n');
const r = await h.done;
process.stdout.write(JSON.stringify({ done: r.reason, error: r.error ? String(r.error.message) : undefined }) + '\n');
