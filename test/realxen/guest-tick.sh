# The rig guest's tick loop (bash): every second the counter goes to the console, in a UDP datagram
# to dom0's bridge address, and onto the first sector of the disk. The counter lives in guest memory,
# so after a restore or migration all three continue from where they were.
ty=$1
i=0
while :; do
  i=$((i + 1))
  echo "GUEST_TICK $i"
  echo "XENMIG_UDP $ty $i" 2>/dev/null >/dev/udp/169.254.0.1/5555
  printf 'XENMIG_DISK %s %010d\n' "$ty" "$i" | dd of=/dev/xvda bs=512 count=1 conv=notrunc,fsync 2>/dev/null
  sleep 1
done
