// The steps the real-Xen scenario must report (id -> support-table cell). Shared by the vitest
// runner (a step that did not report is a failure) and the RESULTS.md generator.
export const EXPECTED = [
  '0.1', '0.2',
  '1.1', '1.2', '1.3.pv', '1.3.pvh', '1.4', '1.5.pv', '1.5.pvh', '1.6.pvh', '1.6.pv', '1.7', '1.8',
  '2.1.pv', '2.2.pv', '2.3.pv', '2.1.pvh', '2.2.pvh', '2.3.pvh', '2.4.pv',
  '4.pvh', '3.pv', '3.pvh', '6.pvh', '5.xl', '5.pvh', '7.xl', '8.xl', '9.1', '9.2', '10.1', '10.2', '10.3', '10.4',
];

/** Support table rows: [guest, operation, xenmig->xl step ids, xl->xenmig step ids, xenmig->xenmig step ids] */
export const TABLE = [
  ['PV', 'hypervisor access (addon: info, pause, map via p2m, contexts)', ['1.1', '1.2', '1.3.pv', '1.4', '1.5.pv', '1.7', '1.8'], null, null],
  ['PVH', 'hypervisor access (addon: info, pause, map by gfn, log-dirty, contexts)', ['1.1', '1.3.pvh', '1.4', '1.5.pvh', '1.6.pvh', '1.7', '1.8'], null, null],
  ['PV', 'save / restore (non-live)', ['2.1.pv', '2.2.pv', '2.3.pv'], ['3.pv'], null],
  ['PV', 'live save / live migration', ['2.4.pv', '1.6.pv'], null, null],
  ['PVH', 'save (live) / restore', ['2.1.pvh', '2.2.pvh', '2.3.pvh'], ['3.pvh'], null],
  ['PVH', 'live migration (same host)', ['4.pvh'], ['7.xl'], ['6.pvh']],
  ['PVH', 'Remus (replication, then failover to the backup)', ['5.xl'], ['8.xl'], ['5.pvh']],
  ['PVH', 'refused up front, source runs on (receiver without device support; PCI passthrough)', ['9.2'], null, ['9.1']],
  ['HVM + QEMU', 'boot; save / restore; live migration (same host)', ['10.1', '10.2', '10.3'], ['10.4'], null],
];
