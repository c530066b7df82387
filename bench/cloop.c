/*
 * The C-loop baseline of the mock benchmarks: the same pages moved through the same mock mappings
 * as the engine moves them, with nothing else around it. What the engine takes beyond this loop is
 * what the engine adds; what this loop takes is what the mock (and the machine) costs.
 *
 *   cloop send HOSTDIR DOMID [BATCH]   every page of DOMID, in batches of BATCH (default 1024)
 *                                      gfns: one page-type query, one read-only map, one writev of
 *                                      a PAGE_DATA record (header + pfns + pages) to stdout, unmap
 *   cloop recv HOSTDIR PAGES           a new empty HVM domain of PAGES pages; for each PAGE_DATA
 *                                      record on stdin: populate its gfns, map them read-write,
 *                                      read the payload straight into the mapping, unmap.
 *                                      Prints the new domid on stderr.
 *   cloop copy HOSTDIR DOMID N ROUNDS  N pages spread over DOMID, mapped in batches of 1024 and
 *                                      copied into a private buffer, ROUNDS times; prints the
 *                                      median milliseconds of one round (a Remus checkpoint's copy)
 *
 * Built by bench/lib.mjs (cloopBinary) against the mock library the addon links to.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <xenctrl.h>
#include <xenforeignmemory.h>
#include <xenmig_mock.h>

#define PAGE 4096
#define MAX_BATCH 1024
#define REC_PAGE_DATA 1

static void die(const char *what)
{
    fprintf(stderr, "cloop: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void write_all(int fd, struct iovec *iov, int cnt)
{
    while (cnt > 0) {
        ssize_t n = writev(fd, iov, cnt > IOV_MAX ? IOV_MAX : cnt);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("writev");
        }
        while (cnt > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
}

/* 1 = read len bytes, 0 = clean end of file before the first byte */
static int read_all(int fd, void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = read(fd, (uint8_t *)buf + done, len - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("read");
        }
        if (n == 0) {
            if (done == 0)
                return 0;
            errno = EPIPE;
            die("short read");
        }
        done += (size_t)n;
    }
    return 1;
}

static int do_send(xc_interface *xch, xenforeignmemory_handle *fm, uint32_t domid, unsigned batch)
{
    xen_pfn_t nr;
    if (xc_domain_nr_gpfns(xch, domid, &nr))
        die("xc_domain_nr_gpfns");
    /* record header (type, length) + count, reserved + pfn words */
    uint32_t *hdr = malloc(16 + 8 * MAX_BATCH);
    xen_pfn_t gfns[MAX_BATCH], types[MAX_BATCH], data[MAX_BATCH];
    int err[MAX_BATCH];
    for (xen_pfn_t first = 0; first < nr; first += batch) {
        unsigned n = (unsigned)(nr - first < batch ? nr - first : batch);
        for (unsigned i = 0; i < n; i++)
            gfns[i] = types[i] = first + i;
        if (xc_get_pfn_type_batch(xch, domid, n, types))
            die("xc_get_pfn_type_batch");
        unsigned nd = 0;
        uint64_t *pw = (uint64_t *)(hdr + 4);
        for (unsigned i = 0; i < n; i++) {
            uint64_t t = (types[i] >> 28) & 0xf;
            pw[i] = gfns[i] | (t << 60);
            /* XTAB (0xf), BROKEN (0xd) and XALLOC (0xe) carry no data */
            if (t < 0xd)
                data[nd++] = gfns[i];
        }
        hdr[0] = REC_PAGE_DATA;
        hdr[1] = 8 + 8 * n + PAGE * nd;
        hdr[2] = n;
        hdr[3] = 0;
        struct iovec iov[2] = {{hdr, 16 + 8 * (size_t)n}, {NULL, 0}};
        uint8_t *m = NULL;
        if (nd) {
            m = xenforeignmemory_map(fm, domid, PROT_READ, nd, data, err);
            if (!m)
                die("xenforeignmemory_map");
            iov[1].iov_base = m;
            iov[1].iov_len = (size_t)nd * PAGE;
        }
        write_all(1, iov, nd ? 2 : 1);
        if (m)
            xenforeignmemory_unmap(fm, m, nd);
    }
    free(hdr);
    return 0;
}

