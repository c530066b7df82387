// Facts of the Xen ABI (x86, Xen 4.17's public headers) that several layers need: the page size,
// HVM parameter numbers, shutdown reasons. Defined here once; this module imports nothing, so any
// layer may import it (test/structure/layers.test.ts).

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;

/** HVM_PARAM_* numbers (xen/include/public/hvm/params.h). */
export const HvmParam = {
  CALLBACK_IRQ: 0,
  STORE_PFN: 1,
  STORE_EVTCHN: 2,
  PAE_ENABLED: 4,
  IOREQ_PFN: 5,
  BUFIOREQ_PFN: 6,
  VIRIDIAN: 9,
  TIMER_MODE: 10,
  HPET_ENABLED: 11,
  IDENT_PT: 12,
  DM_DOMAIN: 13,
  ACPI_S_STATE: 14,
  VM86_TSS: 15,
  VPT_ALIGN: 16,
  CONSOLE_PFN: 17,
  CONSOLE_EVTCHN: 18,
  ACPI_IOPORTS_LOCATION: 19,
  NESTEDHVM: 24,
  BUFIOREQ_EVTCHN: 26,
  PAGING_RING_PFN: 27,
  MONITOR_RING_PFN: 28,
  SHARING_RING_PFN: 29,
  TRIPLE_FAULT_REASON: 31,
  IOREQ_SERVER_PFN: 32,
  NR_IOREQ_SERVER_PAGES: 33,
  VM_GENERATION_ID_ADDR: 34,
  ALTP2M: 35,
  X87_FIP_WIDTH: 36,
  VM86_TSS_SIZED: 37,
  MCA_CAP: 38,
} as const;

/** HVM_NR_PARAMS in Xen 4.17: parameter numbers are below it. */
export const HVM_NR_PARAMS = 39;

/** The HVM params a saver sends when non-zero, in libxc's order (xg_sr_save_x86_hvm.c). */
export const HVM_SAVE_PARAMS: readonly number[] = [
  HvmParam.STORE_PFN,
  HvmParam.IOREQ_PFN,
  HvmParam.BUFIOREQ_PFN,
  HvmParam.PAGING_RING_PFN,
  HvmParam.MONITOR_RING_PFN,
  HvmParam.SHARING_RING_PFN,
  HvmParam.VM86_TSS_SIZED,
  HvmParam.CONSOLE_PFN,
  HvmParam.ACPI_IOPORTS_LOCATION,
  HvmParam.VIRIDIAN,
  HvmParam.IDENT_PT,
  HvmParam.VM_GENERATION_ID_ADDR,
  HvmParam.IOREQ_SERVER_PFN,
  HvmParam.NR_IOREQ_SERVER_PAGES,
  HvmParam.X87_FIP_WIDTH,
  HvmParam.MCA_CAP,
];

/** SHUTDOWN_* reasons (xen/include/public/sched.h), as domainInfo's shutdownReason reports them. */
export const ShutdownReason = {
  POWEROFF: 0,
  REBOOT: 1,
  SUSPEND: 2,
  CRASH: 3,
  WATCHDOG: 4,
  SOFT_RESET: 5,
} as const;

export const SHUTDOWN_SUSPEND = ShutdownReason.SUSPEND;
