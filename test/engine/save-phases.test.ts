// XENMIG_TRACE_PHASES=1: the save engine reports where its page walk spent its time (stats.phases),
// the figures the real-Xen rig's save benchmark prints; without it, nothing is measured.
import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openMockHost, type MockHypervisor } from '../../src/xen/hypervisor.js';
import { libxcSave } from '../../src/engine/save/save.js';
import { StreamWriter } from '../../src/stream/index.js';
import { tempHost } from './helpers/pv.js';

const sink = () =>
  new Writable({
    write(_c, _e, cb) {
      cb();
    },
  });

describe('save engine: per-phase times (XENMIG_TRACE_PHASES)', () => {
  let host: ReturnType<typeof tempHost>;
  let xen: MockHypervisor;
  const saved = process.env.XENMIG_TRACE_PHASES;
  beforeAll(() => {
    host = tempHost('xenmig-phases-');
    xen = openMockHost(host.dir);
  });
  afterEach(() => {
    if (saved === undefined) delete process.env.XENMIG_TRACE_PHASES;
    else process.env.XENMIG_TRACE_PHASES = saved;
  });
  afterAll(() => {
    xen?.close();
    host?.cleanup();
  });

  const save = async () => {
    const d = xen.createDomain({ type: 'hvm', pages: 3000, vcpus: 1 });
    return libxcSave({
      xen,
      domid: d,
      out: new StreamWriter(sink()),
      live: false,
      zeroCopy: true,
      callbacks: { suspend: async () => xen.shutdown(d, 2) },
    });
  };

  it('on: every phase of the walk is timed, and together they are within the round', async () => {
    process.env.XENMIG_TRACE_PHASES = '1';
    const stats = await save();
    const ph = stats.phases!;
    for (const k of ['collect', 'classify', 'pfnTypes', 'types', 'map', 'header', 'emit', 'retire'])
      expect(ph[k], k).toBeGreaterThanOrEqual(0);
    const sum = Object.values(ph).reduce((a, b) => a + b, 0);
    expect(sum).toBeGreaterThan(0);
    expect(sum).toBeLessThanOrEqual(stats.rounds.reduce((a, r) => a + r.ms, 0) + 1);
  });

  it('off: no phases', async () => {
    delete process.env.XENMIG_TRACE_PHASES;
    expect((await save()).phases).toBeUndefined();
  });
});
