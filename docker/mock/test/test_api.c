/* Every libxenctrl call of the mock on HVM domains, plus the error paths. */
#include "common.h"

static struct cap_logger lg;

static void test_open_and_version(void)
{
    xc_interface *x = xc_interface_open(&lg.vt, NULL, 0);
    REQUIRE(x);
    int v = xc_version(x, XENVER_version, NULL);
    CHECK(v == (4 << 16 | 17));
    char extra[16];
    CHECK(xc_version(x, XENVER_extraversion, extra) == 0 && strcmp(extra, ".7") == 0);
    CHECK_ERR(xc_version(x, 99, NULL), ENOSYS);
    CHECK(xc_interface_fmem_handle(x) != NULL);
    CHECK(xc_interface_close(x) == 0);
    CHECK(xc_interface_close(NULL) == 0);
}

static void test_lifecycle(xc_interface *x)
{
    uint32_t a, b, ids[8];
    CHECK_ERR(xenmig_mock_domain_create(3, 64, 1, 1, &a), EINVAL);
    CHECK_ERR(xenmig_mock_domain_create(XENMIG_MOCK_DOMAIN_HVM, 64, 0, 1, &a), EINVAL);
    CHECK_ERR(xenmig_mock_domain_create(XENMIG_MOCK_DOMAIN_PV, 8, 1, 1, &a), EINVAL);
    REQUIRE(xenmig_mock_domain_create(XENMIG_MOCK_DOMAIN_HVM, 256, 2, 1, &a) == 0);
    REQUIRE(xenmig_mock_domain_create(XENMIG_MOCK_DOMAIN_HVM, 128, 1, 0, &b) == 0);
    CHECK(a >= 1 && b > a);
    int n = xenmig_mock_domain_list(ids, 8);
    CHECK(n == 2 && ids[0] == a && ids[1] == b);

    /* 4.17 getinfo: the next existing domain >= first_domid */
    xc_dominfo_t di[4];
    CHECK(xc_domain_getinfo(x, 0, 1, di) == 1 && di[0].domid == a);
    CHECK(xc_domain_getinfo(x, a + 1, 1, di) == 1 && di[0].domid == b);
    CHECK(xc_domain_getinfo(x, 0, 4, di) == 2);
    CHECK(xc_domain_getinfo(x, b + 1, 1, di) == 0);
    CHECK(di[0].hvm && di[0].hap && di[0].running && !di[0].paused && !di[0].shutdown);
    CHECK(di[0].nr_pages == 256 && di[0].max_memkb == 256 * 4 && di[0].max_vcpu_id == 1);
    CHECK(di[0].nr_online_vcpus == 2);
    CHECK(di[1].paused && !di[1].running && di[1].nr_pages == 0 && di[1].nr_online_vcpus == 0);

    xc_domaininfo_t li[4];
    CHECK(xc_domain_getinfolist(x, 0, 4, li) == 2);
    CHECK(li[0].domain == a && (li[0].flags & XEN_DOMINF_hvm_guest) &&
          (li[0].flags & XEN_DOMINF_running) && (li[0].flags & XEN_DOMINF_hap));
    CHECK(li[1].domain == b && (li[1].flags & XEN_DOMINF_paused));
    CHECK(xc_domain_getinfolist(x, b, 4, li) == 1 && li[0].domain == b);
    CHECK(xc_get_tot_pages(x, a) == 256);

    /* pause / unpause: flags, refcount, errors */
    CHECK(xc_domain_pause(x, a) == 0);
    CHECK(xc_domain_pause(x, a) == 0);
    CHECK(xc_domain_getinfolist(x, a, 1, li) == 1 && (li[0].flags & XEN_DOMINF_paused) &&
          !(li[0].flags & XEN_DOMINF_running));
    CHECK(xc_domain_unpause(x, a) == 0);
    CHECK(xc_domain_getinfolist(x, a, 1, li) == 1 && (li[0].flags & XEN_DOMINF_paused));
    CHECK(xc_domain_unpause(x, a) == 0);
    CHECK_ERR(xc_domain_unpause(x, a), EINVAL);
    CHECK(xc_domain_getinfolist(x, a, 1, li) == 1 && (li[0].flags & XEN_DOMINF_running));

    /* shutdown(suspend) and resume */
    CHECK_ERR(xc_domain_resume(x, a, 1), EINVAL);          /* not suspended */
    CHECK_ERR(xc_domain_shutdown(x, a, 9), EINVAL);
    CHECK(xc_domain_shutdown(x, a, SHUTDOWN_suspend) == 0);
    CHECK(xc_domain_getinfolist(x, a, 1, li) == 1);
    CHECK((li[0].flags & XEN_DOMINF_shutdown) && !(li[0].flags & XEN_DOMINF_running) &&
          ((li[0].flags >> XEN_DOMINF_shutdownshift) & XEN_DOMINF_shutdownmask) == SHUTDOWN_suspend);
    CHECK(xc_domain_getinfo(x, a, 1, di) == 1 && di[0].shutdown &&
          di[0].shutdown_reason == SHUTDOWN_suspend);
    CHECK(xc_domain_resume(x, a, 1) == 0);
    CHECK(xc_domain_getinfolist(x, a, 1, li) == 1 && !(li[0].flags & XEN_DOMINF_shutdown) &&
          (li[0].flags & XEN_DOMINF_running));
    CHECK(xc_domain_shutdown(x, a, SHUTDOWN_suspend) == 0);
    CHECK(xc_domain_resume(x, a, 0) == 0);
    CHECK(xc_domain_getinfolist(x, a, 1, li) == 1 && (li[0].flags & XEN_DOMINF_running));

    /* width, gpfns, max vcpus, max mem */
    unsigned int w;
    CHECK_ERR(xc_domain_get_guest_width(x, a, &w), EOPNOTSUPP);
    xen_pfn_t g;
    CHECK(xc_domain_nr_gpfns(x, a, &g) == 0 && g == 256);
    CHECK(xc_domain_maximum_gpfn(x, a, &g) == 0 && g == 255);
    CHECK(xc_domain_nr_gpfns(x, b, &g) == 0 && g == 1);    /* nothing populated yet */
    CHECK(xc_domain_max_vcpus(x, a, 2) == 0);
    CHECK_ERR(xc_domain_max_vcpus(x, a, 3), EINVAL);
    CHECK(xc_domain_setmaxmem(x, b, 64 * 4) == 0);
    CHECK(xc_domain_getinfolist(x, b, 1, li) == 1 && li[0].max_pages == 64);
    CHECK(xc_domain_setmaxmem(x, b, 128 * 4) == 0);

    /* destroy */
    CHECK(xc_domain_destroy(x, b) == 0);
    CHECK_ERR(xc_domain_destroy(x, b), ESRCH);
    CHECK(xenmig_mock_domain_list(ids, 8) == 1);
    CHECK(xenmig_mock_domain_destroy(a) == 0);
    CHECK(xenmig_mock_domain_list(ids, 8) == 0);
}

