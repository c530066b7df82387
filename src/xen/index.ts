// The hypervisor layer: typed access to Xen (or the mock host) through the native addon.
export type * from './types.js';
export {
  openHypervisor,
  openMockHost,
  isXenError,
  bitmapBytes,
  NativeHypervisor,
  MockHypervisor,
  PAGE_SIZE,
  DOMID_FIRST_RESERVED,
  MAX_FRAME,
  HVM_NR_PARAMS,
  SHUTDOWN,
  type OpenOptions,
} from './hypervisor.js';
export {
  loadAddon,
  selectFlavour,
  candidatePaths,
  AddonLoadError,
  PRIVCMD,
  type Flavour,
  type LoadOptions,
} from './loader.js';
export {
  openNetlink,
  NetlinkSocket,
  netlinkError,
  parseMessages,
  parseError,
  NETLINK_ROUTE,
  NETLINK_NETFILTER,
  type NetlinkMessage,
} from './netlink.js';
