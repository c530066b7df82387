/*
 * xenmig mock libxenctrl: internal definitions shared by the library sources.
 *
 * A host is a directory:
 *   lock        flock()ed for host-wide changes (domids, machine frames)
 *   host        struct host_meta (4 KiB)
 *   m2p         machine-to-phys table: xen_pfn_t per machine frame
 *   frames      struct frame_owner per machine frame (owner domain, slot in its memory file)
 *   d<domid>/meta   struct dom_meta + per-vCPU state + HVM context + per-pfn arrays
 *   d<domid>/mem    guest memory, pfn-indexed (slot nr_pages = PV shared-info page)
 *   d<domid>/dirty  log-dirty bitmap, 64-bit LSB-first words
 * All three domain files are mapped MAP_SHARED by every process using the domain.
 */
#ifndef XENMIG_MOCK_INTERNAL_H
#define XENMIG_MOCK_INTERNAL_H

#define _GNU_SOURCE
#include <stdint.h>
#include <stddef.h>
#include <stdarg.h>
#include <errno.h>
#include <pthread.h>
#include <xenctrl.h>
#include <xenguest.h>
#include <xenforeignmemory.h>
#include "xenmig_mock.h"

#define MOCK_PAGE        4096UL
#define MOCK_HOST_MAGIC  0x54534f48474d4d58ULL   /* "XMMGHOST" */
#define MOCK_DOM_MAGIC   0x4d4f44474d4d58ULL     /* "XMMGDOM" */
#define MOCK_VERSION     1

#define MOCK_DEFAULT_FRAMES   (1UL << 20)   /* 4 GiB of simulated machine memory */
#define MOCK_FIRST_GUEST_MFN  0x1000UL      /* frames below are "Xen's" */
#define MOCK_M2P_MFN0         0x100UL       /* reported first frame of the M2P */
#define MOCK_XEN_SLOT_MFN     0x200UL       /* frames Xen's L4 slots point at */
#define MOCK_MAX_VCPUS        XEN_LEGACY_MAX_VCPUS
#define MOCK_MAX_CPUID        64
#define MOCK_MAX_MSRPOL       16
#define MOCK_HVMCTX_MAX       (64 * 1024)
#define MOCK_XSAVE_AREA       832           /* legacy 512 + header 64 + AVX 256 */
#define MOCK_XFEATURE_MASK    0x7ULL        /* x87 | SSE | AVX */
#define MOCK_NR_VCPU_MSRS     7
#define MOCK_HVM_PARAMS       64

/* pinfo word per pfn */
#define PI_PRESENT       0x1U
#define PI_TYPE_MASK     0xf0000000U

/* PTE bits */
#define PTE_P   0x001ULL
#define PTE_RW  0x002ULL
#define PTE_US  0x004ULL
#define PTE_A   0x020ULL
#define PTE_D   0x040ULL
#define PTE_PSE 0x080ULL
#define PTE_MFN_MASK 0x000ffffffffff000ULL
#define XEN_L4_FIRST 256
#define XEN_L4_LAST  271
#define GUEST_L4_SLOT 273                   /* direct map at 0xffff888000000000 */
#define GUEST_DIRECTMAP 0xffff888000000000ULL

struct host_meta {
    uint64_t magic;
    uint32_t version;
    uint32_t next_domid;
    uint64_t nr_frames;
    uint64_t rng;
    uint64_t cursor;
    uint64_t free_frames;
};

struct frame_owner {
    uint32_t owner;   /* domid + 1; 0 = free */
    uint32_t slot;    /* page index in the owner's memory file */
};

struct vcpu_state {
    uint32_t online;
    uint32_t nr_msrs;
    uint64_t xcr0, xcr0_accum;
    uint32_t xsave_size;                 /* bytes of xsave area held (0 = none) */
    uint32_t pad;
    struct xen_domctl_vcpu_msr msrs[MOCK_NR_VCPU_MSRS];
    struct xen_domctl_ext_vcpucontext ext;
    uint8_t xsave[MOCK_XSAVE_AREA];
    vcpu_guest_context_t ctx;
};

struct dom_meta {
    uint64_t magic;                      /* set last, once the domain is complete */
    uint32_t version;
    uint32_t domid;
    uint32_t type;                       /* XENMIG_MOCK_DOMAIN_PV / _HVM */
    uint32_t max_vcpus;
    uint32_t guest_width;
    uint32_t pad0;
    uint64_t nr_pages;                   /* pfn space */
    uint64_t max_pages;
    uint64_t seed;
    uint64_t created_ns;

    /* state words: atomics */
    uint32_t lock;                       /* spinlock for multi-field updates */
    uint32_t pause_count;
    uint32_t shutdown;
    uint32_t shutdown_reason;
    uint32_t dying;
    uint32_t inflight;                   /* guest writes in progress (futex word) */
    uint32_t run_seq;                    /* bumped whenever the guest may run again (futex word) */
    uint32_t ever_ran;
    uint32_t logdirty;
    uint32_t pad1;
    uint64_t tot_pages;
    uint64_t max_mapped_pfn;             /* HVM: highest gfn ever populated + 1 */
    uint64_t shinfo_mfn;                 /* PV: machine frame of shared info */
    uint64_t fault_count;                /* guest writes while log-dirty on, since last CLEAN */

    uint32_t tsc_mode, tsc_khz, tsc_incarnation, pad2;
    uint64_t tsc_nsec;

    uint64_t hvm_params[MOCK_HVM_PARAMS];
    uint32_t hvmctx_size;
    uint32_t nr_cpuid, nr_msrpol;
    uint32_t pad3;
    xen_cpuid_leaf_t cpuid[MOCK_MAX_CPUID];
    xen_msr_entry_t msrpol[MOCK_MAX_MSRPOL];

