/* xenmig mock: guest memory calls: populate, page types, M2P, pinning, foreign mappings. */
#include "mock_internal.h"
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <stdio.h>

/* ---- populate ------------------------------------------------------------------------ */

/* Returns the number of extents populated (Xen's XENMEM_populate_physmap), -1 on error. */
int xc_domain_populate_physmap(xc_interface *xch, uint32_t domid, unsigned long nr_extents,
                               unsigned int extent_order, unsigned int mem_flags,
                               xen_pfn_t *extent_start)
{
    (void)mem_flags;
    struct dom *d;
    if (dom_get(domid, &d))
        return xc_fail(xch, ESRCH, "populate_physmap: domain %u does not exist", (unsigned)domid);
    if (extent_order > 9 || (nr_extents && !extent_start)) {
        dom_put(d);
        return xc_fail(xch, EINVAL, "populate_physmap: bad arguments (order %u)", extent_order);
    }
    struct dom_meta *m = d->m;
    struct host *h = host_get();
    uint64_t per = 1ULL << extent_order;
    unsigned long done = 0;
    int err = 0;
    dom_lock(d);
    for (; done < nr_extents; done++) {
        uint64_t gpfn = extent_start[done];
        if ((gpfn & (per - 1)) || gpfn >= m->nr_pages || m->nr_pages - gpfn < per) {
            err = EINVAL;
            break;
        }
        uint64_t fresh = 0;
        for (uint64_t i = 0; i < per; i++)
            fresh += !(d->pinfo[gpfn + i] & PI_PRESENT);
        if (fresh && m->tot_pages + fresh > m->max_pages) {
            err = ENOMEM;
            break;
        }
        if (m->type == XENMIG_MOCK_DOMAIN_PV) {
            if (fresh == per) {
                uint64_t mfns[512];
                if (!h || host_lock(h)) {
                    err = errno ? errno : EIO;
                    break;
                }
                long got = frames_alloc(h, m->domid, per, per > 1, mfns);
                if (got != (long)per) {
                    host_unlock(h);
                    err = ENOMEM;
                    break;
                }
                for (uint64_t i = 0; i < per; i++) {
                    h->frames[mfns[i]].slot = (uint32_t)(gpfn + i);
                    h->m2p[mfns[i]] = gpfn + i;
                    d->p2m[gpfn + i] = mfns[i];
                }
                host_unlock(h);
            } else if (fresh) {
                err = EBUSY;             /* a partly populated superpage */
                break;
            }
            extent_start[done] = d->p2m[gpfn];   /* PV: the machine frame comes back */
        }
        for (uint64_t i = 0; i < per; i++) {
            if (!(d->pinfo[gpfn + i] & PI_PRESENT)) {
                memset(d->mem + (gpfn + i) * MOCK_PAGE, 0, MOCK_PAGE);
                __atomic_store_n(&d->touch[gpfn + i], TOUCH_WARM, __ATOMIC_RELAXED);
                __atomic_store_n(&d->pinfo[gpfn + i], PI_PRESENT, __ATOMIC_RELEASE);
            }
        }
        m->tot_pages += fresh;
        if (gpfn + per > m->max_mapped_pfn)
            m->max_mapped_pfn = gpfn + per;
    }
    dom_unlock(d);
    dom_put(d);
    if (err && done == 0)
        return xc_fail(xch, err, "populate_physmap: d%u gpfn %#lx", (unsigned)domid,
                       (unsigned long)(nr_extents ? extent_start[0] : 0));
    return (int)done;
}

int xc_domain_populate_physmap_exact(xc_interface *xch, uint32_t domid, unsigned long nr_extents,
                                     unsigned int extent_order, unsigned int mem_flags,
                                     xen_pfn_t *extent_start)
{
    int r = xc_domain_populate_physmap(xch, domid, nr_extents, extent_order, mem_flags,
                                       extent_start);
    if (r < 0)
        return -1;
    if ((unsigned long)r != nr_extents)
        return xc_fail(xch, EBUSY, "populate_physmap_exact: d%u: %d of %lu extents",
                       (unsigned)domid, r, nr_extents);
    return 0;
}

