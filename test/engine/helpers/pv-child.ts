// A child process for the PV tests (bundled by pv-child-build.ts): the mock host is chosen per
// process, so a second host, or a guest workload beside the saver, lives in its own process.
// argv[2] = JSON job; the answer is one JSON line on stdout.
import { readFileSync } from 'node:fs';
import { openMockHost } from '../../../src/xen/hypervisor.js';
import { restoreLibxc } from './pv.js';
import { inspectPvDomain } from './pv-inspect.js';

interface RestoreJob {
  op: 'restore';
  host: string;
  stream: string;
  pages: number;
  vcpus: number;
  /** pad the host first so domids and frames differ from the source host */
  padPages?: number;
}
interface WorkloadJob {
  op: 'workload';
  host: string;
  domid: number;
  rate: number;
  seed: number;
  durationMs: number;
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2]!) as RestoreJob | WorkloadJob;
  const xen = openMockHost(job.host);
  if (job.op === 'workload') {
    // tell the parent we run, then write until the duration ends or the domain is destroyed
    process.stdout.write(JSON.stringify({ started: true }) + '\n');
    const writes = await xen.workload(job.domid, {
      rate: job.rate,
      seed: job.seed,
      durationMs: job.durationMs,
    });
    process.stdout.write(JSON.stringify({ writes }) + '\n');
    return;
  }
  if (job.padPages) xen.createDomain({ type: 'pv', pages: job.padPages, vcpus: 1 });
  const domid = xen.createDomain({ type: 'pv', pages: job.pages, vcpus: job.vcpus, populate: false });
  const stats = await restoreLibxc(xen, domid, readFileSync(job.stream));
  const checksum = xen.checksum(domid);
  const facts = inspectPvDomain(xen, domid);
  process.stdout.write(JSON.stringify({ domid, checksum, pages: stats.pages, facts }) + '\n');
}

main().catch((e: unknown) => {
  const err = e as { code?: string; message?: string };
  process.stdout.write(JSON.stringify({ error: err.message ?? String(e), code: err.code }) + '\n');
  process.exitCode = 1;
});
