/* xenmig mock: running / paused / shut down, and guest execution against it. */
#include "mock_internal.h"
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/syscall.h>

void futex_wait_u32(uint32_t *addr, uint32_t val, long timeout_ns)
{
    struct timespec ts = { timeout_ns / 1000000000L, timeout_ns % 1000000000L };
    /* shared (not PRIVATE): the word lives in a MAP_SHARED file mapping */
    syscall(SYS_futex, addr, FUTEX_WAIT, val, &ts, NULL, 0);
}

void futex_wake_u32(uint32_t *addr)
{
    syscall(SYS_futex, addr, FUTEX_WAKE, 0x7fffffff, NULL, NULL, 0);
}

/* Wait until no guest write is in flight. Callers made the domain stopped first, so
 * no new write can start (guest_enter re-checks after announcing itself). */
void dom_quiesce(struct dom *d)
{
    for (;;) {
        uint32_t n = __atomic_load_n(&d->m->inflight, __ATOMIC_SEQ_CST);
        if (n == 0)
            return;
        futex_wait_u32(&d->m->inflight, n, 2000000);
    }
}

void dom_kick(struct dom *d)
{
    __atomic_add_fetch(&d->m->run_seq, 1, __ATOMIC_SEQ_CST);
    futex_wake_u32(&d->m->run_seq);
}

int guest_enter(struct dom *d, volatile int *stop, uint64_t deadline_ns)
{
    struct dom_meta *m = d->m;
    for (;;) {
        if (__atomic_load_n(&m->dying, __ATOMIC_SEQ_CST))
            return ESRCH;
        if (!dom_stopped(m)) {
            __atomic_add_fetch(&m->inflight, 1, __ATOMIC_SEQ_CST);
            if (!dom_stopped(m) && !__atomic_load_n(&m->dying, __ATOMIC_SEQ_CST))
                return 0;
            guest_exit(d);
            continue;
        }
        if ((stop && *stop) || (deadline_ns && now_ns() >= deadline_ns))
            return ETIMEDOUT;
        uint32_t seq = __atomic_load_n(&m->run_seq, __ATOMIC_SEQ_CST);
        if (dom_stopped(m) && !__atomic_load_n(&m->dying, __ATOMIC_SEQ_CST))
            futex_wait_u32(&m->run_seq, seq, 20000000);
    }
}

void guest_exit(struct dom *d)
{
    if (__atomic_sub_fetch(&d->m->inflight, 1, __ATOMIC_SEQ_CST) == 0)
        futex_wake_u32(&d->m->inflight);
}

void guest_mark_dirty(struct dom *d, uint64_t pfn)
{
    if (!__atomic_load_n(&d->m->logdirty, __ATOMIC_SEQ_CST) || pfn >= d->m->nr_pages)
        return;
    __atomic_fetch_or(&d->dirty[pfn / 64], 1ULL << (pfn % 64), __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&d->m->fault_count, 1, __ATOMIC_RELAXED);
}

shared_info_t *dom_shinfo(struct dom *d)
{
    return (shared_info_t *)(d->mem + d->m->nr_pages * MOCK_PAGE);
}

/* The PV guest's own bookkeeping when it suspends (as Linux's pre-suspend does): the
 * start-info page names its xenstore and console pages by pfn while suspended, and the
 * suspend hypercall (vcpu0) returns 0. */
void pv_suspend_hook(struct host *h, struct dom *d)
{
    if (d->m->type != XENMIG_MOCK_DOMAIN_PV)
        return;
    struct pv_layout L;
    shared_info_t *si = dom_shinfo(d);
    pv_layout(si->arch.max_pfn ? si->arch.max_pfn : d->m->nr_pages, &L);
    if (L.start_info >= d->m->nr_pages || !(d->pinfo[L.start_info] & PI_PRESENT))
        return;
    start_info_t *st = (start_info_t *)(d->mem + L.start_info * MOCK_PAGE);
    uint64_t p;
    if ((p = pv_mfn_to_pfn(h, d, st->store_mfn)) != ~0ULL)
        st->store_mfn = p;
    if ((p = pv_mfn_to_pfn(h, d, st->console.domU.mfn)) != ~0ULL)
        st->console.domU.mfn = p;
    guest_mark_dirty(d, L.start_info);   /* a guest write: live migration must resend it */
    d->vcpus[0].ctx.user_regs.rax = 0;
}

