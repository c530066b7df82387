// A xenmig receiver on stdin/stdout for the rig's xenmig -> xenmig migration (step 6): receive()
// with the real-host builder, kept paused until the builder has finished the domain (grant seed,
// xenstore, console), then unpaused. Nothing may be printed on stdout (it is the channel).
import { receive } from '../../dist/api.js';
import { openHypervisor } from '../../dist/xen/index.js';
import { xenBuilder } from '../../dist/toolstack/xen-builder.js';

const xen = openHypervisor({ flavour: 'system' });
const builder = xenBuilder(xen);
try {
  const r = await receive({ xen, builder, paused: true, protocol: 'xenmig' });
  await builder.finish(r.domid);
  if (xen.domainInfo(r.domid).shutdown) xen.resume(r.domid, false);
  xen.unpause(r.domid);
  process.stderr.write(`receiver: domid ${r.domid} running\n`);
  process.exitCode = 0;
} catch (e) {
  process.stderr.write(`receiver: ${e?.code ?? ''} ${e?.stack ?? e}\n`);
  process.exitCode = 1;
} finally {
  xen.close();
}
