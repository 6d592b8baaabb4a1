# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The bcc side of the drop tracer: a program that runs under the system /usr/bin/python3.

_drop_trace.py runs this file's source as `/usr/bin/python3 -c SOURCE CONFIG` with the module's
run_command (python3-bpfcc is importable only there, not from a venv). It compiles a BPF program on the raw tracepoint
skb:kfree_skb that includes NO kernel header (bcc 0.26 cannot compile <linux/netdevice.h> of
6.12; 7.x headers break it further): it follows skb->dev, dev->ifindex, dev->nd_net and
net->ns.inum with bpf_probe_read_kernel at offsets read from BTF by the caller (-D flags), and
counts, in the kernel, only the drops on the watched (netns inode, ifindex) pairs, by
(device, reason, location). It writes READY to its ready pipe once attached, counts until its
window pipe closes (the caller ended the window, or died) or `max_seconds` pass (its own bound:
it never outlives a window for long), then prints one JSON line and exits: the counts, each
location named from /proc/kallsyms (bcc's ksym), and `bounded` (the seconds) if the bound
ended it.

CONFIG is JSON: {"cflags": ["-DSKB_DEV_OFF=16", ...], "watch": [[netns_inode, ifindex], ...],
"ready_fd": N, "window_fd": N, "max_seconds": S} (the fds are passed to this process).
Nothing here is imported by a module at run time: only its source text is read.

PRIVATE to the yogurt.phone collection (like community.crypto's module_utils): no public API,
names may change in any release.
"""

from __future__ import annotations

import json
import os
import select
import sys

PROGRAM = r"""
struct drop_key {
    u32 ifindex;
    u32 netns;
    u32 reason;
    u32 pad;
    u64 location;
};
BPF_HASH(watch, u64, u8, 1024);
BPF_HASH(drops, struct drop_key, u64, 4096);

RAW_TRACEPOINT_PROBE(kfree_skb)
{
    /* TP_PROTO(struct sk_buff *skb, void *location, enum skb_drop_reason reason, ...) */
    char *skb = (char *)ctx->args[0];
    char *dev = 0, *net = 0;
    int ifindex = 0;
    u32 inum = 0;
    if (bpf_probe_read_kernel(&dev, sizeof(dev), skb + SKB_DEV_OFF) || !dev)
        return 0;
    if (bpf_probe_read_kernel(&ifindex, sizeof(ifindex), dev + DEV_IFINDEX_OFF))
        return 0;
    if (bpf_probe_read_kernel(&net, sizeof(net), dev + DEV_NET_OFF) || !net)
        return 0;
    if (bpf_probe_read_kernel(&inum, sizeof(inum), net + NET_INUM_OFF))
        return 0;
    u64 wkey = ((u64)inum << 32) | (u32)ifindex;
    if (!watch.lookup(&wkey))
        return 0;
    struct drop_key key = {};
    key.ifindex = ifindex;
    key.netns = inum;
    key.reason = (u32)ctx->args[2];
    key.location = ctx->args[1];
    u64 zero = 0, *count = drops.lookup_or_try_init(&key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    return 0;
}
"""


def main(argv):
    import ctypes  # pylint: disable=import-outside-toplevel

    from bcc import BPF  # pylint: disable=import-outside-toplevel,import-error

    config = json.loads(argv[1])
    bpf = BPF(text=PROGRAM, cflags=config["cflags"])  # RAW_TRACEPOINT_PROBE attaches itself
    watch = bpf["watch"]
    for inum, ifindex in config["watch"]:
        watch[ctypes.c_uint64((inum << 32) | ifindex)] = ctypes.c_uint8(1)
    os.write(config["ready_fd"], b"READY\n")
    os.close(config["ready_fd"])
    ended, _w, _x = select.select([config["window_fd"]], [], [], config["max_seconds"])  # readable at EOF
    out = []
    for key, value in bpf["drops"].items():
        symbol = bpf.ksym(key.location, show_module=False, show_offset=False)
        out.append({"ifindex": key.ifindex, "netns": key.netns, "reason": key.reason, "location": key.location,
                    "symbol": symbol.decode(errors="replace") if isinstance(symbol, bytes) else str(symbol),
                    "count": value.value})
    sys.stdout.write(json.dumps({"drops": out, "bounded": None if ended else config["max_seconds"]}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
