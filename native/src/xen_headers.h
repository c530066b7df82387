// The libxen headers, as C, for both flavours.
//  system: Debian's libxen-dev (pkg-config xencontrol xenforeignmemory xenguest xentoollog)
//  mock:   docker/mock/include (Xen 4.17 prototypes) + xenmig_mock.h
// Feature macros come from the build (binding.gyp / CMakeLists.txt probes):
//  HAVE_XC_DOMAIN_GETINFO_SINGLE  libxenctrl >= 4.18 (xc_domain_getinfo removed)
//  XENMIG_MOCK                    building the mock flavour
#pragma once

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <stdint.h>
#include <stddef.h>

extern "C" {
#include <xentoollog.h>
#include <xenctrl.h>
#include <xenforeignmemory.h>
#include <xenguest.h>
#ifdef XENMIG_MOCK
#include <xenmig_mock.h>
#endif

// Exported by libxenctrl (VERS_4.17.0 and later) but declared only in the private xc_private.h.
int xc_get_pfn_type_batch(xc_interface *xch, uint32_t dom, unsigned int num, xen_pfn_t *arr);
}

#ifdef XENMIG_MOCK
// Weak references (see XENMIG_REQUIRE in common.h): a function the mock does not provide is an
// ENOSYS error at call time rather than a lazy-binding failure that kills the process.
#pragma weak xc_interface_open
#pragma weak xc_interface_close
#pragma weak xenforeignmemory_open
#pragma weak xenforeignmemory_close
#pragma weak xenforeignmemory_map
#pragma weak xenforeignmemory_unmap
#pragma weak xc_version
#pragma weak xc_domain_getinfo
#pragma weak xc_domain_getinfolist
#pragma weak xc_domain_pause
#pragma weak xc_domain_unpause
#pragma weak xc_domain_resume
#pragma weak xc_domain_shutdown
#pragma weak xc_domain_destroy
#pragma weak xc_domain_maximum_gpfn
#pragma weak xc_domain_nr_gpfns
#pragma weak xc_domain_get_guest_width
#pragma weak xc_shadow_control
#pragma weak xc_logdirty_control
#pragma weak xc__hypercall_buffer_alloc_pages
#pragma weak xc__hypercall_buffer_free_pages
#pragma weak xc__hypercall_buffer_alloc
#pragma weak xc__hypercall_buffer_free
#pragma weak xc_get_pfn_type_batch
#pragma weak xc_mmuext_op
#pragma weak xc_domain_populate_physmap_exact
#pragma weak xc_maximum_ram_page
#pragma weak xc_map_m2p
#pragma weak xc_vcpu_getcontext
#pragma weak xc_vcpu_setcontext
#pragma weak xc_vcpu_getinfo
#pragma weak xc_domctl
#pragma weak xc_domain_hvm_getcontext
#pragma weak xc_domain_hvm_setcontext
#pragma weak xc_hvm_param_get
#pragma weak xc_hvm_param_set
#pragma weak xc_domain_get_tsc_info
#pragma weak xc_domain_set_tsc_info
#pragma weak xc_cpu_policy_init
#pragma weak xc_cpu_policy_destroy
#pragma weak xc_cpu_policy_get_domain
#pragma weak xc_cpu_policy_serialise
#pragma weak xc_cpu_policy_get_size
#pragma weak xc_set_domain_cpu_policy
#pragma weak xenmig_mock_set_host
#pragma weak xenmig_mock_host
#pragma weak xenmig_mock_domain_create
#pragma weak xenmig_mock_domain_destroy
#pragma weak xenmig_mock_domain_list
#pragma weak xenmig_mock_guest_write
#pragma weak xenmig_mock_workload
#pragma weak xenmig_mock_checksum
#endif
