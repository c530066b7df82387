/*
 * Prints sizes and field offsets of the Xen ABI types the mock headers declare.
 * The Makefile builds it once against docker/mock/include and, when Xen's own
 * headers are installed, once against them, and requires identical output.
 */
#define XC_WANT_COMPAT_MAP_FOREIGN_API 1
#include <stdio.h>
#include <stddef.h>
#include <xenctrl.h>
#include <xenguest.h>
#include <xenforeignmemory.h>
#include <xen/hvm/save.h>
#include <xen/hvm/params.h>

#define S(t)        printf("sizeof %-40s %zu\n", #t, sizeof(t))
#define O(t, f)     printf("offset %-40s %-28s %zu\n", #t, #f, offsetof(t, f))
#define V(c)        printf("value  %-40s %lld\n", #c, (long long)(c))

int main(void)
{
    S(xen_pfn_t); S(domid_t); S(xen_ulong_t);
    S(struct cpu_user_regs);
    O(struct cpu_user_regs, rax); O(struct cpu_user_regs, rdx); O(struct cpu_user_regs, rip);
    O(struct cpu_user_regs, cs); O(struct cpu_user_regs, saved_upcall_mask);
    O(struct cpu_user_regs, rflags); O(struct cpu_user_regs, rsp); O(struct cpu_user_regs, gs);
    S(struct trap_info);
    S(vcpu_guest_context_t);
    O(vcpu_guest_context_t, flags); O(vcpu_guest_context_t, user_regs);
    O(vcpu_guest_context_t, trap_ctxt); O(vcpu_guest_context_t, gdt_frames);
    O(vcpu_guest_context_t, gdt_ents); O(vcpu_guest_context_t, kernel_sp);
    O(vcpu_guest_context_t, ctrlreg); O(vcpu_guest_context_t, debugreg);
    O(vcpu_guest_context_t, event_callback_eip); O(vcpu_guest_context_t, syscall_callback_eip);
    O(vcpu_guest_context_t, vm_assist); O(vcpu_guest_context_t, fs_base);
    O(vcpu_guest_context_t, gs_base_user);
    S(vcpu_guest_context_x86_64_t);
    O(vcpu_guest_context_x86_64_t, user_regs.rdx); O(vcpu_guest_context_x86_64_t, ctrlreg);
    O(vcpu_guest_context_x86_64_t, gdt_frames); O(vcpu_guest_context_x86_64_t, gs_base_user);
    S(vcpu_guest_context_x86_32_t);
    O(vcpu_guest_context_x86_32_t, user_regs.edx); O(vcpu_guest_context_x86_32_t, user_regs.eip);
    O(vcpu_guest_context_x86_32_t, trap_ctxt); O(vcpu_guest_context_x86_32_t, ctrlreg);
    O(vcpu_guest_context_x86_32_t, gdt_frames); O(vcpu_guest_context_x86_32_t, vm_assist);
    S(vcpu_guest_context_any_t);
    S(struct vcpu_time_info); S(struct vcpu_info);
    S(shared_info_t);
    O(shared_info_t, evtchn_pending); O(shared_info_t, evtchn_mask); O(shared_info_t, wc_version);
    O(shared_info_t, arch); O(shared_info_t, arch.max_pfn);
    O(shared_info_t, arch.pfn_to_mfn_frame_list_list); O(shared_info_t, arch.p2m_generation);
    S(shared_info_x86_64_t); O(shared_info_x86_64_t, arch.pfn_to_mfn_frame_list_list);
    S(shared_info_x86_32_t); O(shared_info_x86_32_t, arch.pfn_to_mfn_frame_list_list);
    O(shared_info_x86_32_t, arch.max_pfn); O(shared_info_x86_32_t, evtchn_mask);
    S(shared_info_any_t);
    S(start_info_t); O(start_info_t, store_mfn); O(start_info_t, console.domU.mfn);
    O(start_info_t, pt_base); O(start_info_t, cmd_line); O(start_info_t, nr_p2m_frames);
    S(start_info_x86_64_t); S(start_info_x86_32_t); O(start_info_x86_32_t, nr_p2m_frames);
    S(start_info_any_t);
    S(struct arch_shared_info);
    S(xen_cpuid_leaf_t); O(xen_cpuid_leaf_t, d);
    S(xen_msr_entry_t); O(xen_msr_entry_t, val);
    S(struct mmuext_op); O(struct mmuext_op, arg1.mfn); O(struct mmuext_op, arg2.nr_ents);
    S(xc_domaininfo_t);
    O(xc_domaininfo_t, flags); O(xc_domaininfo_t, tot_pages); O(xc_domaininfo_t, max_pages);
    O(xc_domaininfo_t, shared_info_frame); O(xc_domaininfo_t, cpu_time);
    O(xc_domaininfo_t, nr_online_vcpus); O(xc_domaininfo_t, max_vcpu_id);
    O(xc_domaininfo_t, handle); O(xc_domaininfo_t, cpupool); O(xc_domaininfo_t, gpaddr_bits);
    O(xc_domaininfo_t, arch_config);
    S(xc_dominfo_t);
    O(xc_dominfo_t, shutdown_reason); O(xc_dominfo_t, nr_pages); O(xc_dominfo_t, shared_info_frame);
    O(xc_dominfo_t, cpu_time); O(xc_dominfo_t, max_memkb); O(xc_dominfo_t, nr_online_vcpus);
    O(xc_dominfo_t, max_vcpu_id); O(xc_dominfo_t, handle); O(xc_dominfo_t, cpupool);
    O(xc_dominfo_t, gpaddr_bits); O(xc_dominfo_t, arch_config);
    S(xc_vcpuinfo_t); O(xc_vcpuinfo_t, online); O(xc_vcpuinfo_t, running);
    O(xc_vcpuinfo_t, cpu_time); O(xc_vcpuinfo_t, cpu);
    S(xc_shadow_op_stats_t); O(xc_shadow_op_stats_t, dirty_count);
    S(xc_vcpu_extstate_t);
    S(xc_hypercall_buffer_t); O(xc_hypercall_buffer_t, param_shadow); O(xc_hypercall_buffer_t, sz);
    S(xc_error);
    S(struct xen_domctl);
    O(struct xen_domctl, interface_version); O(struct xen_domctl, domain); O(struct xen_domctl, u);
    S(struct xen_domctl_getdomaininfo);
    S(struct xen_domctl_shadow_op); O(struct xen_domctl_shadow_op, dirty_bitmap);
    O(struct xen_domctl_shadow_op, pages); O(struct xen_domctl_shadow_op, stats);
    S(struct xen_domctl_vcpucontext); O(struct xen_domctl_vcpucontext, ctxt);
    S(struct xen_domctl_getvcpuinfo);
    S(struct xen_domctl_tsc_info); O(struct xen_domctl_tsc_info, elapsed_nsec);
    S(struct xen_domctl_hvmcontext); O(struct xen_domctl_hvmcontext, buffer);
    S(struct xen_domctl_hvmcontext_partial); O(struct xen_domctl_hvmcontext_partial, buffer);
    S(struct xen_domctl_ext_vcpucontext);
    O(struct xen_domctl_ext_vcpucontext, sysenter_callback_eip);
    O(struct xen_domctl_ext_vcpucontext, syscall32_callback_cs);
    O(struct xen_domctl_ext_vcpucontext, sysenter_disables_events);
    O(struct xen_domctl_ext_vcpucontext, mcg_cap); O(struct xen_domctl_ext_vcpucontext, vmce);
    S(struct xen_domctl_vcpuextstate); O(struct xen_domctl_vcpuextstate, xfeature_mask);
    O(struct xen_domctl_vcpuextstate, size); O(struct xen_domctl_vcpuextstate, buffer);
    S(struct xen_domctl_vcpu_msr); S(struct xen_domctl_vcpu_msrs);
    O(struct xen_domctl_vcpu_msrs, msrs);
    S(struct xen_domctl_cpu_policy); O(struct xen_domctl_cpu_policy, err_msr);
    S(struct xen_domctl_getpageframeinfo3); S(struct xen_domctl_address_size);
    S(struct hvm_save_descriptor); O(struct hvm_save_descriptor, length);
    S(struct hvm_save_header); O(struct hvm_save_header, gtsc_khz);
    V(HVM_SAVE_CODE(HEADER)); V(HVM_SAVE_CODE(END)); V(HVM_SAVE_LENGTH(HEADER));
    V(HVM_FILE_MAGIC); S(struct hvm_vmce_vcpu);
    V(XEN_DOMCTL_PFINFO_L1TAB); V(XEN_DOMCTL_PFINFO_L4TAB); V(XEN_DOMCTL_PFINFO_LPINTAB);
    V(XEN_DOMCTL_PFINFO_XTAB); V(XEN_DOMCTL_PFINFO_BROKEN); V(XEN_DOMCTL_PFINFO_XALLOC);
    V(XEN_DOMCTL_PFINFO_LTAB_MASK); V(XEN_DOMCTL_PFINFO_LTABTYPE_MASK);
    V(XEN_DOMCTL_SHADOW_OP_OFF); V(XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY);
    V(XEN_DOMCTL_SHADOW_OP_CLEAN); V(XEN_DOMCTL_SHADOW_OP_PEEK); V(XEN_DOMCTL_SHADOW_LOGDIRTY_FINAL);
    V(XEN_DOMCTL_SHADOW_OP_ENABLE); V(XEN_DOMCTL_INTERFACE_VERSION);
    V(XEN_DOMINF_dying); V(XEN_DOMINF_hvm_guest); V(XEN_DOMINF_shutdown); V(XEN_DOMINF_paused);
    V(XEN_DOMINF_blocked); V(XEN_DOMINF_running); V(XEN_DOMINF_hap);
    V(XEN_DOMINF_shutdownshift); V(XEN_DOMINF_shutdownmask);
    V(SHUTDOWN_poweroff); V(SHUTDOWN_suspend); V(SHUTDOWN_crash); V(SHUTDOWN_soft_reset);
    V(XENVER_version);
    V(HVM_PARAM_STORE_PFN); V(HVM_PARAM_CONSOLE_PFN); V(HVM_PARAM_IOREQ_PFN);
    V(HVM_PARAM_BUFIOREQ_PFN); V(HVM_PARAM_PAGING_RING_PFN); V(HVM_PARAM_MONITOR_RING_PFN);
    V(HVM_PARAM_SHARING_RING_PFN); V(HVM_PARAM_VM86_TSS_SIZED); V(HVM_PARAM_ACPI_IOPORTS_LOCATION);
    V(HVM_PARAM_VIRIDIAN); V(HVM_PARAM_IDENT_PT); V(HVM_PARAM_VM_GENERATION_ID_ADDR);
    V(HVM_PARAM_IOREQ_SERVER_PFN); V(HVM_PARAM_NR_IOREQ_SERVER_PAGES); V(HVM_PARAM_X87_FIP_WIDTH);
    V(HVM_PARAM_MCA_CAP); V(HVM_PARAM_PAE_ENABLED); V(HVM_PARAM_STORE_EVTCHN);
    V(HVM_PARAM_CONSOLE_EVTCHN); V(HVM_PARAM_CALLBACK_IRQ); V(HVM_NR_PARAMS);
    V(XEN_DOMCTL_get_ext_vcpucontext); V(XEN_DOMCTL_set_ext_vcpucontext);
    V(XEN_DOMCTL_getvcpuextstate); V(XEN_DOMCTL_setvcpuextstate);
    V(XEN_DOMCTL_get_vcpu_msrs); V(XEN_DOMCTL_set_vcpu_msrs);
    V(XEN_DOMCTL_getvcpucontext); V(XEN_DOMCTL_setvcpucontext); V(XEN_DOMCTL_getdomaininfo);
    V(XEN_DOMCTL_gettscinfo); V(XEN_DOMCTL_settscinfo); V(XEN_DOMCTL_get_address_size);
    V(XEN_DOMCTL_gethvmcontext); V(XEN_DOMCTL_sethvmcontext); V(XEN_DOMCTL_shadow_op);
    V(XEN_DOMCTL_getpageframeinfo3); V(XEN_DOMCTL_pausedomain); V(XEN_DOMCTL_unpausedomain);
    V(MMUEXT_PIN_L1_TABLE); V(MMUEXT_PIN_L4_TABLE); V(MMUEXT_UNPIN_TABLE);
    V(XC_PAGE_SHIFT); V(XC_PAGE_SIZE); V(INVALID_MFN); V(XC_MAX_ERROR_MSG_LEN);
    V(DOMID_FIRST_RESERVED); V(DOMID_SELF); V(XEN_LEGACY_MAX_VCPUS);
    V(HYPERVISOR_VIRT_START); V(HYPERVISOR_VIRT_END);
    V(XTL_DEBUG); V(XTL_ERROR); V(XTL_NUM_LEVELS);
    V(XCFLAGS_LIVE); V(XCFLAGS_DEBUG); V(XC_STREAM_COLO);
    V(VGCF_online); V(VGCF_in_kernel);
    V(xen_pfn_to_cr3(0x12345)); V(xen_pfn_to_cr3_x86_32(0x123456)); V(xen_cr3_to_pfn_x86_32(0x23456001));
    V(XENMEMF_populate_on_demand);
    return 0;
}
