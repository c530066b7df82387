/*
 * xenmig mock: libxenforeignmemory (stable API, VERS_1.0-1.4 as in Xen 4.17).
 * On the mock, frames are gfns for HVM domains and machine frame numbers for PV
 * domains, exactly as on Xen. Written for the mock, not taken from Xen.
 */
#ifndef XENFOREIGNMEMORY_H
#define XENFOREIGNMEMORY_H

#include <stdint.h>
#include <stddef.h>
#include <xen/xen.h>

#ifdef __cplusplus
extern "C" {
#endif

struct xentoollog_logger;

typedef struct xenforeignmemory_handle xenforeignmemory_handle;

xenforeignmemory_handle *xenforeignmemory_open(struct xentoollog_logger *logger,
                                               unsigned open_flags);
int xenforeignmemory_close(xenforeignmemory_handle *fmem);

/*
 * Map `pages` frames of domain `dom` into one contiguous region. With err != NULL each
 * page's errno goes to err[i] (0 = mapped) and the call succeeds if the domain exists;
 * with err == NULL any failed page fails the whole call. NULL + errno on failure.
 */
void *xenforeignmemory_map(xenforeignmemory_handle *fmem, uint32_t dom, int prot,
                           size_t pages, const xen_pfn_t arr[/*pages*/], int err[/*pages*/]);
/* As _map, at `addr` (a hint, or exact with MAP_FIXED in flags). */
void *xenforeignmemory_map2(xenforeignmemory_handle *fmem, uint32_t dom, void *addr,
                            int prot, int flags, size_t pages,
                            const xen_pfn_t arr[/*pages*/], int err[/*pages*/]);
int xenforeignmemory_unmap(xenforeignmemory_handle *fmem, void *addr, size_t pages);
int xenforeignmemory_restrict(xenforeignmemory_handle *fmem, domid_t domid);

typedef struct xenforeignmemory_resource_handle xenforeignmemory_resource_handle;
/* Resource mapping is not simulated: these fail with EOPNOTSUPP. */
xenforeignmemory_resource_handle *xenforeignmemory_map_resource(
    xenforeignmemory_handle *fmem, domid_t domid, unsigned int type, unsigned int id,
    unsigned long frame, unsigned long nr_frames, void **paddr, int prot, int flags);
int xenforeignmemory_unmap_resource(xenforeignmemory_handle *fmem,
                                    xenforeignmemory_resource_handle *fres);
int xenforeignmemory_resource_size(xenforeignmemory_handle *fmem, domid_t domid,
                                   unsigned int type, unsigned int id, size_t *size);

#ifdef __cplusplus
}
#endif
#endif
