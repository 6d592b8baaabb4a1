# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Isolation of the veth backend, attacked from the host namespace and from a yogurt.

Every attack is made as root in the sandbox (the stand-in for the host namespace) or inside
a yogurt, and sends packets only to addresses inside namespaces the test made. Each refusal
is counted: the phone's counters (yogurt.phone.phone_info) must move by at least the number
of packets that were handed to a device. That number comes from the sender's own kernel
counters (nstat) or from the injector, never from the counters under test.
"""

import json
import time

from yogurt_test.frames import WIRE_MARK, ipv4_udp
from yogurt_test.netns import mac_of, nstat, ping, run
from yogurt_test.phones import converge, counters, delta, ends_of, report, veth_phone
from yogurt_test.traffic import connect, inject, listening, send_udp

REFUSALS = ("refused", "unknown_ifindex")


# ---------------------------------------------------------------- tests

def test_host_cannot_reach_a_yogurt_by_ping_tcp_or_a_route(sandbox, veth_object, request):
    spec = veth_phone(sandbox.prefix, 0)
    converge(sandbox, [spec], veth_object)
    for _ns, host, _cont, _ip in ends_of(spec):
        addrs = json.loads(sandbox.ip("-j", "addr", "show", "dev", host).stdout)
        assert addrs[0]["addr_info"] == [], addrs  # no IPv4, no IPv6 (not even link-local)
        for family in ("-4", "-6"):  # not even IPv6's multicast route in the local table
            assert json.loads(sandbox.ip("-j", family, "route", "show", "table", "all", "dev", host).stdout) == []
    (y1, _h1, _c1, ip1), (y2, h2, c2, ip2) = ends_of(spec)
    port = 5201
    with listening(y2, "tcp", ip2, port, "yogurt-2") as server:
        assert connect(y1, ip2, port) == "reply yogurt-2"  # positive control, through the wire
        assert ping(y1, ip2)[0] == 3

        # (a) ping and (b) TCP with the host's own routing: there is no route to a yogurt.
        start = counters(sandbox, spec["name"])[spec["name"]]
        sent0 = nstat(sandbox.name, "IcmpOutEchos", "TcpActiveOpens")
        replies, out = ping(sandbox.name, ip2)
        assert replies == 0 and "Network is unreachable" in out, out
        assert connect(sandbox.name, ip2, port) == "error 101"  # ENETUNREACH
        sent1 = nstat(sandbox.name, "IcmpOutEchos", "TcpActiveOpens")
        assert sent1 == sent0, "nothing may even leave the host's stack"
        after_ab = counters(sandbox, spec["name"])[spec["name"]]
        assert delta(start, after_ab, "refused") >= 0
        report(request, f"(a,b) no route: ping/TCP handed 0 packets to a device, refused +"
                        f"{delta(start, after_ab, 'refused')}")

        # (c) root adds a route through the host-side device. First without a neighbour: only
        # ARP requests reach the device, and it refuses them.
        sandbox.ip("route", "add", ip2.rsplit(".", 1)[0] + ".0/24", "dev", h2)
        replies, out = ping(sandbox.name, ip2)
        assert replies == 0, out
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            neigh = json.loads(sandbox.ip("-s", "-j", "neigh", "show", "dev", h2).stdout)
            if neigh and "FAILED" in neigh[0]["state"]:
                break
            time.sleep(0.2)
        # The kernel starts an unresolved entry's probe count at ucast_solicit; each ARP request adds one.
        preset = int(run(sandbox.name, ["sysctl", "-n", f"net.ipv4.neigh.{h2}.ucast_solicit"], check=True).stdout)
        arp_probes = neigh[0]["probes"] - preset
        after_arp = counters(sandbox, spec["name"])[spec["name"]]
        assert arp_probes >= 1 and delta(after_ab, after_arp, "refused") >= arp_probes, (neigh, after_arp)
        report(request, f"(c) route, no neighbour: {arp_probes} ARP requests handed, refused +"
                        f"{delta(after_ab, after_arp, 'refused')}")

        # Then with the yogurt's MAC as a permanent neighbour: the IP packets themselves are
        # handed to the device (every echo request and every SYN, retransmissions included).
        sandbox.ip("neigh", "replace", ip2, "lladdr", mac_of(y2, c2), "dev", h2, "nud", "permanent")
        names = ("IcmpOutEchos", "TcpActiveOpens", "TcpExtTCPSynRetrans")
        sent0 = nstat(sandbox.name, *names)
        replies, out = ping(sandbox.name, ip2, count=5)
        assert replies == 0, out
        assert connect(sandbox.name, ip2, port, timeout=2.5) == "error timeout"
        sent1 = nstat(sandbox.name, *names)
        after_c = counters(sandbox, spec["name"])[spec["name"]]
        echoes = sent1["IcmpOutEchos"] - sent0["IcmpOutEchos"]
        syns = sum(sent1[n] - sent0[n] for n in ("TcpActiveOpens", "TcpExtTCPSynRetrans"))
        assert echoes >= 5 and syns >= 2, (sent0, sent1)
        assert delta(after_arp, after_c, "refused") >= echoes + syns, (after_arp, after_c, echoes, syns)
        report(request, f"(c) route + static neighbour: {echoes} echo requests + {syns} SYNs handed, refused +"
                        f"{delta(after_arp, after_c, 'refused')}")
        assert server.stop() == 1, "only the positive control may have connected"

    # (e) IPv6 link-local multicast out of the host side, with a global source address on the
    # host: no reply, and whatever reaches the device is refused.
    sandbox.ip("addr", "add", "fd42:99::1/128", "dev", "lo")
    sent0 = nstat(sandbox.name, "Icmp6OutEchos")
    replies, out = ping(sandbox.name, f"ff02::1%{h2}", extra=("-6",))
    sent1 = nstat(sandbox.name, "Icmp6OutEchos")
    after_e = counters(sandbox, spec["name"])[spec["name"]]
    handed6 = sent1["Icmp6OutEchos"] - sent0["Icmp6OutEchos"]
    assert replies == 0, out
    assert delta(after_c, after_e, "refused") >= handed6, (after_c, after_e, handed6)
    report(request, f"(e) IPv6 multicast ff02::1%{h2}: {handed6} echo requests handed, refused +"
                    f"{delta(after_c, after_e, 'refused')}")
    assert delta(start, after_e, "unknown_ifindex") == 0, (start, after_e)


def test_raw_frames_from_the_host_are_refused_and_counted(sandbox, veth_object, request):
    spec = veth_phone(sandbox.prefix, 0)
    converge(sandbox, [spec], veth_object)
    (y1, _h1, _c1, ip1), (y2, h2, c2, ip2) = ends_of(spec)
    mac, port, frames = mac_of(y2, c2), 5300, 20
    with listening(y2, "udp", ip2, port) as udp:
        send_udp(y1, ip2, port, 10, check=True)  # positive control
        # With or without bypass the frames cross the veth (there is no host-side egress
        # program any more) and the XDP guard on the yogurt's device drops them (refused).
        for bypass, counter in ((False, "refused"), (True, "refused")):
            before = counters(sandbox, spec["name"])[spec["name"]]
            handed = 0
            for mark in (0, WIRE_MARK):  # the wire's marker forged as SO_MARK must not help
                res = inject(sandbox.name, h2, mac, ipv4_udp(ip1, ip2, port, b"injected by the host"), bypass=bypass,
                             mark=mark, count=frames)
                assert res["other"] == 0, res
                handed += res["ok"] + res["enobufs"]
            after = counters(sandbox, spec["name"])[spec["name"]]
            assert handed == 2 * frames and delta(before, after, counter) == handed, (before, after, handed)
            report(request, f"(d) AF_PACKET bypass={bypass}: {handed} frames handed to {h2} (SO_MARK 0 and "
                            f"{WIRE_MARK:#x}), {counter} +{delta(before, after, counter)}")
        time.sleep(0.3)
        received = udp.stop()
    assert received == 10, f"{received - 10} injected frames reached the yogurt (control: 10 through the wire)"


def test_two_phones_with_the_same_addresses_stay_apart(sandbox, veth_object, request):
    same = [f"10.42.7.{i}/24" for i in (1, 2)]
    specs = [veth_phone(sandbox.prefix, i) for i in (0, 1)]
    for spec in specs:
        for end, addr in zip(spec["ends"], same):
            end["addresses"] = [addr]
    converge(sandbox, specs, veth_object)
    (a1, _ah1, _ac1, _aip1), (a2, _ah2, _ac2, ip2) = ends_of(specs[0])
    (b1, _bh1, _bc1, _bip1), (b2, _bh2, _bc2, _bip2) = ends_of(specs[1])
    shared_port, b_only_port = 5401, 5402
    a_name, b_name = specs[0]["name"], specs[1]["name"]
    echoes = 20
    with listening(a2, "tcp", ip2, shared_port, "phone-A"), \
            listening(b2, "tcp", ip2, f"{shared_port},{b_only_port}", "phone-B"):
        for name, src, own, other, reply in ((a_name, a1, a2, b2, "phone-A"), (b_name, b1, b2, a2, "phone-B")):
            before = counters(sandbox)
            in0 = {ns: nstat(ns, "IcmpInEchos")["IcmpInEchos"] for ns in (own, other)}
            replies, out = ping(src, ip2, count=echoes, interval="0.01")
            assert replies == echoes, out
            assert connect(src, ip2, shared_port) == "reply " + reply
            # A port only phone B listens on: from phone A it is refused by A's own yogurt.
            assert connect(src, ip2, b_only_port) == ("reply phone-B" if name == b_name else "error 111")
            after = counters(sandbox)
            in1 = {ns: nstat(ns, "IcmpInEchos")["IcmpInEchos"] for ns in (own, other)}
            assert in1[own] - in0[own] == echoes and in1[other] == in0[other], (in0, in1)
            peer = b_name if name == a_name else a_name
            carried = delta(before[name], after[name], "forwarded_packets_0to1")
            stray = delta(before[peer], after[peer], "forwarded_packets_0to1")  # the other phone's own IPv6 chatter
            assert carried >= echoes + 4 and stray < echoes, (before, after)
            for phone_name in (a_name, b_name):
                for key in REFUSALS:
                    assert delta(before[phone_name], after[phone_name], key) == 0, (before, after)
            report(request, f"same addresses, calls from {name}: {echoes} echo requests reached only its own "
                            f"yogurt, its wire forwarded {carried} packets, the other phone's wire {stray}")


def test_a_yogurt_cannot_reach_the_host_namespace(sandbox, veth_object, request):
    spec = veth_phone(sandbox.prefix, 0)
    converge(sandbox, [spec], veth_object)
    (y1, h1, c1, _ip1), (y2, _h2, _c2, _ip2) = ends_of(spec)
    host_ip, port = "10.42.99.1", 5501
    sandbox.ip("addr", "add", f"{host_ip}/32", "dev", "lo")
    with listening(sandbox.name, "tcp", host_ip, port, "the-host") as server:
        assert connect(sandbox.name, host_ip, port) == "reply the-host"  # the listener works
        replies, out = ping(y1, host_ip)
        assert replies == 0 and "Network is unreachable" in out, out

        # Root inside the yogurt routes the host's address out of its device, with the
        # host-side MAC as neighbour: the packets leave the yogurt and the wire takes them
        # to the other yogurt, which drops them (not its address, no forwarding).
        for argv in (["route", "add", f"{host_ip}/32", "dev", c1],
                     ["neigh", "replace", host_ip, "lladdr", mac_of(sandbox.name, h1), "dev", c1, "nud", "permanent"]):
            run(y1, ["ip"] + argv, check=True)
        names = ("IcmpOutEchos", "TcpActiveOpens", "TcpExtTCPSynRetrans")
        sent0, host0, far0 = nstat(y1, *names), nstat(sandbox.name, "IpInReceives"), nstat(y2, "IpInAddrErrors")
        before = counters(sandbox, spec["name"])[spec["name"]]
        replies, out = ping(y1, host_ip, count=5)
        assert replies == 0, out
        assert connect(y1, host_ip, port, timeout=2.5) == "error timeout"
        sent1, host1, far1 = nstat(y1, *names), nstat(sandbox.name, "IpInReceives"), nstat(y2, "IpInAddrErrors")
        after = counters(sandbox, spec["name"])[spec["name"]]
        assert server.stop() == 1, "only the host's own control connection may have arrived"
    handed = sum(sent1[n] - sent0[n] for n in names)
    arrived_far = far1["IpInAddrErrors"] - far0["IpInAddrErrors"]
    assert host1 == host0, "the host namespace must receive nothing from the yogurt"
    assert delta(before, after, "forwarded_packets_0to1") >= handed >= 5 + 2, (before, after, sent0, sent1)
    assert arrived_far >= handed, (far0, far1, handed)
    report(request, f"yogurt -> host {host_ip}: {handed} packets handed to {c1}, host namespace received 0, "
                    f"wire forwarded +{delta(before, after, 'forwarded_packets_0to1')}, dropped in the other "
                    f"yogurt as not-its-address: {arrived_far}")
