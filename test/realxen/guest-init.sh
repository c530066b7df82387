#!/bin/sh
# guest /init for the xenmig rig: PV disk and network drivers, a link-local address, then the tick loop
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in /lib/modules/*.ko; do insmod "$m" 2>/dev/null; done
arg() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
ip link set lo up
ip addr add "$(arg xenmig_ip)/16" dev eth0 && ip link set eth0 up
echo "GUEST_UP $(cat /proc/uptime) disk $([ -b /dev/xvda ] && echo yes || echo no) net $(cat /sys/class/net/eth0/address 2>/dev/null)"
tick=$(arg xenmig_tick); every=$(arg xenmig_diskevery)
exec /bin/bash /tick.sh "$(arg xenmig_guest)" "${tick:-1}" "${every:-1}"
