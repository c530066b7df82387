#!/bin/sh
# dom0 /init of the xenmig rig: bring up the Xen toolstack daemons, run the scenario, copy /out
# to /dev/vda as a tar stream, power off.
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin:/usr/lib/xen-4.17/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm; mount -t devpts devpts /dev/pts; mount -t tmpfs tmpfs /dev/shm
# devtmpfs has no /dev/std* or /dev/fd: Xen's hotplug lock (locking.sh) spins forever without them
ln -sf /proc/self/fd /dev/fd; ln -sf fd/0 /dev/stdin; ln -sf fd/1 /dev/stdout; ln -sf fd/2 /dev/stderr
syslogd -O /var/log/messages
# loopback: the Remus step runs both CLI ends over TCP on 127.0.0.1
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
echo "RIG dom0-init t=$(cut -d' ' -f1 /proc/uptime)"
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m || echo "insmod $m failed"; done
mount -t xenfs xenfs /proc/xen
xenstored --pid-file /var/run/xenstored.pid; sleep 1
xen-init-dom0 >/dev/null 2>&1
xenconsoled --log=guest --log-dir=/var/log/xen/console
# the guests' network: a bridge with a link-local address in dom0 (nothing leaves this machine);
# the guests' disks: files here, attached through loop devices by the block hotplug script
brctl addbr xenbr0
echo 0 > /sys/class/net/xenbr0/bridge/stp_state; echo 0 > /sys/class/net/xenbr0/bridge/forward_delay
ip addr add 169.254.0.1/16 dev xenbr0; ip link set xenbr0 up
mkdir -p /var/lib/xenmig-rig
for ty in pv pvh bench; do dd if=/dev/zero of=/var/lib/xenmig-rig/g-$ty.img bs=1M count=4 2>/dev/null; done
echo "RIG toolstack-up t=$(cut -d' ' -f1 /proc/uptime)"
cd /opt/xenmig
# RIG_HVM=1 on the host (run.sh): the HVM steps (xenmig's QMP device-model provider is the default)
if grep -q "rig_hvm=1" /proc/cmdline; then export RIG_HVM=1; fi
# RIG_DISK=1: step 5.disk (Remus with disk replication over NBD), ~11 min under TCG
if grep -q "rig_disk=1" /proc/cmdline; then export RIG_DISK=1; fi
RIG_ONLY=$(sed -n 's/.*rig_only=\([^ ]*\).*/\1/p' /proc/cmdline); [ -n "$RIG_ONLY" ] && export RIG_ONLY
# RIG_MODE=bench on the host (npm run bench:realxen): the xl-vs-xenmig benchmark instead of the scenario
if grep -q "rig_mode=bench" /proc/cmdline; then
  export BENCH_ROUNDS=$(sed -n 's/.*bench_rounds=\([0-9]*\).*/\1/p' /proc/cmdline)
  [ -n "$BENCH_ROUNDS" ] || unset BENCH_ROUNDS
  export BENCH_REMUS_ROUNDS=$(sed -n 's/.*bench_remus_rounds=\([0-9]*\).*/\1/p' /proc/cmdline)
  [ -n "$BENCH_REMUS_ROUNDS" ] || unset BENCH_REMUS_ROUNDS
  grep -q "bench_profile=1" /proc/cmdline && export BENCH_PROFILE=1
  for v in trials trials_unbuffered trials_disk; do
    n=$(sed -n "s/.*bench_$v=\([0-9]*\).*/\1/p" /proc/cmdline)
    [ -n "$n" ] && export "BENCH_$(echo $v | tr a-z A-Z)=$n"
  done
  BENCH_ONLY=$(sed -n 's/.*bench_only=\([^ ]*\).*/\1/p' /proc/cmdline); [ -n "$BENCH_ONLY" ] && export BENCH_ONLY
  XENMIG_FLAVOUR=system node test/realxen/bench.mjs /out 2>&1
else
  XENMIG_FLAVOUR=system node test/realxen/scenario.mjs /out 2>&1
fi
echo "RIG scenario rc=$? t=$(cut -d' ' -f1 /proc/uptime)"
cp /var/log/xen/console/*.log /out/ 2>/dev/null
xl dmesg > /out/xl-dmesg.txt 2>&1
cp /var/log/messages /out/syslog.txt 2>/dev/null
cp /var/log/xen/xl-*.log /out/ 2>/dev/null
dmesg > /out/dom0-dmesg.txt
if [ -b /dev/vda ]; then (cd /out && tar cf /dev/vda .) && sync && echo "RIG COPY_OUT_OK"; fi
echo "RIG DONE"
poweroff -f
