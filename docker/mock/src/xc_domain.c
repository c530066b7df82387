/* xenmig mock: libxenctrl domain calls (info, run state, log-dirty, contexts, params,
 * TSC, CPU policy) and the raw domctl entry point. */
#include "mock_internal.h"
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define XEN_MAJOR 4
#define XEN_MINOR 17

xc_hypercall_buffer_t XC__HYPERCALL_BUFFER_NAME(HYPERCALL_BUFFER_NULL) = {
    .hbuf = NULL, .param_shadow = NULL, .dir = 0, .ubuf = NULL, .sz = 0,
};

/* Look the domain up or fail like Xen (ESRCH), logging on xch. */
#define GET_DOM(xch, domid, d, fn)                                               \
    do {                                                                          \
        if (dom_get((domid), &(d)))                                               \
            return xc_fail((xch), ESRCH, "%s: domain %u does not exist", (fn),    \
                           (unsigned)(domid));                                    \
    } while (0)

static int fail_put(xc_interface *xch, struct dom *d, int err, const char *fmt, uint32_t a)
{
    dom_put(d);
    return xc_fail(xch, err, fmt, (unsigned)a);
}

/* ---- handles and buffers ------------------------------------------------------------ */

xc_interface *xc_interface_open(xentoollog_logger *logger, xentoollog_logger *dombuild_logger,
                                unsigned open_flags)
{
    (void)dombuild_logger;
    xc_interface *xch = calloc(1, sizeof(*xch));
    if (!xch)
        return NULL;
    if (logger) {
        xch->logger = logger;
    } else {
        xch->own_logger = mock_default_logger();
        xch->logger = xch->own_logger;
    }
    if (open_flags & XC_OPENFLAG_DUMMY)
        return xch;
    if (!host_get()) {
        int e = errno;
        xtl_log(xch->logger, XTL_ERROR, e, "xc", "cannot open mock host %s", xenmig_mock_host());
        xtl_logger_destroy(xch->own_logger);
        free(xch);
        errno = e;
        return NULL;
    }
    xch->fmem = xenforeignmemory_open(xch->logger, 0);
    if (!xch->fmem) {
        int e = errno;
        xtl_logger_destroy(xch->own_logger);
        free(xch);
        errno = e;
        return NULL;
    }
    return xch;
}

int xc_interface_close(xc_interface *xch)
{
    if (!xch)
        return 0;
    if (xch->fmem)
        xenforeignmemory_close(xch->fmem);
    xtl_logger_destroy(xch->own_logger);
    free(xch);
    return 0;
}

struct xenforeignmemory_handle *xc_interface_fmem_handle(xc_interface *xch)
{
    return xch ? xch->fmem : NULL;
}

void *xc__hypercall_buffer_alloc_pages(xc_interface *xch, xc_hypercall_buffer_t *b, int nr_pages)
{
    if (!b || nr_pages <= 0) {
        xc_fail(xch, EINVAL, "hypercall buffer: bad size %d pages", nr_pages);
        return NULL;
    }
    void *p = mmap(NULL, (size_t)nr_pages * MOCK_PAGE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        xc_fail(xch, ENOMEM, "hypercall buffer: cannot allocate %d pages", nr_pages);
        return NULL;
    }
    b->hbuf = p;
    return p;
}

void xc__hypercall_buffer_free_pages(xc_interface *xch, xc_hypercall_buffer_t *b, int nr_pages)
{
    (void)xch;
    if (b && b->hbuf && nr_pages > 0)
        munmap(b->hbuf, (size_t)nr_pages * MOCK_PAGE);
    if (b)
        b->hbuf = NULL;
}

void *xc__hypercall_buffer_alloc(xc_interface *xch, xc_hypercall_buffer_t *b, size_t size)
{
    size_t pages = (size + MOCK_PAGE - 1) / MOCK_PAGE;
    void *p = xc__hypercall_buffer_alloc_pages(xch, b, pages ? (int)pages : 1);
    if (p)
        b->sz = size;
    return p;
}

void xc__hypercall_buffer_free(xc_interface *xch, xc_hypercall_buffer_t *b)
{
    if (!b || !b->hbuf)
        return;
    size_t pages = (b->sz + MOCK_PAGE - 1) / MOCK_PAGE;
    xc__hypercall_buffer_free_pages(xch, b, pages ? (int)pages : 1);
    b->sz = 0;
}

int xc_version(xc_interface *xch, int cmd, void *arg)
{
    switch (cmd) {
    case XENVER_version:
        return (XEN_MAJOR << 16) | XEN_MINOR;
    case XENVER_extraversion:
        if (!arg)
            return xc_fail(xch, EFAULT, "xc_version: NULL buffer");
        memset(arg, 0, XEN_EXTRAVERSION_LEN);
        memcpy(arg, ".7", 2);
        return 0;
    }
    return xc_fail(xch, ENOSYS, "xc_version: command %d not simulated", cmd);
}

/* ---- domain information ------------------------------------------------------------- */

static void fill_info(struct dom *d, xc_domaininfo_t *i)
{
    struct dom_meta *m = d->m;
    memset(i, 0, sizeof(*i));
    i->domain = (domid_t)m->domid;
    uint32_t f = 0;
    if (__atomic_load_n(&m->dying, __ATOMIC_SEQ_CST))
        f |= XEN_DOMINF_dying;
    if (m->type == XENMIG_MOCK_DOMAIN_HVM)
        f |= XEN_DOMINF_hvm_guest | XEN_DOMINF_hap;
    if (__atomic_load_n(&m->shutdown, __ATOMIC_SEQ_CST))
        f |= XEN_DOMINF_shutdown |
             ((m->shutdown_reason & XEN_DOMINF_shutdownmask) << XEN_DOMINF_shutdownshift);
    if (__atomic_load_n(&m->pause_count, __ATOMIC_SEQ_CST))
        f |= XEN_DOMINF_paused;
    if (!dom_stopped(m))
        f |= XEN_DOMINF_running;
    i->flags = f;
    i->tot_pages = m->tot_pages;
    i->max_pages = m->max_pages;
    i->shared_info_frame = m->type == XENMIG_MOCK_DOMAIN_PV ? m->shinfo_mfn : INVALID_MFN;
    i->cpu_time = m->ever_ran ? now_ns() - m->created_ns : 0;
    uint32_t online = 0;
    for (uint32_t v = 0; v < m->max_vcpus; v++)
        online += d->vcpus[v].online ? 1 : 0;
    i->nr_online_vcpus = online;
    i->max_vcpu_id = m->max_vcpus - 1;
    i->gpaddr_bits = m->type == XENMIG_MOCK_DOMAIN_HVM ? 48 : 52;
    i->arch_config.emulation_flags = m->type == XENMIG_MOCK_DOMAIN_HVM ? XEN_X86_EMU_LAPIC : 0;
}