static void test_esrch(xc_interface *x)
{
    uint32_t bad = 4242;
    xen_pfn_t g = 0;
    unsigned int w;
    uint64_t v;
    uint32_t u1, u3, u4;
    xc_vcpuinfo_t vi;
    vcpu_guest_context_any_t ctx;
    xc_shadow_op_stats_t st;
    int before = lg.count;
    CHECK_ERR(xc_domain_pause(x, bad), ESRCH);
    CHECK(lg.count == before + 1 && lg.last_errno == ESRCH && strstr(lg.last, "4242"));
    CHECK_ERR(xc_domain_unpause(x, bad), ESRCH);
    CHECK_ERR(xc_domain_shutdown(x, bad, 0), ESRCH);
    CHECK_ERR(xc_domain_resume(x, bad, 0), ESRCH);
    CHECK_ERR(xc_domain_destroy(x, bad), ESRCH);
    CHECK_ERR(xc_domain_nr_gpfns(x, bad, &g), ESRCH);
    CHECK_ERR(xc_domain_maximum_gpfn(x, bad, &g), ESRCH);
    CHECK_ERR(xc_domain_get_guest_width(x, bad, &w), ESRCH);
    CHECK_ERR(xc_shadow_control(x, bad, XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY, NULL, 0), ESRCH);
    CHECK_ERR(xc_logdirty_control(x, bad, XEN_DOMCTL_SHADOW_OP_CLEAN, NULL, 1, 0, &st), ESRCH);
    CHECK_ERR(xc_vcpu_getcontext(x, bad, 0, &ctx), ESRCH);
    CHECK_ERR(xc_vcpu_setcontext(x, bad, 0, &ctx), ESRCH);
    CHECK_ERR(xc_vcpu_getinfo(x, bad, 0, &vi), ESRCH);
    CHECK_ERR(xc_domain_hvm_getcontext(x, bad, NULL, 0), ESRCH);
    CHECK_ERR(xc_hvm_param_get(x, bad, 1, &v), ESRCH);
    CHECK_ERR(xc_hvm_param_set(x, bad, 1, 1), ESRCH);
    CHECK_ERR(xc_domain_get_tsc_info(x, bad, &u1, &v, &u3, &u4), ESRCH);
    CHECK_ERR(xc_domain_set_tsc_info(x, bad, 0, 0, 0, 0), ESRCH);
    CHECK_ERR(xc_domain_populate_physmap_exact(x, bad, 1, 0, 0, &g), ESRCH);
    CHECK_ERR(xc_get_pfn_type_batch(x, bad, 1, &g), ESRCH);
    CHECK_ERR(xc_domain_setmaxmem(x, bad, 1024), ESRCH);
    CHECK_ERR(xenmig_mock_guest_write(bad, 0, 0, "x", 1), ESRCH);
    CHECK_ERR(xenmig_mock_workload(bad, 10, 0, 1, 10, NULL), ESRCH);
    uint8_t sum[32];
    CHECK_ERR(xenmig_mock_checksum(bad, sum), ESRCH);
    CHECK_ERR(xenmig_mock_domain_destroy(bad), ESRCH);
    CHECK_ERR(xc_domain_pause(x, DOMID_SELF), ESRCH);
    CHECK_ERR(xc_domain_pause(x, 0xffffffffu), ESRCH);
    xc_cpu_policy_t *p = xc_cpu_policy_init();
    CHECK_ERR(xc_cpu_policy_get_domain(x, bad, p), ESRCH);
    xc_cpu_policy_destroy(p);
    int err[2];
    xenforeignmemory_handle *fm = xenforeignmemory_open(&lg.vt, 0);
    REQUIRE(fm);
    errno = 0;
    CHECK(xenforeignmemory_map(fm, bad, PROT_READ, 1, &g, err) == NULL && errno == ESRCH);
    xenforeignmemory_close(fm);
    struct xen_domctl dc = { .cmd = XEN_DOMCTL_getdomaininfo, .domain = 4242 };
    CHECK_ERR(xc_domctl(x, &dc), ESRCH);
    CHECK(lg.count > before + 20);
}

