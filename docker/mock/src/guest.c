/* xenmig mock: guest layouts and building, page-table typing, guest writes, workload,
 * checksum. */
#include "mock_internal.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DIV_UP(a, b) (((a) + (b) - 1) / (b))
#define PFN_VA(pfn) (GUEST_DIRECTMAP + (uint64_t)(pfn) * MOCK_PAGE)

/*
 * PV guest layout for n pages: data pages first, then (in this order) start-info,
 * xenstore page, console page, L4, L3, L2s, L1s, p2m top, p2m mids, p2m leaves.
 * The page tables map every pfn at GUEST_DIRECTMAP + pfn * 4 KiB (L4 slot 273).
 */
void pv_layout(uint64_t n, struct pv_layout *L)
{
    memset(L, 0, sizeof(*L));
    L->n = n;
    L->nl1 = DIV_UP(n, 512);
    L->nl2 = DIV_UP(L->nl1, 512);
    L->np2m = DIV_UP(n, 512);
    L->nmid = DIV_UP(L->np2m, 512);
    uint64_t s = 3 + 1 + 1 + L->nl2 + L->nl1 + 1 + L->nmid + L->np2m;
    if (s >= n) {
        L->first_special = n;     /* too small to be a PV guest of this shape */
        return;
    }
    uint64_t p = L->first_special = n - s;
    L->start_info = p++;
    L->store = p++;
    L->console = p++;
    L->l4 = p++;
    L->l3 = p++;
    L->l2 = p; p += L->nl2;
    L->l1 = p; p += L->nl1;
    L->p2m_top = p++;
    L->p2m_mid = p; p += L->nmid;
    L->p2m_leaf = p;
}

static uint64_t pv_guest_pages(struct dom *d)
{
    shared_info_t *si = dom_shinfo(d);
    uint64_t n = si->arch.max_pfn;
    return (n && n <= d->m->nr_pages) ? n : d->m->nr_pages;
}

uint64_t guest_data_pages(struct host *h, struct dom *d)
{
    (void)h;
    if (d->m->type == XENMIG_MOCK_DOMAIN_PV) {
        struct pv_layout L;
        pv_layout(pv_guest_pages(d), &L);
        return L.first_special;
    }
    uint64_t end = d->m->nr_pages;
    static const int special[] = { HVM_PARAM_STORE_PFN, HVM_PARAM_CONSOLE_PFN,
                                   HVM_PARAM_IOREQ_PFN, HVM_PARAM_BUFIOREQ_PFN };
    for (unsigned i = 0; i < sizeof(special) / sizeof(special[0]); i++) {
        uint64_t v = d->m->hvm_params[special[i]];
        if (v && v < end)
            end = v;
    }
    return end;
}

static void fill_page(uint8_t *page, uint64_t seed, uint64_t pfn)
{
    uint64_t st = seed ^ (pfn * 0xd1342543de82ef95ULL);
    uint64_t *w = (uint64_t *)page;
    for (int i = 0; i < 512; i++)
        w[i] = splitmix64(&st);
}

void default_cpu_policy(struct dom_meta *m)
{
    static const xen_cpuid_leaf_t leaves[] = {
        { 0x0, XEN_CPUID_NO_SUBLEAF, 0xd, 0x756e6547, 0x6c65746e, 0x49656e69 },
        { 0x1, XEN_CPUID_NO_SUBLEAF, 0x000806ec, 0x00010800, 0xf6fa3203, 0x0f8bfbff },
        { 0x7, 0x0, 0x0, 0x009c27ab, 0x0, 0xbc000400 },
        { 0xd, 0x0, 0x7, 0x340, 0x340, 0x0 },
        { 0xd, 0x1, 0x1, 0x0, 0x0, 0x0 },
        { 0xd, 0x2, 0x100, 0x240, 0x0, 0x0 },
        { 0x80000000, XEN_CPUID_NO_SUBLEAF, 0x80000008, 0, 0, 0 },
        { 0x80000001, XEN_CPUID_NO_SUBLEAF, 0x0, 0x0, 0x121, 0x2c100800 },
        { 0x80000008, XEN_CPUID_NO_SUBLEAF, 0x3027, 0x0, 0x0, 0x0 },
    };
    static const xen_msr_entry_t msrs[] = {
        { 0xce, 0, 0x0 },          /* MSR_INTEL_PLATFORM_INFO */
        { 0x10a, 0, 0x0 },         /* MSR_ARCH_CAPABILITIES */
    };
    m->nr_cpuid = sizeof(leaves) / sizeof(leaves[0]);
    memcpy(m->cpuid, leaves, sizeof(leaves));
    m->nr_msrpol = sizeof(msrs) / sizeof(msrs[0]);
    memcpy(m->msrpol, msrs, sizeof(msrs));
}

