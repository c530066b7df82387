/*
 * xenmig mock: x86-64 specific part of the Xen public interface (subset).
 * Layouts follow the Xen 4.17 ABI; written for the mock, not taken from Xen.
 */
#ifndef XENMIG_MOCK_XEN_ARCH_X86_64_H
#define XENMIG_MOCK_XEN_ARCH_X86_64_H

#define __HYPERVISOR_VIRT_START 0xFFFF800000000000
#define __HYPERVISOR_VIRT_END   0xFFFF880000000000
#define __MACH2PHYS_VIRT_START  0xFFFF800000000000
#define __MACH2PHYS_VIRT_END    0xFFFF804000000000
#define HYPERVISOR_VIRT_START   xen_mk_ulong(__HYPERVISOR_VIRT_START)
#define HYPERVISOR_VIRT_END     xen_mk_ulong(__HYPERVISOR_VIRT_END)
#define MACH2PHYS_VIRT_START    xen_mk_ulong(__MACH2PHYS_VIRT_START)
#define MACH2PHYS_VIRT_END      xen_mk_ulong(__MACH2PHYS_VIRT_END)
#define MACH2PHYS_NR_ENTRIES    ((MACH2PHYS_VIRT_END - MACH2PHYS_VIRT_START) >> 3)

#define _VGCF_in_syscall 8
#define VGCF_in_syscall  (1 << _VGCF_in_syscall)
#define VGCF_IN_SYSCALL  VGCF_in_syscall

#ifndef __ASSEMBLY__

/* A 64-bit general register, reachable under its r/e/x/l/h names. */
#define XENMIG_REG_ABCD(n) union { uint64_t r##n##x; uint32_t e##n##x; \
                                   uint16_t n##x; struct { uint8_t n##l, n##h; }; }
#define XENMIG_REG_PTR(n)  union { uint64_t r##n; uint32_t e##n; uint16_t n; uint8_t n##l; }
#define XENMIG_REG_W(n)    union { uint64_t r##n; uint32_t e##n; uint16_t n; }
#define XENMIG_REG_HI(k)   union { uint64_t r##k; uint32_t r##k##d; uint16_t r##k##w; uint8_t r##k##b; }

struct cpu_user_regs {
    XENMIG_REG_HI(15);
    XENMIG_REG_HI(14);
    XENMIG_REG_HI(13);
    XENMIG_REG_HI(12);
    XENMIG_REG_PTR(bp);
    XENMIG_REG_ABCD(b);
    XENMIG_REG_HI(11);
    XENMIG_REG_HI(10);
    XENMIG_REG_HI(9);
    XENMIG_REG_HI(8);
    XENMIG_REG_ABCD(a);
    XENMIG_REG_ABCD(c);
    XENMIG_REG_ABCD(d);
    XENMIG_REG_PTR(si);
    XENMIG_REG_PTR(di);
    uint32_t error_code;
    uint32_t entry_vector;
    XENMIG_REG_W(ip);
    uint16_t cs, _pad0[1];
    uint8_t  saved_upcall_mask;
    uint8_t  _pad1[3];
    XENMIG_REG_W(flags);
    XENMIG_REG_PTR(sp);
    uint16_t ss, _pad2[3];
    uint16_t es, _pad3[3];
    uint16_t ds, _pad4[3];
    uint16_t fs, _pad5[3];
    uint16_t gs, _pad6[3];
};
typedef struct cpu_user_regs cpu_user_regs_t;

#undef XENMIG_REG_ABCD
#undef XENMIG_REG_PTR
#undef XENMIG_REG_W
#undef XENMIG_REG_HI

/* cr3 <-> frame number, 64-bit guests. */
#define xen_pfn_to_cr3(pfn) ((unsigned long)(pfn) << 12)
#define xen_cr3_to_pfn(cr3) ((unsigned long)(cr3) >> 12)

struct arch_vcpu_info {
    unsigned long cr2;
    unsigned long pad;
};
typedef struct arch_vcpu_info arch_vcpu_info_t;

typedef unsigned long xen_callback_t;

#endif /* !__ASSEMBLY__ */
#endif