static void test_hvm_state(xc_interface *x)
{
    uint32_t d, e;
    REQUIRE(xenmig_mock_domain_create(XENMIG_MOCK_DOMAIN_HVM, 512, 2, 1, &d) == 0);
    REQUIRE(xenmig_mock_domain_create(XENMIG_MOCK_DOMAIN_HVM, 1024, 2, 0, &e) == 0);

    /* HVM context: size query, too small, structure */
    int sz = xc_domain_hvm_getcontext(x, d, NULL, 0);
    CHECK(sz == 8 + 24 + 2 * (8 + 1032) + 8);
    uint8_t *buf = malloc((size_t)sz + 64);
    CHECK_ERR(xc_domain_hvm_getcontext(x, d, buf, (uint32_t)sz - 1), ENOSPC);
    CHECK(xc_domain_hvm_getcontext(x, d, buf, (uint32_t)sz + 64) == sz);
    struct hvm_save_descriptor dsc;
    struct hvm_save_header hh;
    memcpy(&dsc, buf, 8);
    memcpy(&hh, buf + 8, sizeof(hh));
    CHECK(dsc.typecode == 1 && dsc.length == 24 && hh.magic == HVM_FILE_MAGIC);
    memcpy(&dsc, buf + 32, 8);
    CHECK(dsc.typecode == 2 && dsc.instance == 0 && dsc.length == 1032);
    memcpy(&dsc, buf + sz - 8, 8);
    CHECK(dsc.typecode == 0 && dsc.length == 0);
    uint8_t cpu1[1032];
    CHECK(xc_domain_hvm_getcontext_partial(x, d, 2, 1, cpu1, sizeof(cpu1)) == 0);
    CHECK(memcmp(cpu1, buf + 32 + 8 + 1032 + 8, 1032) == 0);
    CHECK_ERR(xc_domain_hvm_getcontext_partial(x, d, 2, 5, cpu1, sizeof(cpu1)), ENOENT);
    CHECK_ERR(xc_domain_hvm_getcontext_partial(x, d, 2, 0, cpu1, 10), ENOSPC);
    /* set on the empty domain: validated, stored, vCPUs come online */
    xc_vcpuinfo_t vi;
    CHECK(xc_vcpu_getinfo(x, e, 1, &vi) == 0 && !vi.online);
    buf[8] ^= 1;                                         /* break the magic */
    CHECK_ERR(xc_domain_hvm_setcontext(x, e, buf, (uint32_t)sz), EINVAL);
    buf[8] ^= 1;
    CHECK_ERR(xc_domain_hvm_setcontext(x, e, buf, (uint32_t)sz - 8), EINVAL);   /* no END */
    CHECK(xc_domain_hvm_setcontext(x, e, buf, (uint32_t)sz) == 0);
    CHECK(xc_domain_hvm_getcontext(x, e, NULL, 0) == sz);
    CHECK(xc_vcpu_getinfo(x, e, 1, &vi) == 0 && vi.online && vi.vcpu == 1);
    CHECK_ERR(xc_vcpu_getinfo(x, e, 2, &vi), EINVAL);

    /* params */
    uint64_t v;
    CHECK(xc_hvm_param_get(x, d, HVM_PARAM_STORE_PFN, &v) == 0 && v == 510);
    CHECK(xc_hvm_param_get(x, d, HVM_PARAM_CONSOLE_PFN, &v) == 0 && v == 511);
    CHECK(xc_hvm_param_get(x, e, HVM_PARAM_STORE_PFN, &v) == 0 && v == 0);
    CHECK(xc_hvm_param_set(x, e, HVM_PARAM_STORE_PFN, 510) == 0);
    CHECK(xc_hvm_param_get(x, e, HVM_PARAM_STORE_PFN, &v) == 0 && v == 510);
    CHECK_ERR(xc_hvm_param_get(x, d, HVM_NR_PARAMS, &v), EINVAL);
    CHECK_ERR(xc_hvm_param_set(x, d, 1000, 1), EINVAL);
    unsigned long ul;
    CHECK(xc_get_hvm_param(x, d, HVM_PARAM_CONSOLE_PFN, &ul) == 0 && ul == 511);

    /* TSC: a set TSC is a new incarnation */
    uint32_t mode, khz, inc;
    uint64_t ns;
    CHECK(xc_domain_get_tsc_info(x, d, &mode, &ns, &khz, &inc) == 0 && khz == 2400000);
    CHECK(xc_domain_set_tsc_info(x, e, mode, ns, khz, inc) == 0);
    uint32_t mode2, khz2, inc2;
    uint64_t ns2;
    CHECK(xc_domain_get_tsc_info(x, e, &mode2, &ns2, &khz2, &inc2) == 0);
    CHECK(mode2 == mode && ns2 == ns && khz2 == khz && inc2 == inc + 1);
    CHECK_ERR(xc_domain_set_tsc_info(x, e, 7, 0, 0, 0), EINVAL);

    /* vCPU contexts and the domctl-only state */
    vcpu_guest_context_any_t c;
    CHECK(xc_vcpu_getcontext(x, d, 1, &c) == 0 && (c.c.flags & VGCF_online));
    CHECK_ERR(xc_vcpu_getcontext(x, d, 2, &c), EINVAL);
    c.c.user_regs.rax = 0x1234;
    CHECK(xc_vcpu_setcontext(x, e, 0, &c) == 0);
    memset(&c, 0, sizeof(c));
    CHECK(xc_vcpu_getcontext(x, e, 0, &c) == 0 && c.c.user_regs.rax == 0x1234);
    struct xen_domctl dc;
    memset(&dc, 0, sizeof(dc));
    dc.cmd = XEN_DOMCTL_get_ext_vcpucontext;
    dc.domain = (domid_t)d;
    dc.u.ext_vcpucontext.vcpu = 1;
    CHECK(xc_domctl(x, &dc) == 0 && dc.u.ext_vcpucontext.size == 64 &&
          dc.u.ext_vcpucontext.vmce.caps != 0 && dc.interface_version == XEN_DOMCTL_INTERFACE_VERSION);
    dc.u.ext_vcpucontext.vcpu = 9;
    CHECK_ERR(xc_domctl(x, &dc), ESRCH);
    dc.cmd = XEN_DOMCTL_set_ext_vcpucontext;
    dc.domain = (domid_t)e;
    dc.u.ext_vcpucontext.vcpu = 0;
    dc.u.ext_vcpucontext.size = 64;
    dc.u.ext_vcpucontext.sysenter_callback_eip = 0x1000;       /* not allowed for HVM */
    CHECK_ERR(xc_domctl(x, &dc), EINVAL);
    dc.u.ext_vcpucontext.sysenter_callback_eip = 0;
    CHECK(xc_domctl(x, &dc) == 0);

    /* xsave via xc_vcpu_get_extstate and the domctl */
    xc_vcpu_extstate_t es = { 0, 0, NULL };
    CHECK(xc_vcpu_get_extstate(x, d, 0, &es) == 0 && es.xfeature_mask == 7 && es.size == 848);
    uint8_t xs[848];
    es.buffer = xs;
    CHECK(xc_vcpu_get_extstate(x, d, 0, &es) == 0);
    uint64_t xcr0;
    memcpy(&xcr0, xs, 8);
    CHECK(xcr0 == 7);
    memset(&dc, 0, sizeof(dc));
    dc.cmd = XEN_DOMCTL_setvcpuextstate;
    dc.domain = (domid_t)e;
    dc.u.vcpuextstate.vcpu = 1;
    dc.u.vcpuextstate.size = 848;
    dc.u.vcpuextstate.buffer.p = (uint64_t *)xs;
    CHECK(xc_domctl(x, &dc) == 0);
    dc.u.vcpuextstate.size = 100;
    CHECK_ERR(xc_domctl(x, &dc), EINVAL);
    uint8_t xs2[848];
    dc.cmd = XEN_DOMCTL_getvcpuextstate;
    dc.u.vcpuextstate.size = 848;
    dc.u.vcpuextstate.xfeature_mask = 7;
    dc.u.vcpuextstate.buffer.p = (uint64_t *)xs2;
    CHECK(xc_domctl(x, &dc) == 0 && dc.u.vcpuextstate.size == 848 && memcmp(xs, xs2, 848) == 0);
    dc.u.vcpuextstate.xfeature_mask = 3;
    CHECK_ERR(xc_domctl(x, &dc), EINVAL);
    /* MSRs are a PV-only record */
    memset(&dc, 0, sizeof(dc));
    dc.cmd = XEN_DOMCTL_get_vcpu_msrs;
    dc.domain = (domid_t)d;
    CHECK_ERR(xc_domctl(x, &dc), EINVAL);
    dc.cmd = 9999;
    CHECK_ERR(xc_domctl(x, &dc), ENOSYS);

    /* CPU policy */
    uint32_t nl, nm;
    CHECK(xc_cpu_policy_get_size(x, &nl, &nm) == 0 && nl >= 9 && nm >= 2);
    xc_cpu_policy_t *p = xc_cpu_policy_init();
    REQUIRE(p);
    CHECK(xc_cpu_policy_get_domain(x, d, p) == 0);
    xen_cpuid_leaf_t leaves[64];
    xen_msr_entry_t msrs[16];
    uint32_t nl2 = 2, nm2 = 16;
    CHECK_ERR(xc_cpu_policy_serialise(x, p, leaves, &nl2, msrs, &nm2), ENOBUFS);
    nl2 = 64;
    CHECK(xc_cpu_policy_serialise(x, p, leaves, &nl2, msrs, &nm2) == 0 && nl2 == 9 && nm2 == 2);
    CHECK(leaves[0].leaf == 0 && leaves[0].b == 0x756e6547);
    uint32_t el, esub, em;
    CHECK_ERR(xc_set_domain_cpu_policy(x, d, nl2, leaves, nm2, msrs, &el, &esub, &em), EEXIST);
    leaves[1].c ^= 1;
    CHECK(xc_set_domain_cpu_policy(x, e, nl2, leaves, nm2, msrs, &el, &esub, &em) == 0);
    msrs[0].flags = 1;
    CHECK_ERR(xc_set_domain_cpu_policy(x, e, nl2, leaves, nm2, msrs, &el, &esub, &em), EINVAL);
    CHECK(em == msrs[0].idx);
    CHECK(xc_cpu_policy_get_domain(x, e, p) == 0);
    xen_cpuid_leaf_t l3[64];
    uint32_t nl3 = 64;
    CHECK(xc_cpu_policy_serialise(x, p, l3, &nl3, NULL, NULL) == 0 && l3[1].c == leaves[1].c);
    xc_cpu_policy_destroy(p);

    /* populate on the empty domain; page types; mapping errors */
    xen_pfn_t pf[4] = { 0, 1, 2, 3 };
    CHECK(xc_domain_populate_physmap_exact(x, e, 4, 0, 0, pf) == 0);
    CHECK(pf[0] == 0 && pf[3] == 3);                    /* HVM: gfns stay gfns */
    xen_pfn_t sp = 1024;
    CHECK_ERR(xc_domain_populate_physmap_exact(x, e, 1, 9, 0, &sp), EINVAL);   /* beyond */
    sp = 3;
    CHECK_ERR(xc_domain_populate_physmap_exact(x, e, 1, 9, 0, &sp), EINVAL);   /* misaligned */
    sp = 512;
    CHECK(xc_domain_populate_physmap_exact(x, e, 1, 9, 0, &sp) == 0);
    xen_pfn_t g;
    CHECK(xc_domain_nr_gpfns(x, e, &g) == 0 && g == 1024);
    CHECK(xc_get_tot_pages(x, e) == 4 + 512);
    xen_pfn_t ty[4] = { 0, 4, 600, 9999 };
    CHECK(xc_get_pfn_type_batch(x, e, 4, ty) == 0);
    CHECK(ty[0] == XEN_DOMCTL_PFINFO_NOTAB && ty[1] == XEN_DOMCTL_PFINFO_XTAB &&
          ty[2] == XEN_DOMCTL_PFINFO_NOTAB && ty[3] == XEN_DOMCTL_PFINFO_XTAB);
    xen_pfn_t big[1025];
    CHECK_ERR(xc_get_pfn_type_batch(x, e, 1025, big), E2BIG);
    /* max_pages limits populate */
    CHECK(xc_domain_setmaxmem(x, e, (4 + 512) * 4) == 0);
    xen_pfn_t more = 10;
    CHECK_ERR(xc_domain_populate_physmap_exact(x, e, 1, 0, 0, &more), ENOMEM);
    CHECK(xc_domain_setmaxmem(x, e, 1024 * 4) == 0);
    CHECK(xc_domain_populate_physmap_exact(x, e, 1, 0, 0, &more) == 0);

    xenforeignmemory_handle *fm = xenforeignmemory_open(&lg.vt, 0);
    REQUIRE(fm);
    xen_pfn_t fr[5] = { 0, 1, 4, 100000, 2 };
    int err[5];
    uint8_t *m = xenforeignmemory_map(fm, e, PROT_READ | PROT_WRITE, 5, fr, err);
    REQUIRE(m);
    CHECK(err[0] == 0 && err[1] == 0 && err[2] == EINVAL && err[3] == EINVAL && err[4] == 0);
    memcpy(m + 4096, "hello", 5);                        /* lands in guest memory */
    CHECK(m[2 * 4096] == 0 && m[3 * 4096] == 0);          /* failed slots read as zeros */
    CHECK(xenforeignmemory_unmap(fm, m, 5) == 0);
    errno = 0;
    CHECK(xenforeignmemory_map(fm, e, PROT_READ, 5, fr, NULL) == NULL && errno == EINVAL);
    CHECK(xenforeignmemory_map(fm, e, PROT_READ, 0, fr, err) == NULL && errno == EINVAL);
    uint8_t *r = xenforeignmemory_map(fm, e, PROT_READ, 1, &fr[1], NULL);
    REQUIRE(r);
    CHECK(memcmp(r, "hello", 5) == 0);
    CHECK(xc_clear_domain_page(x, e, 1) == 0);
    CHECK(r[0] == 0);                                     /* shared mapping sees the clear */
    xenforeignmemory_unmap(fm, r, 1);
    r = xenforeignmemory_map2(fm, e, NULL, PROT_READ, 0, 1, &fr[0], NULL);
    CHECK(r != NULL);
    if (r)
        xenforeignmemory_unmap(fm, r, 1);
    /* compat API */
    void *cr = xc_map_foreign_range(x, d, 4096, PROT_READ, 3);
    CHECK(cr != NULL);
    if (cr)
        munmap(cr, 4096);
    CHECK(xc_map_foreign_bulk(x, d, PROT_READ, fr, NULL, 1) == NULL);
    /* restrict */
    CHECK(xenforeignmemory_restrict(fm, (domid_t)d) == 0);
    errno = 0;
    CHECK(xenforeignmemory_map(fm, e, PROT_READ, 1, fr, err) == NULL && errno == EPERM);
    CHECK(xenforeignmemory_map_resource(fm, (domid_t)d, 0, 0, 0, 1, NULL, PROT_READ, 0) == NULL &&
          errno == EOPNOTSUPP);
    xenforeignmemory_close(fm);

    /* mapping after destroy: ESRCH, while an existing mapping stays readable */
    fm = xenforeignmemory_open(NULL, 0);
    uint8_t *keep = xenforeignmemory_map(fm, d, PROT_READ, 1, &fr[0], NULL);
    REQUIRE(keep);
    uint8_t first = keep[0];
    CHECK(xc_domain_destroy(x, d) == 0);
    CHECK(keep[0] == first);
    errno = 0;
    CHECK(xenforeignmemory_map(fm, d, PROT_READ, 1, &fr[0], err) == NULL && errno == ESRCH);
    xenforeignmemory_unmap(fm, keep, 1);
    xenforeignmemory_close(fm);
    CHECK(xc_domain_destroy(x, e) == 0);
    free(buf);
}

