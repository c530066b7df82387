/* PV guests: walk the shared info, 3-level p2m and page tables from guest memory through
 * the mapping API (machine frames), check them against the M2P; populate, pinning,
 * vCPU context rules, suspend/resume bookkeeping. */
#include "common.h"

#define PTE_P  1ULL
#define PTE_RW 2ULL
#define MFN(e) (((e) & 0x000ffffffffff000ULL) >> 12)

static xc_interface *x;
static xenforeignmemory_handle *fm;

static void *map1(uint32_t d, xen_pfn_t mfn, int prot)
{
    int err = 0;
    void *p = xenforeignmemory_map(fm, d, prot, 1, &mfn, &err);
    if (p && err) {
        xenforeignmemory_unmap(fm, p, 1);
        return NULL;
    }
    return p;
}

static uint32_t pfn_type(uint32_t d, xen_pfn_t mfn)
{
    xen_pfn_t t = mfn;
    if (xc_get_pfn_type_batch(x, d, 1, &t))
        return 0xdeadbeef;
    return (uint32_t)t;
}

static void test_structures(void)
{
    const uint64_t N = 5000;
    uint32_t d;
    REQUIRE(xenmig_mock_domain_create(XENMIG_MOCK_DOMAIN_PV, N, 2, 1, &d) == 0);
    unsigned int width = 0;
    CHECK(xc_domain_get_guest_width(x, d, &width) == 0 && width == 8);
    xc_domaininfo_t di;
    REQUIRE(xc_domain_getinfolist(x, d, 1, &di) == 1 && di.domain == d);
    CHECK(!(di.flags & XEN_DOMINF_hvm_guest) && (di.flags & XEN_DOMINF_running));
    CHECK(di.tot_pages == N);

    unsigned long max_mfn = 0, mfn0 = 0;
    REQUIRE(xc_maximum_ram_page(x, &max_mfn) == 0 && max_mfn > N);
    const xen_pfn_t *m2p = xc_map_m2p(x, max_mfn, PROT_READ, &mfn0);
    REQUIRE(m2p);
    CHECK(xc_map_m2p(x, max_mfn, PROT_READ | PROT_WRITE, NULL) == NULL && errno == EPERM);

    /* shared info: max_pfn and the p2m frame-list-list */
    shared_info_any_t *si = map1(d, di.shared_info_frame, PROT_READ);
    REQUIRE(si);
    CHECK(si->x64.arch.max_pfn == N);
    xen_pfn_t fll = si->x64.arch.pfn_to_mfn_frame_list_list;
    CHECK(fll != 0 && fll <= max_mfn);
    CHECK(pfn_type(d, di.shared_info_frame) == XEN_DOMCTL_PFINFO_XTAB);  /* a Xen page */
    xen_pfn_t nr_gpfns;
    CHECK(xc_domain_nr_gpfns(x, d, &nr_gpfns) == 0 && nr_gpfns == N);

    /* 3-level p2m: top -> mids -> leaves, all through machine frames */
    const uint64_t fpp = 512, nleaves = (N + fpp - 1) / fpp, nmids = (nleaves + fpp - 1) / fpp;
    const uint64_t *top = map1(d, fll, PROT_READ);
    REQUIRE(top);
    xen_pfn_t mids[8], leaves[64];
    for (uint64_t i = 0; i < nmids; i++)
        mids[i] = top[i];
    CHECK(top[nmids] == INVALID_MFN);
    int err[64];
    const uint64_t *midp = xenforeignmemory_map(fm, d, PROT_READ, nmids, mids, err);
    REQUIRE(midp && err[0] == 0);
    for (uint64_t i = 0; i < nleaves; i++)
        leaves[i] = midp[i];
    const uint64_t *p2m = xenforeignmemory_map(fm, d, PROT_READ, nleaves, leaves, err);
    REQUIRE(p2m);
    for (uint64_t i = 0; i < nleaves; i++)
        CHECK(err[i] == 0);
    uint64_t identity = 0, contiguous = 0;
    for (uint64_t p = 0; p < N; p++) {
        CHECK(p2m[p] <= max_mfn && m2p[p2m[p]] == p);
        identity += p2m[p] == p;
        if (p)
            contiguous += p2m[p] == p2m[p - 1] + 1;
    }
    CHECK(p2m[N] == INVALID_MFN);                    /* tail of the last leaf */
    CHECK(identity == 0);                            /* mfns differ from pfns */
    CHECK(contiguous < N - N / 16);                  /* and are scattered */
    CHECK(m2p[leaves[0]] != ~0UL);                   /* p2m pages are guest pages */

    /* mapping a pfn as if it were a frame fails per page */
    xen_pfn_t zero = 0;
    int e0 = 0;
    void *z = xenforeignmemory_map(fm, d, PROT_READ, 1, &zero, &e0);
    CHECK(z && e0 == EINVAL);
    if (z)
        xenforeignmemory_unmap(fm, z, 1);
    xen_pfn_t huge = max_mfn + 10;
    z = xenforeignmemory_map(fm, d, PROT_READ, 1, &huge, &e0);
    CHECK(z && e0 == EPERM);
    if (z)
        xenforeignmemory_unmap(fm, z, 1);

    /* vCPU0: cr3 names the pinned L4 (machine frame); rdx the start-info frame */
    vcpu_guest_context_any_t c;
    REQUIRE(xc_vcpu_getcontext(x, d, 0, &c) == 0);
    CHECK(c.x64.flags & VGCF_online);
    xen_pfn_t l4mfn = xen_cr3_to_pfn_x86_64(c.x64.ctrlreg[3]);
    CHECK(pfn_type(d, l4mfn) == (XEN_DOMCTL_PFINFO_L4TAB | XEN_DOMCTL_PFINFO_LPINTAB));
    const start_info_t *st = map1(d, c.x64.user_regs.rdx, PROT_READ);
    REQUIRE(st);
    CHECK(strncmp(st->magic, "xen-3.0-x86_64", 14) == 0 && st->nr_pages == N);
    CHECK(st->shared_info == di.shared_info_frame << 12);
    CHECK(m2p[st->store_mfn] < N && m2p[st->console.domU.mfn] < N);
    vcpu_guest_context_any_t c1;
    REQUIRE(xc_vcpu_getcontext(x, d, 1, &c1) == 0);
    CHECK(c1.x64.ctrlreg[3] == c.x64.ctrlreg[3]);

    /* page tables: walk L4 -> L3 -> L2 -> L1; every guest page mapped exactly once,
     * page-table pages read-only, Xen's L4 slots point outside the guest */
    const uint64_t *l4 = map1(d, l4mfn, PROT_READ);
    REQUIRE(l4);
    uint8_t *seen = calloc(N, 1);
    uint64_t tables = 1, mapped = 0, xen_slots = 0;
    uint8_t *is_pt = calloc(N, 1);
    is_pt[m2p[l4mfn]] = 1;
    for (int i4 = 0; i4 < 512; i4++) {
        if (!(l4[i4] & PTE_P))
            continue;
        if (i4 >= 256 && i4 <= 271) {
            CHECK(m2p[MFN(l4[i4])] == ~0UL || MFN(l4[i4]) < 0x1000);
            xen_slots++;
            continue;
        }
        CHECK(i4 == 273);
        CHECK(pfn_type(d, MFN(l4[i4])) == XEN_DOMCTL_PFINFO_L3TAB);
        const uint64_t *l3 = map1(d, MFN(l4[i4]), PROT_READ);
        REQUIRE(l3);
        tables++;
        is_pt[m2p[MFN(l4[i4])]] = 1;
        for (int i3 = 0; i3 < 512; i3++) {
            if (!(l3[i3] & PTE_P))
                continue;
            CHECK(pfn_type(d, MFN(l3[i3])) == XEN_DOMCTL_PFINFO_L2TAB);
            const uint64_t *l2 = map1(d, MFN(l3[i3]), PROT_READ);
            REQUIRE(l2);
            tables++;
            is_pt[m2p[MFN(l3[i3])]] = 1;
            for (int i2 = 0; i2 < 512; i2++) {
                if (!(l2[i2] & PTE_P))
                    continue;
                CHECK(pfn_type(d, MFN(l2[i2])) == XEN_DOMCTL_PFINFO_L1TAB);
                const uint64_t *l1 = map1(d, MFN(l2[i2]), PROT_READ);
                REQUIRE(l1);
                tables++;
                is_pt[m2p[MFN(l2[i2])]] = 1;
                for (int i1 = 0; i1 < 512; i1++) {
                    if (!(l1[i1] & PTE_P))
                        continue;
                    uint64_t va_pfn = ((uint64_t)i3 << 18) | ((uint64_t)i2 << 9) | (uint64_t)i1;
                    uint64_t pfn = m2p[MFN(l1[i1])];
                    CHECK(pfn == va_pfn && p2m[pfn] == MFN(l1[i1]));   /* direct map */
                    if (pfn < N)
                        seen[pfn]++;
                    mapped++;
                }
                xenforeignmemory_unmap(fm, (void *)l1, 1);
            }
            xenforeignmemory_unmap(fm, (void *)l2, 1);
        }
        xenforeignmemory_unmap(fm, (void *)l3, 1);
    }
    CHECK(xen_slots == 16 && mapped == N);
    CHECK(tables == 2 + 1 + (N + 511) / 512);
    uint64_t ro_ok = 1;
    for (uint64_t p = 0; p < N; p++)
        CHECK(seen[p] == 1);
    /* the page-table pages are mapped read-only in the direct map */
    const uint64_t *l3 = map1(d, MFN(l4[273]), PROT_READ);
    const uint64_t *l2 = map1(d, MFN(l3[0]), PROT_READ);
    for (uint64_t i2 = 0; i2 < (N + 511) / 512; i2++) {
        const uint64_t *l1 = map1(d, MFN(l2[i2]), PROT_READ);
        for (int i1 = 0; i1 < 512 && i2 * 512 + (uint64_t)i1 < N; i1++)
            if (is_pt[i2 * 512 + (uint64_t)i1] && (l1[i1] & PTE_RW))
                ro_ok = 0;
        xenforeignmemory_unmap(fm, (void *)l1, 1);
    }
    CHECK(ro_ok);
    /* data pages are NOTAB */
    xen_pfn_t t5 = p2m[5];
    CHECK(pfn_type(d, t5) == XEN_DOMCTL_PFINFO_NOTAB);

    /* pinning rules: already pinned; unpin; pin again */
    struct mmuext_op op = { .cmd = MMUEXT_PIN_L4_TABLE };
    op.arg1.mfn = l4mfn;
    CHECK_ERR(xc_mmuext_op(x, &op, 1, d), EINVAL);
    op.cmd = MMUEXT_UNPIN_TABLE;
    CHECK(xc_mmuext_op(x, &op, 1, d) == 0);
    CHECK(pfn_type(d, l4mfn) == XEN_DOMCTL_PFINFO_L4TAB);
    CHECK_ERR(xc_mmuext_op(x, &op, 1, d), EINVAL);
    op.cmd = MMUEXT_PIN_L4_TABLE;
    CHECK(xc_mmuext_op(x, &op, 1, d) == 0);
    op.arg1.mfn = p2m[6];                               /* a data page is not an L4 */
    uint64_t *dp = map1(d, p2m[6], PROT_READ | PROT_WRITE);
    REQUIRE(dp);
    dp[0] = (0x12ULL << 12) | PTE_P;                     /* maps a frame it does not own */
    CHECK_ERR(xc_mmuext_op(x, &op, 1, d), EINVAL);
    op.arg1.mfn = MFN(l4[273]);                          /* an L3 cannot be pinned as L4 */
    CHECK_ERR(xc_mmuext_op(x, &op, 1, d), EINVAL);
    /* cr3 must name a valid table */
    vcpu_guest_context_any_t bad = c;
    bad.x64.ctrlreg[3] = xen_pfn_to_cr3_x86_64(p2m[6]);
    CHECK_ERR(xc_vcpu_setcontext(x, d, 1, &bad), EINVAL);
    CHECK(xc_vcpu_setcontext(x, d, 1, &c1) == 0);
    CHECK(xc_vcpu_setcontext(x, d, 1, NULL) == 0);       /* reset: vCPU 1 goes down */
    xc_vcpuinfo_t vi;
    CHECK(xc_vcpu_getinfo(x, d, 1, &vi) == 0 && !vi.online);
    CHECK(xc_vcpu_setcontext(x, d, 1, &c1) == 0);
    CHECK(xc_vcpu_getinfo(x, d, 1, &vi) == 0 && vi.online);

    /* PV-only records: MSRs; HVM-only calls fail */
    struct xen_domctl dc;
    memset(&dc, 0, sizeof(dc));
    dc.cmd = XEN_DOMCTL_get_vcpu_msrs;
    dc.domain = (domid_t)d;
    dc.u.vcpu_msrs.vcpu = 1;
    CHECK(xc_domctl(x, &dc) == 0 && dc.u.vcpu_msrs.msr_count == 7);
    struct xen_domctl_vcpu_msr msrs[7];
    dc.u.vcpu_msrs.msrs.p = msrs;
    dc.u.vcpu_msrs.msr_count = 0;
    CHECK_ERR(xc_domctl(x, &dc), ENOBUFS);
    CHECK(dc.u.vcpu_msrs.msr_count == 1);
    dc.u.vcpu_msrs.msr_count = 7;
    CHECK(xc_domctl(x, &dc) == 0 && dc.u.vcpu_msrs.msr_count == 1 &&
          msrs[0].index == 0xc0000103 && msrs[0].value == 2);
    dc.cmd = XEN_DOMCTL_set_vcpu_msrs;
    msrs[0].value = 77;
    msrs[1].index = 0x10;                                /* not a migratable PV MSR */
    msrs[1].reserved = 0;
    msrs[1].value = 1;
    dc.u.vcpu_msrs.msr_count = 2;
    CHECK_ERR(xc_domctl(x, &dc), EINVAL);
    CHECK(dc.u.vcpu_msrs.msr_count == 1);
    dc.u.vcpu_msrs.msr_count = 1;
    CHECK(xc_domctl(x, &dc) == 0);
    dc.u.address_size.size = 0;
    dc.cmd = XEN_DOMCTL_get_address_size;
    CHECK(xc_domctl(x, &dc) == 0 && dc.u.address_size.size == 64);
    CHECK_ERR(xc_domain_hvm_getcontext(x, d, NULL, 0), EINVAL);
    uint64_t hv;
    CHECK_ERR(xc_hvm_param_get(x, d, HVM_PARAM_STORE_PFN, &hv), EINVAL);

    /* suspend: the guest names xenstore/console by pfn; a fast resume returns 1 */
    xen_pfn_t store_mfn = st->store_mfn;
    CHECK(xc_domain_shutdown(x, d, SHUTDOWN_suspend) == 0);
    CHECK(st->store_mfn == m2p[store_mfn] && st->store_mfn < N);
    CHECK(xc_domain_resume(x, d, 1) == 0);
    CHECK(st->store_mfn == store_mfn);
    REQUIRE(xc_vcpu_getcontext(x, d, 0, &c) == 0);
    CHECK(c.x64.user_regs.rax == 1);
    /* a full resume: the guest rebuilds its frame list (same frames here) */
    CHECK(xc_domain_shutdown(x, d, SHUTDOWN_suspend) == 0);
    CHECK(xc_domain_resume(x, d, 0) == 0);
    CHECK(si->x64.arch.pfn_to_mfn_frame_list_list == fll);

    xenforeignmemory_unmap(fm, (void *)p2m, nleaves);
    xenforeignmemory_unmap(fm, (void *)midp, nmids);
    free(seen);
    free(is_pt);
    CHECK(xc_domain_destroy(x, d) == 0);
    /* frames went back: the M2P no longer names them */
    CHECK(m2p[fll] == ~0UL);
    munmap((void *)m2p, ((max_mfn + 1) * 8 + (2 << 20) - 1) / (2 << 20) * (2 << 20));
}

