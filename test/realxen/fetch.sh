#!/bin/bash
# xenmig real-Xen rig, stage 1: host tools + Debian's Xen/kernel packages, cached in the work dir.
# Installs with apt (qemu, busybox, cpio, ...); downloads (does not install) Debian's kernel,
# hypervisor and Xen utils with `apt-get download` and unpacks them under $W/root.
# Usage: fetch.sh [WORKDIR]   (default $XENLAB_DIR, else <repo>/.xenlab)
# Idempotent: a populated $W/root (stamp file) is reused.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
W=${1:-${XENLAB_DIR:-$REPO/.xenlab}}
mkdir -p "$W/debs"
need=""
for p in qemu-system-x86 qemu-system-xen seabios busybox-static cpio gzip kmod binutils libxen-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
done
if [ -n "$need" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
# dom0's NBD client (Remus disk replication: the guest's vbd on /dev/nbdN served by `xenmig disk
# serve`): nbd-client and the one library of it the host lacks, unpacked into the root like the Xen
# packages; added to a root cached before this stage
nbd_client() {
  [ -f "$W/root/.nbd-stamp" ] && return 0
  ( cd "$W/debs" && apt-get download nbd-client libnl-genl-3-200 )
  for d in "$W"/debs/nbd-client_*.deb "$W"/debs/libnl-genl-3-200_*.deb; do dpkg-deb -x "$d" "$W/root"; done
  touch "$W/root/.nbd-stamp"
}
if [ -f "$W/root/.stamp" ]; then nbd_client; echo "fetch: cached in $W/root"; exit 0; fi
# the kernel package that linux-image-amd64 currently points at
KPKG=$(apt-cache depends linux-image-amd64 | sed -n 's/.*Depends: \(linux-image-[0-9][^ ]*\).*/\1/p' | head -1)
( cd "$W/debs" && apt-get download "$KPKG" xen-hypervisor-4.17-amd64 xen-utils-4.17 xen-utils-common xenstore-utils )
rm -rf "$W/root"; mkdir -p "$W/root"
for d in "$W"/debs/*.deb; do dpkg-deb -x "$d" "$W/root"; done
KVER=$(ls "$W/root/lib/modules" | head -1)
depmod -b "$W/root" "$KVER"
zcat "$W/root/boot/xen-4.17-amd64.gz" > "$W/xen.elf"
cp "$W/root/boot/vmlinuz-$KVER" "$W/vmlinuz"
echo "$KVER" > "$W/root/.stamp"
nbd_client
echo "fetch: kernel $KVER, xen $(ls "$W"/debs/xen-hypervisor*)"