int xc_domain_getinfolist(xc_interface *xch, uint32_t first_domain, unsigned int max_domains,
                          xc_domaininfo_t *info)
{
    if (max_domains && !info)
        return xc_fail(xch, EFAULT, "xc_domain_getinfolist: NULL buffer");
    uint32_t ids[DOMID_FIRST_RESERVED > 4096 ? 4096 : DOMID_FIRST_RESERVED];
    int n = dom_list(ids, sizeof(ids) / sizeof(ids[0]));
    if (n < 0)
        return xc_fail(xch, errno, "xc_domain_getinfolist: cannot list the host");
    if (n > (int)(sizeof(ids) / sizeof(ids[0])))
        n = sizeof(ids) / sizeof(ids[0]);
    unsigned int got = 0;
    for (int k = 0; k < n && got < max_domains; k++) {
        struct dom *d;
        if (ids[k] < first_domain || dom_get(ids[k], &d))
            continue;
        fill_info(d, &info[got++]);
        dom_put(d);
    }
    return (int)got;
}

int xc_domain_getinfo(xc_interface *xch, uint32_t first_domid, unsigned int max_doms,
                      xc_dominfo_t *info)
{
    if (max_doms && !info)
        return xc_fail(xch, EFAULT, "xc_domain_getinfo: NULL buffer");
    unsigned int got = 0;
    uint32_t next = first_domid;
    while (got < max_doms) {
        xc_domaininfo_t di;
        int r = xc_domain_getinfolist(xch, next, 1, &di);
        if (r <= 0)
            break;
        xc_dominfo_t *o = &info[got++];
        memset(o, 0, sizeof(*o));
        o->domid = di.domain;
        o->ssidref = di.ssidref;
        o->dying = !!(di.flags & XEN_DOMINF_dying);
        o->shutdown = !!(di.flags & XEN_DOMINF_shutdown);
        o->paused = !!(di.flags & XEN_DOMINF_paused);
        o->blocked = !!(di.flags & XEN_DOMINF_blocked);
        o->running = !!(di.flags & XEN_DOMINF_running);
        o->hvm = !!(di.flags & XEN_DOMINF_hvm_guest);
        o->debugged = !!(di.flags & XEN_DOMINF_debugged);
        o->xenstore = !!(di.flags & XEN_DOMINF_xs_domain);
        o->hap = !!(di.flags & XEN_DOMINF_hap);
        o->shutdown_reason = (di.flags >> XEN_DOMINF_shutdownshift) & XEN_DOMINF_shutdownmask;
        o->crashed = o->shutdown && o->shutdown_reason == SHUTDOWN_crash;
        o->nr_pages = di.tot_pages;
        o->nr_outstanding_pages = di.outstanding_pages;
        o->nr_shared_pages = di.shr_pages;
        o->nr_paged_pages = di.paged_pages;
        o->shared_info_frame = di.shared_info_frame;
        o->cpu_time = di.cpu_time;
        o->max_memkb = di.max_pages << (XC_PAGE_SHIFT - 10);
        o->nr_online_vcpus = di.nr_online_vcpus;
        o->max_vcpu_id = di.max_vcpu_id;
        memcpy(o->handle, di.handle, sizeof(o->handle));
        o->cpupool = di.cpupool;
        o->gpaddr_bits = di.gpaddr_bits;
        o->arch_config = di.arch_config;
        next = (uint32_t)di.domain + 1;
    }
    return (int)got;
}

long xc_get_tot_pages(xc_interface *xch, uint32_t domid)
{
    struct dom *d;
    GET_DOM(xch, domid, d, "xc_get_tot_pages");
    long r = (long)d->m->tot_pages;
    dom_put(d);
    return r;
}

int xc_domain_get_guest_width(xc_interface *xch, uint32_t domid, unsigned int *guest_width)
{
    struct dom *d;
    GET_DOM(xch, domid, d, "xc_domain_get_guest_width");
    if (d->m->type != XENMIG_MOCK_DOMAIN_PV)
        return fail_put(xch, d, EOPNOTSUPP, "xc_domain_get_guest_width: d%u is not PV", domid);
    if (guest_width)
        *guest_width = d->m->guest_width;
    dom_put(d);
    return 0;
}

int xc_domain_max_vcpus(xc_interface *xch, uint32_t domid, unsigned int max)
{
    struct dom *d;
    GET_DOM(xch, domid, d, "xc_domain_max_vcpus");
    int ok = max == d->m->max_vcpus;
    dom_put(d);
    return ok ? 0 : xc_fail(xch, EINVAL, "xc_domain_max_vcpus: d%u has a fixed vcpu count", domid);
}

int xc_domain_setmaxmem(xc_interface *xch, uint32_t domid, uint64_t max_memkb)
{
    struct dom *d;
    GET_DOM(xch, domid, d, "xc_domain_setmaxmem");
    __atomic_store_n(&d->m->max_pages, max_memkb >> (XC_PAGE_SHIFT - 10), __ATOMIC_SEQ_CST);
    dom_put(d);
    return 0;
}

int xc_domain_maximum_gpfn(xc_interface *xch, uint32_t domid, xen_pfn_t *gpfns)
{
    struct dom *d;
    GET_DOM(xch, domid, d, "xc_domain_maximum_gpfn");
    uint64_t v;
    if (d->m->type == XENMIG_MOCK_DOMAIN_HVM) {
        uint64_t mm = __atomic_load_n(&d->m->max_mapped_pfn, __ATOMIC_SEQ_CST);
        v = mm ? mm - 1 : 0;
    } else {
        uint64_t mp = dom_shinfo(d)->arch.max_pfn;     /* PV: the guest's own p2m size */
        v = (mp ? mp : 1) - 1;
    }
    dom_put(d);
    if (!gpfns)
        return xc_fail(xch, EFAULT, "xc_domain_maximum_gpfn: NULL result");
    *gpfns = v;
    return 0;
}

int xc_domain_nr_gpfns(xc_interface *xch, uint32_t domid, xen_pfn_t *gpfns)
{
    int r = xc_domain_maximum_gpfn(xch, domid, gpfns);
    if (r == 0)
        *gpfns += 1;
    return r;
}

/* ---- run state ---------------------------------------------------------------------- */

int xc_domain_pause(xc_interface *xch, uint32_t domid)
{
    struct dom *d;
    GET_DOM(xch, domid, d, "xc_domain_pause");
    uint32_t old = __atomic_load_n(&d->m->pause_count, __ATOMIC_SEQ_CST);
    for (;;) {
        if (old >= 255)
            return fail_put(xch, d, EUSERS, "xc_domain_pause: d%u paused too often", domid);
        if (__atomic_compare_exchange_n(&d->m->pause_count, &old, old + 1, 0, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST))
            break;
    }
    dom_quiesce(d);
    dom_put(d);
    return 0;
}

int xc_domain_unpause(xc_interface *xch, uint32_t domid)
{
    struct dom *d;
    GET_DOM(xch, domid, d, "xc_domain_unpause");
    uint32_t old = __atomic_load_n(&d->m->pause_count, __ATOMIC_SEQ_CST);
    for (;;) {
        if (old == 0)
            return fail_put(xch, d, EINVAL, "xc_domain_unpause: d%u is not paused", domid);
        if (__atomic_compare_exchange_n(&d->m->pause_count, &old, old - 1, 0, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST))
            break;
    }
    if (old == 1 && !__atomic_load_n(&d->m->shutdown, __ATOMIC_SEQ_CST)) {
        struct host *h = host_get();
        dom_lock(d);
        if (h)
            guest_on_run(h, d);
        dom_unlock(d);
    }
    dom_kick(d);
    dom_put(d);
    return 0;
}

