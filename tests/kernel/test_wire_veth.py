# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The veth wire on the real kernel, through the yogurt.phone.wire and phone_info modules.

Each test builds its own phone inside the sandbox: two yogurt namespaces and two veth pairs
whose host sides sit in the sandbox (standing in for the host namespace). Packets are only
ever sent between those namespaces.
"""

import subprocess
import time

import pytest

from yogurt_test.frames import WIRE_MARK, ipv4_udp
from yogurt_test.netns import popen, run
from yogurt_test.phones import PIN_ROOT, VethPhone, pins_of
from yogurt_test.traffic import handed, inject, listening, send_udp

PORT = 5555


def received_in_yogurt(phone, i, send, port=PORT):
    """Run send() while a UDP listener in yogurt i counts what reaches it."""
    with listening(phone.yogurts[i], "udp", "0.0.0.0", port) as lst:
        send()
        return lst.stop(settle=0.2)  # let the stack finish with the last datagram


@pytest.fixture
def phone(sandbox, prefix, objects):
    return VethPhone(sandbox, prefix, objects["base"])


def test_traffic_flows_only_through_the_wire(phone):
    assert phone.ping(0) == 0 and phone.ping(1) == 0  # no wire, no path

    res = phone.wire(check=True)
    assert res.changed and any("attach link_end0_in" in a for a in res["actions"]), res
    assert pins_of(phone.name) == []  # check mode touched nothing

    res = phone.wire()
    assert res.changed
    assert len(res["links"]) == 4 and not any(link["defunct"] for link in res["links"])
    assert phone.ping(0) == 3 and phone.ping(1) == 3

    again = phone.wire()
    assert not again.changed and again["actions"] == [], again
    assert not phone.wire(check=True).changed

    before = phone.info()["counters"]
    assert phone.ping(0, count=5) == 5
    after = phone.info()["counters"]
    for direction in ("0to1", "1to0"):
        moved = after[f"forwarded_packets_{direction}"] - before[f"forwarded_packets_{direction}"]
        assert 5 <= moved <= 7, (direction, before, after)  # + a neighbour probe, at most
        assert after[f"forwarded_bytes_{direction}"] - before[f"forwarded_bytes_{direction}"] >= 5 * 98
    assert after["unknown_ifindex"] == 0


def test_program_swap_loses_no_packet(phone, objects):
    phone.wire()
    links_before = {link["pin"]: link["id"] for link in phone.info()["links"]}
    pinger = popen(phone.yogurts[0], ["ping", "-c", "500", "-i", "0.01", "-W", "1", phone.addr[1]],
                   stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        res = phone.wire(obj=objects["variant"])
        assert pinger.poll() is None, "the swap finished after the ping loop: it proves nothing"
    finally:
        out = pinger.communicate(timeout=30)[0]
    assert res.changed
    updates = [a for a in res["actions"] if a.startswith("update ")]
    assert len(updates) == 2 and all("wire_in" in a for a in updates), res["actions"]
    assert "500 packets transmitted, 500 received" in out, out
    info = phone.info()
    assert {link["pin"]: link["id"] for link in info["links"]} == links_before  # same links, new program
    assert not phone.wire(obj=objects["variant"]).changed


def test_recreated_device_is_reattached(phone):
    phone.wire()
    phone.sandbox.ip("link", "del", phone.host[1])
    phone.make_pair(1)
    assert phone.ping(0) == 0

    res = phone.wire()
    assert res.changed
    assert any(a.startswith("detach stale link_end1_in") for a in res["actions"]), "\n".join(res["actions"])
    assert not any("link_end0" in a for a in res["actions"]), "\n".join(res["actions"])
    for ns in phone.yogurts:  # the failed pings left the yogurts' neighbour entries unresolved
        subprocess.run(["ip", "-n", ns, "neigh", "flush", "all"], check=True)
    assert phone.ping(0) == 3 and phone.ping(1) == 3
    assert not phone.wire().changed


def test_absent_leaves_nothing(phone):
    phone.wire()
    assert phone.ping(0) == 3
    res = phone.sandbox.module("wire", {"phone": phone.name, "state": "absent"})
    assert not res.failed and res.changed, res
    assert not (PIN_ROOT / phone.name).exists()
    shown = phone.sandbox.command(["bpftool", "net", "show"]).stdout
    assert "tcx" not in shown, shown
    for ns in phone.yogurts:
        shown = run(ns, ["bpftool", "net", "show"]).stdout
        assert "tcx" not in shown and "driver id" not in shown, shown  # no tcx, no XDP guard left
    assert phone.ping(0) == 0
    again = phone.sandbox.module("wire", {"phone": phone.name, "state": "absent"})
    assert not again.failed and not again.changed, again


def test_host_cannot_inject_into_a_yogurt(phone):
    phone.wire()
    sb = phone.sandbox
    mac = phone.cont_mac(1)

    # Positive control: the listener hears datagrams that come through the wire.
    got = received_in_yogurt(phone, 1, lambda: send_udp(phone.yogurts[0], phone.addr[1], PORT, 20))
    assert got == 20

    # (a) an address and a route on the host-side device, a static neighbour so the IP
    # packets themselves leave: the XDP guard on the yogurt's device drops them.
    sb.ip("addr", "add", "10.42.0.100/24", "dev", phone.host[1])
    sb.ip("neigh", "replace", phone.addr[1], "lladdr", mac, "dev", phone.host[1], "nud", "permanent")
    before = phone.info()["counters"]
    got = received_in_yogurt(phone, 1, lambda: send_udp(sb.path, phone.addr[1], PORT, 20))
    after = phone.info()["counters"]
    assert got == 0
    assert after["refused"] - before["refused"] >= 20, (before, after)
    sb.ip("addr", "del", "10.42.0.100/24", "dev", phone.host[1])

    # (b) raw frames with PACKET_QDISC_BYPASS skip tc egress; the XDP guard stops them too.
    assert_bypass_injection_refused(phone)


def assert_bypass_injection_refused(phone):
    """AF_PACKET + PACKET_QDISC_BYPASS on the host side, with and without the wire's marker as SO_MARK."""
    mac = phone.cont_mac(1)
    for mark in (0, WIRE_MARK):
        before = phone.info()["counters"]
        sent = []
        l3 = ipv4_udp(phone.addr[0], phone.addr[1], PORT, b"injected")
        got = received_in_yogurt(phone, 1, lambda: sent.append(handed(inject(
            phone.sandbox.path, phone.host[1], mac, l3, bypass=True, mark=mark, count=20))))
        after = phone.info()["counters"]
        assert sent == [20], sent
        assert got == 0, f"{got} injected frames reached the yogurt (mark {mark:#x})"
        assert after["refused"] - before["refused"] == 20, (before, after)