/* The guest's side of a resume: fast = the suspend was cancelled (returns 1; mfns come
 * back); slow = a full resume: returns 0 and the guest rebuilds its p2m frame list. */
void pv_resume_hook(struct host *h, struct dom *d, int fast)
{
    (void)h;
    if (d->m->type != XENMIG_MOCK_DOMAIN_PV)
        return;
    struct pv_layout L;
    shared_info_t *si = dom_shinfo(d);
    pv_layout(si->arch.max_pfn ? si->arch.max_pfn : d->m->nr_pages, &L);
    if (L.start_info < d->m->nr_pages && (d->pinfo[L.start_info] & PI_PRESENT)) {
        start_info_t *st = (start_info_t *)(d->mem + L.start_info * MOCK_PAGE);
        if (st->store_mfn < d->m->nr_pages && d->p2m[st->store_mfn] != INVALID_MFN)
            st->store_mfn = d->p2m[st->store_mfn];
        if (st->console.domU.mfn < d->m->nr_pages && d->p2m[st->console.domU.mfn] != INVALID_MFN)
            st->console.domU.mfn = d->p2m[st->console.domU.mfn];
        guest_mark_dirty(d, L.start_info);
    }
    if (fast)
        d->vcpus[0].ctx.user_regs.rax = 1;
    else
        si->arch.pfn_to_mfn_frame_list_list = 0;   /* rebuilt by guest_on_run */
}

/* A PV guest that finds its p2m frame list gone (after a restore or a full resume)
 * rebuilds the two upper levels from its p2m leaves, as Linux does on resume. */
void guest_on_run(struct host *h, struct dom *d)
{
    __atomic_store_n(&d->m->ever_ran, 1, __ATOMIC_RELAXED);
    if (d->m->type != XENMIG_MOCK_DOMAIN_PV)
        return;
    shared_info_t *si = dom_shinfo(d);
    if (si->arch.pfn_to_mfn_frame_list_list != 0 || si->arch.max_pfn == 0 ||
        si->arch.max_pfn > d->m->nr_pages)
        return;
    struct pv_layout L;
    pv_layout(si->arch.max_pfn, &L);
    for (uint64_t i = 0; i < L.np2m; i++)
        if (!(d->pinfo[L.p2m_leaf + i] & PI_PRESENT))
            return;
    for (uint64_t i = 0; i < L.nmid; i++)
        if (!(d->pinfo[L.p2m_mid + i] & PI_PRESENT))
            return;
    if (!(d->pinfo[L.p2m_top] & PI_PRESENT))
        return;
    uint64_t *top = (uint64_t *)(d->mem + L.p2m_top * MOCK_PAGE);
    for (uint64_t j = 0; j < 512; j++)
        top[j] = j < L.nmid ? d->p2m[L.p2m_mid + j] : INVALID_MFN;
    for (uint64_t j = 0; j < L.nmid; j++) {
        uint64_t *mid = (uint64_t *)(d->mem + (L.p2m_mid + j) * MOCK_PAGE);
        for (uint64_t k = 0; k < 512; k++) {
            uint64_t leaf = j * 512 + k;
            mid[k] = leaf < L.np2m ? d->p2m[L.p2m_leaf + leaf] : INVALID_MFN;
        }
        guest_mark_dirty(d, L.p2m_mid + j);
    }
    guest_mark_dirty(d, L.p2m_top);
    si->arch.pfn_to_mfn_frame_list_list = d->p2m[L.p2m_top];
    (void)h;
}