int xc_domain_shutdown(xc_interface *xch, uint32_t domid, int reason)
{
    if (reason < 0 || reason > SHUTDOWN_MAX)
        return xc_fail(xch, EINVAL, "xc_domain_shutdown: bad reason %d", reason);
    struct dom *d;
    GET_DOM(xch, domid, d, "xc_domain_shutdown");
    uint32_t zero = 0;
    dom_lock(d);
    if (__atomic_load_n(&d->m->shutdown, __ATOMIC_SEQ_CST) == 0) {
        d->m->shutdown_reason = (uint32_t)reason;
        __atomic_compare_exchange_n(&d->m->shutdown, &zero, 1, 0, __ATOMIC_SEQ_CST,
                                    __ATOMIC_SEQ_CST);
        dom_quiesce(d);
        if (reason == SHUTDOWN_suspend) {
            struct host *h = host_get();
            if (h)
                pv_suspend_hook(h, d);
        }
    }
    dom_unlock(d);
    dom_put(d);
    return 0;
}

int xc_domain_resume(xc_interface *xch, uint32_t domid, int fast)
{
    struct dom *d;
    GET_DOM(xch, domid, d, "xc_domain_resume");
    struct host *h = host_get();
    dom_lock(d);
    int suspended = __atomic_load_n(&d->m->shutdown, __ATOMIC_SEQ_CST) &&
                    d->m->shutdown_reason == SHUTDOWN_suspend;
    if (fast && !suspended) {
        dom_unlock(d);
        return fail_put(xch, d, EINVAL, "xc_domain_resume: d%u is not suspended", domid);
    }
    if (suspended && h)
        pv_resume_hook(h, d, fast);
    __atomic_store_n(&d->m->shutdown, 0, __ATOMIC_SEQ_CST);
    d->m->shutdown_reason = 0;
    if (!dom_stopped(d->m) && h)
        guest_on_run(h, d);
    dom_unlock(d);
    dom_kick(d);
    dom_put(d);
    return 0;
}

int xc_domain_destroy(xc_interface *xch, uint32_t domid)
{
    if (dom_destroy(domid))
        return xc_fail(xch, errno, "xc_domain_destroy: d%u", (unsigned)domid);
    return 0;
}

/* ---- log-dirty ---------------------------------------------------------------------- */

static int pv_logdirty_unsupported(void)
{
    const char *e = getenv("XENMIG_MOCK_NO_PV_LOGDIRTY");
    return e && *e && *e != '0';
}

static long long dirty_op(xc_interface *xch, struct dom *d, unsigned int sop, uint64_t *bitmap,
                          unsigned long pages, unsigned int mode, xc_shadow_op_stats_t *stats)
{
    struct dom_meta *m = d->m;
    if (mode & ~XEN_DOMCTL_SHADOW_LOGDIRTY_FINAL)
        return xc_fail(xch, EINVAL, "log-dirty: bad mode %#x for d%u", mode, (unsigned)m->domid);
    if (!__atomic_load_n(&m->logdirty, __ATOMIC_SEQ_CST))
        return xc_fail(xch, EINVAL, "log-dirty: not enabled for d%u", (unsigned)m->domid);
    int clean = sop == XEN_DOMCTL_SHADOW_OP_CLEAN;
    if (pages > m->nr_pages)
        pages = m->nr_pages;
    uint64_t words = (m->nr_pages + 63) / 64, dirty = 0;
    for (uint64_t w = 0; w < words; w++) {
        uint64_t lo = w * 64;
        uint64_t mask = lo >= pages ? 0 : (pages - lo >= 64 ? ~0ULL : (1ULL << (pages - lo)) - 1);
        uint64_t v;
        if (!clean)
            v = __atomic_load_n(&d->dirty[w], __ATOMIC_SEQ_CST);
        else if (mask == ~0ULL)
            v = __atomic_exchange_n(&d->dirty[w], 0, __ATOMIC_SEQ_CST);
        else if (mask)
            v = __atomic_fetch_and(&d->dirty[w], ~mask, __ATOMIC_SEQ_CST);
        else
            v = __atomic_load_n(&d->dirty[w], __ATOMIC_SEQ_CST);
        dirty += (uint64_t)__builtin_popcountll(v & (clean ? mask : ~0ULL));
        if (bitmap && mask)
            bitmap[w] = v & mask;
    }
    uint64_t faults = clean ? __atomic_exchange_n(&m->fault_count, 0, __ATOMIC_SEQ_CST)
                            : __atomic_load_n(&m->fault_count, __ATOMIC_SEQ_CST);
    if (stats) {
        stats->fault_count = faults > UINT32_MAX ? UINT32_MAX : (uint32_t)faults;
        stats->dirty_count = dirty > UINT32_MAX ? UINT32_MAX : (uint32_t)dirty;
    }
    return (long long)pages;
}

static int shadow_op(xc_interface *xch, struct dom *d, unsigned int sop, unsigned int *mb)
{
    struct dom_meta *m = d->m;
    switch (sop) {
    case XEN_DOMCTL_SHADOW_OP_OFF:
        __atomic_store_n(&m->logdirty, 0, __ATOMIC_SEQ_CST);
        return 0;
    case XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY:
        if (m->type == XENMIG_MOCK_DOMAIN_PV && pv_logdirty_unsupported())
            return xc_fail(xch, EOPNOTSUPP, "log-dirty: no shadow paging for PV d%u",
                           (unsigned)m->domid);
        if (__atomic_load_n(&m->logdirty, __ATOMIC_SEQ_CST))
            return xc_fail(xch, EINVAL, "log-dirty: already enabled for d%u", (unsigned)m->domid);
        for (uint64_t w = 0; w < (m->nr_pages + 63) / 64; w++)
            __atomic_store_n(&d->dirty[w], 0, __ATOMIC_SEQ_CST);
        __atomic_store_n(&m->fault_count, 0, __ATOMIC_SEQ_CST);
        __atomic_store_n(&m->logdirty, 1, __ATOMIC_SEQ_CST);
        return 0;
    case XEN_DOMCTL_SHADOW_OP_GET_ALLOCATION:
        if (mb)
            *mb = 0;
        return 0;
    case XEN_DOMCTL_SHADOW_OP_SET_ALLOCATION:
        return 0;
    case XEN_DOMCTL_SHADOW_OP_CLEAN:
    case XEN_DOMCTL_SHADOW_OP_PEEK:
        return dirty_op(xch, d, sop, NULL, m->nr_pages, 0, NULL) < 0 ? -1 : 0;
    case XEN_DOMCTL_SHADOW_OP_ENABLE:
    case XEN_DOMCTL_SHADOW_OP_ENABLE_TEST:
    case XEN_DOMCTL_SHADOW_OP_ENABLE_TRANSLATE:
        return xc_fail(xch, EOPNOTSUPP, "shadow op %u not simulated (d%u)", sop,
                       (unsigned)m->domid);
    }
    return xc_fail(xch, EINVAL, "shadow op %u unknown (d%u)", sop, (unsigned)m->domid);
}

