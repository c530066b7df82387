/*
 * xenmig mock: the part of libxenguest (Xen 4.17) the mock implements: resume, the
 * M2P mapping and the CPU-policy calls. Written for the mock, not taken from Xen.
 */
#ifndef XENGUEST_H
#define XENGUEST_H

#include <xenctrl.h>

#ifdef __cplusplus
extern "C" {
#endif

#define XC_NUMA_NO_NODE (~0U)

#define XCFLAGS_LIVE  (1 << 0)
#define XCFLAGS_DEBUG (1 << 1)

#define X86_64_B_SIZE 64
#define X86_32_B_SIZE 32

typedef enum {
    XC_STREAM_PLAIN,
    XC_STREAM_REMUS,
    XC_STREAM_COLO,
} xc_stream_type_t;

/*
 * Resume a domain shut down with SHUTDOWN_suspend. fast != 0: cooperative resume (the
 * guest's suspend hypercall returns 1, as after a checkpoint); fast == 0: the guest sees
 * a full resume (return 0) and rebuilds its p2m frame list.
 */
int xc_domain_resume(xc_interface *xch, uint32_t domid, int fast);

/* Map the host's machine-to-phys table read-only (entries: xen_pfn_t, one per mfn). */
xen_pfn_t *xc_map_m2p(xc_interface *xch, unsigned long max_mfn, int prot, unsigned long *mfn0);

typedef struct xc_cpu_policy xc_cpu_policy_t;

xc_cpu_policy_t *xc_cpu_policy_init(void);
void xc_cpu_policy_destroy(xc_cpu_policy_t *policy);
int xc_cpu_policy_get_domain(xc_interface *xch, uint32_t domid, xc_cpu_policy_t *policy);
int xc_cpu_policy_set_domain(xc_interface *xch, uint32_t domid, xc_cpu_policy_t *policy);
int xc_cpu_policy_serialise(xc_interface *xch, const xc_cpu_policy_t *policy,
                            xen_cpuid_leaf_t *leaves, uint32_t *nr_leaves,
                            xen_msr_entry_t *msrs, uint32_t *nr_msrs);
int xc_cpu_policy_get_size(xc_interface *xch, uint32_t *nr_leaves, uint32_t *nr_msrs);
int xc_set_domain_cpu_policy(xc_interface *xch, uint32_t domid,
                             uint32_t nr_leaves, xen_cpuid_leaf_t *leaves,
                             uint32_t nr_msrs, xen_msr_entry_t *msrs,
                             uint32_t *err_leaf_p, uint32_t *err_subleaf_p,
                             uint32_t *err_msr_p);

#ifdef __cplusplus
}
#endif
#endif
