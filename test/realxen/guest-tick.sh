# The rig guest's tick loop (bash): every tick (default 1 s; `xenmig_tick=` on the kernel command line)
# the counter goes to the console and in a UDP datagram to dom0's bridge address, and every
# `xenmig_diskevery=` ticks (default 1) onto the first sector of the disk. The counter lives in guest
# memory, so after a restore or migration all three continue from where they were.
ty=$1
iv=${2:-1}
de=${3:-1}
i=0
while :; do
  i=$((i + 1))
  echo "GUEST_TICK $i"
  echo "XENMIG_UDP $ty $i" 2>/dev/null >/dev/udp/169.254.0.1/5555
  if [ $((i % de)) = 0 ]; then
    printf 'XENMIG_DISK %s %010d\n' "$ty" "$i" | dd of=/dev/xvda bs=512 count=1 conv=notrunc,fsync 2>/dev/null
  fi
  sleep "$iv"
done
