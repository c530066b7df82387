/* Helpers shared by the mock's C tests. */
#ifndef XENMIG_MOCK_TEST_COMMON_H
#define XENMIG_MOCK_TEST_COMMON_H

#define _GNU_SOURCE
#define XC_WANT_COMPAT_MAP_FOREIGN_API 1
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <xenctrl.h>
#include <xenguest.h>
#include <xenforeignmemory.h>
#include "xenmig_mock.h"

static int t_failures;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s (errno %d %s)\n", __FILE__,     \
                    __LINE__, #cond, errno, strerror(errno));                        \
            t_failures++;                                                            \
        }                                                                            \
    } while (0)
#define CHECK_ERR(expr, err)                                                         \
    do {                                                                             \
        errno = 0;                                                                   \
        long long _r = (long long)(expr);                                            \
        int _e = errno;                                                              \
        if (_r >= 0 || _e != (err)) {                                                \
            fprintf(stderr, "%s:%d: expected -1/%s from %s, got %lld errno %d (%s)\n", \
                    __FILE__, __LINE__, #err, #expr, _r, _e, strerror(_e));          \
            t_failures++;                                                            \
        }                                                                            \
    } while (0)
#define REQUIRE(cond)                                                                \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s (errno %d %s)\n", __FILE__,   \
                    __LINE__, #cond, errno, strerror(errno));                        \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

/* A logger that counts and remembers the last message. */
struct cap_logger {
    xentoollog_logger vt;
    int count;
    int last_errno;
    char last[512];
};

static void cap_vmessage(xentoollog_logger *lg, xentoollog_level level, int errnoval,
                         const char *context, const char *format, va_list al)
{
    struct cap_logger *c = (struct cap_logger *)lg;
    (void)level;
    (void)context;
    c->count++;
    c->last_errno = errnoval;
    vsnprintf(c->last, sizeof(c->last), format, al);
}

static void cap_destroy(xentoollog_logger *lg)
{
    (void)lg;
}

static inline void cap_init(struct cap_logger *c)
{
    memset(c, 0, sizeof(*c));
    c->vt.vmessage = cap_vmessage;
    c->vt.destroy = cap_destroy;
}

static int rm_cb(const char *p, const struct stat *s, int f, struct FTW *w)
{
    (void)s; (void)f; (void)w;
    return remove(p);
}

static char t_hosts[4][128];
static int t_nhosts;

static void t_cleanup(void)
{
    for (int i = 0; i < t_nhosts; i++)
        nftw(t_hosts[i], rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh host directory, removed at exit. */
static inline const char *t_new_host(void)
{
    REQUIRE(t_nhosts < 4);
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    char *dir = t_hosts[t_nhosts];
    snprintf(dir, sizeof(t_hosts[0]), "%s/xenmig-mock-test-XXXXXX", base);
    REQUIRE(mkdtemp(dir));
    if (t_nhosts++ == 0)
        atexit(t_cleanup);
    return dir;
}

static inline void t_sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static inline int t_done(const char *name)
{
    if (t_failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, t_failures);
        return 1;
    }
    printf("%s: ok\n", name);
    return 0;
}

static inline uint64_t t_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

#endif