/* ---- page types, M2P, pinning ------------------------------------------------------- */

int xc_get_pfn_type_batch(xc_interface *xch, uint32_t dom, unsigned int num, xen_pfn_t *arr)
{
    if (num > 1024)
        return xc_fail(xch, E2BIG, "xc_get_pfn_type_batch: %u frames", num);
    if (num && !arr)
        return xc_fail(xch, EFAULT, "xc_get_pfn_type_batch: NULL array");
    struct dom *d;
    if (dom_get(dom, &d))
        return xc_fail(xch, ESRCH, "xc_get_pfn_type_batch: domain %u does not exist",
                       (unsigned)dom);
    struct host *h = host_get();
    for (unsigned int i = 0; i < num; i++) {
        uint64_t slot;
        if (!h || frame_to_slot(h, d, arr[i], &slot) || slot >= d->m->nr_pages) {
            arr[i] = XEN_DOMCTL_PFINFO_XTAB;
            continue;
        }
        arr[i] = __atomic_load_n(&d->pinfo[slot], __ATOMIC_ACQUIRE) & PI_TYPE_MASK;
    }
    dom_put(d);
    return 0;
}

int xc_maximum_ram_page(xc_interface *xch, unsigned long *max_mfn)
{
    struct host *h = host_get();
    if (!h)
        return xc_fail(xch, errno, "xc_maximum_ram_page: no host");
    if (!max_mfn)
        return xc_fail(xch, EFAULT, "xc_maximum_ram_page: NULL result");
    *max_mfn = h->meta->nr_frames - 1;
    return 0;
}

xen_pfn_t *xc_map_m2p(xc_interface *xch, unsigned long max_mfn, int prot, unsigned long *mfn0)
{
    struct host *h = host_get();
    if (!h) {
        xc_fail(xch, errno, "xc_map_m2p: no host");
        return NULL;
    }
    if (prot & PROT_WRITE) {
        xc_fail(xch, EPERM, "xc_map_m2p: the M2P is read-only");
        return NULL;
    }
    /* As libxc: whole 2 MiB chunks covering entries 0..max_mfn (M2P_SIZE). */
    size_t chunk = 2UL << 20;
    size_t len = (((uint64_t)max_mfn + 1) * sizeof(xen_pfn_t) + chunk - 1) / chunk * chunk;
    void *base = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) {
        xc_fail(xch, ENOMEM, "xc_map_m2p: cannot reserve %zu bytes", len);
        return NULL;
    }
    size_t file_len = len < h->m2p_size ? len : h->m2p_size;
    char path[4200];
    snprintf(path, sizeof(path), "%s/m2p", h->dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    void *p = fd < 0 ? MAP_FAILED
                     : mmap(base, file_len, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);
    if (fd >= 0)
        close(fd);
    if (p == MAP_FAILED) {
        int e = errno;
        munmap(base, len);
        xc_fail(xch, e, "xc_map_m2p: cannot map the M2P");
        return NULL;
    }
    if (mfn0)
        *mfn0 = MOCK_M2P_MFN0;
    return base;
}