static void test_populate_pv(void)
{
    uint32_t d;
    REQUIRE(xenmig_mock_domain_create(XENMIG_MOCK_DOMAIN_PV, 2048, 1, 0, &d) == 0);
    xc_dominfo_t info;
    CHECK(xc_domain_getinfo(x, d, 1, &info) == 1 && info.domid == d && info.paused &&
          info.nr_pages == 0);
    xen_pfn_t g;
    CHECK(xc_domain_nr_gpfns(x, d, &g) == 0 && g == 1);  /* PV: from the (empty) shared info */
    unsigned long max_mfn;
    REQUIRE(xc_maximum_ram_page(x, &max_mfn) == 0);
    const xen_pfn_t *m2p = xc_map_m2p(x, max_mfn, PROT_READ, NULL);
    REQUIRE(m2p);
    xen_pfn_t pf[6] = { 0, 1, 2, 100, 2047, 5 };
    xen_pfn_t in[6];
    memcpy(in, pf, sizeof(pf));
    CHECK(xc_domain_populate_physmap_exact(x, d, 6, 0, 0, pf) == 0);
    for (int i = 0; i < 6; i++) {
        CHECK(pf[i] != in[i] && pf[i] <= max_mfn && m2p[pf[i]] == in[i]);
        CHECK(pfn_type(d, pf[i]) == XEN_DOMCTL_PFINFO_NOTAB);
    }
    /* a 2 MiB extent gets contiguous frames */
    xen_pfn_t sp = 512;
    CHECK(xc_domain_populate_physmap_exact(x, d, 1, 9, 0, &sp) == 0);
    CHECK(m2p[sp] == 512 && m2p[sp + 511] == 1023);
    CHECK(xc_get_tot_pages(x, d) == 6 + 512);
    /* writes through a read-write mapping land in guest memory */
    int err[2];
    xen_pfn_t two[2] = { pf[1], pf[3] };
    uint8_t *m = xenforeignmemory_map(fm, d, PROT_READ | PROT_WRITE, 2, two, err);
    REQUIRE(m && err[0] == 0 && err[1] == 0);
    memcpy(m + 4096, "pv page 100", 11);
    xenforeignmemory_unmap(fm, m, 2);
    const uint8_t *r = map1(d, pf[3], PROT_READ);
    CHECK(r && memcmp(r, "pv page 100", 11) == 0);
    /* a frame of another domain is not this domain's */
    uint32_t other;
    REQUIRE(xenmig_mock_domain_create(XENMIG_MOCK_DOMAIN_PV, 64, 1, 0, &other) == 0);
    int e1 = 0;
    void *z = xenforeignmemory_map(fm, other, PROT_READ, 1, &pf[0], &e1);
    CHECK(z && e1 == EINVAL);
    if (z)
        xenforeignmemory_unmap(fm, z, 1);
    /* a fresh domain accepts a CPU policy, and a running one not */
    xen_cpuid_leaf_t leaf = { 0, XEN_CPUID_NO_SUBLEAF, 0xd, 1, 2, 3 };
    uint32_t a, b, c;
    CHECK(xc_set_domain_cpu_policy(x, d, 1, &leaf, 0, NULL, &a, &b, &c) == 0);
    CHECK(xc_domain_unpause(x, d) == 0);
    CHECK_ERR(xc_set_domain_cpu_policy(x, d, 1, &leaf, 0, NULL, &a, &b, &c), EEXIST);
    CHECK(xc_domain_destroy(x, d) == 0);
    CHECK(xc_domain_destroy(x, other) == 0);
    munmap((void *)m2p, ((max_mfn + 1) * 8 + (2 << 20) - 1) / (2 << 20) * (2 << 20));
}

int main(void)
{
    REQUIRE(xenmig_mock_set_host(t_new_host()) == 0);
    struct cap_logger lg;
    cap_init(&lg);
    x = xc_interface_open(&lg.vt, NULL, 0);
    fm = xenforeignmemory_open(&lg.vt, 0);
    REQUIRE(x && fm);
    test_structures();
    test_populate_pv();
    xenforeignmemory_close(fm);
    xc_interface_close(x);
    return t_done("test_pv");
}
