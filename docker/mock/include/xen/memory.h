/* xenmig mock: memory-op constants of the Xen public interface (subset). */
#ifndef XENMIG_MOCK_XEN_MEMORY_H
#define XENMIG_MOCK_XEN_MEMORY_H

#include "xen.h"

#define XENMEM_increase_reservation 0
#define XENMEM_decrease_reservation 1
#define XENMEM_maximum_ram_page     2
#define XENMEM_maximum_reservation  4
#define XENMEM_populate_physmap     6
#define XENMEM_maximum_gpfn         14

/* mem_flags of the populate/increase calls. */
#define XENMEMF_address_bits(x)     (x)
#define XENMEMF_get_address_bits(x) ((x) & 0xffu)
#define XENMEMF_node(x)             (((x) + 1) << 8)
#define XENMEMF_get_node(x)         ((((x) >> 8) - 1) & 0xffu)
#define XENMEMF_populate_on_demand  (1 << 16)
#define XENMEMF_exact_node_request  (1 << 17)
#define XENMEMF_exact_node(n)       (XENMEMF_node(n) | XENMEMF_exact_node_request)
#define XENMEMF_vnode               (1 << 18)

#endif
