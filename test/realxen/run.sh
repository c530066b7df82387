#!/bin/bash
# xenmig real-Xen rig: fetch (cached) -> dom0 initramfs -> boot Xen 4.17 under QEMU TCG -> the
# scenario runs in dom0 -> results copied out through a raw virtio disk (tar stream).
# Usage: test/realxen/run.sh [WORKDIR]   (default $XENLAB_DIR, else <repo>/.xenlab)
# Env: TIMEOUT (s, default 2700)  CPU (default qemu64,+svm,+npt)  MEM (MiB, default 3072)
#      SMP (default 1)  DOM0_MEM (default 1024M)  NICE (default 10)
# One emulated CPU: with two (multi-threaded TCG) PVH guests sometimes triple-faulted, at boot too,
# with no xenmig code running; with one, no run has shown it, and the scenario is faster.
# Exit 0 when the scenario ran to its end (step outcomes are judged by the vitest runner,
# realxen.rig.ts, from $W/results/latest/results.jsonl).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
W=${1:-${XENLAB_DIR:-$REPO/.xenlab}}
mkdir -p "$W"; W=$(cd "$W" && pwd)
rm -f "$W/results/latest"   # the runner must never judge an older run
"$HERE/fetch.sh" "$W"
[ -f "$REPO/build/Release/xenmig_system.node" ] && [ -f "$REPO/dist/api.js" ] || \
  { echo "run.sh: build first (npm run build): need dist/ and build/Release/xenmig_system.node" >&2; exit 2; }
t0=$(date +%s)
"$HERE/mk-initramfs.sh" "$W" "$W/dom0.cpio.gz"
RES=$W/results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$RES"; ln -sfn "$RES" "$W/results/latest"
rm -f "$W/out.img"; truncate -s 512M "$W/out.img"
esc() { printf '%s' "$1" | sed 's/,/,,/g'; }   # QEMU multiboot module list: a literal comma is ",,"
DOM0_MEM=${DOM0_MEM:-1024M}
XEN_CMD="dom0_mem=$DOM0_MEM,max:$DOM0_MEM dom0_max_vcpus=1 console=com1 com1=115200,8n1 noreboot loglvl=all guest_loglvl=all"
DOM0_CMD="console=hvc0 earlyprintk=xen panic=-1 rig_hvm=${RIG_HVM:-0} rig_disk=${RIG_DISK:-0} rig_only=${RIG_ONLY:-} rig_mode=${RIG_MODE:-test} bench_rounds=${BENCH_ROUNDS:-} bench_remus_rounds=${BENCH_REMUS_ROUNDS:-} bench_profile=${BENCH_PROFILE:-0} bench_only=${BENCH_ONLY:-} bench_trials=${BENCH_TRIALS:-} bench_trials_unbuffered=${BENCH_TRIALS_UNBUFFERED:-} bench_trials_disk=${BENCH_TRIALS_DISK:-}"
echo "-cpu ${CPU:-qemu64,+svm,+npt} -smp ${SMP:-1} -m ${MEM:-3072}" > "$RES/qemu-args.txt"
set +e
timeout "${TIMEOUT:-2700}" nice -n "${NICE:-10}" qemu-system-x86_64 -accel tcg,thread=multi \
  -cpu "${CPU:-qemu64,+svm,+npt}" -machine pc -m "${MEM:-3072}" -smp "${SMP:-1}" \
  -nographic -monitor "unix:$RES/monitor.sock,server=on,wait=off" -serial stdio -no-reboot -nic none \
  -kernel "$W/xen.elf" -append "$XEN_CMD" -initrd "$(esc "$W/vmlinuz") $(esc "$DOM0_CMD"),$(esc "$W/dom0.cpio.gz")" \
  -drive "file=$W/out.img,format=raw,if=virtio" > "$RES/serial.log" 2>&1
rc=$?
set -e
echo "run.sh: qemu rc=$rc wall=$(( $(date +%s) - t0 ))s" | tee -a "$RES/serial.log"
tar xf "$W/out.img" -C "$RES" 2>/dev/null || echo "run.sh: no results on the disk" >&2
if [ ! -s "$RES/results.jsonl" ]; then  # e.g. QEMU timed out before the copy-out: use the serial copy
  grep -a '^RIG JSON ' "$RES/serial.log" | tr -d '\r' | sed 's/^RIG JSON //' > "$RES/results.jsonl" || true
  grep -a '^RIG FACTS ' "$RES/serial.log" | tr -d '\r' | tail -1 | sed 's/^RIG FACTS //' > "$RES/facts.json" || true
fi
echo "$(( $(date +%s) - t0 ))" > "$RES/wall-seconds"
grep -a '^RIG ' "$RES/serial.log" | tr -d '\r' || true
if [ "${RIG_MODE:-test}" = bench ]; then
  grep -a '^RIG BENCHJSON ' "$RES/serial.log" | tr -d '\r' | sed 's/^RIG BENCHJSON //' > "$RES/bench.serial.jsonl" || true
  [ -s "$RES/bench.jsonl" ] || cp "$RES/bench.serial.jsonl" "$RES/bench.jsonl"
  node "$HERE/bench-report.mjs" "$RES" "$HERE/BENCH.md" || true
else
  node "$HERE/report.mjs" "$RES" "$HERE/RESULTS.md" || true
fi
grep -q 'RIG SCENARIO_END' "$RES/serial.log" || { echo "run.sh: the scenario did not finish (see $RES/serial.log)" >&2; exit 1; }
