/*
 * xenmig mock: the x86-64 guest ABI under explicit names (as a 64-bit toolstack
 * sees a 64-bit PV guest). Layouts follow Xen 4.17; written for the mock.
 */
#ifndef XENMIG_MOCK_FOREIGN_X86_64_H
#define XENMIG_MOCK_FOREIGN_X86_64_H

#include <stdint.h>

#define XENMIG_FREG(n) union { uint64_t r##n, e##n; }

#define FLAT_RING3_CS64_X86_64  0xe033
#define FLAT_RING3_DS64_X86_64  0x0000
#define FLAT_RING3_SS64_X86_64  0xe02b
#define FLAT_KERNEL_DS64_X86_64 FLAT_RING3_DS64_X86_64
#define FLAT_KERNEL_DS_X86_64   FLAT_KERNEL_DS64_X86_64
#define FLAT_KERNEL_CS64_X86_64 FLAT_RING3_CS64_X86_64
#define FLAT_KERNEL_CS_X86_64   FLAT_KERNEL_CS64_X86_64
#define FLAT_KERNEL_SS64_X86_64 FLAT_RING3_SS64_X86_64
#define FLAT_KERNEL_SS_X86_64   FLAT_KERNEL_SS64_X86_64
#define xen_pfn_to_cr3_x86_64(pfn) ((uint64_t)(pfn) << 12)
#define xen_cr3_to_pfn_x86_64(cr3) ((uint64_t)(cr3) >> 12)
#define XEN_LEGACY_MAX_VCPUS_X86_64 32
#define MAX_GUEST_CMDLINE_X86_64 1024
#define VGCF_i387_valid_X86_64               (1 << 0)
#define VGCF_in_kernel_X86_64                (1 << 2)
#define VGCF_failsafe_disables_events_X86_64 (1 << 3)
#define VGCF_syscall_disables_events_X86_64  (1 << 4)
#define VGCF_online_X86_64                   (1 << 5)

struct start_info_x86_64 {
    char magic[32];
    uint64_t nr_pages;
    uint64_t shared_info;
    uint32_t flags;
    uint64_t store_mfn;
    uint32_t store_evtchn;
    union {
        struct { uint64_t mfn; uint32_t evtchn; } domU;
        struct { uint32_t info_off; uint32_t info_size; } dom0;
    } console;
    uint64_t pt_base;
    uint64_t nr_pt_frames;
    uint64_t mfn_list;
    uint64_t mod_start;
    uint64_t mod_len;
    int8_t cmd_line[MAX_GUEST_CMDLINE_X86_64];
    uint64_t first_p2m_pfn;
    uint64_t nr_p2m_frames;
};
typedef struct start_info_x86_64 start_info_x86_64_t;

struct trap_info_x86_64 {
    uint8_t  vector;
    uint8_t  flags;
    uint16_t cs;
    uint64_t address;
};
typedef struct trap_info_x86_64 trap_info_x86_64_t;

struct cpu_user_regs_x86_64 {
    XENMIG_FREG(15); XENMIG_FREG(14); XENMIG_FREG(13); XENMIG_FREG(12);
    XENMIG_FREG(bp); XENMIG_FREG(bx);
    XENMIG_FREG(11); XENMIG_FREG(10); XENMIG_FREG(9);  XENMIG_FREG(8);
    XENMIG_FREG(ax); XENMIG_FREG(cx); XENMIG_FREG(dx);
    XENMIG_FREG(si); XENMIG_FREG(di);
    uint32_t error_code;
    uint32_t entry_vector;
    XENMIG_FREG(ip);
    uint16_t cs, _pad0[1];
    uint8_t  saved_upcall_mask;
    uint8_t  _pad1[3];
    XENMIG_FREG(flags);
    XENMIG_FREG(sp);
    uint16_t ss, _pad2[3];
    uint16_t es, _pad3[3];
    uint16_t ds, _pad4[3];
    uint16_t fs, _pad5[3];
    uint16_t gs, _pad6[3];
};
typedef struct cpu_user_regs_x86_64 cpu_user_regs_x86_64_t;

struct vcpu_guest_context_x86_64 {
    struct { char x[512]; } fpu_ctxt;
    uint64_t flags;
    struct cpu_user_regs_x86_64 user_regs;
    struct trap_info_x86_64 trap_ctxt[256];
    uint64_t ldt_base, ldt_ents;
    uint64_t gdt_frames[16], gdt_ents;
    uint64_t kernel_ss, kernel_sp;
    uint64_t ctrlreg[8];
    uint64_t debugreg[8];
    uint64_t event_callback_eip;
    uint64_t failsafe_callback_eip;
    uint64_t syscall_callback_eip;
    uint64_t vm_assist;
    uint64_t fs_base;
    uint64_t gs_base_kernel;
    uint64_t gs_base_user;
};
typedef struct vcpu_guest_context_x86_64 vcpu_guest_context_x86_64_t;

struct arch_vcpu_info_x86_64 {
    uint64_t cr2;
    uint64_t pad;
};
typedef struct arch_vcpu_info_x86_64 arch_vcpu_info_x86_64_t;

struct vcpu_time_info_x86_64 {
    uint32_t version;
    uint32_t pad0;
    uint64_t tsc_timestamp;
    uint64_t system_time;
    uint32_t tsc_to_system_mul;
    int8_t   tsc_shift;
    uint8_t  flags;
    uint8_t  pad1[2];
};
typedef struct vcpu_time_info_x86_64 vcpu_time_info_x86_64_t;

struct vcpu_info_x86_64 {
    uint8_t evtchn_upcall_pending;
    uint8_t evtchn_upcall_mask;
    uint64_t evtchn_pending_sel;
    struct arch_vcpu_info_x86_64 arch;
    vcpu_time_info_x86_64_t time;
};
typedef struct vcpu_info_x86_64 vcpu_info_x86_64_t;

struct arch_shared_info_x86_64 {
    uint64_t max_pfn;
    uint64_t pfn_to_mfn_frame_list_list;
    uint64_t nmi_reason;
    uint64_t p2m_cr3;
    uint64_t p2m_vaddr;
    uint64_t p2m_generation;
};
typedef struct arch_shared_info_x86_64 arch_shared_info_x86_64_t;

struct shared_info_x86_64 {
    struct vcpu_info_x86_64 vcpu_info[XEN_LEGACY_MAX_VCPUS_X86_64];
    uint64_t evtchn_pending[sizeof(uint64_t) * 8];
    uint64_t evtchn_mask[sizeof(uint64_t) * 8];
    uint32_t wc_version;
    uint32_t wc_sec;
    uint32_t wc_nsec;
    uint32_t wc_sec_hi;
    struct arch_shared_info_x86_64 arch;
};
typedef struct shared_info_x86_64 shared_info_x86_64_t;

#undef XENMIG_FREG
#endif