def test_tc_clsact_fallback(phone, objects):
    """What kernels < 6.6 get: the same programs as clsact filters (forced with attach: tc)."""
    res = phone.wire(attach="tc")
    assert res.changed and res["attach_mode"] == "tc", res
    assert sorted(link["pin"] for link in res["links"]) == ["link_end0_xdp", "link_end1_xdp"], res["links"]
    assert phone.ping(0) == 3 and phone.ping(1) == 3
    assert not phone.wire(attach="tc").changed
    info = phone.info()
    assert info["attach_mode"] == "tc" and len(info["filters"]) == 2, info  # wire_in on both host sides
    assert_bypass_injection_refused(phone)

    res = phone.wire(obj=objects["variant"], attach="tc")
    updates = [a for a in res["actions"] if a.startswith("update tc ingress")]
    assert res.changed and len(updates) == 2, res["actions"]

    res = phone.sandbox.module("wire", {"phone": phone.name, "state": "absent", "ends": phone.args()["ends"]})
    assert not res.failed and res.changed, res
    assert not (PIN_ROOT / phone.name).exists()
    for i in range(2):
        for direction in ("ingress", "egress"):
            shown = phone.sandbox.command(["tc", "filter", "show", "dev", phone.host[i], direction]).stdout
            assert "bpf" not in shown, shown
        shown = run(phone.yogurts[i], ["tc", "filter", "show", "dev", phone.cont[i], "ingress"]).stdout
        assert "bpf" not in shown, shown
        shown = run(phone.yogurts[i], ["ip", "-d", "link", "show", phone.cont[i]]).stdout
        assert "xdp" not in shown.split("\n")[0] and "prog/xdp" not in shown, shown
    assert phone.ping(0) == 0