int xc_mmuext_op(xc_interface *xch, struct mmuext_op *op, unsigned int nr_ops, uint32_t dom)
{
    if (nr_ops && !op)
        return xc_fail(xch, EFAULT, "xc_mmuext_op: NULL ops");
    struct dom *d;
    if (dom_get(dom, &d))
        return xc_fail(xch, ESRCH, "xc_mmuext_op: domain %u does not exist", (unsigned)dom);
    if (d->m->type != XENMIG_MOCK_DOMAIN_PV) {
        dom_put(d);
        return xc_fail(xch, EINVAL, "xc_mmuext_op: d%u is not PV", (unsigned)dom);
    }
    struct host *h = host_get();
    int err = 0;
    unsigned int i;
    dom_lock(d);
    for (i = 0; i < nr_ops && !err; i++) {
        uint64_t slot;
        switch (op[i].cmd) {
        case MMUEXT_PIN_L1_TABLE:
        case MMUEXT_PIN_L2_TABLE:
        case MMUEXT_PIN_L3_TABLE:
        case MMUEXT_PIN_L4_TABLE:
            err = h ? pv_type_tree(h, d, op[i].arg1.mfn, (int)(op[i].cmd - MMUEXT_PIN_L1_TABLE) + 1, 1)
                    : EIO;
            break;
        case MMUEXT_UNPIN_TABLE:
            if (!h || frame_to_slot(h, d, op[i].arg1.mfn, &slot) || slot >= d->m->nr_pages ||
                !(d->pinfo[slot] & XEN_DOMCTL_PFINFO_LPINTAB))
                err = EINVAL;
            else
                d->pinfo[slot] &= ~XEN_DOMCTL_PFINFO_LPINTAB;
            break;
        case MMUEXT_TLB_FLUSH_LOCAL:
        case MMUEXT_TLB_FLUSH_ALL:
        case MMUEXT_FLUSH_CACHE:
            break;
        default:
            err = EINVAL;
        }
    }
    dom_unlock(d);
    dom_put(d);
    if (err)
        return xc_fail(xch, err, "xc_mmuext_op: op %u (cmd %u, mfn %#lx) failed on d%u", i - 1,
                       op[i - 1].cmd, (unsigned long)op[i - 1].arg1.mfn, (unsigned)dom);
    return 0;
}

/* ---- foreign mappings ------------------------------------------------------------------ */

/*
 * Lent windows. Every process that opens a domain maps its whole memory file once (d->mem, in
 * host.c), at an address that stays put until the domain is both destroyed and unreferenced.
 * When the frames of a xenforeignmemory_map() request resolve to one contiguous run of slots of
 * the memory file, all of which this process has mapped before or zeroed in populate_physmap, the
 * mock returns a pointer into that mapping instead of a fresh mmap: those pages are already
 * faulted in and do not fault again, as privcmd populates a foreign mapping inside its ioctl. The window holds a reference on the domain (so d->mem outlives a
 * destroy, like a real foreign mapping keeps the pages), and xenforeignmemory_unmap() of a lent
 * window only forgets it and drops that reference. The memory file never grows: it is created
 * at nr_pages + 1 pages, and populate_physmap only marks pages present.
 * XENMIG_MOCK_FRESH_MAPS=1 turns lending off (every map is a fresh mmap, as before).
 */
struct lent {
    struct lent *next;
    uint8_t *addr;
    size_t pages;
    struct dom *d;
};

#define LENT_BITS 12
static struct lent *g_lent[1U << LENT_BITS];
static pthread_mutex_t g_lent_mu = PTHREAD_MUTEX_INITIALIZER;

static size_t lent_bucket(const void *addr)
{
    return (size_t)(((uint64_t)(uintptr_t)addr >> 12) * 0x9e3779b97f4a7c15ULL >> (64 - LENT_BITS));
}

static int lending_enabled(void)
{
    static int v = -1;
    int cur = __atomic_load_n(&v, __ATOMIC_RELAXED);
    if (cur < 0) {
        const char *e = getenv("XENMIG_MOCK_FRESH_MAPS");
        cur = !(e && *e && strcmp(e, "0") != 0);
        __atomic_store_n(&v, cur, __ATOMIC_RELAXED);
    }
    return cur;
}

static int lent_add(uint8_t *addr, size_t pages, struct dom *d)
{
    struct lent *l = malloc(sizeof(*l));
    if (!l)
        return -1;
    l->addr = addr;
    l->pages = pages;
    l->d = d;
    size_t b = lent_bucket(addr);
    pthread_mutex_lock(&g_lent_mu);
    l->next = g_lent[b];
    g_lent[b] = l;
    pthread_mutex_unlock(&g_lent_mu);
    return 0;
}

/* 1: a window lent at addr with exactly `pages` pages was forgotten (its domain reference is
 * dropped); 0: no window starts at addr; -1: one does, with another size (nothing changed). */
static int lent_release(const void *addr, size_t pages)
{
    size_t b = lent_bucket(addr);
    struct lent *found = NULL;
    int other_size = 0;
    pthread_mutex_lock(&g_lent_mu);
    for (struct lent **pp = &g_lent[b]; *pp; pp = &(*pp)->next) {
        if ((*pp)->addr != addr)
            continue;
        if ((*pp)->pages != pages) {
            other_size = 1;
            continue;
        }
        found = *pp;
        *pp = found->next;
        break;
    }
    pthread_mutex_unlock(&g_lent_mu);
    if (!found)
        return other_size ? -1 : 0;
    dom_put(found->d);
    free(found);
    return 1;
}

