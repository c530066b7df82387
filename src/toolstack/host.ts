// Host selection: which hypervisor a call talks to (a real Xen host or a mock host directory) and
// how destination domains are built on it. Shared by the API (src/api.ts) and the replication
// loops (src/checkpoint/), which sit above the toolstack.
import { existsSync } from 'node:fs';
import type { Hypervisor } from '../xen/types.js';
import { openHypervisor, openMockHost, type MockHypervisor } from '../xen/hypervisor.js';
import { MigrationError, MigrationErrorCode } from '../engine/errors.js';
import { checkDestinationDevices } from './devices.js';
import type { DomainBuilder } from './restore.js';
import { domainTypeOf, type DomainConfig } from './config.js';

export interface XenOptions {
  /** an open hypervisor handle (otherwise one is opened and closed by the call) */
  xen?: Hypervisor;
  /** 'system' (real Xen) or 'mock'; default: system when /dev/xen/privcmd exists */
  flavour?: 'system' | 'mock';
  /** mock host directory (default $XENMIG_MOCK_HOST, else /dev/shm/xenmig-mock-<uid>) */
  host?: string;
}

export function openXen(o: XenOptions = {}): { xen: Hypervisor; owned: boolean } {
  if (o.xen) return { xen: o.xen, owned: false };
  const flavour =
    o.flavour ??
    (process.env.XENMIG_FLAVOUR as 'system' | 'mock' | undefined) ??
    (existsSync('/dev/xen/privcmd') ? 'system' : 'mock');
  if (flavour === 'mock') return { xen: openMockHost(o.host ?? process.env.XENMIG_MOCK_HOST), owned: true };
  return { xen: openHypervisor({ flavour: 'system' }), owned: true };
}

export const MOCK_HVM_GFN_SPAN = 0x100000;
/** What a builder allows above the configured memory (libxl's LIBXL_MAXMEM_CONSTANT), KiB. */
export const MAXMEM_SLACK_KB = 1024;

/** Builds destination domains on a mock host from the stream's config. */
export function mockBuilder(host: MockHypervisor): DomainBuilder {
  return {
    capabilities: [],
    create(config: DomainConfig) {
      // the mock simulates a hypervisor, not device backends: a guest with a disk or a NIC would
      // come up without them, so it is refused before a domain exists
      if (config.kind === 'hvm')
        throw new MigrationError(
          MigrationErrorCode.ERR_UNSUPPORTED_DEVICE,
          'an HVM guest needs a device model, which the mock host does not simulate',
        );
      checkDestinationDevices(config, { kinds: [], whyNone: 'the mock host simulates no device backends' });
      const type = domainTypeOf(config.kind);
      // A mock HVM domain's size is its gfn span: cover the 4 GiB below which Xen puts the special
      // pages (store, console, ioreq) of HVM/PVH guests; memory is only allocated when populated.
      const pages = Math.max(Math.ceil(config.maxMemKb / 4), type === 'hvm' ? MOCK_HVM_GFN_SPAN : 0);
      const domid = host.createDomain({ type, pages, vcpus: config.maxVcpus, populate: false });
      // The span is address space; the memory the domain may hold is what its config says (plus
      // libxl's constant slack), as a real builder sets it: a restore cannot populate more.
      try {
        host.setMaxMem(domid, config.maxMemKb + MAXMEM_SLACK_KB);
      } catch (e) {
        host.destroyDomain(domid);
        throw e;
      }
      return domid;
    },
    destroy(domid: number) {
      host.destroyDomain(domid);
    },
  };
}

/** The domain builder for this host: the mock's, or xenBuilder (as libxl builds) on a real host. */
export async function defaultBuilder(xen: Hypervisor): Promise<DomainBuilder | undefined> {
  if (xen.flavour === 'mock') return mockBuilder(xen as MockHypervisor);
  // a real host: build the destination domain as libxl does (src/toolstack/xen-builder.ts)
  const { xenBuilder } = await import('./xen-builder.js');
  return xenBuilder(xen);
}
