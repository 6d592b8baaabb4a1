/* SPDX-License-Identifier: GPL-3.0-or-later */
/* Copyright: Contributors to the yogurt.phone collection */
/* The wire between two veth pairs, for kernels without netkit (tcx: >= 6.6;
 * older kernels attach wire_in as a tc clsact filter). wire_in attaches to each
 * host-side veth (tcx or tc ingress), guard_xdp to each container-side veth,
 * inside its yogurt, as a native XDP bpf_link (Linux >= 5.9). */
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
	skb->mark = 0;				/* as a crossing into another netns would */
	return bpf_redirect_peer(w->target, 0);	/* TC_ACT_REDIRECT: into the other yogurt */
}

/* Native XDP on the container-side veth: drop everything, before any packet tap.
 *
 * Only frames that the host-side device transmits take veth's rx path
 * (veth_xmit -> veth_forward_skb -> NAPI -> veth_xdp_rcv), where native XDP
 * runs: the host's own stack, AF_PACKET with or without PACKET_QDISC_BYPASS,
 * XDP_REDIRECT into the host side. The wire's packets never do: wire_in's
 * bpf_redirect_peer re-enters __netif_receive_skb_core on this device
 * directly, so they pass no XDP (generic XDP would run there: do not use it).
 *
 * veth_xmit takes the NAPI path (so XDP runs) only when the skb is eligible
 * for GRO: the host side must have no TSO. While XDP is attached here, veth
 * strips NETIF_F_GSO_SOFTWARE from the host side's hw_features (and
 * veth_fix_features from its features), so `ethtool -K tso on` cannot turn it
 * back on; veth_set_channels refuses more host-side tx queues than this
 * device has rx queues (a queue without an rx ring would skip NAPI).
 * xdp.frags: the host side's MTU may exceed one page. */
SEC("xdp.frags")
int guard_xdp(struct xdp_md *ctx)
{
	count(C_REFUSED, 1);
	return XDP_DROP;
}