/* lend: the caller releases the result with xenforeignmemory_unmap() / lent_release(), never with
 * munmap() (the compat xc_map_foreign_* calls return fresh mappings: their callers munmap them). */
static void *fm_map_lend(xc_interface *xch, xenforeignmemory_handle *fm, uint32_t dom, void *addr,
                         int prot, int flags, size_t pages, const xen_pfn_t *arr, int *err, int lend)
{
#define MAPFAIL(e, ...)                                               \
    do {                                                              \
        if (xch)                                                      \
            xc_fail(xch, (e), __VA_ARGS__);                           \
        else                                                          \
            fm_fail(fm, (e), __VA_ARGS__);                            \
        return NULL;                                                  \
    } while (0)
    if (pages == 0 || !arr || pages > (SIZE_MAX / MOCK_PAGE))
        MAPFAIL(EINVAL, "map: bad arguments (%zu pages)", pages);
    if (prot & ~(PROT_READ | PROT_WRITE))
        MAPFAIL(EINVAL, "map: bad prot %#x", prot);
    if (fm && fm->restricted && fm->restrict_domid != dom)
        MAPFAIL(EPERM, "map: handle restricted to d%u", (unsigned)fm->restrict_domid);
    struct dom *d;
    if (dom_get(dom, &d))
        MAPFAIL(ESRCH, "map: domain %u does not exist", (unsigned)dom);
    struct host *h = host_get();
    uint64_t *slots = malloc(pages * sizeof(*slots));
    if (!slots || !h) {
        free(slots);
        dom_put(d);
        MAPFAIL(ENOMEM, "map: out of memory");
    }
    int first_err = 0;
    for (size_t i = 0; i < pages; i++) {
        int e = frame_to_slot(h, d, arr[i], &slots[i]);
        if (e) {
            slots[i] = UINT64_MAX;
            if (!first_err)
                first_err = e;
        }
        if (err)
            err[i] = e;
    }
    if (first_err && !err) {
        free(slots);
        dom_put(d);
        MAPFAIL(first_err, "map: d%u frame not mappable", (unsigned)dom);
    }
    /* Fast path: every frame mappable, one contiguous run of slots, no placement asked for and
     * some access wanted. The window is read-write whatever prot asked for (see docker/README.md). */
    if (lend && !first_err && !addr && !(flags & MAP_FIXED) && prot && lending_enabled()) {
        size_t i = 1;
        while (i < pages && slots[i] == slots[0] + i)
            i++;
        if (i == pages && slots[0] <= d->memsize / MOCK_PAGE &&
            pages <= d->memsize / MOCK_PAGE - slots[0]) {
            /* Lend only pages this process has mapped before or already faulted into d->mem. On
             * this nested VM the first touch of a page through the long-lived mapping costs more
             * than through a fresh window at a recycled address (bench/RESULTS.md), so a page
             * seen once, as in a single pass over the guest, keeps the fresh path. */
            const uint8_t *t = d->touch + slots[0];
            size_t k = 0;
            while (k < pages && __atomic_load_n(&t[k], __ATOMIC_RELAXED))
                k++;
            uint8_t *w = d->mem + slots[0] * MOCK_PAGE;
            if (k == pages && lent_add(w, pages, d) == 0) {
                for (k = 0; k < pages; k++)
                    __atomic_store_n(&d->touch[slots[0] + k], TOUCH_WARM, __ATOMIC_RELAXED);
                free(slots);
                return w;                /* keeps dom_get's reference until the unmap */
            }
        }
    }
    size_t len = pages * MOCK_PAGE;
    int mprot = prot ? prot : PROT_NONE;
    int fixed = (flags & MAP_FIXED) ? MAP_FIXED : 0;
    uint8_t *base = mmap(addr, len, mprot, MAP_PRIVATE | MAP_ANONYMOUS | fixed, -1, 0);
    if (base == MAP_FAILED) {
        int e = errno;
        free(slots);
        dom_put(d);
        MAPFAIL(e, "map: cannot reserve %zu pages", pages);
    }
    for (size_t i = 0; i < pages;) {
        if (slots[i] == UINT64_MAX) {
            i++;
            continue;
        }
        size_t run = 1;
        while (i + run < pages && slots[i + run] == slots[i] + run)
            run++;
        void *p = mmap(base + i * MOCK_PAGE, run * MOCK_PAGE, mprot, MAP_SHARED | MAP_FIXED,
                       d->memfd, (off_t)(slots[i] * MOCK_PAGE));
        if (p == MAP_FAILED) {
            int e = errno;
            munmap(base, len);
            free(slots);
            dom_put(d);
            MAPFAIL(e, "map: mmap of d%u memory failed", (unsigned)dom);
        }
        for (size_t k = 0; k < run; k++)
            if (!__atomic_load_n(&d->touch[slots[i] + k], __ATOMIC_RELAXED))
                __atomic_store_n(&d->touch[slots[i] + k], TOUCH_SEEN, __ATOMIC_RELAXED);
        i += run;
    }
    free(slots);
    dom_put(d);
    return base;
#undef MAPFAIL
}

