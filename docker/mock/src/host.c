/* xenmig mock: host directories, machine frames, the per-process domain cache. */
#include "mock_internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <dirent.h>
#include <time.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;      /* g_host, g_doms, g_dir */
static pthread_mutex_t g_frames_mu = PTHREAD_MUTEX_INITIALIZER; /* with the host flock */
static struct host *g_host;
static struct host *g_old_hosts[64];    /* kept mapped: other threads may still use them */
static unsigned g_nold;
static struct dom *g_doms;
static char g_dir[4096];
static int g_dir_set;

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void default_dir(char *buf, size_t len)
{
    const char *env = getenv("XENMIG_MOCK_HOST");
    if (env && *env)
        snprintf(buf, len, "%s", env);
    else
        snprintf(buf, len, "/dev/shm/xenmig-mock-%u", (unsigned)getuid());
}

const char *xenmig_mock_host(void)
{
    pthread_mutex_lock(&g_mu);
    if (!g_dir_set) {
        default_dir(g_dir, sizeof(g_dir));
        g_dir_set = 1;
    }
    pthread_mutex_unlock(&g_mu);
    return g_dir;
}

static int mkdir_p(const char *dir)
{
    char tmp[4096];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof(tmp)) {
        errno = EINVAL;
        return -1;
    }
    memcpy(tmp, dir, len + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0700) && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    if (mkdir(tmp, 0700) && errno != EEXIST)
        return -1;
    return 0;
}

static void *map_file(const char *path, size_t size, int prot, int create, int *fd_out)
{
    int fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
    if (fd < 0)
        return NULL;
    if (create && ftruncate(fd, (off_t)size)) {
        int e = errno;
        close(fd);
        errno = e;
        return NULL;
    }
    if (!create) {
        struct stat st;
        if (fstat(fd, &st) || (size_t)st.st_size < size) {
            close(fd);
            errno = ESRCH;
            return NULL;
        }
    }
    void *p = mmap(NULL, size, prot, MAP_SHARED, fd, 0);
    int e = errno;
    if (fd_out && p != MAP_FAILED)
        *fd_out = fd;
    else
        close(fd);
    if (p == MAP_FAILED) {
        errno = e;
        return NULL;
    }
    return p;
}

static void host_close(struct host *h)
{
    if (!h)
        return;
    if (h->meta)
        munmap(h->meta, MOCK_PAGE);
    if (h->m2p)
        munmap(h->m2p, h->m2p_size);
    if (h->frames)
        munmap(h->frames, h->frames_size);
    if (h->lockfd >= 0)
        close(h->lockfd);
    free(h);
}

static uint64_t env_frames(void)
{
    const char *e = getenv("XENMIG_MOCK_MACHINE_FRAMES");
    uint64_t n = e ? strtoull(e, NULL, 0) : 0;
    if (n < (1UL << 16) || n > (1UL << 28))
        n = MOCK_DEFAULT_FRAMES;
    return (n + 262143) & ~262143ULL;   /* M2P size a multiple of 2 MiB */
}

static struct host *host_open(const char *dir)
{
    char path[4200];
    struct host *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->lockfd = -1;
    snprintf(h->dir, sizeof(h->dir), "%s", dir);
    if (mkdir_p(dir))
        goto fail;
    snprintf(path, sizeof(path), "%s/lock", dir);
    h->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (h->lockfd < 0 || flock(h->lockfd, LOCK_EX))
        goto fail;
    snprintf(path, sizeof(path), "%s/host", dir);
    struct stat st;
    int fresh = stat(path, &st) != 0 || st.st_size < (off_t)MOCK_PAGE;
    h->meta = map_file(path, MOCK_PAGE, PROT_READ | PROT_WRITE, 1, NULL);
    if (!h->meta)
        goto fail_locked;
    if (fresh || h->meta->magic != MOCK_HOST_MAGIC) {
        memset(h->meta, 0, MOCK_PAGE);
        h->meta->version = MOCK_VERSION;
        h->meta->nr_frames = env_frames();
        h->meta->next_domid = 1;
        h->meta->rng = now_ns() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)h;
        h->meta->cursor = MOCK_FIRST_GUEST_MFN;
        h->meta->free_frames = h->meta->nr_frames - MOCK_FIRST_GUEST_MFN;
    }
    h->m2p_size = h->meta->nr_frames * sizeof(xen_pfn_t);
    h->frames_size = h->meta->nr_frames * sizeof(struct frame_owner);
    snprintf(path, sizeof(path), "%s/m2p", dir);
    h->m2p = map_file(path, h->m2p_size, PROT_READ | PROT_WRITE, 1, NULL);
    snprintf(path, sizeof(path), "%s/frames", dir);
    h->frames = map_file(path, h->frames_size, PROT_READ | PROT_WRITE, 1, NULL);
    if (!h->m2p || !h->frames)
        goto fail_locked;
    if (h->meta->magic != MOCK_HOST_MAGIC)
        __atomic_store_n(&h->meta->magic, MOCK_HOST_MAGIC, __ATOMIC_RELEASE);
    flock(h->lockfd, LOCK_UN);
    return h;
