# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which hook a traced drop is put on, from its device, reason name and location symbol.

The netkit cases were seen live on 6.12 (tests/fresh); the veth ones follow the reasons seen
on 6.18 (TC_INGRESS at __netif_receive_skb_core, TC_EGRESS at __dev_queue_xmit)."""

from ansible_collections.yogurt.phone.plugins.module_utils._drop_trace import label, parse_print_fmt
from ansible_collections.yogurt.phone.plugins.module_utils._wire import HOOKS


def _state(backend, cont_up=True):
    ends = [{"host": {"ifname": f"h{i}", "exists": True, "up": True},
             "cont": {"ifname": f"c{i}", "exists": True, "up": cont_up}} for i in (0, 1)]
    hooks = [{"end": i, "hook": h, "program": p, "attach": a, "side": s, "kind": "bpf_link"}
             for h, p, a, s in HOOKS[backend] for i in (0, 1)]
    return {"phone": "p", "backend": backend, "ends": ends, "hooks": hooks}


def test_netkit_drops_are_put_on_the_program_that_ran():
    state = _state("netkit")
    assert label(state, 0, "host", "NOT_SPECIFIED", "netkit_xmit")[:2] == ("peer", "wire_peer")
    assert label(state, 1, "cont", "NOT_SPECIFIED", "netkit_xmit")[:2] == ("primary", "wire_primary")
    assert label(state, 0, "host", "NOT_SPECIFIED", "skb_do_redirect")[:2] == ("wires", "wire_peer")
    down = label(_state("netkit", cont_up=False), 0, "host", "NOT_SPECIFIED", "netkit_xmit")
    assert down[0] is None and "down or missing" in down[2], down


def test_veth_drops_are_put_on_the_hook_of_their_device():
    state = _state("veth")
    assert label(state, 1, "host", "TC_INGRESS", "__netif_receive_skb_core")[:2] == ("in", "wire_in")
    assert label(state, 0, "cont", "XDP", "veth_xdp_rcv_skb")[:2] == ("xdp", "guard_xdp")
    assert label(state, 0, "host", "TC_EGRESS", "__dev_queue_xmit")[0] is None
    assert label(state, 0, "cont", "NO_SOCKET", "icmp_rcv") == (None, None, None)


def test_reason_numbers_are_read_from_the_print_fmt():
    text = 'name: kfree_skb\nprint fmt: "reason: %s", __print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, { 0x49, "TC_INGRESS" })'
    assert parse_print_fmt(text) == {2: "NOT_SPECIFIED", 73: "TC_INGRESS"}
    assert parse_print_fmt("no format") == {}