void *fm_map(xentoollog_logger *lg, xc_interface *xch, xenforeignmemory_handle *fm, uint32_t dom,
             void *addr, int prot, int flags, size_t pages, const xen_pfn_t *arr, int *err)
{
    (void)lg;
    return fm_map_lend(xch, fm, dom, addr, prot, flags, pages, arr, err, 0);
}

xenforeignmemory_handle *xenforeignmemory_open(struct xentoollog_logger *logger,
                                               unsigned open_flags)
{
    (void)open_flags;
    xenforeignmemory_handle *fm = calloc(1, sizeof(*fm));
    if (!fm)
        return NULL;
    if (logger) {
        fm->logger = logger;
    } else {
        fm->own_logger = mock_default_logger();
        fm->logger = fm->own_logger;
    }
    if (!host_get()) {
        int e = errno;
        xtl_log(fm->logger, XTL_ERROR, e, "xenforeignmemory", "cannot open mock host %s",
                xenmig_mock_host());
        xtl_logger_destroy(fm->own_logger);
        free(fm);
        errno = e;
        return NULL;
    }
    return fm;
}

int xenforeignmemory_close(xenforeignmemory_handle *fm)
{
    if (!fm)
        return 0;
    xtl_logger_destroy(fm->own_logger);
    free(fm);
    return 0;
}

void *xenforeignmemory_map(xenforeignmemory_handle *fm, uint32_t dom, int prot, size_t pages,
                           const xen_pfn_t arr[], int err[])
{
    return fm_map_lend(NULL, fm, dom, NULL, prot, 0, pages, arr, err, 1);
}

void *xenforeignmemory_map2(xenforeignmemory_handle *fm, uint32_t dom, void *addr, int prot,
                            int flags, size_t pages, const xen_pfn_t arr[], int err[])
{
    if (flags & ~MAP_FIXED) {
        fm_fail(fm, EINVAL, "map2: unsupported flags %#x", flags);
        return NULL;
    }
    return fm_map_lend(NULL, fm, dom, addr, prot, flags, pages, arr, err, 1);
}

int xenforeignmemory_unmap(xenforeignmemory_handle *fm, void *addr, size_t pages)
{
    if (!addr || !pages || pages > SIZE_MAX / MOCK_PAGE)
        return fm_fail(fm, EINVAL, "unmap: bad arguments");
    int r = lent_release(addr, pages);
    if (r > 0)
        return 0;
    if (r < 0)
        return fm_fail(fm, EINVAL, "unmap: %p was mapped with another page count", addr);
    if (dom_mem_overlaps(addr, pages * MOCK_PAGE))
        return fm_fail(fm, EINVAL, "unmap: %p is not the start of a mapping", addr);
    if (munmap(addr, pages * MOCK_PAGE))
        return fm_fail(fm, errno, "unmap failed");
    return 0;
}

