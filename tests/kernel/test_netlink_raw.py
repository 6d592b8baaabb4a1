# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The raw rtnetlink reader (_netlink.read_namespace, read_link_raw, routes_by_device) says
what pyroute2 and iproute2 say about the same namespace: devices, pairs, addresses, IPv6
address generation, XDP, routes. It replaced pyroute2 on the read path because it is ~50x
faster per namespace, so it must not be any less right."""

import json
import subprocess

from ansible_collections.yogurt.phone.plugins.module_utils import _netlink as netlink
from yogurt_test.netns import run as netns_run


def test_raw_reader_agrees_with_pyroute2_and_iproute2(sandbox, prefix):
    a, b = f"{prefix}-ra", f"{prefix}-rb"
    for ns in (a, b):
        subprocess.run(["ip", "netns", "add", ns], check=True)
    subprocess.run(["ip", "-n", a, "link", "add", "ra0", "mtu", "1400", "type", "veth", "peer", "name", "rb0",
                    "netns", b], check=True)
    subprocess.run(["ip", "-n", a, "link", "add", "dummy7", "type", "veth", "peer", "name", "dummy7p"], check=True)
    for argv in (["addr", "add", "10.61.0.1/24", "dev", "ra0"], ["addr", "add", "fd61::1/64", "dev", "ra0", "nodad"],
                 ["addr", "add", "10.61.1.1", "peer", "10.61.1.2/32", "dev", "dummy7"],
                 ["link", "set", "ra0", "addrgenmode", "none"], ["link", "set", "ra0", "up"],
                 ["link", "set", "dummy7", "up"], ["link", "set", "lo", "up"],
                 ["route", "add", "192.0.2.0/24", "dev", "ra0", "table", "1000"],
                 ["route", "add", "2001:db8::/32", "dev", "ra0"]):
        subprocess.run(["ip", "-n", a] + argv, check=True)
    # XDP as read raw is proven by the wire's tests: its guard's link check reads it, and a wrong
    # answer would re-attach the guard on every run (changed on a no-op)
    raw = netlink.read_namespace(a)
    with netlink.ipr_in(a) as ipr:
        ref = {}
        for msg in ipr.get_links():
            dev = netlink.decode_link(msg)
            ref[dev["ifname"]] = dev
        for name, dev in ref.items():
            dev["addresses"] = netlink.read_addresses(ipr, dev["index"])
        ref_routes = {}
        for msg in ipr.route("dump"):
            oif = msg.get_attr("RTA_OIF")
            if oif is None or msg["proto"] == netlink.RTPROT_KERNEL:
                continue
            ref_routes.setdefault(oif, []).append(
                f"{msg.get_attr('RTA_DST') or ('0.0.0.0' if msg['family'] == 2 else '::')}/{msg['dst_len']} "
                f"(table {msg.get_attr('RTA_TABLE') or msg['table']})")
    assert {k: {f: v for f, v in d.items() if f != "xdp"} for k, d in raw.items()} == ref
    assert raw["ra0"]["addresses"] == ["10.61.0.1/24", "fd61::1/64"] and raw["ra0"]["mtu"] == 1400
    assert raw["ra0"]["addr_gen_mode"] == "none" and raw["ra0"]["kind"] == "veth"
    assert raw["dummy7"]["addresses"] == ["10.61.1.1/32"]  # IFA_LOCAL, not the peer
    got_routes = {oif: [r["text"] for r in rs] for oif, rs in netlink.routes_by_device(a).items()}
    assert got_routes == ref_routes and "192.0.2.0/24 (table 1000)" in got_routes[raw["ra0"]["index"]], got_routes

    peer = netlink.read_namespace(b)["rb0"]
    assert peer["link_index"] == raw["ra0"]["index"] and peer["xdp"] == {"mode": 0, "drv_prog_id": 0, "skb_prog_id": 0}
    one = netlink.read_link_raw(peer["index"], b)
    assert {k: v for k, v in one.items() if k != "addresses"} == {k: v for k, v in peer.items() if k != "addresses"}
    assert netlink.read_link_raw(99999, b) is None and netlink.read_device_raw("nope0", b) is None
    assert netlink.read_device_raw("ra0", a) == raw["ra0"]
    shown = json.loads(netns_run(b, ["ip", "-j", "-d", "link", "show", "rb0"]).stdout)[0]
    assert shown["address"] == peer["mac"] and shown["mtu"] == peer["mtu"]
