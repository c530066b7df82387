#!/bin/sh
# dom0 /init of the xenmig rig: bring up the Xen toolstack daemons, run the scenario, copy /out
# to /dev/vda as a tar stream, power off.
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin:/usr/lib/xen-4.17/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm; mount -t devpts devpts /dev/pts; mount -t tmpfs tmpfs /dev/shm
# loopback: the Remus step runs both CLI ends over TCP on 127.0.0.1
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
echo "RIG dom0-init t=$(cut -d' ' -f1 /proc/uptime)"
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m || echo "insmod $m failed"; done
mount -t xenfs xenfs /proc/xen
xenstored --pid-file /var/run/xenstored.pid; sleep 1
xen-init-dom0 >/dev/null 2>&1
xenconsoled --log=guest --log-dir=/var/log/xen/console
echo "RIG toolstack-up t=$(cut -d' ' -f1 /proc/uptime)"
cd /opt/xenmig
XENMIG_FLAVOUR=system node test/realxen/scenario.mjs /out 2>&1
echo "RIG scenario rc=$? t=$(cut -d' ' -f1 /proc/uptime)"
cp /var/log/xen/console/*.log /out/ 2>/dev/null
xl dmesg > /out/xl-dmesg.txt 2>&1
dmesg > /out/dom0-dmesg.txt
if [ -b /dev/vda ]; then (cd /out && tar cf /dev/vda .) && sync && echo "RIG COPY_OUT_OK"; fi
echo "RIG DONE"
poweroff -f