int xc_shadow_control(xc_interface *xch, uint32_t domid, unsigned int sop, unsigned int *mb,
                      unsigned int mode)
{
    (void)mode;
    struct dom *d;
    GET_DOM(xch, domid, d, "xc_shadow_control");
    int r = shadow_op(xch, d, sop, mb);
    int e = errno;
    dom_put(d);
    errno = e;
    return r;
}

long long xc_logdirty_control(xc_interface *xch, uint32_t domid, unsigned int sop,
                              xc_hypercall_buffer_t *dirty_bitmap, unsigned long pages,
                              unsigned int mode, xc_shadow_op_stats_t *stats)
{
    if (sop != XEN_DOMCTL_SHADOW_OP_CLEAN && sop != XEN_DOMCTL_SHADOW_OP_PEEK) {
        unsigned int mb = 0;
        return xc_shadow_control(xch, domid, sop, &mb, mode);
    }
    struct dom *d;
    GET_DOM(xch, domid, d, "xc_logdirty_control");
    uint64_t *bm = dirty_bitmap ? (uint64_t *)dirty_bitmap->hbuf : NULL;
    long long r = dirty_op(xch, d, sop, bm, pages, mode, stats);
    int e = errno;
    dom_put(d);
    errno = e;
    return r;
}

/* ---- vCPUs ------------------------------------------------------------------------------ */

static int check_vcpu(xc_interface *xch, struct dom *d, uint32_t vcpu, int err, const char *fn)
{
    if (vcpu >= d->m->max_vcpus) {
        dom_put(d);
        return xc_fail(xch, err, "%s: vcpu %u out of range", fn, (unsigned)vcpu);
    }
    return 0;
}

int xc_vcpu_getcontext(xc_interface *xch, uint32_t domid, uint32_t vcpu,
                       vcpu_guest_context_any_t *ctxt)
{
    struct dom *d;
    GET_DOM(xch, domid, d, "xc_vcpu_getcontext");
    if (check_vcpu(xch, d, vcpu, EINVAL, "xc_vcpu_getcontext"))
        return -1;
    if (!ctxt)
        return fail_put(xch, d, EFAULT, "xc_vcpu_getcontext: NULL buffer (d%u)", domid);
    dom_lock(d);
    memcpy(&ctxt->c, &d->vcpus[vcpu].ctx, sizeof(vcpu_guest_context_t));
    dom_unlock(d);
    dom_put(d);
    return 0;
}

int xc_vcpu_setcontext(xc_interface *xch, uint32_t domid, uint32_t vcpu,
                       vcpu_guest_context_any_t *ctxt)
{
    struct dom *d;
    GET_DOM(xch, domid, d, "xc_vcpu_setcontext");
    if (check_vcpu(xch, d, vcpu, EINVAL, "xc_vcpu_setcontext"))
        return -1;
    struct vcpu_state *vs = &d->vcpus[vcpu];
    dom_lock(d);
    if (!ctxt) {
        memset(&vs->ctx, 0, sizeof(vs->ctx));       /* reset: the vCPU goes down */
        vs->online = 0;
        dom_unlock(d);
        dom_put(d);
        return 0;
    }
    const vcpu_guest_context_t *c = &ctxt->c;
    if (d->m->type == XENMIG_MOCK_DOMAIN_PV) {
        struct host *h = host_get();
        uint64_t slot;
        int r = 0;
        if (c->gdt_ents > 16 * 512)
            r = EINVAL;
        for (unsigned i = 0; !r && i < 16 && i * 512 < c->gdt_ents; i++)
            if (!h || frame_to_slot(h, d, c->gdt_frames[i], &slot))
                r = EINVAL;
        if (!r && c->ctrlreg[3]) {
            /* loading cr3 validates and types the whole page-table tree */
            r = h ? pv_type_tree(h, d, xen_cr3_to_pfn(c->ctrlreg[3]), 4, 0) : EINVAL;
        } else if (!r && (c->flags & VGCF_online)) {
            r = EINVAL;                              /* an online PV vCPU needs page tables */
        }
        if (r) {
            dom_unlock(d);
            dom_put(d);
            return xc_fail(xch, r, "xc_vcpu_setcontext: d%u vcpu %u: invalid cr3/gdt frames",
                           (unsigned)domid, (unsigned)vcpu);
        }
    }
    memcpy(&vs->ctx, c, sizeof(vs->ctx));
    vs->online = (c->flags & VGCF_online) ? 1 : 0;
    dom_unlock(d);
    dom_put(d);
    return 0;
}

int xc_vcpu_getinfo(xc_interface *xch, uint32_t domid, uint32_t vcpu, xc_vcpuinfo_t *info)
{
    struct dom *d;
    GET_DOM(xch, domid, d, "xc_vcpu_getinfo");
    if (check_vcpu(xch, d, vcpu, EINVAL, "xc_vcpu_getinfo"))
        return -1;
    if (!info)
        return fail_put(xch, d, EFAULT, "xc_vcpu_getinfo: NULL buffer (d%u)", domid);
    memset(info, 0, sizeof(*info));
    info->vcpu = vcpu;
    info->online = d->vcpus[vcpu].online ? 1 : 0;
    info->running = info->online && !dom_stopped(d->m);
    info->blocked = 0;
    info->cpu_time = d->m->ever_ran ? now_ns() - d->m->created_ns : 0;
    info->cpu = vcpu % 2;
    dom_put(d);
    return 0;
}

static int ext_ctx(xc_interface *xch, struct dom *d, int set, struct xen_domctl_ext_vcpucontext *e)
{
    if (e->vcpu >= d->m->max_vcpus)
        return xc_fail(xch, ESRCH, "ext_vcpucontext: vcpu %u out of range", (unsigned)e->vcpu);
    struct vcpu_state *vs = &d->vcpus[e->vcpu];
    dom_lock(d);
    if (!set) {
        uint32_t v = e->vcpu;
        *e = vs->ext;
        e->vcpu = v;
        e->size = sizeof(*e);
        dom_unlock(d);
        return 0;
    }
    int bad = e->size < offsetof(struct xen_domctl_ext_vcpucontext, mcg_cap) ||
              e->size > sizeof(*e);
    if (!bad && d->m->type == XENMIG_MOCK_DOMAIN_HVM &&
        ((e->sysenter_callback_cs & ~3) || e->sysenter_callback_eip ||
         (e->syscall32_callback_cs & ~3) || e->syscall32_callback_eip))
        bad = 1;
    if (bad) {
        dom_unlock(d);
        return xc_fail(xch, EINVAL, "set_ext_vcpucontext: bad context for vcpu %u",
                       (unsigned)e->vcpu);
    }
    struct xen_domctl_ext_vcpucontext n = vs->ext;
    memcpy(&n, e, e->size);
    n.vcpu = e->vcpu;
    n.size = sizeof(n);
    vs->ext = n;
    dom_unlock(d);
    return 0;
}

static uint64_t xsave_area_size(uint64_t xcr0_accum)
{
    if (!xcr0_accum)
        return 0;
    return (xcr0_accum & 4) ? MOCK_XSAVE_AREA : 512 + 64;
}

