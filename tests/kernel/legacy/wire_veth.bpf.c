/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Copyright: Contributors to the yogurt.phone collection */
/* The wire between two veth pairs, for kernels without netkit (tcx: >= 6.6).
 * wire_in and wire_out attach to each host-side veth, guard_in to each
 * container-side veth (inside its yogurt). */
#include <linux/pkt_cls.h>
#include <linux/if_packet.h>
#include "wire.h"

/* The yogurt sends: its frame arrives on the host-side veth. */
SEC("tcx/ingress")
int wire_in(struct __sk_buff *skb)
{
	struct wire *w = forward(skb);

	if (!w)
		return TC_ACT_SHOT;		/* not one of this phone's ends */
	bpf_skb_change_type(skb, PACKET_HOST);	/* addressed to the far yogurt's MAC; < 6.15 drops it otherwise */
	skb->priority = 0;			/* as a veth crossing would */
	skb->mark = WIRE_MARK;			/* for guard_in; see there */
	return bpf_redirect_peer(w->target, 0);	/* TC_ACT_REDIRECT: into the other yogurt */
}

/* The host transmits on a host-side veth: nothing of the wire passes here
 * (redirect_peer skips it), so all of it is the host's own traffic. */
SEC("tcx/egress")
int wire_out(struct __sk_buff *skb)
{
	count(C_REFUSED, 1);
	return TC_ACT_SHOT;
}

/* Ingress of the container-side veth: admit only what wire_in delivered.
 * Root can skip wire_out with AF_PACKET + PACKET_QDISC_BYPASS. Such a frame
 * crosses the veth through veth_xmit -> __dev_forward_skb, whose
 * skb_scrub_packet(xnet=true) zeroes skb->mark (the yogurt is another netns),
 * so a mark set with SO_MARK never arrives. bpf_redirect_peer scrubs with
 * xnet=false and keeps the mark, and this hook runs after it (another_round
 * in __netif_receive_skb_core). skb->cb is not reset by veth_xmit, so it
 * cannot prove anything here. */
SEC("tcx/ingress")
int guard_in(struct __sk_buff *skb)
{
	if (skb->mark == WIRE_MARK) {
		skb->mark = 0;
		return TC_ACT_OK;		/* came through wire_in: deliver */
	}
	count(C_REFUSED_GUARD, 1);
	return TC_ACT_SHOT;			/* crossed the veth from the host */
}
