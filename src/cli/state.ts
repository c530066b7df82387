// A machine-independent dump of a domain's register state, for comparing a guest before and after a
// migration (`xenmig mock state`, and the sender's --checksum-at-suspend debug record).
import { createHash } from 'node:crypto';
import type { Hypervisor } from '../xen/types.js';
import { HVM_NR_PARAMS, HVM_SAVE_PARAMS } from '../xen/constants.js';
import { hvmContextSummary } from './describe.js';

export interface DomainState {
  domid: number;
  type: 'hvm' | 'pv';
  vcpusOnline: number[];
  /** HVM: sha256 and length of the HVM context blob, and the vCPU instances it holds */
  hvmContext?: { sha256: string; bytes: number; vcpus: number[] };
  /** HVM: the non-zero params the migration stream carries (the rest are set by the domain builder) */
  hvmParams?: Record<string, string>;
  /** PV: sha256 of each online vCPU's extended context, xsave area and MSRs */
  pvVcpus?: Record<string, { extended: string; xsave: string; msrs: string }>;
  /** TSC mode, kHz and elapsed ns (the incarnation is bumped by a restore, as on Xen) */
  tsc: { mode: number; gtscKhz: number; elapsedNsec: string };
}

/** The HVM params libxc's save sends (xg_sr_save_x86_hvm.c). */
export const MIGRATED_HVM_PARAMS = HVM_SAVE_PARAMS;

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

export function domainState(xen: Hypervisor, domid: number): DomainState {
  const info = xen.domainInfo(domid);
  const vcpusOnline: number[] = [];
  for (let v = 0; v <= info.maxVcpuId; v++) if (xen.vcpuOnline(domid, v)) vcpusOnline.push(v);
  const t = xen.tscInfoGet(domid);
  const s: DomainState = {
    domid,
    type: info.type,
    vcpusOnline,
    tsc: { mode: t.mode, gtscKhz: t.gtscKhz, elapsedNsec: t.elapsedNsec.toString() },
  };
  if (info.type === 'hvm') {
    const ctx = xen.hvmContextGet(domid);
    s.hvmContext = { sha256: sha(ctx), bytes: ctx.length, vcpus: hvmContextSummary(ctx).vcpus };
    const params: Record<string, string> = {};
    for (const i of MIGRATED_HVM_PARAMS) {
      if (i >= HVM_NR_PARAMS) continue;
      try {
        const v = xen.hvmParamGet(domid, i);
        if (v !== 0n) params[i] = '0x' + v.toString(16);
      } catch {
        /* not readable on this host */
      }
    }
    s.hvmParams = params;
  } else {
    const vc: Record<string, { extended: string; xsave: string; msrs: string }> = {};
    for (const v of vcpusOnline) {
      vc[v] = {
        extended: sha(xen.vcpuExtendedGet(domid, v)),
        xsave: sha(xen.vcpuXsaveGet(domid, v)),
        msrs: sha(xen.vcpuMsrsGet(domid, v)),
      };
    }
    s.pvVcpus = vc;
  }
  return s;
}