static int extstate(xc_interface *xch, struct dom *d, int set, struct xen_domctl_vcpuextstate *x,
                    uint8_t *buf)
{
    if (x->vcpu >= d->m->max_vcpus)
        return xc_fail(xch, ESRCH, "vcpuextstate: vcpu %u out of range", (unsigned)x->vcpu);
    struct vcpu_state *vs = &d->vcpus[x->vcpu];
    const uint64_t hdr = 16, max = hdr + MOCK_XSAVE_AREA;
    if (!set) {
        if ((!x->size && !x->xfeature_mask) || !buf) {
            x->xfeature_mask = MOCK_XFEATURE_MASK;
            x->size = max;
            return 0;
        }
        dom_lock(d);
        uint64_t need = hdr + xsave_area_size(vs->xcr0_accum);
        if (x->size < need || x->xfeature_mask != MOCK_XFEATURE_MASK) {
            dom_unlock(d);
            return xc_fail(xch, EINVAL, "getvcpuextstate: buffer/mask mismatch (vcpu %u)",
                           (unsigned)x->vcpu);
        }
        memcpy(buf, &vs->xcr0, 8);
        memcpy(buf + 8, &vs->xcr0_accum, 8);
        memcpy(buf + 16, vs->xsave, need - hdr);
        dom_unlock(d);
        x->size = need;
        return 0;
    }
    if (x->size < hdr || x->size > max || !buf)
        return xc_fail(xch, EINVAL, "setvcpuextstate: bad size %llu", (unsigned long long)x->size);
    uint64_t xcr0, accum;
    memcpy(&xcr0, buf, 8);
    memcpy(&accum, buf + 8, 8);
    int bad = 0;
    if (accum)
        bad = (accum & ~MOCK_XFEATURE_MASK) || (xcr0 & ~accum) || !(xcr0 & 1);
    else if (xcr0)
        bad = 1;
    if (!bad && x->size != hdr && (x->size < hdr + 576 || x->size != hdr + xsave_area_size(accum)))
        bad = 1;
    if (bad)
        return xc_fail(xch, EINVAL, "setvcpuextstate: invalid state for vcpu %u",
                       (unsigned)x->vcpu);
    if (x->size == hdr)
        return 0;                                    /* nothing to restore */
    dom_lock(d);
    vs->xcr0 = xcr0;
    vs->xcr0_accum = accum;
    vs->xsave_size = (uint32_t)(x->size - hdr);
    memcpy(vs->xsave, buf + hdr, vs->xsave_size);
    dom_unlock(d);
    return 0;
}

static const uint32_t pv_msrs_allowed[MOCK_NR_VCPU_MSRS] = {
    0x48,            /* MSR_SPEC_CTRL */
    0x140,           /* MSR_INTEL_MISC_FEATURES_ENABLES */
    0xc0000103,      /* MSR_TSC_AUX */
    0xc0011027,      /* MSR_AMD64_DR0_ADDRESS_MASK */
    0xc0011019, 0xc001101a, 0xc001101b,   /* DR1..DR3_ADDRESS_MASK */
};

static int vcpu_msrs(xc_interface *xch, struct dom *d, int set, struct xen_domctl_vcpu_msrs *x,
                     struct xen_domctl_vcpu_msr *arr)
{
    if (x->vcpu >= d->m->max_vcpus)
        return xc_fail(xch, ESRCH, "vcpu_msrs: vcpu %u out of range", (unsigned)x->vcpu);
    if (d->m->type != XENMIG_MOCK_DOMAIN_PV)
        return xc_fail(xch, EINVAL, "vcpu_msrs: d%u is not PV", (unsigned)d->m->domid);
    struct vcpu_state *vs = &d->vcpus[x->vcpu];
    if (!set) {
        if (!arr) {
            x->msr_count = MOCK_NR_VCPU_MSRS;
            return 0;
        }
        dom_lock(d);
        uint32_t i = 0;
        for (uint32_t j = 0; j < vs->nr_msrs && j < MOCK_NR_VCPU_MSRS; j++) {
            if (!vs->msrs[j].value)
                continue;
            if (i < x->msr_count) {
                arr[i].index = vs->msrs[j].index;
                arr[i].reserved = 0;
                arr[i].value = vs->msrs[j].value;
            }
            i++;
        }
        dom_unlock(d);
        int over = i > x->msr_count;
        x->msr_count = i;
        if (over)
            return xc_fail(xch, ENOBUFS, "get_vcpu_msrs: buffer too small (vcpu %u)",
                           (unsigned)x->vcpu);
        return 0;
    }
    if (x->msr_count > MOCK_NR_VCPU_MSRS || (x->msr_count && !arr))
        return xc_fail(xch, EINVAL, "set_vcpu_msrs: bad count %u", (unsigned)x->msr_count);
    dom_lock(d);
    uint32_t i;
    for (i = 0; i < x->msr_count; i++) {
        int ok = 0;
        for (int k = 0; k < MOCK_NR_VCPU_MSRS; k++)
            ok |= arr[i].index == pv_msrs_allowed[k];
        if (!ok || arr[i].reserved)
            break;
        uint32_t j;
        for (j = 0; j < vs->nr_msrs && vs->msrs[j].index != arr[i].index; j++)
            ;
        if (j == vs->nr_msrs) {
            if (vs->nr_msrs >= MOCK_NR_VCPU_MSRS)
                break;
            vs->nr_msrs++;
        }
        vs->msrs[j].index = arr[i].index;
        vs->msrs[j].reserved = 0;
        vs->msrs[j].value = arr[i].value;
    }
    dom_unlock(d);
    if (i != x->msr_count) {
        x->msr_count = i;
        return xc_fail(xch, EINVAL, "set_vcpu_msrs: MSR %#x not settable", arr[i].index);
    }
    return 0;
}

int xc_vcpu_get_extstate(xc_interface *xch, uint32_t domid, uint32_t vcpu,
                         xc_vcpu_extstate_t *es)
{
    if (!es)
        return -EINVAL;
    struct dom *d;
    GET_DOM(xch, domid, d, "xc_vcpu_get_extstate");
    struct xen_domctl_vcpuextstate x = { .vcpu = vcpu, .xfeature_mask = es->xfeature_mask,
                                         .size = es->size };
    uint8_t *tmp = NULL;
    if (es->size) {
        tmp = calloc(1, es->size);
        if (!tmp) {
            dom_put(d);
            return -ENOMEM;
        }
    }
    int r = extstate(xch, d, 0, &x, tmp);
    if (r == 0) {
        if (!es->size && !es->xfeature_mask) {
            es->xfeature_mask = x.xfeature_mask;
            es->size = x.size;
        } else if (tmp && es->buffer) {
            memcpy(es->buffer, tmp, es->size);
        }
    }
    free(tmp);
    dom_put(d);
    return r;
}

/* ---- HVM context and params -------------------------------------------------------- */