    uint64_t off_vcpus, off_hvmctx, off_pinfo, off_p2m, total_size;
};

/* A domain as opened by this process (cached, reference counted). */
struct dom {
    struct dom *next;
    int refs;
    int stale;
    uint32_t domid;
    int memfd;
    struct dom_meta *m;
    size_t msize;
    uint8_t *mem;
    size_t memsize;
    uint64_t *dirty;
    size_t dsize;
    struct vcpu_state *vcpus;
    uint8_t *hvmctx;
    uint32_t *pinfo;
    uint64_t *p2m;
    uint8_t *touch;                      /* per slot, this process only: TOUCH_* */
};

/* struct dom.touch: what this process has done with a slot of the memory file. */
#define TOUCH_SEEN  1   /* mapped at least once (a fresh mmap) */
#define TOUCH_WARM  2   /* lent or written through d->mem: its page is faulted into d->mem */

struct host {
    char dir[4096];
    int lockfd;
    struct host_meta *meta;
    xen_pfn_t *m2p;
    size_t m2p_size;
    struct frame_owner *frames;
    size_t frames_size;
};

struct xc_interface_core {
    xentoollog_logger *logger;
    xentoollog_logger *own_logger;
    struct xenforeignmemory_handle *fmem;
    xc_error last_error;
};

struct xenforeignmemory_handle {
    xentoollog_logger *logger;
    xentoollog_logger *own_logger;
    int restricted;
    domid_t restrict_domid;
};

/* --- log.c --- */
xentoollog_logger *mock_default_logger(void);
void mock_logv(xentoollog_logger *lg, xentoollog_level lvl, int err, const char *ctx,
               const char *fmt, va_list ap);
/* Log an error on xch's logger (NULL: stderr), record it as last error, set errno = err, return -1. */
int xc_fail(xc_interface *xch, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int fm_fail(xenforeignmemory_handle *fm, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* --- host.c --- */
struct host *host_get(void);                    /* opens the current host; NULL + errno */
int host_lock(struct host *h);
void host_unlock(struct host *h);
int dom_get(uint32_t domid, struct dom **out);  /* 0, or -1 with errno ESRCH */
void dom_put(struct dom *d);
int dom_list(uint32_t *ids, unsigned int max); /* ascending; returns count on the host */
void dom_lock(struct dom *d);
void dom_unlock(struct dom *d);
long frames_alloc(struct host *h, uint32_t domid, uint64_t n, int contiguous, uint64_t *out);
void frames_free_domain(struct host *h, uint32_t domid);
int dom_destroy(uint32_t domid);
/* 1 if [addr, addr + len) overlaps the whole-memory mapping (d->mem) of a domain open here */
int dom_mem_overlaps(const void *addr, size_t len);
uint64_t now_ns(void);

/* frame -> slot of domain d; 0 ok, else errno (EINVAL / EPERM) */
int frame_to_slot(struct host *h, struct dom *d, uint64_t frame, uint64_t *slot);
/* PV: mfn -> pfn if the frame is one of d's RAM pages, else ~0 */
uint64_t pv_mfn_to_pfn(struct host *h, struct dom *d, uint64_t mfn);

/* --- state.c (pause / guest execution) --- */
static inline int dom_stopped(const struct dom_meta *m)
{
    return __atomic_load_n(&m->pause_count, __ATOMIC_SEQ_CST) != 0 ||
           __atomic_load_n(&m->shutdown, __ATOMIC_SEQ_CST) != 0;
}
void futex_wait_u32(uint32_t *addr, uint32_t val, long timeout_ns);
void futex_wake_u32(uint32_t *addr);
void dom_quiesce(struct dom *d);                /* wait until no guest write is in flight */
void dom_kick(struct dom *d);                   /* wake guest writers waiting to run */
/* Enter guest execution: waits while stopped; ESRCH if dying; ETIMEDOUT past deadline / stop. */
int guest_enter(struct dom *d, volatile int *stop, uint64_t deadline_ns);
void guest_exit(struct dom *d);
void guest_mark_dirty(struct dom *d, uint64_t pfn);
void guest_on_run(struct host *h, struct dom *d);   /* PV guest rebuilds its p2m frame list */
void pv_suspend_hook(struct host *h, struct dom *d);
void pv_resume_hook(struct host *h, struct dom *d, int fast);

/* --- guest.c (layouts, building, checksum) --- */
struct pv_layout {
    uint64_t n;                      /* guest pages (max_pfn of shared info) */
    uint64_t nl1, nl2, np2m, nmid;
    uint64_t start_info, store, console, l4, l3, l2, l1, p2m_top, p2m_mid, p2m_leaf;
    uint64_t first_special;          /* data pages are [0, first_special) */
};
void pv_layout(uint64_t n, struct pv_layout *L);
uint64_t guest_data_pages(struct host *h, struct dom *d);
int pv_build(struct host *h, struct dom *d);
int hvm_build(struct dom *d);
void default_cpu_policy(struct dom_meta *m);
int pv_type_tree(struct host *h, struct dom *d, uint64_t mfn, int level, int pin);
shared_info_t *dom_shinfo(struct dom *d);
uint64_t splitmix64(uint64_t *state);

/* --- sha256.c --- */
struct sha256 { uint32_t h[8]; uint64_t len; uint8_t buf[64]; size_t n; };
void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t len);
void sha256_final(struct sha256 *s, uint8_t out[32]);

/* --- misc helpers --- */
void *fm_map(xentoollog_logger *lg, xc_interface *xch, xenforeignmemory_handle *fm, uint32_t dom,
             void *addr, int prot, int flags, size_t pages, const xen_pfn_t *arr, int *err);
int hvmctx_validate(const uint8_t *buf, uint32_t size, uint32_t max_vcpus);

#endif
