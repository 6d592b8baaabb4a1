/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Copyright: Contributors to the yogurt.phone collection */
/* The wire between two netkit pairs (Linux >= 6.7). Both programs attach
 * through the host-side (primary) device of each pair. */
#include "wire.h"

#define NETKIT_PASS	0
#define NETKIT_DROP	2
#define NETKIT_REDIRECT	7

/* The yogurt sends: skb->ifindex is the host-side device of its pair. */
SEC("netkit/peer")
int wire_peer(struct __sk_buff *skb)
{
	struct wire *w = forward(skb);

	if (!w)
		return NETKIT_DROP;		/* not one of this phone's ends */
	/* cb[0] is ours: skb->mark is scrubbed by netkit and settable by user space. */
	skb->cb[0] = WIRE_MARK;
	bpf_redirect(w->target, 0);
	return NETKIT_REDIRECT;			/* xmit on the other host-side device */
}

/* Something transmits towards a yogurt: only the wire may. */
SEC("netkit/primary")
int wire_primary(struct __sk_buff *skb)
{
	if (skb->cb[0] == WIRE_MARK) {
		skb->cb[0] = 0;
		return NETKIT_PASS;		/* came from wire_peer: deliver */
	}
	count(C_REFUSED, 1);
	return NETKIT_DROP;			/* the host itself, even AF_PACKET */
}