static void test_logdirty_basic(xc_interface *x)
{
    uint32_t d;
    REQUIRE(xenmig_mock_domain_create(XENMIG_MOCK_DOMAIN_HVM, 200, 1, 1, &d) == 0);
    xc_shadow_op_stats_t st;
    DECLARE_HYPERCALL_BUFFER(unsigned long, bm);
    bm = xc_hypercall_buffer_alloc_pages(x, bm, 1);
    REQUIRE(bm);
    CHECK_ERR(xc_logdirty_control(x, d, XEN_DOMCTL_SHADOW_OP_CLEAN, HYPERCALL_BUFFER(bm), 200, 0, &st),
              EINVAL);                                  /* not enabled */
    CHECK(xc_shadow_control(x, d, XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY, NULL, 0) == 0);
    CHECK_ERR(xc_shadow_control(x, d, XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY, NULL, 0), EINVAL);
    CHECK(xenmig_mock_guest_write(d, 3, 0, "a", 1) == 0);
    CHECK(xenmig_mock_guest_write(d, 3, 8, "b", 1) == 0);
    CHECK(xenmig_mock_guest_write(d, 130, 0, "c", 1) == 0);
    CHECK(xenmig_mock_guest_write(d, 199, 4095, "d", 1) == 0);
    CHECK_ERR(xenmig_mock_guest_write(d, 200, 0, "e", 1), EFAULT);
    CHECK_ERR(xenmig_mock_guest_write(d, 1, 4095, "ee", 2), EINVAL);
    memset(bm, 0xff, 4096);
    CHECK(xc_logdirty_control(x, d, XEN_DOMCTL_SHADOW_OP_PEEK, HYPERCALL_BUFFER(bm), 200, 0, &st) == 200);
    CHECK(st.dirty_count == 3 && st.fault_count == 4);
    CHECK(bm[0] == (1UL << 3) && bm[1] == 0 && bm[2] == (1UL << 2) && bm[3] == (1UL << (199 - 192)));
    /* pages beyond the domain are clipped */
    CHECK(xc_logdirty_control(x, d, XEN_DOMCTL_SHADOW_OP_CLEAN, HYPERCALL_BUFFER(bm), 4096 * 8,
                              XEN_DOMCTL_SHADOW_LOGDIRTY_FINAL, &st) == 200);
    CHECK(st.dirty_count == 3);
    CHECK(xc_logdirty_control(x, d, XEN_DOMCTL_SHADOW_OP_CLEAN, HYPERCALL_BUFFER(bm), 200, 0, &st) == 200);
    CHECK(st.dirty_count == 0 && st.fault_count == 0 && bm[0] == 0 && bm[3] == 0);
    CHECK_ERR(xc_logdirty_control(x, d, XEN_DOMCTL_SHADOW_OP_CLEAN, HYPERCALL_BUFFER(bm), 200, 8, &st),
              EINVAL);
    /* partial range: only the first 64 pages are cleaned */
    CHECK(xenmig_mock_guest_write(d, 5, 0, "a", 1) == 0);
    CHECK(xenmig_mock_guest_write(d, 70, 0, "a", 1) == 0);
    CHECK(xc_logdirty_control(x, d, XEN_DOMCTL_SHADOW_OP_CLEAN, HYPERCALL_BUFFER(bm), 64, 0, &st) == 64);
    CHECK(bm[0] == (1UL << 5));
    CHECK(xc_logdirty_control(x, d, XEN_DOMCTL_SHADOW_OP_CLEAN, HYPERCALL_BUFFER(bm), 200, 0, &st) == 200);
    CHECK(bm[0] == 0 && bm[1] == (1UL << 6));
    CHECK(xc_shadow_control(x, d, XEN_DOMCTL_SHADOW_OP_OFF, NULL, 0) == 0);
    CHECK(xenmig_mock_guest_write(d, 5, 0, "a", 1) == 0);    /* not tracked any more */
    CHECK(xc_shadow_control(x, d, XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY, NULL, 0) == 0);
    CHECK(xc_logdirty_control(x, d, XEN_DOMCTL_SHADOW_OP_CLEAN, HYPERCALL_BUFFER(bm), 200, 0, &st) == 200);
    CHECK(st.dirty_count == 0);
    /* via the raw domctl */
    struct xen_domctl dc;
    memset(&dc, 0, sizeof(dc));
    dc.cmd = XEN_DOMCTL_shadow_op;
    dc.domain = (domid_t)d;
    dc.u.shadow_op.op = XEN_DOMCTL_SHADOW_OP_PEEK;
    dc.u.shadow_op.pages = 200;
    dc.u.shadow_op.dirty_bitmap.p = (uint8_t *)bm;
    CHECK(xenmig_mock_guest_write(d, 9, 0, "a", 1) == 0);
    CHECK(xc_domctl(x, &dc) == 0 && dc.u.shadow_op.pages == 200 &&
          dc.u.shadow_op.stats.dirty_count == 1 && bm[0] == (1UL << 9));
    CHECK_ERR(xc_shadow_control(x, d, 77, NULL, 0), EINVAL);
    xc_hypercall_buffer_free_pages(x, bm, 1);
    CHECK(xc_domain_destroy(x, d) == 0);
}

int main(void)
{
    cap_init(&lg);
    REQUIRE(xenmig_mock_set_host(t_new_host()) == 0);
    CHECK(strstr(xenmig_mock_host(), "xenmig-mock-test-") != NULL);
    test_open_and_version();
    xc_interface *x = xc_interface_open(&lg.vt, NULL, 0);
    REQUIRE(x);
    test_lifecycle(x);
    test_esrch(x);
    test_hvm_state(x);
    test_logdirty_basic(x);
    CHECK(xc_get_last_error(x)->code != XC_ERROR_NONE);
    xc_clear_last_error(x);
    CHECK(xc_get_last_error(x)->code == XC_ERROR_NONE);
    xc_interface_close(x);
    return t_done("test_api");
}
