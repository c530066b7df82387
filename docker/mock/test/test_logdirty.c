/* Cross-process semantics: log-dirty with a separate guest process, pause/suspend
 * blocking guest writes, destroy releasing a blocked guest. */
#include "common.h"

static xc_interface *x;

static void bitmap_or(unsigned long *acc, const unsigned long *bm, size_t words)
{
    for (size_t i = 0; i < words; i++)
        acc[i] |= bm[i];
}

/* Child writes set A, waits for a byte, writes set B, exits. */
static void test_clean_peek_across_processes(void)
{
    uint32_t d;
    REQUIRE(xenmig_mock_domain_create(XENMIG_MOCK_DOMAIN_HVM, 1024, 1, 1, &d) == 0);
    REQUIRE(xc_shadow_control(x, d, XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY, NULL, 0) == 0);
    int go[2], done[2];
    REQUIRE(pipe(go) == 0 && pipe(done) == 0);
    static const uint64_t A[] = { 0, 1, 63, 64, 500, 1023 };
    static const uint64_t B[] = { 1, 2, 500, 777 };
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        char c;
        for (unsigned i = 0; i < 6; i++)
            for (int k = 0; k < 3; k++)        /* several writes, one dirty page */
                if (xenmig_mock_guest_write(d, A[i], (uint32_t)k * 8, "xxxxxxxx", 8))
                    _exit(2);
        if (write(done[1], "a", 1) != 1 || read(go[0], &c, 1) != 1)
            _exit(3);
        for (unsigned i = 0; i < 4; i++)
            if (xenmig_mock_guest_write(d, B[i], 16, "yy", 2))
                _exit(4);
        _exit(write(done[1], "b", 1) == 1 ? 0 : 5);
    }
    char c;
    REQUIRE(read(done[0], &c, 1) == 1);
    DECLARE_HYPERCALL_BUFFER(unsigned long, bm);
    bm = xc_hypercall_buffer_alloc_pages(x, bm, 1);
    REQUIRE(bm);
    xc_shadow_op_stats_t st;
    CHECK(xc_logdirty_control(x, d, XEN_DOMCTL_SHADOW_OP_PEEK, HYPERCALL_BUFFER(bm), 1024, 0, &st) == 1024);
    CHECK(st.dirty_count == 6 && st.fault_count == 18);
    CHECK(xc_logdirty_control(x, d, XEN_DOMCTL_SHADOW_OP_PEEK, HYPERCALL_BUFFER(bm), 1024, 0, &st) == 1024);
    CHECK(st.dirty_count == 6);                         /* PEEK does not clear */
    CHECK(xc_logdirty_control(x, d, XEN_DOMCTL_SHADOW_OP_CLEAN, HYPERCALL_BUFFER(bm), 1024, 0, &st) == 1024);
    CHECK(st.dirty_count == 6);
    unsigned long want[16] = { 0 };
    for (unsigned i = 0; i < 6; i++)
        want[A[i] / 64] |= 1UL << (A[i] % 64);
    CHECK(memcmp(bm, want, sizeof(want)) == 0);
    CHECK(xc_logdirty_control(x, d, XEN_DOMCTL_SHADOW_OP_CLEAN, HYPERCALL_BUFFER(bm), 1024, 0, &st) == 1024);
    CHECK(st.dirty_count == 0);
    REQUIRE(write(go[1], "g", 1) == 1);
    REQUIRE(read(done[0], &c, 1) == 1);
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(xc_logdirty_control(x, d, XEN_DOMCTL_SHADOW_OP_CLEAN, HYPERCALL_BUFFER(bm), 1024, 0, &st) == 1024);
    memset(want, 0, sizeof(want));
    for (unsigned i = 0; i < 4; i++)
        want[B[i] / 64] |= 1UL << (B[i] % 64);
    CHECK(st.dirty_count == 4 && memcmp(bm, want, sizeof(want)) == 0);
    xc_hypercall_buffer_free_pages(x, bm, 1);
    close(go[0]); close(go[1]); close(done[0]); close(done[1]);
    CHECK(xc_domain_destroy(x, d) == 0);
}