static void init_xsave(struct vcpu_state *vs, uint64_t seed)
{
    uint64_t st = seed;
    vs->xcr0 = vs->xcr0_accum = MOCK_XFEATURE_MASK;
    vs->xsave_size = MOCK_XSAVE_AREA;
    for (unsigned i = 0; i < MOCK_XSAVE_AREA; i += 8) {
        uint64_t v = splitmix64(&st);
        memcpy(vs->xsave + i, &v, 8);
    }
    memset(vs->xsave + 512, 0, 64);                 /* xsave header */
    uint64_t bv = MOCK_XFEATURE_MASK;
    memcpy(vs->xsave + 512, &bv, 8);                /* xstate_bv */
    uint16_t fcw = 0x37f;
    uint32_t mxcsr = 0x1f80;
    memcpy(vs->xsave, &fcw, 2);
    memcpy(vs->xsave + 24, &mxcsr, 4);
}

static void init_fpu(vcpu_guest_context_t *c, uint64_t seed)
{
    uint64_t st = seed;
    for (unsigned i = 0; i < 512; i += 8) {
        uint64_t v = splitmix64(&st);
        memcpy(c->fpu_ctxt.x + i, &v, 8);
    }
    uint16_t fcw = 0x37f;
    uint32_t mxcsr = 0x1f80;
    memcpy(c->fpu_ctxt.x, &fcw, 2);
    memcpy(c->fpu_ctxt.x + 24, &mxcsr, 4);
}

/* ---- page-table typing (what Xen does when a table is pinned or loaded in cr3) ---- */

struct ptlist { uint64_t *v; size_t n, cap; };

static int pl_push(struct ptlist *l, uint64_t x)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        uint64_t *nv = realloc(l->v, cap * sizeof(*nv));
        if (!nv)
            return -1;
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* One validation of a tree (what Xen does when a table is pinned or loaded in cr3). As in Xen, a
 * frame has one page-table type at a time: `level[slot]` records the type each frame takes in this
 * walk, so a frame met again as the same kind of table is not walked twice (Xen takes another
 * type reference) and one met as another kind (an L4 used as its own L3, an L3 as an L2 ...) is
 * refused with EINVAL. Each frame is therefore visited at most once: the walk is bounded by the
 * domain's size whatever the tables say (self-references and cycles included). */
struct ptwalk {
    struct ptlist tables, rw_targets;
    uint8_t *level;                     /* per slot: 0, or the level it is typed as in this walk */
};

/* Validate the table at slot (of `level`) and everything below it. */
static int pt_walk(struct host *h, struct dom *d, uint64_t slot, int level, struct ptwalk *w)
{
    uint32_t t = d->pinfo[slot] & XEN_DOMCTL_PFINFO_LTABTYPE_MASK;
    if (t && t != ((uint32_t)level << XEN_DOMCTL_PFINFO_LTAB_SHIFT))
        return EINVAL;                              /* in use as another kind of table */
    if (w->level[slot])
        return w->level[slot] == level ? 0 : EINVAL;  /* validated already / another kind */
    w->level[slot] = (uint8_t)level;
    if (pl_push(&w->tables, slot << 3 | (uint64_t)level))
        return ENOMEM;
    const uint64_t *pt = (const uint64_t *)(d->mem + slot * MOCK_PAGE);
    for (int i = 0; i < 512; i++) {
        uint64_t e = pt[i];
        if (level == 4 && i >= XEN_L4_FIRST && i <= XEN_L4_LAST)
            continue;                               /* Xen's own slots */
        if (!(e & PTE_P))
            continue;
        uint64_t mfn = (e & PTE_MFN_MASK) >> 12;
        uint64_t cslot;
        if (frame_to_slot(h, d, mfn, &cslot))
            return EINVAL;                          /* maps a frame the guest does not own */
        if (level == 1) {
            if ((e & PTE_RW) && pl_push(&w->rw_targets, cslot))
                return ENOMEM;
            continue;
        }
        if ((level == 2 || level == 3) && (e & PTE_PSE))
            return EINVAL;                          /* superpages are not simulated */
        if (cslot >= d->m->nr_pages)
            return EINVAL;
        uint32_t ct = d->pinfo[cslot] & XEN_DOMCTL_PFINFO_LTABTYPE_MASK;
        if (!(e & PTE_RW) && (w->level[cslot] == level ||
                              ct == ((uint32_t)level << XEN_DOMCTL_PFINFO_LTAB_SHIFT)))
            continue;                               /* a read-only linear page table: no descent */
        int r = pt_walk(h, d, cslot, level - 1, w);
        if (r)
            return r;
    }
    return 0;
}

