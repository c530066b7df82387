/*
 * xenmig mock libxenctrl: the test-facing control API.
 *
 * These functions exist only in the mock library (libxenctrl-mock). Everything else the
 * mock exports has the exact prototype of Xen 4.17's libxenctrl / libxenforeignmemory /
 * libxenguest, declared in this directory's xenctrl.h, xenforeignmemory.h, xenguest.h.
 *
 * A host is a directory. It is chosen, in order, by xenmig_mock_set_host(), the
 * XENMIG_MOCK_HOST environment variable, else /dev/shm/xenmig-mock-<uid>. Several processes
 * may act on one host at once; two directories are two independent hosts.
 *
 * All functions return 0 (or a documented non-negative value) on success and -1 with errno
 * set on failure, like libxenctrl.
 */
#ifndef XENMIG_MOCK_H
#define XENMIG_MOCK_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define XENMIG_MOCK_DOMAIN_PV  1   /* same numbering as the libxc domain header */
#define XENMIG_MOCK_DOMAIN_HVM 2

/* Select the host directory for this process (creates it if missing). NULL = default. */
int xenmig_mock_set_host(const char *dir);
/* The host directory in use (never NULL). */
const char *xenmig_mock_host(void);

/* Create a domain. populate != 0: every pfn 0..nr_pages-1 is backed and (PV) given an mfn,
 * the guest's p2m and page tables are built; populate == 0: an empty domain, as a toolstack
 * creates before a restore (memory comes from xc_domain_populate_physmap_exact).
 * The new domain starts paused when populate == 0, running otherwise. */
int xenmig_mock_domain_create(uint32_t type, uint64_t nr_pages, uint32_t max_vcpus,
                              int populate, uint32_t *domid_out);
int xenmig_mock_domain_destroy(uint32_t domid);
/* Fills up to max domids (ascending); returns the number of domains on the host. */
int xenmig_mock_domain_list(uint32_t *domids, unsigned int max);

/* Guest-side write: as if the guest wrote len bytes at (pfn, offset). Waits while the domain
 * is paused or suspended, marks the pfn dirty when log-dirty is on. */
int xenmig_mock_guest_write(uint32_t domid, uint64_t pfn, uint32_t offset,
                            const void *buf, uint32_t len);

/* Run a guest workload in the calling thread: writes a deterministic pattern (from seed)
 * to pages chosen among the first `hot` data pages (0 = all), at `rate` pages per second,
 * for duration_ms (0 = until *stop becomes non-zero or the domain is destroyed). Obeys pause.
 * Returns the number of page writes done. */
long long xenmig_mock_workload(uint32_t domid, uint64_t rate, uint64_t hot, uint64_t seed,
                               uint64_t duration_ms, volatile int *stop);

/* SHA-256 over all guest memory in pfn order (with each pfn's presence and page type) plus
 * vCPU contexts, HVM context, HVM params and TSC info. Machine-specific values are hashed in
 * their normalised form (PV page-table entries and the frames named in vCPU contexts as pfns,
 * not mfns), so the same guest on two hosts hashes the same. out: 32 bytes. */
int xenmig_mock_checksum(uint32_t domid, uint8_t out[32]);

#ifdef __cplusplus
}
#endif
#endif
