/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Copyright: Contributors to the yogurt.phone collection */
/* What both wire programs share: the two maps (pinned per phone under
 * /sys/fs/bpf/yogurt/<phone>/, filled and read by plugins/module_utils/wire.py)
 * and the counter slots. Only struct __sk_buff is touched, so no kernel
 * headers are needed: <linux/bpf.h> (uapi) and libbpf's bpf_helpers.h suffice. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* wires[host-side ifindex of the sending end] = where its packets go. */
struct wire {
	__u32 target;		/* host-side ifindex of the other end */
	__u32 direction;	/* 0: end 0 -> end 1, 1: end 1 -> end 0 */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, struct wire);
} wires SEC(".maps");

/* Counter slots; keep in step with COUNTERS in plugins/module_utils/wire.py. */
enum {
	C_FWD_PKTS = 0,		/* + 2 * direction */
	C_FWD_BYTES = 1,	/* + 2 * direction */
	C_REFUSED = 4,		/* sent towards a yogurt without the wire's marker */
	C_UNKNOWN = 5,		/* sent by a device missing from wires */
	C_REFUSED_GUARD = 6,	/* veth only: stopped by the yogurt-side guard */
	C_SLOTS = 8,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, C_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* The marker: proof that a packet came through the wire program. */
#define WIRE_MARK 0x79677274	/* "ygrt" */

static __always_inline void count(__u32 slot, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &slot);

	if (c)
		*c += n;
}

static __always_inline struct wire *forward(struct __sk_buff *skb)
{
	__u32 key = skb->ifindex;
	struct wire *w = bpf_map_lookup_elem(&wires, &key);

	if (!w) {
		count(C_UNKNOWN, 1);
		return 0;
	}
	count(C_FWD_PKTS + (w->direction ? 2 : 0), 1);
	count(C_FWD_BYTES + (w->direction ? 2 : 0), skb->len);
	return w;
}

char _license[] SEC("license") = "GPL";