/* Type (and optionally pin) the table at mfn. Caller holds dom_lock. errno-style return. */
int pv_type_tree(struct host *h, struct dom *d, uint64_t mfn, int level, int pin)
{
    uint64_t slot;
    if (level < 1 || level > 4)
        return EINVAL;
    if (frame_to_slot(h, d, mfn, &slot) || slot >= d->m->nr_pages)
        return EINVAL;
    if (pin && (d->pinfo[slot] & XEN_DOMCTL_PFINFO_LPINTAB))
        return EINVAL;                              /* already pinned */
    struct ptwalk w = { { 0 }, { 0 }, calloc(d->m->nr_pages, 1) };
    if (!w.level)
        return ENOMEM;
    int r = pt_walk(h, d, slot, level, &w);
    struct ptlist tables = w.tables, rw = w.rw_targets;
    free(w.level);
    if (!r && rw.n) {
        /* no writable mapping of a page table may exist */
        uint64_t *ts = malloc(tables.n * sizeof(*ts));
        if (!ts) {
            r = ENOMEM;
        } else {
            for (size_t i = 0; i < tables.n; i++)
                ts[i] = tables.v[i] >> 3;
            qsort(ts, tables.n, sizeof(*ts), cmp_u64);
            for (size_t i = 0; i < rw.n && !r; i++)
                if (bsearch(&rw.v[i], ts, tables.n, sizeof(*ts), cmp_u64))
                    r = EINVAL;
            free(ts);
        }
    }
    if (!r) {
        for (size_t i = 0; i < tables.n; i++) {
            uint64_t s = tables.v[i] >> 3;
            uint32_t lv = (uint32_t)(tables.v[i] & 7);
            uint32_t old = d->pinfo[s];
            d->pinfo[s] = (old & (PI_PRESENT | XEN_DOMCTL_PFINFO_LPINTAB)) |
                          (lv << XEN_DOMCTL_PFINFO_LTAB_SHIFT);
        }
        if (pin)
            d->pinfo[slot] |= XEN_DOMCTL_PFINFO_LPINTAB;
        if (level == 4) {
            uint64_t *l4 = (uint64_t *)(d->mem + slot * MOCK_PAGE);
            for (int i = XEN_L4_FIRST; i <= XEN_L4_LAST; i++)
                l4[i] = ((MOCK_XEN_SLOT_MFN + (uint64_t)(i - XEN_L4_FIRST)) << 12) |
                        PTE_P | PTE_RW | PTE_A | PTE_D;
        }
    }
    free(tables.v);
    free(rw.v);
    return r;
}

/* ---- building ----------------------------------------------------------------------- */