static int do_recv(xc_interface *xch, xenforeignmemory_handle *fm, uint64_t pages)
{
    uint32_t domid;
    if (xenmig_mock_domain_create(XENMIG_MOCK_DOMAIN_HVM, pages, 1, 0, &domid))
        die("xenmig_mock_domain_create");
    uint32_t rh[4];
    uint64_t pw[MAX_BATCH];
    xen_pfn_t gfns[MAX_BATCH];
    int err[MAX_BATCH];
    while (read_all(0, rh, sizeof(rh))) {
        uint32_t n = rh[2];
        if (rh[0] != REC_PAGE_DATA || n == 0 || n > MAX_BATCH) {
            errno = EINVAL;
            die("not a PAGE_DATA record");
        }
        read_all(0, pw, 8 * (size_t)n);
        unsigned nd = 0;
        for (uint32_t i = 0; i < n; i++)
            if ((pw[i] >> 60) < 0xd)
                gfns[nd++] = pw[i] & ((1ULL << 52) - 1);
        if (!nd)
            continue;
        if (xc_domain_populate_physmap_exact(xch, domid, nd, 0, 0, gfns))
            die("xc_domain_populate_physmap_exact");
        uint8_t *m = xenforeignmemory_map(fm, domid, PROT_READ | PROT_WRITE, nd, gfns, err);
        if (!m)
            die("xenforeignmemory_map");
        if (!read_all(0, m, (size_t)nd * PAGE)) {
            errno = EPIPE;
            die("payload");
        }
        xenforeignmemory_unmap(fm, m, nd);
    }
    fprintf(stderr, "cloop: received into domain %u\n", domid);
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int do_copy(xenforeignmemory_handle *fm, xc_interface *xch, uint32_t domid, unsigned n, unsigned rounds)
{
    xen_pfn_t nr;
    if (xc_domain_nr_gpfns(xch, domid, &nr))
        die("xc_domain_nr_gpfns");
    uint8_t *dst = malloc((size_t)n * PAGE);
    double *ms = calloc(rounds, sizeof(*ms));
    xen_pfn_t gfns[MAX_BATCH];
    int err[MAX_BATCH];
    xen_pfn_t stride = nr / n ? nr / n : 1;
    for (unsigned r = 0; r < rounds; r++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (unsigned first = 0; first < n; first += MAX_BATCH) {
            unsigned k = n - first < MAX_BATCH ? n - first : MAX_BATCH;
            for (unsigned i = 0; i < k; i++)
                gfns[i] = ((first + i) * stride + r) % nr;
            uint8_t *m = xenforeignmemory_map(fm, domid, PROT_READ, k, gfns, err);
            if (!m)
                die("xenforeignmemory_map");
            memcpy(dst + (size_t)first * PAGE, m, (size_t)k * PAGE);
            xenforeignmemory_unmap(fm, m, k);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ms[r] = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
    }
    qsort(ms, rounds, sizeof(*ms), cmp_double);
    printf("%.3f\n", ms[(rounds - 1) / 2]);
    free(ms);
    free(dst);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: cloop send HOSTDIR DOMID [BATCH] | recv HOSTDIR PAGES | copy HOSTDIR DOMID N ROUNDS\n");
        return 2;
    }
    if (xenmig_mock_set_host(argv[2]))
        die("xenmig_mock_set_host");
    xc_interface *xch = xc_interface_open(NULL, NULL, 0);
    xenforeignmemory_handle *fm = xenforeignmemory_open(NULL, 0);
    if (!xch || !fm)
        die("open");
    int rc;
    if (!strcmp(argv[1], "send")) {
        unsigned batch = argc > 4 ? (unsigned)atoi(argv[4]) : MAX_BATCH;
        if (batch < 1 || batch > MAX_BATCH)
            batch = MAX_BATCH;
        rc = do_send(xch, fm, (uint32_t)atoi(argv[3]), batch);
    } else if (!strcmp(argv[1], "recv")) {
        rc = do_recv(xch, fm, strtoull(argv[3], NULL, 0));
    } else if (!strcmp(argv[1], "copy") && argc >= 6) {
        rc = do_copy(fm, xch, (uint32_t)atoi(argv[3]), (unsigned)atoi(argv[4]), (unsigned)atoi(argv[5]));
    } else {
        fprintf(stderr, "cloop: unknown mode %s\n", argv[1]);
        rc = 2;
    }
    xenforeignmemory_close(fm);
    xc_interface_close(xch);
    return rc;
}
