/*
 * xenmig mock: framing of the HVM save image (XEN_DOMCTL_gethvmcontext), subset.
 * The image is a sequence of (descriptor, payload); it starts with a HEADER record
 * and ends with an END record. Layouts follow Xen 4.17; written for the mock.
 */
#ifndef XENMIG_MOCK_XEN_HVM_SAVE_H
#define XENMIG_MOCK_XEN_HVM_SAVE_H

#include <stdint.h>

struct hvm_save_descriptor {
    uint16_t typecode;
    uint16_t instance;
    uint32_t length;      /* payload bytes, descriptor excluded */
};

/* Type registration: a struct whose array length encodes the typecode. */
#define DECLARE_HVM_SAVE_TYPE(_x, _code, _type) \
    struct __HVM_SAVE_TYPE_##_x { _type t; char c[_code]; char cpt[1]; }
#define HVM_SAVE_TYPE(_x)   __typeof__(((struct __HVM_SAVE_TYPE_##_x *)(0))->t)
#define HVM_SAVE_LENGTH(_x) (sizeof(HVM_SAVE_TYPE(_x)))
#define HVM_SAVE_CODE(_x)   (sizeof(((struct __HVM_SAVE_TYPE_##_x *)(0))->c))

struct hvm_save_end {};
DECLARE_HVM_SAVE_TYPE(END, 0, struct hvm_save_end);

#define HVM_FILE_MAGIC   0x54381286
#define HVM_FILE_VERSION 0x00000001

struct hvm_save_header {
    uint32_t magic;
    uint32_t version;
    uint64_t changeset;
    uint32_t cpuid;
    uint32_t gtsc_khz;
};
DECLARE_HVM_SAVE_TYPE(HEADER, 1, struct hvm_save_header);

/* Typecode of the per-vCPU register record and its payload size (struct hvm_hw_cpu). */
#define XENMIG_HVM_SAVE_CODE_CPU   2
#define XENMIG_HVM_SAVE_LENGTH_CPU 1032

struct hvm_vmce_vcpu {
    uint64_t caps;
    uint64_t mci_ctl2_bank0;
    uint64_t mci_ctl2_bank1;
    uint64_t mcg_ext_ctl;
};
DECLARE_HVM_SAVE_TYPE(VMCE_VCPU, 18, struct hvm_vmce_vcpu);

#define HVM_SAVE_CODE_MAX 20

#endif