int xc_domain_hvm_getcontext(xc_interface *xch, uint32_t domid, uint8_t *ctxt_buf, uint32_t size)
{
    struct dom *d;
    GET_DOM(xch, domid, d, "xc_domain_hvm_getcontext");
    if (d->m->type != XENMIG_MOCK_DOMAIN_HVM)
        return fail_put(xch, d, EINVAL, "xc_domain_hvm_getcontext: d%u is not HVM", domid);
    dom_lock(d);
    uint32_t have = d->m->hvmctx_size;
    if (!ctxt_buf) {
        dom_unlock(d);
        dom_put(d);
        return (int)have;
    }
    if (size < have) {
        dom_unlock(d);
        return fail_put(xch, d, ENOSPC, "xc_domain_hvm_getcontext: buffer too small (d%u)", domid);
    }
    memcpy(ctxt_buf, d->hvmctx, have);
    dom_unlock(d);
    dom_put(d);
    return (int)have;
}

int xc_domain_hvm_getcontext_partial(xc_interface *xch, uint32_t domid, uint16_t typecode,
                                     uint16_t instance, void *ctxt_buf, uint32_t size)
{
    struct dom *d;
    GET_DOM(xch, domid, d, "xc_domain_hvm_getcontext_partial");
    if (d->m->type != XENMIG_MOCK_DOMAIN_HVM)
        return fail_put(xch, d, EINVAL, "hvm_getcontext_partial: d%u is not HVM", domid);
    if (!ctxt_buf)
        return fail_put(xch, d, EINVAL, "hvm_getcontext_partial: NULL buffer (d%u)", domid);
    dom_lock(d);
    uint32_t off = 0, have = d->m->hvmctx_size;
    int err = ENOENT;
    while (off + sizeof(struct hvm_save_descriptor) <= have) {
        struct hvm_save_descriptor dsc;
        memcpy(&dsc, d->hvmctx + off, sizeof(dsc));
        off += sizeof(dsc);
        if (dsc.typecode == 0)
            break;
        if (dsc.typecode == typecode && dsc.instance == instance) {
            if (size < dsc.length) {
                err = ENOSPC;
            } else {
                memcpy(ctxt_buf, d->hvmctx + off, dsc.length);
                err = 0;
            }
            break;
        }
        off += dsc.length;
    }
    dom_unlock(d);
    if (err)
        return fail_put(xch, d, err, "hvm_getcontext_partial: no such record in d%u", domid);
    dom_put(d);
    return 0;
}

int xc_domain_hvm_setcontext(xc_interface *xch, uint32_t domid, uint8_t *hvm_ctxt, uint32_t size)
{
    struct dom *d;
    GET_DOM(xch, domid, d, "xc_domain_hvm_setcontext");
    if (d->m->type != XENMIG_MOCK_DOMAIN_HVM)
        return fail_put(xch, d, EINVAL, "xc_domain_hvm_setcontext: d%u is not HVM", domid);
    if (!hvm_ctxt || size > MOCK_HVMCTX_MAX ||
        hvmctx_validate(hvm_ctxt, size, d->m->max_vcpus))
        return fail_put(xch, d, EINVAL, "xc_domain_hvm_setcontext: invalid context for d%u", domid);
    dom_lock(d);
    memcpy(d->hvmctx, hvm_ctxt, size);
    d->m->hvmctx_size = size;
    uint32_t off = 0;
    while (off + sizeof(struct hvm_save_descriptor) <= size) {
        struct hvm_save_descriptor dsc;
        memcpy(&dsc, hvm_ctxt + off, sizeof(dsc));
        off += sizeof(dsc) + dsc.length;
        if (dsc.typecode == XENMIG_HVM_SAVE_CODE_CPU && dsc.instance < d->m->max_vcpus) {
            d->vcpus[dsc.instance].online = 1;
            d->vcpus[dsc.instance].ctx.flags |= VGCF_online;
        }
    }
    dom_unlock(d);
    dom_put(d);
    return 0;
}

int xc_hvm_param_get(xc_interface *handle, uint32_t dom, uint32_t param, uint64_t *value)
{
    struct dom *d;
    GET_DOM(handle, dom, d, "xc_hvm_param_get");
    if (d->m->type != XENMIG_MOCK_DOMAIN_HVM)
        return fail_put(handle, d, EINVAL, "xc_hvm_param_get: d%u is not HVM", dom);
    if (param >= HVM_NR_PARAMS || !value)
        return fail_put(handle, d, EINVAL, "xc_hvm_param_get: bad param %u", param);
    *value = __atomic_load_n(&d->m->hvm_params[param], __ATOMIC_SEQ_CST);
    dom_put(d);
    return 0;
}

int xc_hvm_param_set(xc_interface *handle, uint32_t dom, uint32_t param, uint64_t value)
{
    struct dom *d;
    GET_DOM(handle, dom, d, "xc_hvm_param_set");
    if (d->m->type != XENMIG_MOCK_DOMAIN_HVM)
        return fail_put(handle, d, EINVAL, "xc_hvm_param_set: d%u is not HVM", dom);
    if (param >= HVM_NR_PARAMS)
        return fail_put(handle, d, EINVAL, "xc_hvm_param_set: bad param %u", param);
    __atomic_store_n(&d->m->hvm_params[param], value, __ATOMIC_SEQ_CST);
    dom_put(d);
    return 0;
}

int xc_set_hvm_param(xc_interface *handle, uint32_t dom, int param, unsigned long value)
{
    if (param < 0)
        return xc_fail(handle, EINVAL, "xc_set_hvm_param: bad param %d", param);
    return xc_hvm_param_set(handle, dom, (uint32_t)param, value);
}

int xc_get_hvm_param(xc_interface *handle, uint32_t dom, int param, unsigned long *value)
{
    uint64_t v;
    if (param < 0 || !value)
        return xc_fail(handle, EINVAL, "xc_get_hvm_param: bad argument");
    int r = xc_hvm_param_get(handle, dom, (uint32_t)param, &v);
    if (r == 0)
        *value = (unsigned long)v;
    return r;
}

/* ---- TSC ---------------------------------------------------------------------------------- */

int xc_domain_set_tsc_info(xc_interface *xch, uint32_t domid, uint32_t tsc_mode,
                           uint64_t elapsed_nsec, uint32_t gtsc_khz, uint32_t incarnation)
{
    struct dom *d;
    GET_DOM(xch, domid, d, "xc_domain_set_tsc_info");
    if (tsc_mode > 2)
        return fail_put(xch, d, EINVAL, "xc_domain_set_tsc_info: bad mode %u", tsc_mode);
    dom_lock(d);
    d->m->tsc_mode = tsc_mode;
    d->m->tsc_nsec = elapsed_nsec;
    d->m->tsc_khz = gtsc_khz ? gtsc_khz : 2400000;
    d->m->tsc_incarnation = incarnation + 1;        /* as Xen: a restored TSC is a new incarnation */
    dom_unlock(d);
    dom_put(d);
    return 0;
}

int xc_domain_get_tsc_info(xc_interface *xch, uint32_t domid, uint32_t *tsc_mode,
                           uint64_t *elapsed_nsec, uint32_t *gtsc_khz, uint32_t *incarnation)
{
    struct dom *d;
    GET_DOM(xch, domid, d, "xc_domain_get_tsc_info");
    if (!tsc_mode || !elapsed_nsec || !gtsc_khz || !incarnation)
        return fail_put(xch, d, EFAULT, "xc_domain_get_tsc_info: NULL result (d%u)", domid);
    dom_lock(d);
    *tsc_mode = d->m->tsc_mode;
    *elapsed_nsec = d->m->tsc_nsec;
    *gtsc_khz = d->m->tsc_khz;
    *incarnation = d->m->tsc_incarnation;
    dom_unlock(d);
    dom_put(d);
    return 0;
}