fail_locked:
    flock(h->lockfd, LOCK_UN);
fail:;
    int e = errno ? errno : EIO;
    host_close(h);
    errno = e;
    return NULL;
}

static void dom_unmap(struct dom *d)
{
    if (d->m)
        munmap(d->m, d->msize);
    if (d->mem)
        munmap(d->mem, d->memsize);
    if (d->dirty)
        munmap(d->dirty, d->dsize);
    if (d->memfd >= 0)
        close(d->memfd);
    free(d->touch);
    free(d);
}

/* with g_mu held */
static void drop_all_locked(void)
{
    struct dom **pp = &g_doms;
    while (*pp) {
        struct dom *d = *pp;
        if (d->refs == 0) {
            *pp = d->next;
            dom_unmap(d);
        } else {
            d->stale = 1;
            pp = &d->next;
        }
    }
}

static struct host *host_get_locked(void)
{
    if (!g_host) {
        if (!g_dir_set) {
            default_dir(g_dir, sizeof(g_dir));
            g_dir_set = 1;
        }
        g_host = host_open(g_dir);
    }
    return g_host;
}

struct host *host_get(void)
{
    pthread_mutex_lock(&g_mu);
    struct host *h = host_get_locked();
    int e = errno;
    pthread_mutex_unlock(&g_mu);
    if (!h)
        errno = e;
    return h;
}

int xenmig_mock_set_host(const char *dir)
{
    char want[4096];
    if (dir && strlen(dir) >= sizeof(want) - 64) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if (dir && *dir)
        snprintf(want, sizeof(want), "%s", dir);
    else
        default_dir(want, sizeof(want));
    struct host *h = host_open(want);
    if (!h)
        return -1;
    pthread_mutex_lock(&g_mu);
    drop_all_locked();
    if (g_host) {
        if (g_nold < sizeof(g_old_hosts) / sizeof(g_old_hosts[0]))
            g_old_hosts[g_nold++] = g_host;
        else
            host_close(g_host);   /* many switches: the oldest users are long gone */
    }
    g_host = h;
    snprintf(g_dir, sizeof(g_dir), "%s", want);
    g_dir_set = 1;
    pthread_mutex_unlock(&g_mu);
    return 0;
}

int host_lock(struct host *h)
{
    pthread_mutex_lock(&g_frames_mu);
    while (flock(h->lockfd, LOCK_EX)) {
        if (errno != EINTR) {
            int e = errno;
            pthread_mutex_unlock(&g_frames_mu);
            errno = e;
            return -1;
        }
    }
    return 0;
}

void host_unlock(struct host *h)
{
    flock(h->lockfd, LOCK_UN);
    pthread_mutex_unlock(&g_frames_mu);
}

uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Reserve n free machine frames for domid (host lock held by caller): scattered runs,
 * or one contiguous run. Owner set, slot left for the caller. Returns n or -1 (ENOMEM). */