/* A workload process runs while the parent CLEANs repeatedly: every page it wrote shows
 * up, nothing else does, and no CLEAN reports a page twice. */
static void test_workload_clean_exactly_once(void)
{
    uint32_t d;
    const uint64_t hot = 300, seed = 0xfeedULL;
    REQUIRE(xenmig_mock_domain_create(XENMIG_MOCK_DOMAIN_HVM, 2048, 1, 1, &d) == 0);
    REQUIRE(xc_shadow_control(x, d, XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY, NULL, 0) == 0);
    int res[2];
    REQUIRE(pipe(res) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        long long n = xenmig_mock_workload(d, 20000, hot, seed, 300, NULL);
        _exit(write(res[1], &n, sizeof(n)) == sizeof(n) ? 0 : 1);
    }
    DECLARE_HYPERCALL_BUFFER(unsigned long, bm);
    bm = xc_hypercall_buffer_alloc_pages(x, bm, 1);
    REQUIRE(bm);
    unsigned long acc[32] = { 0 };
    uint64_t total = 0;
    int rounds = 0;
    xc_shadow_op_stats_t st;
    for (;;) {
        int status;
        pid_t w = waitpid(pid, &status, WNOHANG);
        CHECK(xc_logdirty_control(x, d, XEN_DOMCTL_SHADOW_OP_CLEAN, HYPERCALL_BUFFER(bm), 2048, 0, &st) == 2048);
        uint64_t bits = 0;
        for (int i = 0; i < 32; i++)
            bits += (uint64_t)__builtin_popcountl(bm[i]);
        CHECK(bits == st.dirty_count);
        total += bits;
        bitmap_or(acc, bm, 32);
        rounds++;
        if (w == pid) {
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
            break;
        }
        t_sleep_ms(20);
    }
    long long n = 0;
    REQUIRE(read(res[0], &n, sizeof(n)) == sizeof(n));
    CHECK(n > 100);
    /* recompute the pages the workload wrote (its documented pattern) */
    unsigned long want[32] = { 0 };
    uint64_t s = seed;
    for (long long i = 0; i < n; i++) {
        uint64_t pfn = t_splitmix64(&s) % hot;
        want[pfn / 64] |= 1UL << (pfn % 64);
    }
    CHECK(memcmp(acc, want, sizeof(want)) == 0);
    CHECK(total >= (uint64_t)__builtin_popcountl(want[0]) && rounds > 3);
    printf("  workload: %lld writes, %d CLEANs, %llu dirty reports\n", n, rounds,
           (unsigned long long)total);
    xc_hypercall_buffer_free_pages(x, bm, 1);
    close(res[0]); close(res[1]);
    CHECK(xc_domain_destroy(x, d) == 0);
}

static int same(const uint8_t *a, const uint8_t *b)
{
    return memcmp(a, b, 32) == 0;
}

