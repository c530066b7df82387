/* xenmig mock: xen_version() commands (subset). */
#ifndef XENMIG_MOCK_XEN_VERSION_H
#define XENMIG_MOCK_XEN_VERSION_H

#include "xen.h"

/* XENVER_version: returns major << 16 | minor. */
#define XENVER_version      0
#define XENVER_extraversion 1
typedef char xen_extraversion_t[16];
#define XEN_EXTRAVERSION_LEN (sizeof(xen_extraversion_t))

#endif
