#!/bin/sh
# The wire's own cost per packet, without the noise of a datapath run: wire_in (bpf/wire_veth.bpf.c,
# compiled as the collection compiles it) and an empty tc program, each run 2,000,000 times by
# BPF_PROG_TEST_RUN (bpftool prog run) on one 64-byte frame, 5 rounds interleaved; prints ns per
# run and wire_in minus the empty program (what the wire adds to a packet's path; the redirect
# itself is not executed by a test run). Needs root, clang, bpftool. Runs in private mount and
# network namespaces: nothing outside them is touched, no packet is sent.
#   sudo bench/prog_cost.sh [ROUNDS]
set -eu
if [ "${YOGURT_PROG_COST_INNER:-}" != 1 ]; then
  export YOGURT_PROG_COST_INNER=1
  exec unshare --net --mount --propagation private -- "$0" "$@"
fi
rounds=${1:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
ma=$(clang -print-multiarch 2>/dev/null || echo "$(uname -m)-linux-gnu")
cflags="-O2 -g -target bpf -Wall -I/usr/include/$ma"
cat > "$work/empty.bpf.c" <<'C'
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
SEC("tcx/ingress") int wire_in(struct __sk_buff *skb) { return TC_ACT_OK; }
char _license[] SEC("license") = "GPL";
C
# shellcheck disable=SC2086 # $cflags is a list of flags, one word each
clang $cflags -c "$here/bpf/wire_veth.bpf.c" -o "$work/wire.o"
# shellcheck disable=SC2086
clang $cflags -c "$work/empty.bpf.c" -o "$work/empty.o"
mount -t bpf bpf /sys/fs/bpf
ip link add pca type veth peer name pcb
ip link set pca up; ip link set pcb up
a=$(ip -o link show pca | cut -d: -f1); b=$(ip -o link show pcb | cut -d: -f1)
le32() { printf '%08x' "$1" | sed 's/\(..\)\(..\)\(..\)\(..\)/\4 \3 \2 \1/'; }
# __sk_buff with only ifindex (offset 40) set; a UDP frame to the far yogurt's MAC.
python3 -c "
import struct, sys
open(sys.argv[1] + '/ctx', 'wb').write(struct.pack('<11I', *([0] * 10 + [$a])))
frame = bytes.fromhex('020000000002020000000001' '0800' '4500002e00004000401100000a2a00010a2a0002') + bytes(26)
open(sys.argv[1] + '/frame', 'wb').write(frame)" "$work"
for v in wire empty; do
  mkdir -p "/sys/fs/bpf/$v/maps"
  bpftool prog loadall "$work/$v.o" "/sys/fs/bpf/$v" type tc pinmaps "/sys/fs/bpf/$v/maps"
done
# shellcheck disable=SC2046 # le32 prints four bytes, one word each
bpftool map update pinned /sys/fs/bpf/wire/maps/wires key $(le32 "$a") value $(le32 "$b") 00 00 00 00
run() { bpftool prog run pinned "/sys/fs/bpf/$1/wire_in" data_in "$work/frame" ctx_in "$work/ctx" repeat 2000000 \
        | sed -n 's/.*duration (average): \([0-9]*\)ns.*/\1/p'; }
w_all=; e_all=
for r in $(seq "$rounds"); do
  w=$(run wire); e=$(run empty)
  echo "round $r: wire_in ${w} ns, empty program ${e} ns, wire_in adds $((w - e)) ns"
  w_all="$w_all $w"; e_all="$e_all $e"
done
# shellcheck disable=SC2086 # $1 is a list of numbers, one word each
med() { printf '%s\n' $1 | sort -n | awk '{v[NR]=$1} END {print v[int((NR + 1) / 2)]}'; }
echo "median: wire_in $(med "$w_all") ns, empty $(med "$e_all") ns per run (load: $(cut -d' ' -f1 /proc/loadavg))"
