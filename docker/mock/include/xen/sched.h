/* xenmig mock: scheduler-op constants of the Xen public interface (subset). */
#ifndef XENMIG_MOCK_XEN_SCHED_H
#define XENMIG_MOCK_XEN_SCHED_H

#include "event_channel.h"

#define SCHEDOP_yield            0
#define SCHEDOP_block            1
#define SCHEDOP_shutdown         2
#define SCHEDOP_poll             3
#define SCHEDOP_remote_shutdown  4
#define SCHEDOP_shutdown_code    5
#define SCHEDOP_watchdog         6
#define SCHEDOP_pin_override     7

/* Shutdown reasons (getdomaininfo flags bits 16-23 when shut down). */
#define SHUTDOWN_poweroff   0
#define SHUTDOWN_reboot     1
#define SHUTDOWN_suspend    2
#define SHUTDOWN_crash      3
#define SHUTDOWN_watchdog   4
#define SHUTDOWN_soft_reset 5
#define SHUTDOWN_MAX        5

#endif
