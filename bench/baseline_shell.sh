#!/usr/bin/env bash
# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# The provisioning baseline: the same phones the phones module builds (veth backend),
# made by a plain script of `ip` and `bpftool` commands, one command per step.
#
#   baseline_shell.sh converge PREFIX COUNT OBJECT   build phones 0..COUNT-1; a phone whose
#                                                    namespaces, devices, addresses and wire
#                                                    are already there is left alone
#   baseline_shell.sh teardown PREFIX COUNT          remove them
#
# Run it with the host-stand-in namespace as its network namespace (nsenter --net=...).
# Names and addresses follow bench/common.py phone_spec(): phone i has namespaces
# PREFIX-i-a/b, host devices PREFIXhia/b, yogurt devices PREFIXcia/b and addresses
# 10.<100 + i/256>.<i%256>.1/24 and .2/24. Pins: /sys/fs/bpf/yogurt-shell/PREFIX-i/.
# It handles "missing" and "complete" only, not every half-made state the module heals.
set -euo pipefail
action=$1 prefix=$2 count=$3 object=${4:-}
pins=/sys/fs/bpf/yogurt-shell

le32() { printf '%d %d %d %d' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24 & 255)); }
ifindex() { local line; line=$(ip -o link show dev "$1"); echo "${line%%:*}"; }

complete() {  # is phone $1 fully there? (no `| grep -q`: with pipefail, SIGPIPE fails it)
    local i=$1 x=$2 y=$3 out
    [ -e "/run/netns/$prefix-$i-a" ] && [ -e "/run/netns/$prefix-$i-b" ] || return 1
    out=$(ip -n "$prefix-$i-a" -br addr show dev "${prefix}c${i}a" 2>/dev/null) || return 1
    [[ $out == *" 10.$x.$y.1/24"* ]] || return 1
    out=$(ip -n "$prefix-$i-b" -br addr show dev "${prefix}c${i}b" 2>/dev/null) || return 1
    [[ $out == *" 10.$x.$y.2/24"* ]] || return 1
    out=$(bpftool net show dev "${prefix}h${i}a" 2>/dev/null) || return 1
    [[ $out == *wire_in* ]] || return 1
    out=$(bpftool net show dev "${prefix}h${i}b" 2>/dev/null) || return 1
    [[ $out == *wire_in* ]] || return 1
}

build() {
    local i=$1 x=$2 y=$3 dir=$pins/$prefix-$1 side host cont ns
    for side in a b; do
        ns=$prefix-$i-$side host=${prefix}h$i$side cont=${prefix}c$i$side
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        ip link add "$host" type veth peer name "$cont" netns "$ns"
        ip link set dev "$host" addrgenmode none
        if [ $side = a ]; then ip -n "$ns" addr add "10.$x.$y.1/24" dev "$cont"
        else ip -n "$ns" addr add "10.$x.$y.2/24" dev "$cont"; fi
        ip -n "$ns" link set "$cont" up
        ip link set "$host" up
    done
    mkdir -p "$dir"
    bpftool prog loadall "$object" "$dir" pinmaps "$dir"
    local ia ib
    ia=$(ifindex "${prefix}h${i}a") ib=$(ifindex "${prefix}h${i}b")
    # shellcheck disable=SC2046  # the bytes are words on purpose
    bpftool map update pinned "$dir/wires" key $(le32 "$ia") value $(le32 "$ib") 0 0 0 0
    # shellcheck disable=SC2046
    bpftool map update pinned "$dir/wires" key $(le32 "$ib") value $(le32 "$ia") 1 0 0 0
    for side in a b; do
        # as the module: the native XDP guard on the yogurt side (inside its namespace), wire_in
        # at tcx ingress of the host side (the object has no guard_in or wire_out since 1.0.0)
        nsenter --net="/run/netns/$prefix-$i-$side" bpftool net attach xdpdrv pinned "$dir/guard_xdp" dev "${prefix}c$i$side"
        bpftool net attach tcx_ingress pinned "$dir/wire_in" dev "${prefix}h$i$side"
    done
}

case $action in
converge)
    for ((i = 0; i < count; i++)); do
        x=$((100 + i / 256)) y=$((i % 256))
        complete "$i" "$x" "$y" || build "$i" "$x" "$y"
    done ;;
teardown)
    for ((i = 0; i < count; i++)); do
        # the yogurt ends go with their namespaces, the host ends with their peers, the
        # tcx attachments with the devices; the pins hold the programs and maps
        ip netns del "$prefix-$i-a" 2>/dev/null || true
        ip netns del "$prefix-$i-b" 2>/dev/null || true
        rm -rf "${pins:?}/$prefix-$i"
    done
    rmdir "$pins" 2>/dev/null || true ;;
*)
    echo "usage: $0 converge|teardown PREFIX COUNT [OBJECT]" >&2; exit 2 ;;
esac
