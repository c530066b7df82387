#!/bin/sh
# guest /init for the xenmig rig: a tick per second on the console (hvc0)
mount -t proc proc /proc
echo "GUEST_UP $(cat /proc/uptime)"
i=0
while :; do i=$((i+1)); echo "GUEST_TICK $i"; sleep 1; done