long frames_alloc(struct host *h, uint32_t domid, uint64_t n, int contiguous, uint64_t *out)
{
    struct host_meta *hm = h->meta;
    uint64_t nr = hm->nr_frames, span = nr - MOCK_FIRST_GUEST_MFN;
    if (n == 0)
        return 0;
    if (hm->free_frames < n) {
        errno = ENOMEM;
        return -1;
    }
    if (contiguous) {
        for (int attempt = 0; attempt < 2; attempt++) {
            uint64_t start = attempt ? MOCK_FIRST_GUEST_MFN
                                     : MOCK_FIRST_GUEST_MFN + splitmix64(&hm->rng) % span;
            start = (start + n - 1) & ~(n - 1);          /* natural alignment */
            for (uint64_t base = start; base + n <= nr; base += n) {
                uint64_t i;
                for (i = 0; i < n && !h->frames[base + i].owner; i++)
                    ;
                if (i == n) {
                    for (i = 0; i < n; i++) {
                        h->frames[base + i].owner = domid + 1;
                        h->frames[base + i].slot = UINT32_MAX;
                        out[i] = base + i;
                    }
                    hm->free_frames -= n;
                    return (long)n;
                }
            }
        }
        errno = ENOMEM;
        return -1;
    }
    uint64_t cur = hm->cursor, runleft = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (runleft == 0) {
            cur = MOCK_FIRST_GUEST_MFN + splitmix64(&hm->rng) % span;
            runleft = 1 + splitmix64(&hm->rng) % 16;
        }
        uint64_t scanned = 0;
        while (h->frames[cur].owner) {
            if (++cur >= nr)
                cur = MOCK_FIRST_GUEST_MFN;
            if (++scanned > span) {
                errno = ENOMEM;   /* cannot happen: free_frames was checked */
                return -1;
            }
        }
        h->frames[cur].owner = domid + 1;
        h->frames[cur].slot = UINT32_MAX;
        out[i] = cur;
        runleft--;
        if (++cur >= nr)
            cur = MOCK_FIRST_GUEST_MFN;
    }
    hm->cursor = cur;
    hm->free_frames -= n;
    return (long)n;
}

static void frame_release(struct host *h, uint64_t mfn, uint32_t domid)
{
    if (mfn < h->meta->nr_frames && h->frames[mfn].owner == domid + 1) {
        h->frames[mfn].owner = 0;
        h->frames[mfn].slot = 0;
        h->m2p[mfn] = INVALID_MFN;
        h->meta->free_frames++;
    }
}

void frames_free_domain(struct host *h, uint32_t domid)
{
    /* The owner table is authoritative: sweep it (a few ms for a 4 GiB machine). */
    for (uint64_t mfn = MOCK_FIRST_GUEST_MFN; mfn < h->meta->nr_frames; mfn++)
        if (h->frames[mfn].owner == domid + 1)
            frame_release(h, mfn, domid);
}

int frame_to_slot(struct host *h, struct dom *d, uint64_t frame, uint64_t *slot)
{
    struct dom_meta *m = d->m;
    if (m->type == XENMIG_MOCK_DOMAIN_HVM) {
        if (frame >= m->nr_pages ||
            !(__atomic_load_n(&d->pinfo[frame], __ATOMIC_ACQUIRE) & PI_PRESENT))
            return EINVAL;
        *slot = frame;
        return 0;
    }
    if (frame >= h->meta->nr_frames)
        return EPERM;       /* not RAM: Xen treats it as MMIO the domain may not map */
    struct frame_owner fo;
    __atomic_load(&h->frames[frame], &fo, __ATOMIC_ACQUIRE);
    if (fo.owner != m->domid + 1 || fo.slot > m->nr_pages)
        return EINVAL;      /* not a page of this domain */
    *slot = fo.slot;
    return 0;
}

uint64_t pv_mfn_to_pfn(struct host *h, struct dom *d, uint64_t mfn)
{
    if (mfn >= h->meta->nr_frames)
        return ~0ULL;
    struct frame_owner fo;
    __atomic_load(&h->frames[mfn], &fo, __ATOMIC_ACQUIRE);
    if (fo.owner != d->m->domid + 1 || fo.slot >= d->m->nr_pages)
        return ~0ULL;
    return fo.slot;
}

/* ---- domains ----------------------------------------------------------------------- */