static void pv_init_vcpu(struct dom *d, uint32_t v, const struct pv_layout *L, uint64_t si_mfn)
{
    struct vcpu_state *vs = &d->vcpus[v];
    vcpu_guest_context_t *c = &vs->ctx;
    uint64_t st = d->m->seed ^ (0x5eedULL + v);
    memset(c, 0, sizeof(*c));
    init_fpu(c, st);
    c->flags = VGCF_i387_valid | VGCF_in_kernel | VGCF_online;
    c->user_regs.rip = 0xffffffff81000000ULL + v * 0x100;
    c->user_regs.rsp = 0xffffc90000003f00ULL + (uint64_t)v * 0x4000;
    c->user_regs.rbx = splitmix64(&st);
    c->user_regs.rcx = splitmix64(&st);
    c->user_regs.r12 = splitmix64(&st);
    c->user_regs.r15 = splitmix64(&st);
    c->user_regs.cs = FLAT_KERNEL_CS64_X86_64;
    c->user_regs.ss = FLAT_KERNEL_SS64_X86_64;
    c->user_regs.rflags = 0x246;
    if (v == 0) {
        c->user_regs.rsi = PFN_VA(L->start_info);
        c->user_regs.rdx = si_mfn;                   /* the suspend record: start-info mfn */
    }
    for (int i = 0; i < 32; i++) {
        c->trap_ctxt[i].vector = (uint8_t)i;
        c->trap_ctxt[i].flags = (i == 3 || i == 4) ? 3 : 0;
        c->trap_ctxt[i].cs = FLAT_KERNEL_CS64_X86_64;
        c->trap_ctxt[i].address = 0xffffffff81001000ULL + (uint64_t)i * 16;
    }
    c->kernel_ss = FLAT_KERNEL_SS64_X86_64;
    c->kernel_sp = c->user_regs.rsp + 0x100;
    c->ctrlreg[0] = 0x80050033;
    c->ctrlreg[3] = xen_pfn_to_cr3(d->p2m[L->l4]);
    c->ctrlreg[4] = 0x6f0;
    c->event_callback_eip = 0xffffffff81002000ULL;
    c->failsafe_callback_eip = 0xffffffff81002100ULL;
    c->syscall_callback_eip = 0xffffffff81002200ULL;
    c->vm_assist = (1UL << VMASST_TYPE_writable_pagetables) | (1UL << VMASST_TYPE_m2p_strict);
    c->gs_base_kernel = 0xffff88803f000000ULL + (uint64_t)v * 0x40000;
    vs->online = 1;
    vs->ext.vcpu = v;
    vs->ext.size = sizeof(vs->ext);
    vs->ext.syscall32_callback_eip = 0xffffffff81003000ULL;
    vs->ext.sysenter_callback_eip = 0xffffffff81003100ULL;
    vs->ext.syscall32_callback_cs = FLAT_KERNEL_CS64_X86_64;
    vs->ext.sysenter_callback_cs = FLAT_KERNEL_CS64_X86_64;
    vs->ext.syscall32_disables_events = 1;
    vs->ext.sysenter_disables_events = 1;
    init_xsave(vs, d->m->seed ^ (0x75a7eULL + v));
    vs->nr_msrs = 1;
    vs->msrs[0].index = 0xc0000103;                  /* MSR_TSC_AUX */
    vs->msrs[0].reserved = 0;
    vs->msrs[0].value = v + 1;
}

