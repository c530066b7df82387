/* xenmig mock: event-channel types of the Xen public interface (subset). */
#ifndef XENMIG_MOCK_XEN_EVENT_CHANNEL_H
#define XENMIG_MOCK_XEN_EVENT_CHANNEL_H

#include "xen.h"

typedef uint32_t evtchn_port_t;
DEFINE_XEN_GUEST_HANDLE(evtchn_port_t);

#endif