static struct dom *dom_open(struct host *h, uint32_t domid, int allow_incomplete)
{
    char path[4300];
    struct dom *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->memfd = -1;
    d->domid = domid;
    snprintf(path, sizeof(path), "%s/d%u/meta", h->dir, domid);
    struct dom_meta hdr;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || pread(fd, &hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr)) {
        if (fd >= 0)
            close(fd);
        free(d);
        errno = ESRCH;
        return NULL;
    }
    close(fd);
    if ((!allow_incomplete && hdr.magic != MOCK_DOM_MAGIC) || hdr.dying || hdr.domid != domid ||
        hdr.total_size < sizeof(hdr)) {
        free(d);
        errno = ESRCH;
        return NULL;
    }
    d->msize = hdr.total_size;
    d->m = map_file(path, d->msize, PROT_READ | PROT_WRITE, 0, NULL);
    snprintf(path, sizeof(path), "%s/d%u/mem", h->dir, domid);
    d->memsize = (hdr.nr_pages + 1) * MOCK_PAGE;
    d->mem = map_file(path, d->memsize, PROT_READ | PROT_WRITE, 0, &d->memfd);
    snprintf(path, sizeof(path), "%s/d%u/dirty", h->dir, domid);
    d->dsize = ((hdr.nr_pages + 63) / 64) * 8;
    d->dirty = map_file(path, d->dsize, PROT_READ | PROT_WRITE, 0, NULL);
    d->touch = calloc(hdr.nr_pages + 1, 1);
    if (!d->m || !d->mem || !d->dirty || !d->touch) {
        dom_unmap(d);
        errno = ESRCH;
        return NULL;
    }
    d->vcpus = (struct vcpu_state *)((uint8_t *)d->m + d->m->off_vcpus);
    d->hvmctx = (uint8_t *)d->m + d->m->off_hvmctx;
    d->pinfo = (uint32_t *)((uint8_t *)d->m + d->m->off_pinfo);
    d->p2m = (uint64_t *)((uint8_t *)d->m + d->m->off_p2m);
    return d;
}

int dom_get(uint32_t domid, struct dom **out)
{
    if (domid >= DOMID_FIRST_RESERVED) {
        errno = ESRCH;
        return -1;
    }
    pthread_mutex_lock(&g_mu);
    struct host *h = host_get_locked();
    if (!h) {
        pthread_mutex_unlock(&g_mu);
        errno = ESRCH;
        return -1;
    }
    struct dom **pp = &g_doms;
    while (*pp) {
        struct dom *d = *pp;
        if (!d->stale && __atomic_load_n(&d->m->dying, __ATOMIC_ACQUIRE))
            d->stale = 1;
        if (d->stale && d->refs == 0) {
            *pp = d->next;
            dom_unmap(d);
            continue;
        }
        if (!d->stale && d->domid == domid) {
            d->refs++;
            *out = d;
            pthread_mutex_unlock(&g_mu);
            return 0;
        }
        pp = &d->next;
    }
    struct dom *d = dom_open(h, domid, 0);
    if (!d) {
        pthread_mutex_unlock(&g_mu);
        errno = ESRCH;
        return -1;
    }
    d->refs = 1;
    d->next = g_doms;
    g_doms = d;
    *out = d;
    pthread_mutex_unlock(&g_mu);
    return 0;
}

int dom_mem_overlaps(const void *addr, size_t len)
{
    uintptr_t a = (uintptr_t)addr;
    int hit = 0;
    pthread_mutex_lock(&g_mu);
    for (struct dom *d = g_doms; d && !hit; d = d->next) {
        uintptr_t s = (uintptr_t)d->mem;
        hit = d->mem && a < s + d->memsize && s < a + len;
    }
    pthread_mutex_unlock(&g_mu);
    return hit;
}

void dom_put(struct dom *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&g_mu);
    d->refs--;
    pthread_mutex_unlock(&g_mu);
}

void dom_lock(struct dom *d)
{
    uint32_t *l = &d->m->lock;
    for (;;) {
        uint32_t zero = 0;
        if (__atomic_compare_exchange_n(l, &zero, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            return;
        futex_wait_u32(l, 1, 1000000);
    }
}

void dom_unlock(struct dom *d)
{
    __atomic_store_n(&d->m->lock, 0, __ATOMIC_RELEASE);
    futex_wake_u32(&d->m->lock);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* All complete, live domains of the host, ascending. Returns the count (may exceed max). */
int dom_list(uint32_t *ids, unsigned int max)
{
    struct host *h = host_get();
    if (!h)
        return -1;
    DIR *dir = opendir(h->dir);
    if (!dir)
        return -1;
    uint32_t *all = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        char *end;
        if (e->d_name[0] != 'd' || !e->d_name[1])
            continue;
        unsigned long id = strtoul(e->d_name + 1, &end, 10);
        if (*end || id >= DOMID_FIRST_RESERVED)
            continue;
        char path[4300];
        struct dom_meta hdr;
        snprintf(path, sizeof(path), "%s/d%lu/meta", h->dir, id);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t r = pread(fd, &hdr, sizeof(hdr), 0);
        close(fd);
        if (r != (ssize_t)sizeof(hdr) || hdr.magic != MOCK_DOM_MAGIC || hdr.dying)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            uint32_t *na = realloc(all, cap * sizeof(*all));
            if (!na) {
                free(all);
                closedir(dir);
                errno = ENOMEM;
                return -1;
            }
            all = na;
        }
        all[n++] = (uint32_t)id;
    }
    closedir(dir);
    if (n)
        qsort(all, n, sizeof(*all), cmp_u32);
    for (size_t i = 0; i < n && i < max; i++)
        ids[i] = all[i];
    free(all);
    return (int)n;
}

int xenmig_mock_domain_list(uint32_t *domids, unsigned int max)
{
    if (!domids && max) {
        errno = EINVAL;
        return -1;
    }
    return dom_list(domids, max);
}

/* ---- create / destroy -------------------------------------------------------------- */

static int write_zero_file(const char *path, size_t size)
{
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    int r = ftruncate(fd, (off_t)size);
    int e = errno;
    close(fd);
    errno = e;
    return r;
}

static void remove_domain_files(struct host *h, uint32_t domid)
{
    char path[4300];
    static const char *names[] = { "meta", "mem", "dirty" };
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/d%u/%s", h->dir, domid, names[i]);
        unlink(path);
    }
    snprintf(path, sizeof(path), "%s/d%u", h->dir, domid);
    rmdir(path);
}