int pv_build(struct host *h, struct dom *d)
{
    struct dom_meta *m = d->m;
    uint64_t n = m->nr_pages;
    struct pv_layout L;
    pv_layout(n, &L);
    if (L.first_special >= n || L.first_special < 8) {
        errno = EINVAL;
        return -1;
    }
    uint64_t *mfns = malloc(n * sizeof(*mfns));
    if (!mfns) {
        errno = ENOMEM;
        return -1;
    }
    if (host_lock(h)) {
        free(mfns);
        return -1;
    }
    if (frames_alloc(h, m->domid, n, 0, mfns) != (long)n) {
        int e = errno;
        host_unlock(h);
        free(mfns);
        errno = e;
        return -1;
    }
    for (uint64_t p = 0; p < n; p++) {
        h->frames[mfns[p]].slot = (uint32_t)p;
        h->m2p[mfns[p]] = p;
        d->p2m[p] = mfns[p];
        d->pinfo[p] = PI_PRESENT;
    }
    host_unlock(h);
    free(mfns);
    m->tot_pages = n;

    for (uint64_t p = 0; p < L.first_special; p++)
        fill_page(d->mem + p * MOCK_PAGE, m->seed, p);

    /* p2m: leaves hold mfns, mids hold leaf mfns, the top holds mid mfns */
    for (uint64_t j = 0; j < L.np2m; j++) {
        uint64_t *leaf = (uint64_t *)(d->mem + (L.p2m_leaf + j) * MOCK_PAGE);
        for (uint64_t k = 0; k < 512; k++) {
            uint64_t p = j * 512 + k;
            leaf[k] = p < n ? d->p2m[p] : INVALID_MFN;
        }
    }
    for (uint64_t j = 0; j < L.nmid; j++) {
        uint64_t *mid = (uint64_t *)(d->mem + (L.p2m_mid + j) * MOCK_PAGE);
        for (uint64_t k = 0; k < 512; k++) {
            uint64_t lf = j * 512 + k;
            mid[k] = lf < L.np2m ? d->p2m[L.p2m_leaf + lf] : INVALID_MFN;
        }
    }
    uint64_t *top = (uint64_t *)(d->mem + L.p2m_top * MOCK_PAGE);
    for (uint64_t k = 0; k < 512; k++)
        top[k] = k < L.nmid ? d->p2m[L.p2m_mid + k] : INVALID_MFN;

    /* page tables: the direct map of all n pages; tables are mapped read-only */
    uint64_t pt_first = L.l4, pt_end = L.l1 + L.nl1;
    for (uint64_t j = 0; j < L.nl1; j++) {
        uint64_t *l1 = (uint64_t *)(d->mem + (L.l1 + j) * MOCK_PAGE);
        for (uint64_t k = 0; k < 512; k++) {
            uint64_t p = j * 512 + k;
            if (p >= n)
                break;
            uint64_t fl = PTE_P | PTE_A | PTE_D;
            if (p < pt_first || p >= pt_end)
                fl |= PTE_RW;
            l1[k] = (d->p2m[p] << 12) | fl;
        }
    }
    for (uint64_t i = 0; i < L.nl2; i++) {
        uint64_t *l2 = (uint64_t *)(d->mem + (L.l2 + i) * MOCK_PAGE);
        for (uint64_t k = 0; k < 512 && i * 512 + k < L.nl1; k++)
            l2[k] = (d->p2m[L.l1 + i * 512 + k] << 12) | PTE_P | PTE_RW | PTE_US | PTE_A | PTE_D;
    }
    uint64_t *l3 = (uint64_t *)(d->mem + L.l3 * MOCK_PAGE);
    for (uint64_t k = 0; k < L.nl2; k++)
        l3[k] = (d->p2m[L.l2 + k] << 12) | PTE_P | PTE_RW | PTE_US | PTE_A | PTE_D;
    uint64_t *l4 = (uint64_t *)(d->mem + L.l4 * MOCK_PAGE);
    l4[GUEST_L4_SLOT] = (d->p2m[L.l3] << 12) | PTE_P | PTE_RW | PTE_US | PTE_A | PTE_D;
    dom_lock(d);
    int r = pv_type_tree(h, d, d->p2m[L.l4], 4, 1);
    dom_unlock(d);
    if (r) {
        errno = r;
        return -1;
    }

    /* start info, xenstore and console pages */
    start_info_t *si = (start_info_t *)(d->mem + L.start_info * MOCK_PAGE);
    snprintf(si->magic, sizeof(si->magic), "xen-3.0-x86_64");
    si->nr_pages = n;
    si->shared_info = m->shinfo_mfn << 12;
    si->store_mfn = d->p2m[L.store];
    si->store_evtchn = 1;
    si->console.domU.mfn = d->p2m[L.console];
    si->console.domU.evtchn = 2;
    si->pt_base = PFN_VA(L.l4);
    si->nr_pt_frames = 2 + L.nl2 + L.nl1;
    si->mfn_list = PFN_VA(L.p2m_leaf);
    si->first_p2m_pfn = L.p2m_leaf;
    si->nr_p2m_frames = L.np2m;
    snprintf((char *)si->cmd_line, sizeof(si->cmd_line), "console=hvc0 xenmig-mock");
    snprintf((char *)(d->mem + L.console * MOCK_PAGE), 64, "xenmig mock console of d%u\n",
             m->domid);

    /* shared info */
    shared_info_t *sh = dom_shinfo(d);
    memset(sh, 0, MOCK_PAGE);
    sh->arch.max_pfn = n;
    sh->arch.pfn_to_mfn_frame_list_list = d->p2m[L.p2m_top];
    sh->wc_version = 2;
    sh->wc_sec = 1700000000;

    for (uint32_t v = 0; v < m->max_vcpus; v++)
        pv_init_vcpu(d, v, &L, d->p2m[L.start_info]);
    return 0;
}

