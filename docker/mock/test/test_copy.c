/* A guest copied to another host (a small save/restore written against the public API,
 * the way libxc does it) hashes the same; any change to it does not. */
#include "common.h"

#define PTE_P 1ULL
#define PTE_MFN_MASK 0x000ffffffffff000ULL

static xc_interface *x;
static xenforeignmemory_handle *fm;
static const char *hostA, *hostB;

static void hex(const uint8_t *s, char *out)
{
    for (int i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", s[i]);
}

/* ---------------------------------------------------------------- HVM -------------- */

static void copy_hvm(void)
{
    const uint64_t N = 1500;
    uint32_t d, e;
    REQUIRE(xenmig_mock_set_host(hostA) == 0);
    REQUIRE(xenmig_mock_domain_create(XENMIG_MOCK_DOMAIN_HVM, N, 2, 1, &d) == 0);
    CHECK(xenmig_mock_workload(d, 0, 0, 99, 30, NULL) > 0);
    REQUIRE(xc_domain_shutdown(x, d, SHUTDOWN_suspend) == 0);
    uint8_t sumA[32], sumB[32];
    REQUIRE(xenmig_mock_checksum(d, sumA) == 0);

    xen_pfn_t n;
    REQUIRE(xc_domain_nr_gpfns(x, d, &n) == 0 && n == N);
    uint8_t *pages = malloc(N * 4096);
    xen_pfn_t *types = malloc(N * sizeof(*types));
    for (uint64_t b = 0; b < N; b += 1024) {
        unsigned cnt = (unsigned)(N - b < 1024 ? N - b : 1024);
        xen_pfn_t gfns[1024];
        for (unsigned i = 0; i < cnt; i++)
            gfns[i] = types[b + i] = b + i;
        REQUIRE(xc_get_pfn_type_batch(x, d, cnt, &types[b]) == 0);
        int err[1024];
        uint8_t *m = xenforeignmemory_map(fm, d, PROT_READ, cnt, gfns, err);
        REQUIRE(m);
        for (unsigned i = 0; i < cnt; i++)
            CHECK(err[i] == 0 && types[b + i] == XEN_DOMCTL_PFINFO_NOTAB);
        memcpy(pages + b * 4096, m, (size_t)cnt * 4096);
        xenforeignmemory_unmap(fm, m, cnt);
    }
    int csz = xc_domain_hvm_getcontext(x, d, NULL, 0);
    REQUIRE(csz > 0);
    uint8_t *ctx = malloc((size_t)csz);
    REQUIRE(xc_domain_hvm_getcontext(x, d, ctx, (uint32_t)csz) == csz);
    uint64_t params[HVM_NR_PARAMS];
    for (uint32_t i = 0; i < HVM_NR_PARAMS; i++)
        REQUIRE(xc_hvm_param_get(x, d, i, &params[i]) == 0);
    uint32_t mode, khz, inc;
    uint64_t ns;
    REQUIRE(xc_domain_get_tsc_info(x, d, &mode, &ns, &khz, &inc) == 0);
    xc_cpu_policy_t *pol = xc_cpu_policy_init();
    xen_cpuid_leaf_t leaves[64];
    xen_msr_entry_t msrs[16];
    uint32_t nl = 64, nm = 16;
    REQUIRE(xc_cpu_policy_get_domain(x, d, pol) == 0 &&
            xc_cpu_policy_serialise(x, pol, leaves, &nl, msrs, &nm) == 0);
    xc_cpu_policy_destroy(pol);

    REQUIRE(xenmig_mock_set_host(hostB) == 0);
    REQUIRE(xenmig_mock_domain_create(XENMIG_MOCK_DOMAIN_HVM, N + 100, 2, 0, &e) == 0);
    uint32_t el, es, em;
    CHECK(xc_set_domain_cpu_policy(x, e, nl, leaves, nm, msrs, &el, &es, &em) == 0);
    for (uint64_t b = 0; b < N; b += 1024) {
        unsigned cnt = (unsigned)(N - b < 1024 ? N - b : 1024);
        xen_pfn_t gfns[1024];
        for (unsigned i = 0; i < cnt; i++)
            gfns[i] = b + i;
        REQUIRE(xc_domain_populate_physmap_exact(x, e, cnt, 0, 0, gfns) == 0);
        int err[1024];
        uint8_t *m = xenforeignmemory_map(fm, e, PROT_READ | PROT_WRITE, cnt, gfns, err);
        REQUIRE(m);
        memcpy(m, pages + b * 4096, (size_t)cnt * 4096);
        xenforeignmemory_unmap(fm, m, cnt);
    }
    CHECK(xc_domain_set_tsc_info(x, e, mode, ns, khz, inc) == 0);
    for (uint32_t i = 0; i < HVM_NR_PARAMS; i++)
        if (params[i])
            CHECK(xc_hvm_param_set(x, e, i, params[i]) == 0);
    CHECK(xc_domain_hvm_setcontext(x, e, ctx, (uint32_t)csz) == 0);
    REQUIRE(xenmig_mock_checksum(e, sumB) == 0);
    CHECK(memcmp(sumA, sumB, 32) == 0);
    CHECK(xc_domain_unpause(x, e) == 0);
    REQUIRE(xenmig_mock_checksum(e, sumB) == 0);
    CHECK(memcmp(sumA, sumB, 32) == 0);
    char hx[65];
    hex(sumB, hx);
    printf("  hvm copy: %s\n", hx);
    /* any difference shows */
    CHECK(xenmig_mock_guest_write(e, 17, 100, "!", 1) == 0);
    REQUIRE(xenmig_mock_checksum(e, sumB) == 0);
    CHECK(memcmp(sumA, sumB, 32) != 0);
    CHECK(xc_hvm_param_set(x, e, HVM_PARAM_VIRIDIAN, 1) == 0);
    uint8_t sumC[32];
    REQUIRE(xenmig_mock_checksum(e, sumC) == 0);
    CHECK(memcmp(sumB, sumC, 32) != 0);
    CHECK(xc_domain_destroy(x, e) == 0);
    REQUIRE(xenmig_mock_set_host(hostA) == 0);
    CHECK(xc_domain_destroy(x, d) == 0);
    free(pages); free(types); free(ctx);
}

/* ---------------------------------------------------------------- PV --------------- */

struct pv_image {
    uint64_t n;
    uint8_t *pages;
    uint32_t *types;
    uint64_t *leaf_pfns, nleaves;
    vcpu_guest_context_any_t vcpu[2];
    struct xen_domctl_ext_vcpucontext ext[2];
    uint8_t xsave[2][848];
    uint64_t xsave_size[2];
    struct xen_domctl_vcpu_msr msrs[2][7];
    uint32_t nr_msrs[2];
    uint8_t shinfo[4096];
    uint32_t tsc_mode, tsc_khz, tsc_inc;
    uint64_t tsc_ns;
};

static size_t m2p_len(unsigned long max_mfn)
{
    return ((max_mfn + 1) * 8 + (2 << 20) - 1) / (2 << 20) * (2 << 20);
}

static void save_pv(uint32_t d, struct pv_image *im)
{
    xc_domaininfo_t di;
    REQUIRE(xc_domain_getinfolist(x, d, 1, &di) == 1);
    unsigned long max_mfn;
    REQUIRE(xc_maximum_ram_page(x, &max_mfn) == 0);
    const xen_pfn_t *m2p = xc_map_m2p(x, max_mfn, PROT_READ, NULL);
    REQUIRE(m2p);
    xen_pfn_t sif = di.shared_info_frame;
    const shared_info_any_t *si = xenforeignmemory_map(fm, d, PROT_READ, 1, &sif, NULL);
    REQUIRE(si);
    memcpy(im->shinfo, si, 4096);
    uint64_t n = im->n = si->x64.arch.max_pfn;
    xen_pfn_t fll = si->x64.arch.pfn_to_mfn_frame_list_list;
    xenforeignmemory_unmap(fm, (void *)si, 1);
    im->nleaves = (n + 511) / 512;
    uint64_t nmids = (im->nleaves + 511) / 512;
    const uint64_t *top = xenforeignmemory_map(fm, d, PROT_READ, 1, &fll, NULL);
    REQUIRE(top);
    xen_pfn_t mids[8], leaves[256];
    memcpy(mids, top, nmids * 8);
    const uint64_t *mid = xenforeignmemory_map(fm, d, PROT_READ, nmids, mids, NULL);
    REQUIRE(mid);
    memcpy(leaves, mid, im->nleaves * 8);
    const uint64_t *p2m = xenforeignmemory_map(fm, d, PROT_READ, im->nleaves, leaves, NULL);
    REQUIRE(p2m);
    im->leaf_pfns = malloc(im->nleaves * 8);
    for (uint64_t i = 0; i < im->nleaves; i++)
        im->leaf_pfns[i] = m2p[leaves[i]];
    im->pages = malloc(n * 4096);
    im->types = malloc(n * 4);
    for (uint64_t b = 0; b < n; b += 1024) {
        unsigned cnt = (unsigned)(n - b < 1024 ? n - b : 1024);
        xen_pfn_t mfns[1024], ty[1024];
        for (unsigned i = 0; i < cnt; i++)
            mfns[i] = ty[i] = p2m[b + i];
        REQUIRE(xc_get_pfn_type_batch(x, d, cnt, ty) == 0);
        const uint8_t *m = xenforeignmemory_map(fm, d, PROT_READ, cnt, mfns, NULL);
        REQUIRE(m);
        for (unsigned i = 0; i < cnt; i++) {
            uint8_t *dst = im->pages + (b + i) * 4096;
            im->types[b + i] = (uint32_t)ty[i];
            memcpy(dst, m + (size_t)i * 4096, 4096);
            uint32_t lv = ((uint32_t)ty[i] & XEN_DOMCTL_PFINFO_LTABTYPE_MASK) >> 28;
            if (lv >= 1 && lv <= 4) {              /* normalise: mfns -> pfns, zap Xen slots */
                uint64_t *pte = (uint64_t *)dst;
                for (int k = 0; k < 512; k++) {
                    if (lv == 4 && k >= 256 && k <= 271) {
                        pte[k] = 0;
                        continue;
                    }
                    if (pte[k] & PTE_P) {
                        uint64_t mfn = (pte[k] & PTE_MFN_MASK) >> 12;
                        REQUIRE(m2p[mfn] < n);
                        pte[k] = (pte[k] & ~PTE_MFN_MASK) | (m2p[mfn] << 12);
                    }
                }
            }
        }
        xenforeignmemory_unmap(fm, (void *)m, cnt);
    }
    for (uint32_t v = 0; v < 2; v++) {
        REQUIRE(xc_vcpu_getcontext(x, d, v, &im->vcpu[v]) == 0);
        im->vcpu[v].x64.ctrlreg[3] =
            xen_pfn_to_cr3_x86_64(m2p[xen_cr3_to_pfn_x86_64(im->vcpu[v].x64.ctrlreg[3])]);
        if (v == 0)
            im->vcpu[0].x64.user_regs.rdx = m2p[im->vcpu[0].x64.user_regs.rdx];
        struct xen_domctl dc;
        memset(&dc, 0, sizeof(dc));
        dc.domain = (domid_t)d;
        dc.cmd = XEN_DOMCTL_get_ext_vcpucontext;
        dc.u.ext_vcpucontext.vcpu = v;
        REQUIRE(xc_domctl(x, &dc) == 0);
        im->ext[v] = dc.u.ext_vcpucontext;
        memset(&dc, 0, sizeof(dc));
        dc.domain = (domid_t)d;
        dc.cmd = XEN_DOMCTL_getvcpuextstate;
        dc.u.vcpuextstate.vcpu = v;
        REQUIRE(xc_domctl(x, &dc) == 0);                  /* size query */
        dc.u.vcpuextstate.buffer.p = (uint64_t *)im->xsave[v];
        REQUIRE(xc_domctl(x, &dc) == 0);
        im->xsave_size[v] = dc.u.vcpuextstate.size;
        memset(&dc, 0, sizeof(dc));
        dc.domain = (domid_t)d;
        dc.cmd = XEN_DOMCTL_get_vcpu_msrs;
        dc.u.vcpu_msrs.vcpu = v;
        dc.u.vcpu_msrs.msr_count = 7;
        dc.u.vcpu_msrs.msrs.p = im->msrs[v];
        REQUIRE(xc_domctl(x, &dc) == 0);
        im->nr_msrs[v] = dc.u.vcpu_msrs.msr_count;
    }
    REQUIRE(xc_domain_get_tsc_info(x, d, &im->tsc_mode, &im->tsc_ns, &im->tsc_khz, &im->tsc_inc) == 0);
    xenforeignmemory_unmap(fm, (void *)p2m, im->nleaves);
    xenforeignmemory_unmap(fm, (void *)mid, nmids);
    xenforeignmemory_unmap(fm, (void *)top, 1);
    munmap((void *)m2p, m2p_len(max_mfn));
}

static void restore_pv(uint32_t e, struct pv_image *im)
{
    uint64_t n = im->n;
    xen_pfn_t *p2m = malloc(n * sizeof(*p2m));
    for (uint64_t b = 0; b < n; b += 1024) {
        unsigned cnt = (unsigned)(n - b < 1024 ? n - b : 1024);
        for (unsigned i = 0; i < cnt; i++)
            p2m[b + i] = b + i;
        REQUIRE(xc_domain_populate_physmap_exact(x, e, cnt, 0, 0, &p2m[b]) == 0);
    }
    for (uint64_t b = 0; b < n; b += 1024) {
        unsigned cnt = (unsigned)(n - b < 1024 ? n - b : 1024);
        int err[1024];
        uint8_t *m = xenforeignmemory_map(fm, e, PROT_READ | PROT_WRITE, cnt, &p2m[b], err);
        REQUIRE(m);
        for (unsigned i = 0; i < cnt; i++) {
            CHECK(err[i] == 0);
            uint8_t *dst = m + (size_t)i * 4096;
            memcpy(dst, im->pages + (b + i) * 4096, 4096);
            uint32_t lv = (im->types[b + i] & XEN_DOMCTL_PFINFO_LTABTYPE_MASK) >> 28;
            if (lv >= 1 && lv <= 4) {              /* localise: pfns -> new mfns */
                uint64_t *pte = (uint64_t *)dst;
                for (int k = 0; k < 512; k++)
                    if (pte[k] & PTE_P)
                        pte[k] = (pte[k] & ~PTE_MFN_MASK) | (p2m[(pte[k] & PTE_MFN_MASK) >> 12] << 12);
            }
        }
        xenforeignmemory_unmap(fm, m, cnt);
    }
    /* stream complete: vCPUs, pins, guest p2m, shared info, start info, TSC */
    uint64_t si_pfn = im->vcpu[0].x64.user_regs.rdx;
    for (uint32_t v = 0; v < 2; v++) {
        vcpu_guest_context_any_t c = im->vcpu[v];
        c.x64.ctrlreg[3] = xen_pfn_to_cr3_x86_64(p2m[xen_cr3_to_pfn_x86_64(c.x64.ctrlreg[3])]);
        if (v == 0)
            c.x64.user_regs.rdx = p2m[c.x64.user_regs.rdx];
        CHECK(xc_vcpu_setcontext(x, e, v, &c) == 0);
        struct xen_domctl dc;
        memset(&dc, 0, sizeof(dc));
        dc.domain = (domid_t)e;
        dc.cmd = XEN_DOMCTL_set_ext_vcpucontext;
        dc.u.ext_vcpucontext = im->ext[v];
        CHECK(xc_domctl(x, &dc) == 0);
        memset(&dc, 0, sizeof(dc));
        dc.domain = (domid_t)e;
        dc.cmd = XEN_DOMCTL_setvcpuextstate;
        dc.u.vcpuextstate.vcpu = v;
        dc.u.vcpuextstate.size = im->xsave_size[v];
        dc.u.vcpuextstate.buffer.p = (uint64_t *)im->xsave[v];
        CHECK(xc_domctl(x, &dc) == 0);
        memset(&dc, 0, sizeof(dc));
        dc.domain = (domid_t)e;
        dc.cmd = XEN_DOMCTL_set_vcpu_msrs;
        dc.u.vcpu_msrs.vcpu = v;
        dc.u.vcpu_msrs.msr_count = im->nr_msrs[v];
        dc.u.vcpu_msrs.msrs.p = im->msrs[v];
        CHECK(xc_domctl(x, &dc) == 0);
    }
    for (uint64_t p = 0; p < n; p++)
        if (im->types[p] & XEN_DOMCTL_PFINFO_LPINTAB) {
            struct mmuext_op op = { .cmd = MMUEXT_PIN_L1_TABLE +
                                           (((im->types[p] & XEN_DOMCTL_PFINFO_LTABTYPE_MASK) >> 28) - 1) };
            op.arg1.mfn = p2m[p];
            CHECK(xc_mmuext_op(x, &op, 1, e) == 0);
        }
    uint64_t *lv = xenforeignmemory_map(fm, e, PROT_READ | PROT_WRITE, 1, &p2m[im->leaf_pfns[0]], NULL);
    for (uint64_t i = 0; i < im->nleaves; i++) {
        uint64_t *leaf = xenforeignmemory_map(fm, e, PROT_READ | PROT_WRITE, 1,
                                              &p2m[im->leaf_pfns[i]], NULL);
        REQUIRE(leaf);
        for (uint64_t k = 0; k < 512; k++)
            leaf[k] = i * 512 + k < n ? p2m[i * 512 + k] : INVALID_MFN;
        xenforeignmemory_unmap(fm, leaf, 1);
    }
    xenforeignmemory_unmap(fm, lv, 1);
    xc_domaininfo_t di;
    REQUIRE(xc_domain_getinfolist(x, e, 1, &di) == 1 && di.domain == e);
    xen_pfn_t sif = di.shared_info_frame;
    shared_info_any_t *si = xenforeignmemory_map(fm, e, PROT_READ | PROT_WRITE, 1, &sif, NULL);
    REQUIRE(si);
    const shared_info_any_t *old = (const void *)im->shinfo;
    memcpy(si->x64.vcpu_info, old->x64.vcpu_info, sizeof(si->x64.vcpu_info));
    si->x64.arch = old->x64.arch;
    si->x64.arch.pfn_to_mfn_frame_list_list = 0;
    memset(si->x64.evtchn_pending, 0, sizeof(si->x64.evtchn_pending));
    memset(si->x64.evtchn_mask, 0xff, sizeof(si->x64.evtchn_mask));
    xenforeignmemory_unmap(fm, si, 1);
    start_info_any_t *st = xenforeignmemory_map(fm, e, PROT_READ | PROT_WRITE, 1, &p2m[si_pfn], NULL);
    REQUIRE(st);
    CHECK(st->x64.store_mfn < n && st->x64.console.domU.mfn < n);   /* saved while suspended */
    st->x64.store_mfn = p2m[st->x64.store_mfn];
    st->x64.console.domU.mfn = p2m[st->x64.console.domU.mfn];
    st->x64.nr_pages = n;
    st->x64.shared_info = sif << 12;
    xenforeignmemory_unmap(fm, st, 1);
    CHECK(xc_domain_set_tsc_info(x, e, im->tsc_mode, im->tsc_ns, im->tsc_khz, im->tsc_inc) == 0);
    free(p2m);
}

static void copy_pv(void)
{
    const uint64_t N = 3000;
    uint32_t d, e;
    REQUIRE(xenmig_mock_set_host(hostA) == 0);
    REQUIRE(xenmig_mock_domain_create(XENMIG_MOCK_DOMAIN_PV, N, 2, 1, &d) == 0);
    CHECK(xenmig_mock_workload(d, 0, 0, 1234, 30, NULL) > 0);
    REQUIRE(xc_domain_shutdown(x, d, SHUTDOWN_suspend) == 0);
    uint8_t sumA[32], sumB[32];
    REQUIRE(xenmig_mock_checksum(d, sumA) == 0);
    static struct pv_image im;
    save_pv(d, &im);
    CHECK(im.n == N);

    REQUIRE(xenmig_mock_set_host(hostB) == 0);
    uint32_t pad;    /* shift domids and frames on the second host */
    REQUIRE(xenmig_mock_domain_create(XENMIG_MOCK_DOMAIN_PV, 700, 1, 1, &pad) == 0);
    REQUIRE(xenmig_mock_domain_create(XENMIG_MOCK_DOMAIN_PV, N, 2, 0, &e) == 0);
    CHECK(e != d || pad != d);
    restore_pv(e, &im);
    REQUIRE(xenmig_mock_checksum(e, sumB) == 0);
    CHECK(memcmp(sumA, sumB, 32) == 0);
    /* running it: the guest rebuilds its p2m frame list on the new frames */
    CHECK(xc_domain_unpause(x, e) == 0);
    REQUIRE(xenmig_mock_checksum(e, sumB) == 0);
    CHECK(memcmp(sumA, sumB, 32) == 0);
    char hx[65];
    hex(sumB, hx);
    printf("  pv copy: %s\n", hx);
    static struct pv_image again;
    save_pv(e, &again);                                   /* the copy is itself saveable */
    CHECK(again.n == N && memcmp(again.types, im.types, N * 4) == 0);
    /* page for page the same once normalised, except the machine-specific ones: the p2m
     * (leaves, mids, top) and the start-info page */
    uint64_t differ = 0;
    for (uint64_t p = 0; p < N; p++)
        differ += memcmp(again.pages + p * 4096, im.pages + p * 4096, 4096) != 0;
    CHECK(differ == im.nleaves + (im.nleaves + 511) / 512 + 1 + 1);
    /* a changed page table entry shows */
    CHECK(xenmig_mock_guest_write(e, 3, 0, "x", 1) == 0);
    uint8_t sumC[32];
    REQUIRE(xenmig_mock_checksum(e, sumC) == 0);
    CHECK(memcmp(sumB, sumC, 32) != 0);
    CHECK(xc_domain_destroy(x, e) == 0);
    CHECK(xc_domain_destroy(x, pad) == 0);
    REQUIRE(xenmig_mock_set_host(hostA) == 0);
    /* the original is unchanged and still hashes the same */
    REQUIRE(xenmig_mock_checksum(d, sumB) == 0);
    CHECK(memcmp(sumA, sumB, 32) == 0);
    CHECK(xc_domain_destroy(x, d) == 0);
}

int main(void)
{
    hostA = t_new_host();
    hostB = t_new_host();
    REQUIRE(xenmig_mock_set_host(hostA) == 0);
    struct cap_logger lg;
    cap_init(&lg);
    x = xc_interface_open(&lg.vt, NULL, 0);
    fm = xenforeignmemory_open(&lg.vt, 0);
    REQUIRE(x && fm);
    copy_hvm();
    copy_pv();
    xenforeignmemory_close(fm);
    xc_interface_close(x);
    return t_done("test_copy");
}
