/*
 * xenmig mock: compatibility mapping functions of libxenctrl (Xen 4.17), declared only
 * when XC_WANT_COMPAT_MAP_FOREIGN_API is defined before including xenctrl.h.
 */
#ifndef XENCTRL_COMPAT_H
#define XENCTRL_COMPAT_H

#ifndef XENCTRL_H
#error "include xenctrl.h, not xenctrl_compat.h"
#endif

#ifdef XC_WANT_COMPAT_MAP_FOREIGN_API
#ifdef __cplusplus
extern "C" {
#endif
void *xc_map_foreign_range(xc_interface *xch, uint32_t dom, int size, int prot,
                           unsigned long mfn);
void *xc_map_foreign_pages(xc_interface *xch, uint32_t dom, int prot,
                           const xen_pfn_t *arr, int num);
void *xc_map_foreign_bulk(xc_interface *xch, uint32_t dom, int prot,
                          const xen_pfn_t *arr, int *err, unsigned int num);
#ifdef __cplusplus
}
#endif
#endif

#endif