int hvm_build(struct dom *d)
{
    struct dom_meta *m = d->m;
    uint64_t n = m->nr_pages;
    for (uint64_t p = 0; p < n; p++)
        d->pinfo[p] = PI_PRESENT;
    m->tot_pages = n;
    m->max_mapped_pfn = n;
    for (uint64_t p = 0; p + 2 < n; p++)
        fill_page(d->mem + p * MOCK_PAGE, m->seed, p);
    snprintf((char *)(d->mem + (n - 1) * MOCK_PAGE), 64, "xenmig mock console of d%u\n", m->domid);
    m->hvm_params[HVM_PARAM_STORE_PFN] = n - 2;
    m->hvm_params[HVM_PARAM_CONSOLE_PFN] = n - 1;
    m->hvm_params[HVM_PARAM_STORE_EVTCHN] = 1;
    m->hvm_params[HVM_PARAM_CONSOLE_EVTCHN] = 2;
    m->hvm_params[HVM_PARAM_PAE_ENABLED] = 1;
    m->hvm_params[HVM_PARAM_TIMER_MODE] = HVMPTM_no_delay_for_missed_ticks;
    m->hvm_params[HVM_PARAM_HPET_ENABLED] = 1;
    m->hvm_params[HVM_PARAM_VPT_ALIGN] = 1;
    m->hvm_params[HVM_PARAM_X87_FIP_WIDTH] = 8;

    /* HVM context: HEADER, one CPU record per vCPU, END */
    uint8_t *b = d->hvmctx;
    uint32_t off = 0;
    struct hvm_save_descriptor desc = { 1, 0, sizeof(struct hvm_save_header) };
    struct hvm_save_header hdr = { HVM_FILE_MAGIC, HVM_FILE_VERSION, 0, 0x000806ec, m->tsc_khz };
    memcpy(b + off, &desc, sizeof(desc)); off += sizeof(desc);
    memcpy(b + off, &hdr, sizeof(hdr)); off += sizeof(hdr);
    for (uint32_t v = 0; v < m->max_vcpus; v++) {
        struct hvm_save_descriptor cd = { XENMIG_HVM_SAVE_CODE_CPU, (uint16_t)v,
                                          XENMIG_HVM_SAVE_LENGTH_CPU };
        memcpy(b + off, &cd, sizeof(cd)); off += sizeof(cd);
        uint64_t st = m->seed ^ (0xc9u + v);
        for (uint32_t i = 0; i < XENMIG_HVM_SAVE_LENGTH_CPU; i += 8) {
            uint64_t x = splitmix64(&st);
            memcpy(b + off + i, &x, 8);
        }
        off += XENMIG_HVM_SAVE_LENGTH_CPU;
        d->vcpus[v].online = 1;
        d->vcpus[v].ctx.flags = VGCF_online;
        init_xsave(&d->vcpus[v], m->seed ^ (0x75a7eULL + v));
    }
    struct hvm_save_descriptor end = { 0, 0, 0 };
    memcpy(b + off, &end, sizeof(end)); off += sizeof(end);
    m->hvmctx_size = off;
    return 0;
}

/* HEADER first (magic), records in bounds, END last; CPU instances < max_vcpus. */
int hvmctx_validate(const uint8_t *buf, uint32_t size, uint32_t max_vcpus)
{
    uint32_t off = 0;
    int first = 1;
    while (off + sizeof(struct hvm_save_descriptor) <= size) {
        struct hvm_save_descriptor dsc;
        memcpy(&dsc, buf + off, sizeof(dsc));
        off += sizeof(dsc);
        if (dsc.length > size - off)
            return EINVAL;
        if (first) {
            struct hvm_save_header hh;
            if (dsc.typecode != 1 || dsc.length < sizeof(hh))
                return EINVAL;
            memcpy(&hh, buf + off, sizeof(hh));
            if (hh.magic != HVM_FILE_MAGIC)
                return EINVAL;
            first = 0;
        } else if (dsc.typecode == 0) {
            return dsc.length == 0 ? 0 : EINVAL;
        } else if (dsc.typecode == XENMIG_HVM_SAVE_CODE_CPU && dsc.instance >= max_vcpus) {
            return EINVAL;
        }
        off += dsc.length;
    }
    return EINVAL;     /* no END record */
}

/* ---- guest side: writes, workload ------------------------------------------------ */

int xenmig_mock_guest_write(uint32_t domid, uint64_t pfn, uint32_t offset, const void *buf,
                            uint32_t len)
{
    if ((len && !buf) || offset >= MOCK_PAGE || len > MOCK_PAGE - offset) {
        errno = EINVAL;
        return -1;
    }
    struct dom *d;
    if (dom_get(domid, &d))
        return -1;
    if (pfn >= d->m->nr_pages || !(d->pinfo[pfn] & PI_PRESENT)) {
        dom_put(d);
        errno = EFAULT;                 /* the guest would take a fault */
        return -1;
    }
    int r = guest_enter(d, NULL, 0);
    if (r) {
        dom_put(d);
        errno = r;
        return -1;
    }
    if (!__atomic_load_n(&d->m->ever_ran, __ATOMIC_RELAXED)) {
        struct host *h = host_get();
        if (h)
            guest_on_run(h, d);
    }
    memcpy(d->mem + pfn * MOCK_PAGE + offset, buf, len);
    guest_mark_dirty(d, pfn);
    guest_exit(d);
    dom_put(d);
    return 0;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = { (time_t)(ns / 1000000000ULL), (long)(ns % 1000000000ULL) };
    nanosleep(&ts, NULL);
}

