#!/bin/bash
# xenmig real-Xen rig, stage 2: the dom0 initramfs.
# Carries busybox, Debian's Xen 4.17 tools (xl, xenstored, xenconsoled, libxl-save-helper, xenstore
# utils) with their libraries, the Xen kernel modules, a guest kernel + a ticking guest initrd,
# the host's node, the built project (dist/, package.json, commander, build/Release/xenmig_system.node
# and the libraries ldd names) and this directory's scenario. /init (init.sh) runs the scenario and
# writes /out as a tar stream onto /dev/vda.
# Usage: mk-initramfs.sh [WORKDIR] [OUT]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
W=${1:-${XENLAB_DIR:-$REPO/.xenlab}}
OUT=${2:-$W/dom0.cpio.gz}
R=$W/root
KVER=$(cat "$R/.stamp")
XB=usr/lib/xen-4.17/bin
BB=/bin/busybox
T=$(mktemp -d "$W/initramfs.XXXXXX")
trap 'rm -rf "$T"' EXIT
mkdir -p "$T"/{bin,proc,sys,dev,tmp,etc/xen,root,out,lib/modules,guest,usr/bin,$XB} \
         "$T"/var/{lib/xen,lib/xenstored,log/xen/console,run/xen,run/xenstored,lock}
cp "$BB" "$T/bin/busybox"; ln -s busybox "$T/bin/sh"
for b in xl xenstored xenconsoled libxl-save-helper xen-init-dom0; do cp -a "$R/$XB/$b" "$T/$XB/"; done
cp -a "$R/usr/bin/xenstore" "$T/usr/bin/"
for l in read write ls list exists rm watch chmod; do ln -sf xenstore "$T/usr/bin/xenstore-$l"; done
ELF=("$T/$XB"/* "$T/usr/bin/xenstore")
# guests with a disk and a NIC: libxl runs Xen's hotplug scripts itself (bash; locking.sh needs
# flock, which busybox lacks); busybox provides ip, brctl, losetup, logger
mkdir -p "$T/etc/xen/scripts"; cp -a "$R/etc/xen/scripts/." "$T/etc/xen/scripts/"
cp -L /bin/bash "$T/bin/bash"; cp -L "$(command -v flock)" "$T/usr/bin/flock"; ELF+=("$T/bin/bash" "$T/usr/bin/flock")
# Remus disk replication: the NBD client (from Debian's package, fetch.sh; its libnl-genl from there too)
cp -a "$R/sbin/nbd-client" "$T/usr/bin/"; ELF+=("$T/usr/bin/nbd-client")
# an HVM guest: Debian's qemu-xen device model (where libxl looks for it), hvmloader, SeaBIOS, and
# the QEMU option ROMs a direct kernel boot uses
mkdir -p "$T/usr/libexec" "$T/usr/lib/xen-4.17/boot" "$T/usr/share/seabios" "$T/usr/share/qemu/keymaps"
cp -L /usr/libexec/xen-qemu-system-i386 "$T/usr/libexec/"; ELF+=("$T/usr/libexec/xen-qemu-system-i386")
cp -L "$R/usr/lib/xen-4.17/boot/hvmloader" "$T/usr/lib/xen-4.17/boot/"
cp -L /usr/share/seabios/bios-256k.bin "$T/usr/share/seabios/"
for f in linuxboot_dma.bin linuxboot.bin kvmvapic.bin vgabios-stdvga.bin; do [ -e "/usr/share/qemu/$f" ] && cp -L "/usr/share/qemu/$f" "$T/usr/share/qemu/"; done
cp -L /usr/share/qemu/keymaps/en-us "$T/usr/share/qemu/keymaps/" 2>/dev/null || true
# node (stripped copy of the host's) and the project
cp -L "$(command -v node)" "$T/usr/bin/node"; strip "$T/usr/bin/node"; ELF+=("$T/usr/bin/node")
P=$T/opt/xenmig
mkdir -p "$P/build/Release" "$P/node_modules" "$P/test/realxen"
cp -a "$REPO/dist" "$REPO/package.json" "$P/"
cp -a "$REPO/node_modules/commander" "$P/node_modules/"
cp -L "$REPO/build/Release/xenmig_system.node" "$P/build/Release/"; ELF+=("$P/build/Release/xenmig_system.node")
cp "$HERE"/*.mjs "$P/test/realxen/"
# libraries (host copies: same Debian release as the packages)
# (libraries the host lacks are looked up in the unpacked packages and go to the same path in dom0)
for f in "${ELF[@]}"; do
  LD_LIBRARY_PATH="$R/lib/x86_64-linux-gnu" ldd "$f" 2>/dev/null | awk '/=>/ && $3 ~ /^\// {print $3}'
done | sort -u | while read -r lib; do d=${lib#"$R"}; mkdir -p "$T$(dirname "$d")"; cp -L "$lib" "$T$d"; done
mkdir -p "$T/lib64"; cp -L /lib64/ld-linux-x86-64.so.2 "$T/lib64/"
# glibc dlopens libgcc_s for pthread_cancel (xl aborts at exit without it)
cp -L /lib/x86_64-linux-gnu/libgcc_s.so.1 "$T/lib/x86_64-linux-gnu/"
# kernel modules, in dependency order
for m in xen-evtchn xen-privcmd xen-gntdev xen-gntalloc xenfs virtio_pci virtio_blk xen-blkback xen-netback loop nbd bridge ifb sch_plug sch_ingress act_mirred cls_u32; do
  modprobe -d "$R" -S "$KVER" --show-depends "$m" | awk '$1=="insmod"{print $2}'
done | awk '!s[$0]++' | while read -r ko; do cp "$ko" "$T/lib/modules/"; basename "$ko" >> "$T/lib/modules/order"; done
# guest: same kernel; an initrd whose init ticks every second on hvc0, on its disk and over UDP
# (xen-blkfront, xen-netfront; bash for /dev/udp, which busybox's nc cannot send)
G=$(mktemp -d "$W/guest.XXXXXX")
mkdir -p "$G"/{bin,proc,dev,sys,lib/modules}
cp "$BB" "$G/bin/busybox"; for a in sh mount cat sleep insmod ip dd cut sed; do ln -s busybox "$G/bin/$a"; done
cp -L /bin/bash "$G/bin/bash"
ldd /bin/bash | awk '/=>/ && $3 ~ /^\// {print $3}' | while read -r lib; do mkdir -p "$G$(dirname "$lib")"; cp -L "$lib" "$G$lib"; done
mkdir -p "$G/lib64"; cp -L /lib64/ld-linux-x86-64.so.2 "$G/lib64/"
for m in xen-blkfront xen-netfront; do
  modprobe -d "$R" -S "$KVER" --show-depends "$m" | awk '$1=="insmod"{print $2}' | while read -r ko; do cp "$ko" "$G/lib/modules/"; done
done
cp "$HERE/guest-init.sh" "$G/init"; chmod +x "$G/init"
cp "$HERE/guest-tick.sh" "$G/tick.sh"
(cd "$G" && find . | cpio -o -H newc --quiet | gzip -1) > "$T/guest/initrd.gz"; rm -rf "$G"
cp "$R/boot/vmlinuz-$KVER" "$T/guest/vmlinuz"
printf '# xenmig rig\n' > "$T/etc/xen/xl.conf"
n=10
for ty in pv pvh; do
  n=$((n + 1))
  sed -e "s/@TYPE@/$ty/g" -e "s/@N@/$n/g" "$HERE/guest.cfg.in" > "$T/etc/xen/g-$ty.cfg"
done
# the benchmark's guest (test/realxen/bench.mjs): PVH like g-pvh, ticking every 20 ms (its disk every 50 ticks)
sed -e "s/g-pvh/g-bench/g" -e "s/xenmig_guest=pvh/xenmig_guest=bench xenmig_tick=0.02 xenmig_diskevery=50/" \
  -e "s/169.254.0.12/169.254.0.13/" -e "s/00:12'/00:13'/" "$T/etc/xen/g-pvh.cfg" > "$T/etc/xen/g-bench.cfg"
# Remus disk replication (scenario step 5.disk, bench kill trials with BENCH_TRIALS_DISK): the same PVH
# guests with their vbd on /dev/nbd0, which `xenmig disk serve` serves (test/realxen/helpers.mjs
# serveNbdDisk); g-nbd ticks every 100 ms and writes every tick to its disk, g-bench every 5th
sed -e "s/g-pvh/g-nbd/g" -e "s/xenmig_guest=pvh/xenmig_guest=nbd xenmig_tick=0.1 xenmig_diskevery=1/" \
  -e "s/169.254.0.12/169.254.0.14/" -e "s/00:12'/00:14'/" -e "s#target=[^']*#target=/dev/nbd0#" \
  "$T/etc/xen/g-pvh.cfg" > "$T/etc/xen/g-nbd.cfg"
sed -e "s/xenmig_diskevery=50/xenmig_diskevery=5/" -e "s#target=[^']*#target=/dev/nbd0#" \
  "$T/etc/xen/g-bench.cfg" > "$T/etc/xen/g-bench-nbd.cfg"
cp "$HERE/guest-hvm.cfg" "$T/etc/xen/g-hvm.cfg"
cp "$HERE/init.sh" "$T/init"; chmod +x "$T/init"
(cd "$T" && find . | cpio -o -H newc --quiet | gzip -1) > "$OUT"
echo "mk-initramfs: $OUT ($(stat -c %s "$OUT") bytes)"