/* Pause and suspend stop the guest: checksum stable, nothing dirtied; unpause resumes. */
static void test_pause_blocks_guest(void)
{
    uint32_t d;
    REQUIRE(xenmig_mock_domain_create(XENMIG_MOCK_DOMAIN_HVM, 512, 1, 1, &d) == 0);
    REQUIRE(xc_shadow_control(x, d, XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY, NULL, 0) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        long long n = xenmig_mock_workload(d, 0, 64, 7, 60000, NULL);   /* until destroyed */
        _exit(n >= 0 ? 0 : 1);
    }
    t_sleep_ms(50);
    uint8_t c1[32], c2[32], c3[32];
    DECLARE_HYPERCALL_BUFFER(unsigned long, bm);
    bm = xc_hypercall_buffer_alloc_pages(x, bm, 1);
    xc_shadow_op_stats_t st;
    for (int round = 0; round < 2; round++) {
        if (round == 0)
            CHECK(xc_domain_pause(x, d) == 0);
        else
            CHECK(xc_domain_shutdown(x, d, SHUTDOWN_suspend) == 0);
        CHECK(xc_logdirty_control(x, d, XEN_DOMCTL_SHADOW_OP_CLEAN, HYPERCALL_BUFFER(bm), 512,
                                  XEN_DOMCTL_SHADOW_LOGDIRTY_FINAL, &st) == 512);
        CHECK(xenmig_mock_checksum(d, c1) == 0);
        t_sleep_ms(120);
        CHECK(xenmig_mock_checksum(d, c2) == 0);
        CHECK(same(c1, c2));
        CHECK(xc_logdirty_control(x, d, XEN_DOMCTL_SHADOW_OP_PEEK, HYPERCALL_BUFFER(bm), 512, 0, &st) == 512);
        CHECK(st.dirty_count == 0 && st.fault_count == 0);
        if (round == 0)
            CHECK(xc_domain_unpause(x, d) == 0);
        else
            CHECK(xc_domain_resume(x, d, 1) == 0);
        t_sleep_ms(60);
        CHECK(xenmig_mock_checksum(d, c3) == 0);
        CHECK(!same(c1, c3));
        CHECK(xc_logdirty_control(x, d, XEN_DOMCTL_SHADOW_OP_PEEK, HYPERCALL_BUFFER(bm), 512, 0, &st) == 512);
        CHECK(st.dirty_count > 0);
    }
    /* a guest write issued while paused completes only after unpause */
    CHECK(xc_domain_pause(x, d) == 0);
    int p[2];
    REQUIRE(pipe(p) == 0);
    pid_t w = fork();
    REQUIRE(w >= 0);
    if (w == 0) {
        int r = xenmig_mock_guest_write(d, 100, 0, "late", 4);
        _exit(write(p[1], r == 0 ? "k" : "f", 1) == 1 ? 0 : 1);
    }
    t_sleep_ms(100);
    fd_set fds;
    FD_ZERO(&fds);
    FD_SET(p[0], &fds);
    struct timeval tv = { 0, 0 };
    CHECK(select(p[0] + 1, &fds, NULL, NULL, &tv) == 0);      /* still blocked */
    CHECK(xc_domain_unpause(x, d) == 0);
    char c = 0;
    CHECK(read(p[0], &c, 1) == 1 && c == 'k');
    waitpid(w, NULL, 0);
    /* destroy releases the workload, which is now blocked by a pause */
    CHECK(xc_domain_pause(x, d) == 0);
    CHECK(xc_domain_destroy(x, d) == 0);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    xc_hypercall_buffer_free_pages(x, bm, 1);
    close(p[0]); close(p[1]);
}

/* The workload stops on *stop and returns while paused when stop is set. */
static void test_workload_stop(void)
{
    uint32_t d;
    REQUIRE(xenmig_mock_domain_create(XENMIG_MOCK_DOMAIN_HVM, 128, 1, 1, &d) == 0);
    volatile int stop = 1;
    CHECK(xenmig_mock_workload(d, 1000, 0, 1, 0, &stop) == 0);
    stop = 0;
    long long n = xenmig_mock_workload(d, 1000, 0, 1, 120, &stop);
    CHECK(n >= 60 && n <= 200);        /* ~1000/s for 120 ms */
    CHECK(xc_domain_pause(x, d) == 0);
    n = xenmig_mock_workload(d, 1000, 0, 1, 80, NULL);
    CHECK(n == 0);                     /* paused the whole time: nothing written */
    CHECK(xc_domain_destroy(x, d) == 0);
}

int main(void)
{
    REQUIRE(xenmig_mock_set_host(t_new_host()) == 0);
    struct cap_logger lg;
    cap_init(&lg);
    x = xc_interface_open(&lg.vt, NULL, 0);
    REQUIRE(x);
    test_clean_peek_across_processes();
    test_workload_clean_exactly_once();
    test_pause_blocks_guest();
    test_workload_stop();
    xc_interface_close(x);
    return t_done("test_logdirty");
}