long long xenmig_mock_workload(uint32_t domid, uint64_t rate, uint64_t hot, uint64_t seed,
                               uint64_t duration_ms, volatile int *stop)
{
    struct dom *d;
    if (dom_get(domid, &d))
        return -1;
    struct host *h = host_get();
    uint64_t data = h ? guest_data_pages(h, d) : 0;
    if (hot == 0 || hot > data)
        hot = data;
    long long count = 0;
    uint64_t start = now_ns(), base = start, done_at_base = 0;
    uint64_t deadline = duration_ms ? start + duration_ms * 1000000ULL : 0;
    uint64_t st = seed;
    while (hot) {
        if ((stop && *stop) || __atomic_load_n(&d->m->dying, __ATOMIC_RELAXED))
            break;
        uint64_t now = now_ns();
        if (deadline && now >= deadline)
            break;
        if (rate) {
            uint64_t target = done_at_base + (now - base) * rate / 1000000000ULL;
            if ((uint64_t)count >= target) {
                uint64_t wait = 1000000000ULL / rate;
                sleep_ns(wait > 2000000 ? 2000000 : wait);
                continue;
            }
            if (target - (uint64_t)count > rate / 10 + 1) {
                /* after a pause: do not burst more than 100 ms worth of writes */
                base = now;
                done_at_base = (uint64_t)count;
            }
        }
        uint64_t x = splitmix64(&st);
        uint64_t pfn = x % hot;
        uint32_t off = (uint32_t)((x >> 40) % (MOCK_PAGE / 32)) * 32;
        uint64_t rec[4] = { seed, (uint64_t)count, pfn, x };
        if (!(d->pinfo[pfn] & PI_PRESENT)) {
            count++;
            continue;
        }
        int r = guest_enter(d, stop, deadline);
        if (r)
            break;
        if (!__atomic_load_n(&d->m->ever_ran, __ATOMIC_RELAXED) && h)
            guest_on_run(h, d);
        memcpy(d->mem + pfn * MOCK_PAGE + off, rec, sizeof(rec));
        guest_mark_dirty(d, pfn);
        guest_exit(d);
        count++;
    }
    dom_put(d);
    return count;
}

/* ---- checksum ------------------------------------------------------------------------ */

static void hash_u64(struct sha256 *s, uint64_t v)
{
    sha256_update(s, &v, sizeof(v));
}

static uint64_t norm_frame(struct host *h, struct dom *d, uint64_t mfn)
{
    return pv_mfn_to_pfn(h, d, mfn);   /* ~0 when not one of the guest's pages */
}

static void hash_pv_table(struct sha256 *s, struct host *h, struct dom *d, const uint64_t *pt,
                          int level)
{
    uint64_t out[512];
    for (int i = 0; i < 512; i++) {
        uint64_t e = pt[i];
        if (level == 4 && i >= XEN_L4_FIRST && i <= XEN_L4_LAST)
            e = 0;
        else if (e & PTE_P)
            e = (e & ~PTE_MFN_MASK) |
                ((norm_frame(h, d, (e & PTE_MFN_MASK) >> 12) << 12) & PTE_MFN_MASK);
        out[i] = e;
    }
    sha256_update(s, out, sizeof(out));
}

static void hash_pv_vcpu(struct sha256 *s, struct host *h, struct dom *d, uint32_t v)
{
    struct vcpu_state *vs = &d->vcpus[v];
    vcpu_guest_context_t c = vs->ctx;
    if (c.ctrlreg[3])
        c.ctrlreg[3] = norm_frame(h, d, xen_cr3_to_pfn(c.ctrlreg[3]));
    if (c.ctrlreg[1])
        c.ctrlreg[1] = norm_frame(h, d, xen_cr3_to_pfn(c.ctrlreg[1]));
    for (unsigned i = 0; i < 16 && i * 512 < c.gdt_ents; i++)
        c.gdt_frames[i] = norm_frame(h, d, c.gdt_frames[i]);
    if (v == 0) {
        c.user_regs.rdx = norm_frame(h, d, c.user_regs.rdx);
        c.user_regs.rax = 0;     /* the suspend hypercall's return value: resume rewrites it */
    }
    hash_u64(s, vs->online);
    sha256_update(s, &c, sizeof(c));
    struct xen_domctl_ext_vcpucontext ext = vs->ext;
    ext.vcpu = v;
    sha256_update(s, &ext, sizeof(ext));
    hash_u64(s, vs->xcr0);
    hash_u64(s, vs->xcr0_accum);
    hash_u64(s, vs->xsave_size);
    sha256_update(s, vs->xsave, vs->xsave_size <= MOCK_XSAVE_AREA ? vs->xsave_size : 0);
    hash_u64(s, vs->nr_msrs);
    for (uint32_t i = 0; i < vs->nr_msrs && i < MOCK_NR_VCPU_MSRS; i++) {
        hash_u64(s, vs->msrs[i].index);
        hash_u64(s, vs->msrs[i].value);
    }
}

