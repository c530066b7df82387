/*
 * xenmig mock: libxenctrl as declared by Xen 4.17 (the subset the mock implements).
 *
 * Every prototype and type here has the Xen 4.17 signature and layout, so code built
 * against this header also builds against the real /usr/include/xenctrl.h. Functions
 * behave as on Xen, on a simulated host (see xenmig_mock.h and docker/README.md).
 * Written for the mock, not taken from Xen.
 */
#ifndef XENCTRL_H
#define XENCTRL_H

#ifndef __XEN_TOOLS__
#define __XEN_TOOLS__ 1
#endif

#include <unistd.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdbool.h>
#include <xen/xen.h>
#include <xen/domctl.h>
#include <xen/version.h>
#include <xen/event_channel.h>
#include <xen/sched.h>
#include <xen/memory.h>
#include <xen/hvm/params.h>
#include "xentoollog.h"
#include <xen/foreign/x86_32.h>
#include <xen/foreign/x86_64.h>

#ifdef __cplusplus
extern "C" {
#endif

#define XC_PAGE_SHIFT 12
#define XC_PAGE_SIZE  (1UL << XC_PAGE_SHIFT)
#define XC_PAGE_MASK  (~(XC_PAGE_SIZE - 1))

#define INVALID_MFN (~0UL)

#define xen_barrier() __asm__ __volatile__("" : : : "memory")
#define xen_mb()  __asm__ __volatile__("lock addl $0, -32(%%rsp)" ::: "memory")
#define xen_rmb() xen_barrier()
#define xen_wmb() xen_barrier()

#define XENCTRL_HAS_XC_INTERFACE 1

typedef struct xc_interface_core xc_interface;

enum xc_error_code {
    XC_ERROR_NONE = 0,
    XC_INTERNAL_ERROR = 1,
    XC_INVALID_KERNEL = 2,
    XC_INVALID_PARAM = 3,
    XC_OUT_OF_MEMORY = 4,
};
typedef enum xc_error_code xc_error_code;

/* --- handles ------------------------------------------------------------------- */

/* logger NULL: errors go to stderr. dombuild_logger is accepted and unused. */
xc_interface *xc_interface_open(xentoollog_logger *logger, xentoollog_logger *dombuild_logger,
                                unsigned open_flags);
enum xc_open_flags {
    XC_OPENFLAG_DUMMY = 1 << 0,
    XC_OPENFLAG_NON_REENTRANT = 1 << 1,
};
int xc_interface_close(xc_interface *xch);
struct xenforeignmemory_handle *xc_interface_fmem_handle(xc_interface *xch);

/* --- hypercall-safe buffers ------------------------------------------------------ */

struct xc_hypercall_buffer {
    void *hbuf;                                  /* the buffer */
    struct xc_hypercall_buffer *param_shadow;    /* set when passed down as an argument */
    int dir;
    void *ubuf;
    size_t sz;
};
typedef struct xc_hypercall_buffer xc_hypercall_buffer_t;

#define XC__HYPERCALL_BUFFER_NAME(_name) xc__hypercall_buffer_##_name

#define HYPERCALL_BUFFER(_name)                                      \
    ({  xc_hypercall_buffer_t *_hcbuf_buf = &XC__HYPERCALL_BUFFER_NAME(_name); \
        _hcbuf_buf->param_shadow ?: _hcbuf_buf;                      \
    })

#define HYPERCALL_BUFFER_INIT_NO_BOUNCE .dir = 0, .ubuf = (void *)-1, .sz = 0

#define DECLARE_HYPERCALL_BUFFER(_type, _name)                       \
    _type *(_name) = NULL;                                           \
    xc_hypercall_buffer_t XC__HYPERCALL_BUFFER_NAME(_name) = {       \
        .hbuf = NULL, .param_shadow = NULL, HYPERCALL_BUFFER_INIT_NO_BOUNCE }

#define DECLARE_HYPERCALL_BUFFER_SHADOW(_type, _name, _hbuf)         \
    _type *(_name) = (_hbuf)->hbuf;                                  \
    __attribute__((unused))                                          \
    xc_hypercall_buffer_t XC__HYPERCALL_BUFFER_NAME(_name) = {       \
        .hbuf = (void *)-1, .param_shadow = (_hbuf), HYPERCALL_BUFFER_INIT_NO_BOUNCE }

#define DECLARE_HYPERCALL_BUFFER_ARGUMENT(_name)                     \
    xc_hypercall_buffer_t XC__HYPERCALL_BUFFER_NAME(_name) = {       \
        .hbuf = (void *)-1, .param_shadow = (_name), HYPERCALL_BUFFER_INIT_NO_BOUNCE }

#define HYPERCALL_BUFFER_AS_ARG(_name)                               \
    ({  xc_hypercall_buffer_t _hcbuf_arg1;                           \
        __typeof__(XC__HYPERCALL_BUFFER_NAME(_name)) *_hcbuf_arg2 =  \
            HYPERCALL_BUFFER(_name);                                 \
        (void)(&_hcbuf_arg1 == _hcbuf_arg2);                         \
        (unsigned long)(_hcbuf_arg2)->hbuf;                          \
    })

#define set_xen_guest_handle_impl(_hnd, _val, _byte_off)             \
    do {                                                             \
        xc_hypercall_buffer_t _hcbuf_hnd1;                           \
        __typeof__(XC__HYPERCALL_BUFFER_NAME(_val)) *_hcbuf_hnd2 =   \
            HYPERCALL_BUFFER(_val);                                  \
        (void)(&_hcbuf_hnd1 == _hcbuf_hnd2);                         \
        set_xen_guest_handle_raw(_hnd, (_hcbuf_hnd2)->hbuf + (_byte_off)); \
    } while (0)

#undef set_xen_guest_handle
#define set_xen_guest_handle(_hnd, _val) set_xen_guest_handle_impl(_hnd, _val, 0)
#define set_xen_guest_handle_offset(_hnd, _val, _off) \
    set_xen_guest_handle_impl(_hnd, _val, ((sizeof(*_val) * (_off))))

/* Pass HYPERCALL_BUFFER_NULL to set_xen_guest_handle for a NULL handle. */
extern xc_hypercall_buffer_t XC__HYPERCALL_BUFFER_NAME(HYPERCALL_BUFFER_NULL);

void *xc__hypercall_buffer_alloc(xc_interface *xch, xc_hypercall_buffer_t *b, size_t size);
#define xc_hypercall_buffer_alloc(_xch, _name, _size) \
    xc__hypercall_buffer_alloc(_xch, HYPERCALL_BUFFER(_name), _size)
void xc__hypercall_buffer_free(xc_interface *xch, xc_hypercall_buffer_t *b);
#define xc_hypercall_buffer_free(_xch, _name) \
    xc__hypercall_buffer_free(_xch, HYPERCALL_BUFFER(_name))
void *xc__hypercall_buffer_alloc_pages(xc_interface *xch, xc_hypercall_buffer_t *b, int nr_pages);
#define xc_hypercall_buffer_alloc_pages(_xch, _name, _nr) \
    xc__hypercall_buffer_alloc_pages(_xch, HYPERCALL_BUFFER(_name), _nr)
void xc__hypercall_buffer_free_pages(xc_interface *xch, xc_hypercall_buffer_t *b, int nr_pages);
#define xc_hypercall_buffer_free_pages(_xch, _name, _nr)                        \
    do {                                                                        \
        if ( _name )                                                            \
            xc__hypercall_buffer_free_pages(_xch, HYPERCALL_BUFFER(_name), _nr); \
    } while (0)

/* --- domain information ------------------------------------------------------------ */

typedef struct xc_dominfo {
    uint32_t      domid;
    uint32_t      ssidref;
    unsigned int  dying:1, crashed:1, shutdown:1,
                  paused:1, blocked:1, running:1,
                  hvm:1, debugged:1, xenstore:1, hap:1;
    unsigned int  shutdown_reason;
    unsigned long nr_pages;
    unsigned long nr_outstanding_pages;
    unsigned long nr_shared_pages;
    unsigned long nr_paged_pages;
    unsigned long shared_info_frame;
    uint64_t      cpu_time;
    unsigned long max_memkb;
    unsigned int  nr_online_vcpus;
    unsigned int  max_vcpu_id;
    xen_domain_handle_t handle;
    unsigned int  cpupool;
    uint8_t       gpaddr_bits;
    struct xen_arch_domainconfig arch_config;
} xc_dominfo_t;

typedef xen_domctl_getdomaininfo_t xc_domaininfo_t;

typedef union {
    vcpu_guest_context_x86_64_t x64;
    vcpu_guest_context_x86_32_t x32;
    vcpu_guest_context_t c;
} vcpu_guest_context_any_t;

typedef union {
    shared_info_x86_64_t x64;
    shared_info_x86_32_t x32;
    shared_info_t s;
} shared_info_any_t;

typedef union {
    start_info_x86_64_t x64;
    start_info_x86_32_t x32;
    start_info_t s;
} start_info_any_t;

typedef struct xc_vcpu_extstate {
    uint64_t xfeature_mask;
    uint64_t size;
    void *buffer;
} xc_vcpu_extstate_t;

int xc_domain_max_vcpus(xc_interface *xch, uint32_t domid, unsigned int max);
int xc_domain_pause(xc_interface *xch, uint32_t domid);
int xc_domain_unpause(xc_interface *xch, uint32_t domid);
int xc_domain_destroy(xc_interface *xch, uint32_t domid);
int xc_domain_shutdown(xc_interface *xch, uint32_t domid, int reason);

/* Width of the guest's longs (PV: 8 for a 64-bit guest); EOPNOTSUPP-free for HVM. */
int xc_domain_get_guest_width(xc_interface *xch, uint32_t domid, unsigned int *guest_width);

/*
 * Xen 4.17 semantics: fills up to max_doms entries starting at the first existing
 * domain whose id is >= first_domid (the caller checks info->domid); returns the count.
 */
int xc_domain_getinfo(xc_interface *xch, uint32_t first_domid, unsigned int max_doms,
                      xc_dominfo_t *info);
int xc_domain_getinfolist(xc_interface *xch, uint32_t first_domain, unsigned int max_domains,
                          xc_domaininfo_t *info);

int xc_vcpu_setcontext(xc_interface *xch, uint32_t domid, uint32_t vcpu,
                       vcpu_guest_context_any_t *ctxt);
int xc_vcpu_getcontext(xc_interface *xch, uint32_t domid, uint32_t vcpu,
                       vcpu_guest_context_any_t *ctxt);

/* HVM context: ctxt_buf NULL (or size 0) returns the size needed. */
int xc_domain_hvm_getcontext(xc_interface *xch, uint32_t domid, uint8_t *ctxt_buf, uint32_t size);
int xc_domain_hvm_getcontext_partial(xc_interface *xch, uint32_t domid, uint16_t typecode,
                                     uint16_t instance, void *ctxt_buf, uint32_t size);
int xc_domain_hvm_setcontext(xc_interface *xch, uint32_t domid, uint8_t *hvm_ctxt, uint32_t size);

/* xsave state of a vCPU: size 0 and xfeature_mask 0 asks for the sizes. */
int xc_vcpu_get_extstate(xc_interface *xch, uint32_t domid, uint32_t vcpu,
                         xc_vcpu_extstate_t *extstate);

typedef struct xen_domctl_getvcpuinfo xc_vcpuinfo_t;
int xc_vcpu_getinfo(xc_interface *xch, uint32_t domid, uint32_t vcpu, xc_vcpuinfo_t *info);

/* --- log-dirty ------------------------------------------------------------------------ */

typedef struct xen_domctl_shadow_op_stats xc_shadow_op_stats_t;
/* sop OFF / ENABLE_LOGDIRTY (mb may be NULL). */
int xc_shadow_control(xc_interface *xch, uint32_t domid, unsigned int sop, unsigned int *mb,
                      unsigned int mode);
/* sop CLEAN / PEEK: bitmap of `pages` bits (LSB-first 64-bit words); returns pages. */
long long xc_logdirty_control(xc_interface *xch, uint32_t domid, unsigned int sop,
                              xc_hypercall_buffer_t *dirty_bitmap, unsigned long pages,
                              unsigned int mode, xc_shadow_op_stats_t *stats);

/* --- memory --------------------------------------------------------------------------- */

int xc_domain_setmaxmem(xc_interface *xch, uint32_t domid, uint64_t max_memkb);
int xc_domain_set_tsc_info(xc_interface *xch, uint32_t domid, uint32_t tsc_mode,
                           uint64_t elapsed_nsec, uint32_t gtsc_khz, uint32_t incarnation);
int xc_domain_get_tsc_info(xc_interface *xch, uint32_t domid, uint32_t *tsc_mode,
                           uint64_t *elapsed_nsec, uint32_t *gtsc_khz, uint32_t *incarnation);
int xc_domain_maximum_gpfn(xc_interface *xch, uint32_t domid, xen_pfn_t *gpfns);
int xc_domain_nr_gpfns(xc_interface *xch, uint32_t domid, xen_pfn_t *gpfns);

/* PV: extent_start holds pfns on entry and the allocated mfns on return. */
int xc_domain_populate_physmap(xc_interface *xch, uint32_t domid, unsigned long nr_extents,
                               unsigned int extent_order, unsigned int mem_flags,
                               xen_pfn_t *extent_start);
int xc_domain_populate_physmap_exact(xc_interface *xch, uint32_t domid,
                                     unsigned long nr_extents, unsigned int extent_order,
                                     unsigned int mem_flags, xen_pfn_t *extent_start);

/* dst_pfn is a gfn (HVM) or an mfn (PV), as for foreign mappings. */
int xc_clear_domain_pages(xc_interface *xch, uint32_t domid, unsigned long dst_pfn, int num);
static inline int xc_clear_domain_page(xc_interface *xch, uint32_t domid, unsigned long dst_pfn)
{
    return xc_clear_domain_pages(xch, domid, dst_pfn, 1);
}

/* PV page-table pinning (MMUEXT_PIN_L1..L4_TABLE, MMUEXT_UNPIN_TABLE on mfns). */
int xc_mmuext_op(xc_interface *xch, struct mmuext_op *op, unsigned int nr_ops, uint32_t dom);

/* Highest machine frame number of the host. */
int xc_maximum_ram_page(xc_interface *xch, unsigned long *max_mfn);
long xc_get_tot_pages(xc_interface *xch, uint32_t domid);

/*
 * Not in Xen's public headers (libxenctrl exports it, xc_private.h declares it); declared
 * here so mock builds need no private declaration. arr: num (<= 1024) frames in (gfns for
 * HVM, mfns for PV), XEN_DOMCTL_PFINFO_* types out.
 */
int xc_get_pfn_type_batch(xc_interface *xch, uint32_t dom, unsigned int num, xen_pfn_t *arr);

/* --- raw domctl (the subset in xen/domctl.h) ------------------------------------------ */

int xc_domctl(xc_interface *xch, struct xen_domctl *domctl);
int xc_version(xc_interface *xch, int cmd, void *arg);

/* --- HVM params ------------------------------------------------------------------------- */

int xc_hvm_param_set(xc_interface *handle, uint32_t dom, uint32_t param, uint64_t value);
int xc_hvm_param_get(xc_interface *handle, uint32_t dom, uint32_t param, uint64_t *value);
int xc_set_hvm_param(xc_interface *handle, uint32_t dom, int param, unsigned long value);
int xc_get_hvm_param(xc_interface *handle, uint32_t dom, int param, unsigned long *value);

/* --- errors ------------------------------------------------------------------------------ */

#define XC_MAX_ERROR_MSG_LEN 1024
typedef struct xc_error {
    enum xc_error_code code;
    char message[XC_MAX_ERROR_MSG_LEN];
} xc_error;

const char *xc_error_code_to_desc(int code);
const xc_error *xc_get_last_error(xc_interface *handle);
void xc_clear_last_error(xc_interface *xch);

#ifdef __cplusplus
}
#endif

#include "xenctrl_compat.h"

#endif