/* ---- CPU policy ----------------------------------------------------------------------- */

struct xc_cpu_policy {
    uint32_t nr_leaves, nr_msrs;
    xen_cpuid_leaf_t leaves[MOCK_MAX_CPUID];
    xen_msr_entry_t msrs[MOCK_MAX_MSRPOL];
};

xc_cpu_policy_t *xc_cpu_policy_init(void)
{
    return calloc(1, sizeof(struct xc_cpu_policy));
}

void xc_cpu_policy_destroy(xc_cpu_policy_t *policy)
{
    free(policy);
}

int xc_cpu_policy_get_domain(xc_interface *xch, uint32_t domid, xc_cpu_policy_t *policy)
{
    if (!policy)
        return xc_fail(xch, EINVAL, "xc_cpu_policy_get_domain: NULL policy");
    struct dom *d;
    GET_DOM(xch, domid, d, "xc_cpu_policy_get_domain");
    dom_lock(d);
    policy->nr_leaves = d->m->nr_cpuid;
    policy->nr_msrs = d->m->nr_msrpol;
    memcpy(policy->leaves, d->m->cpuid, sizeof(policy->leaves));
    memcpy(policy->msrs, d->m->msrpol, sizeof(policy->msrs));
    dom_unlock(d);
    dom_put(d);
    return 0;
}

int xc_cpu_policy_serialise(xc_interface *xch, const xc_cpu_policy_t *p, xen_cpuid_leaf_t *leaves,
                            uint32_t *nr_leaves, xen_msr_entry_t *msrs, uint32_t *nr_msrs)
{
    if (!p)
        return xc_fail(xch, EINVAL, "xc_cpu_policy_serialise: NULL policy");
    if (leaves) {
        if (!nr_leaves || *nr_leaves < p->nr_leaves)
            return xc_fail(xch, ENOBUFS, "xc_cpu_policy_serialise: %u leaves do not fit",
                           p->nr_leaves);
        memcpy(leaves, p->leaves, p->nr_leaves * sizeof(*leaves));
        *nr_leaves = p->nr_leaves;
    }
    if (msrs) {
        if (!nr_msrs || *nr_msrs < p->nr_msrs)
            return xc_fail(xch, ENOBUFS, "xc_cpu_policy_serialise: %u MSRs do not fit",
                           p->nr_msrs);
        memcpy(msrs, p->msrs, p->nr_msrs * sizeof(*msrs));
        *nr_msrs = p->nr_msrs;
    }
    return 0;
}

int xc_cpu_policy_get_size(xc_interface *xch, uint32_t *nr_leaves, uint32_t *nr_msrs)
{
    if (!nr_leaves || !nr_msrs)
        return xc_fail(xch, EINVAL, "xc_cpu_policy_get_size: NULL result");
    *nr_leaves = MOCK_MAX_CPUID;
    *nr_msrs = MOCK_MAX_MSRPOL;
    return 0;
}

int xc_set_domain_cpu_policy(xc_interface *xch, uint32_t domid, uint32_t nr_leaves,
                             xen_cpuid_leaf_t *leaves, uint32_t nr_msrs, xen_msr_entry_t *msrs,
                             uint32_t *err_leaf_p, uint32_t *err_subleaf_p, uint32_t *err_msr_p)
{
    if (err_leaf_p)
        *err_leaf_p = ~0U;
    if (err_subleaf_p)
        *err_subleaf_p = ~0U;
    if (err_msr_p)
        *err_msr_p = ~0U;
    struct dom *d;
    GET_DOM(xch, domid, d, "xc_set_domain_cpu_policy");
    if (__atomic_load_n(&d->m->ever_ran, __ATOMIC_SEQ_CST))
        return fail_put(xch, d, EEXIST, "xc_set_domain_cpu_policy: d%u has already run", domid);
    if (nr_leaves > MOCK_MAX_CPUID || nr_msrs > MOCK_MAX_MSRPOL ||
        (nr_leaves && !leaves) || (nr_msrs && !msrs))
        return fail_put(xch, d, E2BIG, "xc_set_domain_cpu_policy: policy too large (d%u)", domid);
    for (uint32_t i = 0; i < nr_msrs; i++)
        if (msrs[i].flags) {
            if (err_msr_p)
                *err_msr_p = msrs[i].idx;
            return fail_put(xch, d, EINVAL, "xc_set_domain_cpu_policy: MSR %#x flags", msrs[i].idx);
        }
    dom_lock(d);
    if (nr_leaves) {
        memcpy(d->m->cpuid, leaves, nr_leaves * sizeof(*leaves));
        d->m->nr_cpuid = nr_leaves;
    }
    if (nr_msrs) {
        memcpy(d->m->msrpol, msrs, nr_msrs * sizeof(*msrs));
        d->m->nr_msrpol = nr_msrs;
    }
    dom_unlock(d);
    dom_put(d);
    return 0;
}

int xc_cpu_policy_set_domain(xc_interface *xch, uint32_t domid, xc_cpu_policy_t *policy)
{
    if (!policy)
        return xc_fail(xch, EINVAL, "xc_cpu_policy_set_domain: NULL policy");
    uint32_t el, es, em;
    return xc_set_domain_cpu_policy(xch, domid, policy->nr_leaves, policy->leaves,
                                    policy->nr_msrs, policy->msrs, &el, &es, &em);
}

/* ---- raw domctl --------------------------------------------------------------------------- */