int xenforeignmemory_restrict(xenforeignmemory_handle *fm, domid_t domid)
{
    if (!fm)
        return fm_fail(fm, EINVAL, "restrict: NULL handle");
    if (fm->restricted && fm->restrict_domid != domid)
        return fm_fail(fm, EPERM, "restrict: already restricted to d%u",
                       (unsigned)fm->restrict_domid);
    fm->restricted = 1;
    fm->restrict_domid = domid;
    return 0;
}

xenforeignmemory_resource_handle *xenforeignmemory_map_resource(
    xenforeignmemory_handle *fm, domid_t domid, unsigned int type, unsigned int id,
    unsigned long frame, unsigned long nr_frames, void **paddr, int prot, int flags)
{
    (void)domid; (void)type; (void)id; (void)frame; (void)nr_frames; (void)paddr;
    (void)prot; (void)flags;
    fm_fail(fm, EOPNOTSUPP, "map_resource: not simulated");
    return NULL;
}

int xenforeignmemory_unmap_resource(xenforeignmemory_handle *fm,
                                    xenforeignmemory_resource_handle *fres)
{
    (void)fres;
    return fm_fail(fm, EOPNOTSUPP, "unmap_resource: not simulated");
}

int xenforeignmemory_resource_size(xenforeignmemory_handle *fm, domid_t domid, unsigned int type,
                                   unsigned int id, size_t *size)
{
    (void)domid; (void)type; (void)id; (void)size;
    return fm_fail(fm, EOPNOTSUPP, "resource_size: not simulated");
}

/* ---- compat mapping API and page clearing ------------------------------------------- */

void *xc_map_foreign_bulk(xc_interface *xch, uint32_t dom, int prot, const xen_pfn_t *arr,
                          int *err, unsigned int num)
{
    if (!err) {
        xc_fail(xch, EINVAL, "xc_map_foreign_bulk: NULL err array");
        return NULL;
    }
    return fm_map(NULL, xch, xch ? xch->fmem : NULL, dom, NULL, prot, 0, num, arr, err);
}

void *xc_map_foreign_pages(xc_interface *xch, uint32_t dom, int prot, const xen_pfn_t *arr,
                           int num)
{
    if (num <= 0) {
        xc_fail(xch, EINVAL, "xc_map_foreign_pages: bad count %d", num);
        return NULL;
    }
    return fm_map(NULL, xch, xch ? xch->fmem : NULL, dom, NULL, prot, 0, (size_t)num, arr, NULL);
}

void *xc_map_foreign_range(xc_interface *xch, uint32_t dom, int size, int prot,
                           unsigned long mfn)
{
    if (size <= 0) {
        xc_fail(xch, EINVAL, "xc_map_foreign_range: bad size %d", size);
        return NULL;
    }
    size_t n = ((size_t)size + MOCK_PAGE - 1) / MOCK_PAGE;
    xen_pfn_t *arr = malloc(n * sizeof(*arr));
    if (!arr) {
        xc_fail(xch, ENOMEM, "xc_map_foreign_range: out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        arr[i] = mfn + i;
    void *p = fm_map(NULL, xch, xch ? xch->fmem : NULL, dom, NULL, prot, 0, n, arr, NULL);
    free(arr);
    return p;
}

int xc_clear_domain_pages(xc_interface *xch, uint32_t domid, unsigned long dst_pfn, int num)
{
    if (num <= 0)
        return xc_fail(xch, EINVAL, "xc_clear_domain_pages: bad count %d", num);
    xen_pfn_t *arr = malloc((size_t)num * sizeof(*arr));
    if (!arr)
        return xc_fail(xch, ENOMEM, "xc_clear_domain_pages: out of memory");
    for (int i = 0; i < num; i++)
        arr[i] = dst_pfn + (unsigned long)i;
    void *p = fm_map_lend(xch, xch ? xch->fmem : NULL, domid, NULL, PROT_READ | PROT_WRITE, 0,
                          (size_t)num, arr, NULL, 1);
    free(arr);
    if (!p)
        return -1;
    memset(p, 0, (size_t)num * MOCK_PAGE);
    if (lent_release(p, (size_t)num) == 0)
        munmap(p, (size_t)num * MOCK_PAGE);
    return 0;
}