int xenmig_mock_domain_create(uint32_t type, uint64_t nr_pages, uint32_t max_vcpus,
                              int populate, uint32_t *domid_out)
{
    if ((type != XENMIG_MOCK_DOMAIN_PV && type != XENMIG_MOCK_DOMAIN_HVM) ||
        max_vcpus < 1 || max_vcpus > MOCK_MAX_VCPUS || nr_pages > (1ULL << 26) ||
        nr_pages < (type == XENMIG_MOCK_DOMAIN_PV ? 64 : 16)) {
        errno = EINVAL;
        return -1;
    }
    struct host *h = host_get();
    if (!h)
        return -1;
    if (type == XENMIG_MOCK_DOMAIN_PV && populate && h->meta->free_frames < nr_pages + 1) {
        errno = ENOMEM;
        return -1;
    }
    /* allocate a domid and its directory */
    char path[4300];
    uint32_t domid = 0;
    if (host_lock(h))
        return -1;
    for (unsigned tries = 0; tries < DOMID_FIRST_RESERVED; tries++) {
        uint32_t cand = h->meta->next_domid;
        if (cand == 0 || cand >= DOMID_FIRST_RESERVED)
            cand = 1;
        h->meta->next_domid = cand + 1;
        snprintf(path, sizeof(path), "%s/d%u", h->dir, cand);
        if (mkdir(path, 0700) == 0) {
            domid = cand;
            break;
        }
        if (errno != EEXIST) {
            int e = errno;
            host_unlock(h);
            errno = e;
            return -1;
        }
    }
    host_unlock(h);
    if (!domid) {
        errno = ENOSPC;
        return -1;
    }

    /* lay out and create the files */
    size_t off = (sizeof(struct dom_meta) + 63) & ~(size_t)63;
    size_t off_vcpus = off;
    off += ((sizeof(struct vcpu_state) * max_vcpus) + 63) & ~(size_t)63;
    size_t off_hvmctx = off;
    off += MOCK_HVMCTX_MAX;
    size_t off_pinfo = off;
    off += (nr_pages * sizeof(uint32_t) + 63) & ~(size_t)63;
    size_t off_p2m = off;
    if (type == XENMIG_MOCK_DOMAIN_PV)
        off += nr_pages * sizeof(uint64_t);
    size_t total = (off + MOCK_PAGE - 1) & ~(MOCK_PAGE - 1);

    int err = 0;
    snprintf(path, sizeof(path), "%s/d%u/mem", h->dir, domid);
    if (write_zero_file(path, (nr_pages + 1) * MOCK_PAGE))
        err = errno;
    snprintf(path, sizeof(path), "%s/d%u/dirty", h->dir, domid);
    if (!err && write_zero_file(path, ((nr_pages + 63) / 64) * 8))
        err = errno;
    snprintf(path, sizeof(path), "%s/d%u/meta", h->dir, domid);
    int fd = -1;
    struct dom_meta *m = NULL;
    if (!err) {
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 || ftruncate(fd, (off_t)total))
            err = errno;
    }
    if (!err) {
        m = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) {
            err = errno;
            m = NULL;
        }
    }
    if (fd >= 0)
        close(fd);
    if (err) {
        if (m)
            munmap(m, total);
        remove_domain_files(h, domid);
        errno = err;
        return -1;
    }
    m->version = MOCK_VERSION;
    m->domid = domid;
    m->type = type;
    m->max_vcpus = max_vcpus;
    m->guest_width = 8;
    m->nr_pages = nr_pages;
    m->max_pages = nr_pages;
    m->seed = splitmix64(&(uint64_t){ now_ns() ^ ((uint64_t)domid << 40) });
    m->created_ns = now_ns();
    m->off_vcpus = off_vcpus;
    m->off_hvmctx = off_hvmctx;
    m->off_pinfo = off_pinfo;
    m->off_p2m = off_p2m;
    m->total_size = total;
    m->shinfo_mfn = INVALID_MFN;
    m->tsc_mode = 0;
    m->tsc_khz = 2400000;
    m->tsc_nsec = 1000000000ULL + (uint64_t)domid * 1000;
    default_cpu_policy(m);
    struct vcpu_state *vs = (struct vcpu_state *)((uint8_t *)m + off_vcpus);
    for (uint32_t v = 0; v < max_vcpus; v++) {
        vs[v].ext.vcpu = v;
        vs[v].ext.size = sizeof(vs[v].ext);
        vs[v].ext.vmce.caps = 0x1000802ULL;          /* MCG_CAP: 2 banks, SER, LMCE-less */
        vs[v].xcr0 = vs[v].xcr0_accum = 0;
    }
    if (type == XENMIG_MOCK_DOMAIN_PV) {
        uint64_t *p2m = (uint64_t *)((uint8_t *)m + off_p2m);
        for (uint64_t i = 0; i < nr_pages; i++)
            p2m[i] = INVALID_MFN;
        /* the shared-info page: a Xen heap page of the domain, not in its p2m */
        uint64_t mfn;
        if (host_lock(h) == 0) {
            if (frames_alloc(h, domid, 1, 0, &mfn) == 1) {
                h->frames[mfn].slot = (uint32_t)nr_pages;
                h->m2p[mfn] = INVALID_MFN;
                m->shinfo_mfn = mfn;
            } else {
                err = errno;
            }
            host_unlock(h);
        } else {
            err = errno;
        }
    }
    if (!err && populate) {
        struct dom *d = dom_open(h, domid, 1);
        if (!d) {
            err = errno;
        } else {
            if (type == XENMIG_MOCK_DOMAIN_PV ? pv_build(h, d) : hvm_build(d))
                err = errno ? errno : EIO;
            dom_unmap(d);
        }
    }
    if (err) {
        m->dying = 1;
        munmap(m, total);
        if (host_lock(h) == 0) {
            frames_free_domain(h, domid);
            host_unlock(h);
        }
        remove_domain_files(h, domid);
        errno = err;
        return -1;
    }
    if (populate) {
        m->ever_ran = 1;
        m->pause_count = 0;
    } else {
        m->pause_count = 1;        /* a fresh domain waits, paused, for its toolstack */
    }
    __atomic_store_n(&m->magic, MOCK_DOM_MAGIC, __ATOMIC_RELEASE);
    munmap(m, total);
    if (domid_out)
        *domid_out = domid;
    return 0;
}

/* Destroy: mark dying (every process then sees ESRCH), free frames, remove files. */
int dom_destroy(uint32_t domid)
{
    struct dom *d;
    if (dom_get(domid, &d))
        return -1;
    uint32_t was = __atomic_exchange_n(&d->m->dying, 1, __ATOMIC_SEQ_CST);
    if (was) {
        dom_put(d);
        errno = ESRCH;
        return -1;
    }
    __atomic_add_fetch(&d->m->run_seq, 1, __ATOMIC_SEQ_CST);
    futex_wake_u32(&d->m->run_seq);
    struct host *h = host_get();
    if (h && d->m->type == XENMIG_MOCK_DOMAIN_PV && host_lock(h) == 0) {
        frames_free_domain(h, domid);
        host_unlock(h);
    }
    if (h)
        remove_domain_files(h, domid);
    pthread_mutex_lock(&g_mu);
    d->stale = 1;
    pthread_mutex_unlock(&g_mu);
    dom_put(d);
    return 0;
}

int xenmig_mock_domain_destroy(uint32_t domid)
{
    return dom_destroy(domid);
}