int xc_domctl(xc_interface *xch, struct xen_domctl *dc)
{
    if (!dc)
        return xc_fail(xch, EFAULT, "xc_domctl: NULL");
    dc->interface_version = XEN_DOMCTL_INTERFACE_VERSION;
    uint32_t domid = dc->domain;
    struct dom *d;
    int r;
    switch (dc->cmd) {
    case XEN_DOMCTL_pausedomain:
        return xc_domain_pause(xch, domid);
    case XEN_DOMCTL_unpausedomain:
        return xc_domain_unpause(xch, domid);
    case XEN_DOMCTL_destroydomain:
        return xc_domain_destroy(xch, domid);
    case XEN_DOMCTL_resumedomain: {
        GET_DOM(xch, domid, d, "resumedomain");
        dom_lock(d);
        __atomic_store_n(&d->m->shutdown, 0, __ATOMIC_SEQ_CST);
        d->m->shutdown_reason = 0;
        dom_unlock(d);
        dom_kick(d);
        dom_put(d);
        return 0;
    }
    case XEN_DOMCTL_getdomaininfo: {
        /* 4.17: the first existing domain >= the requested one */
        xc_domaininfo_t di;
        r = xc_domain_getinfolist(xch, domid, 1, &di);
        if (r < 0)
            return -1;
        if (r == 0)
            return xc_fail(xch, ESRCH, "getdomaininfo: no domain >= %u", (unsigned)domid);
        dc->u.getdomaininfo = di;
        dc->domain = di.domain;
        return 0;
    }
    case XEN_DOMCTL_max_mem:
        return xc_domain_setmaxmem(xch, domid, dc->u.max_mem.max_memkb);
    case XEN_DOMCTL_max_vcpus:
        return xc_domain_max_vcpus(xch, domid, dc->u.max_vcpus.max);
    case XEN_DOMCTL_getvcpucontext:
        return xc_vcpu_getcontext(xch, domid, dc->u.vcpucontext.vcpu,
                                  (vcpu_guest_context_any_t *)dc->u.vcpucontext.ctxt.p);
    case XEN_DOMCTL_setvcpucontext:
        return xc_vcpu_setcontext(xch, domid, dc->u.vcpucontext.vcpu,
                                  (vcpu_guest_context_any_t *)dc->u.vcpucontext.ctxt.p);
    case XEN_DOMCTL_getvcpuinfo:
        return xc_vcpu_getinfo(xch, domid, dc->u.getvcpuinfo.vcpu, &dc->u.getvcpuinfo);
    case XEN_DOMCTL_shadow_op: {
        struct xen_domctl_shadow_op *so = &dc->u.shadow_op;
        if (so->op == XEN_DOMCTL_SHADOW_OP_CLEAN || so->op == XEN_DOMCTL_SHADOW_OP_PEEK) {
            GET_DOM(xch, domid, d, "shadow_op");
            long long n = dirty_op(xch, d, so->op, (uint64_t *)so->dirty_bitmap.p, so->pages,
                                   so->mode, &so->stats);
            dom_put(d);
            if (n < 0)
                return -1;
            so->pages = (uint64_t)n;
            return 0;
        }
        return xc_shadow_control(xch, domid, so->op, &so->mb, so->mode);
    }
    case XEN_DOMCTL_gettscinfo:
        return xc_domain_get_tsc_info(xch, domid, &dc->u.tsc_info.tsc_mode,
                                      &dc->u.tsc_info.elapsed_nsec, &dc->u.tsc_info.gtsc_khz,
                                      &dc->u.tsc_info.incarnation);
    case XEN_DOMCTL_settscinfo:
        return xc_domain_set_tsc_info(xch, domid, dc->u.tsc_info.tsc_mode,
                                      dc->u.tsc_info.elapsed_nsec, dc->u.tsc_info.gtsc_khz,
                                      dc->u.tsc_info.incarnation);
    case XEN_DOMCTL_gethvmcontext: {
        uint8_t *buf = dc->u.hvmcontext.buffer.p;
        r = xc_domain_hvm_getcontext(xch, domid, buf, dc->u.hvmcontext.size);
        if (r < 0)
            return -1;
        dc->u.hvmcontext.size = (uint32_t)r;
        return 0;
    }
    case XEN_DOMCTL_sethvmcontext:
        return xc_domain_hvm_setcontext(xch, domid, dc->u.hvmcontext.buffer.p,
                                        dc->u.hvmcontext.size);
    case XEN_DOMCTL_gethvmcontext_partial: {
        struct xen_domctl_hvmcontext_partial *hp = &dc->u.hvmcontext_partial;
        return xc_domain_hvm_getcontext_partial(xch, domid, (uint16_t)hp->type,
                                                (uint16_t)hp->instance, hp->buffer.p,
                                                (uint32_t)hp->bufsz);
    }
    case XEN_DOMCTL_get_address_size: {
        unsigned int w;
        if (xc_domain_get_guest_width(xch, domid, &w))
            return -1;
        dc->u.address_size.size = w * 8;
        return 0;
    }
    case XEN_DOMCTL_set_address_size: {
        GET_DOM(xch, domid, d, "set_address_size");
        int hvm = d->m->type == XENMIG_MOCK_DOMAIN_HVM;
        uint32_t width = d->m->guest_width * 8;
        dom_put(d);
        if (hvm)
            return xc_fail(xch, EOPNOTSUPP, "set_address_size: d%u is HVM", (unsigned)domid);
        if (dc->u.address_size.size != width)
            return xc_fail(xch, EINVAL, "set_address_size: only %u-bit PV guests are simulated",
                           width);
        return 0;
    }
    case XEN_DOMCTL_get_ext_vcpucontext:
    case XEN_DOMCTL_set_ext_vcpucontext:
        GET_DOM(xch, domid, d, "ext_vcpucontext");
        r = ext_ctx(xch, d, dc->cmd == XEN_DOMCTL_set_ext_vcpucontext, &dc->u.ext_vcpucontext);
        break;
    case XEN_DOMCTL_getvcpuextstate:
    case XEN_DOMCTL_setvcpuextstate:
        GET_DOM(xch, domid, d, "vcpuextstate");
        r = extstate(xch, d, dc->cmd == XEN_DOMCTL_setvcpuextstate, &dc->u.vcpuextstate,
                     (uint8_t *)dc->u.vcpuextstate.buffer.p);
        break;
    case XEN_DOMCTL_get_vcpu_msrs:
    case XEN_DOMCTL_set_vcpu_msrs:
        GET_DOM(xch, domid, d, "vcpu_msrs");
        r = vcpu_msrs(xch, d, dc->cmd == XEN_DOMCTL_set_vcpu_msrs, &dc->u.vcpu_msrs,
                      dc->u.vcpu_msrs.msrs.p);
        break;
    case XEN_DOMCTL_getpageframeinfo3: {
        uint64_t num = dc->u.getpageframeinfo3.num;
        if (num > 1024)
            return xc_fail(xch, E2BIG, "getpageframeinfo3: %llu frames", (unsigned long long)num);
        return xc_get_pfn_type_batch(xch, domid, (unsigned int)num,
                                     dc->u.getpageframeinfo3.array.p);
    }
    case XEN_DOMCTL_get_cpu_policy: {
        struct xen_domctl_cpu_policy *cp = &dc->u.cpu_policy;
        xc_cpu_policy_t *p = xc_cpu_policy_init();
        if (!p)
            return xc_fail(xch, ENOMEM, "get_cpu_policy: out of memory");
        r = xc_cpu_policy_get_domain(xch, domid, p);
        if (r == 0)
            r = xc_cpu_policy_serialise(xch, p, cp->leaves.p, &cp->nr_leaves, cp->msrs.p,
                                        &cp->nr_msrs);
        if (r == 0) {
            if (!cp->leaves.p)
                cp->nr_leaves = p->nr_leaves;
            if (!cp->msrs.p)
                cp->nr_msrs = p->nr_msrs;
        }
        xc_cpu_policy_destroy(p);
        return r;
    }
    case XEN_DOMCTL_set_cpu_policy: {
        struct xen_domctl_cpu_policy *cp = &dc->u.cpu_policy;
        return xc_set_domain_cpu_policy(xch, domid, cp->nr_leaves, cp->leaves.p, cp->nr_msrs,
                                        cp->msrs.p, &cp->err_leaf, &cp->err_subleaf, &cp->err_msr);
    }
    default:
        return xc_fail(xch, ENOSYS, "xc_domctl: command %u not simulated", (unsigned)dc->cmd);
    }
    int e = errno;
    dom_put(d);
    errno = e;
    return r;
}