int xenmig_mock_checksum(uint32_t domid, uint8_t out[32])
{
    static const int stream_params[] = {
        HVM_PARAM_STORE_PFN, HVM_PARAM_IOREQ_PFN, HVM_PARAM_BUFIOREQ_PFN,
        HVM_PARAM_PAGING_RING_PFN, HVM_PARAM_MONITOR_RING_PFN, HVM_PARAM_SHARING_RING_PFN,
        HVM_PARAM_VM86_TSS_SIZED, HVM_PARAM_CONSOLE_PFN, HVM_PARAM_ACPI_IOPORTS_LOCATION,
        HVM_PARAM_VIRIDIAN, HVM_PARAM_IDENT_PT, HVM_PARAM_VM_GENERATION_ID_ADDR,
        HVM_PARAM_IOREQ_SERVER_PFN, HVM_PARAM_NR_IOREQ_SERVER_PAGES, HVM_PARAM_X87_FIP_WIDTH,
        HVM_PARAM_MCA_CAP,
    };
    if (!out) {
        errno = EINVAL;
        return -1;
    }
    struct dom *d;
    if (dom_get(domid, &d))
        return -1;
    struct host *h = host_get();
    if (!h) {
        dom_put(d);
        return -1;
    }
    struct dom_meta *m = d->m;
    struct sha256 s;
    sha256_init(&s);
    sha256_update(&s, "xenmig-mock-checksum-1", 22);
    hash_u64(&s, m->type);

    uint64_t end = 0;
    for (uint64_t p = m->nr_pages; p > 0; p--)
        if (d->pinfo[p - 1] & PI_PRESENT) {
            end = p;
            break;
        }
    struct pv_layout L;
    int pv = m->type == XENMIG_MOCK_DOMAIN_PV;
    if (pv)
        pv_layout(pv_guest_pages(d), &L);
    for (uint64_t p = 0; p < end; p++) {
        uint32_t pi = d->pinfo[p];
        hash_u64(&s, p);
        hash_u64(&s, pi & (PI_PRESENT | PI_TYPE_MASK));
        if (!(pi & PI_PRESENT))
            continue;
        const uint8_t *page = d->mem + p * MOCK_PAGE;
        uint32_t lv = (pi & XEN_DOMCTL_PFINFO_LTABTYPE_MASK) >> XEN_DOMCTL_PFINFO_LTAB_SHIFT;
        if (pv && lv >= 1 && lv <= 4) {
            hash_pv_table(&s, h, d, (const uint64_t *)page, (int)lv);
        } else if (pv && p >= L.p2m_leaf && p < L.p2m_leaf + L.np2m) {
            uint64_t e[512];
            memcpy(e, page, sizeof(e));
            for (int i = 0; i < 512; i++)
                if (e[i] != INVALID_MFN)
                    e[i] = norm_frame(h, d, e[i]);
            sha256_update(&s, e, sizeof(e));
        } else if (pv && p >= L.p2m_top && p < L.p2m_leaf) {
            sha256_update(&s, "p2m-directory", 13);   /* machine frames, rebuilt by the guest */
        } else if (pv && p == L.start_info) {
            const start_info_t *si = (const start_info_t *)page;
            sha256_update(&s, si->magic, sizeof(si->magic));
            hash_u64(&s, si->pt_base);
            hash_u64(&s, si->nr_pt_frames);
            hash_u64(&s, si->mfn_list);
            hash_u64(&s, si->first_p2m_pfn);
            hash_u64(&s, si->nr_p2m_frames);
            sha256_update(&s, si->cmd_line, sizeof(si->cmd_line));
        } else {
            sha256_update(&s, page, MOCK_PAGE);
        }
    }
    if (pv) {
        for (uint32_t v = 0; v < m->max_vcpus; v++)
            hash_pv_vcpu(&s, h, d, v);
    } else {
        uint32_t sz = m->hvmctx_size <= MOCK_HVMCTX_MAX ? m->hvmctx_size : 0;
        hash_u64(&s, sz);
        sha256_update(&s, d->hvmctx, sz);
        for (unsigned i = 0; i < sizeof(stream_params) / sizeof(stream_params[0]); i++) {
            uint64_t v = m->hvm_params[stream_params[i]];
            if (v) {
                hash_u64(&s, (uint64_t)stream_params[i]);
                hash_u64(&s, v);
            }
        }
    }
    hash_u64(&s, m->tsc_mode);
    hash_u64(&s, m->tsc_khz);
    hash_u64(&s, m->tsc_nsec);
    sha256_final(&s, out);
    dom_put(d);
    return 0;
}
