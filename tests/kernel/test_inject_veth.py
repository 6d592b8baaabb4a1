# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Raw frames against a veth phone, both ways, in both attach modes (tcx links and tc filters).

From the host (the sandbox): AF_PACKET SOCK_RAW and SOCK_DGRAM, with and without
PACKET_QDISC_BYPASS, to the yogurt's unicast address, to broadcast (all-ones and the
subnet's), to IPv4 multicast 224.0.0.1 and IPv6 ff02::1, on the yogurt's host-side device.
Inside the yogurt, a packet socket (ETH_P_ALL) on its device and UDP sockets must see none
of them, and the phone's `refused` counter must move by exactly the number of frames the
injector handed to the device. The same frames sent through the wire (injected inside the
other yogurt) are seen by both listeners: the positive control that makes a 0 mean something.

From a yogurt: forged-source UDP, broadcast and ARP frames reach no socket of the host
namespace and leave its neighbour table as it was.

What the host can do to the host-side device (TSO on, more tx queues, a big MTU) does not
open a path around the XDP guard. Packets only go to addresses inside namespaces the test made.
"""

import json
import shutil

import pytest

from yogurt_test.frames import FORGED_MAC, MAGIC, PORT, WIRE_MARK, arp, ipv4_udp, ipv6_udp
from yogurt_test.netns import run
from yogurt_test.phones import VethPhone, refusals, report
from yogurt_test.traffic import connect, handed as handed_of, inject as inject_frames, listening, probing

FRAMES = 10


# ---------------------------------------------------------------- frames

def host_cases(phone):
    """(label, dst MAC, ethertype, L3 bytes) of the frames the host aims at yogurt 2."""
    ip1, ip2 = phone.addr
    return [
        ("unicast", phone.cont_mac(1), "0800", ipv4_udp(ip1, ip2)),
        ("broadcast 255.255.255.255", "ff:ff:ff:ff:ff:ff", "0800", ipv4_udp(ip1, "255.255.255.255")),
        ("subnet broadcast", "ff:ff:ff:ff:ff:ff", "0800", ipv4_udp(ip1, ip2.rsplit(".", 1)[0] + ".255")),
        ("multicast 224.0.0.1", "01:00:5e:00:00:01", "0800", ipv4_udp(ip1, "224.0.0.1")),
        ("multicast ff02::1", "33:33:00:00:00:01", "86dd", ipv6_udp("fe80::1", "ff02::1")),
    ]


# ---------------------------------------------------------------- helpers

def probe(phone, i):
    """Packet socket + UDP sockets on yogurt i's device; yields a dict filled on exit."""
    return probing(phone.yogurts[i], phone.cont[i])


def inject(ns, dev, kind, bypass, dst_mac, ethertype, l3, count=FRAMES, mark=0):
    """Frames handed to `dev` (see yogurt_test.traffic.inject)."""
    return handed_of(inject_frames(ns, dev, dst_mac, l3, ethertype=ethertype, kind=kind, bypass=bypass, mark=mark,
                                   count=count))


def call_works(phone):
    """Ping and TCP both ways through the wire."""
    phone.flush_neighbours()
    assert phone.ping(0) == 3 and phone.ping(1) == 3
    for src in (0, 1):
        dst = 1 - src
        with listening(phone.yogurts[dst], "tcp", phone.addr[dst], 5601, f"hello from {phone.addr[dst]}"):
            out = connect(phone.yogurts[src], phone.addr[dst], 5601, timeout=3)
            assert out == f"reply hello from {phone.addr[dst]}", out


def ethtool(sandbox, *args):
    return sandbox.command(["ethtool"] + list(args))


@pytest.fixture(params=["tcx", "tc"])
def wired(request, sandbox, prefix, objects):
    """A phone wired in one attach mode (tc: forced, as on kernels < 6.6)."""
    phone = VethPhone(sandbox, prefix, objects["base"])
    res = phone.wire(attach=request.param)
    assert res["attach_mode"] == request.param, res
    xdp = [link for link in res["links"] if link["attach_type"] == "xdp"]
    assert len(xdp) == 2 and not any(link["defunct"] for link in xdp), res["links"]
    phone.mode = request.param
    return phone


# ---------------------------------------------------------------- tests

def test_host_frames_reach_no_socket_in_the_yogurt(wired, request):
    phone, sb = wired, wired.sandbox
    cases = host_cases(phone)

    # Positive control: the same frames through the wire (injected inside yogurt 1) are seen.
    for label, mac, ethertype, l3 in cases:
        for kind in ("raw", "dgram"):
            before = refusals(phone.name)
            with probe(phone, 1) as seen:
                handed = inject(phone.yogurts[0], phone.cont[0], kind, False, mac, ethertype, l3)
            after = refusals(phone.name)
            assert handed == FRAMES and seen == {"packet": FRAMES, "udp": FRAMES}, (label, kind, seen)
            assert after["refused"] == before["refused"], (label, kind, before, after)
            assert after["forwarded_packets_0to1"] - before["forwarded_packets_0to1"] >= FRAMES

    # The attack: every case from the host side, SOCK_RAW and SOCK_DGRAM, with and without bypass.
    total = 0
    lines = []
    matrix = [(label, mac, ethertype, l3, kind, bypass, 0)
              for label, mac, ethertype, l3 in cases for kind in ("raw", "dgram") for bypass in (False, True)]
    matrix.append(cases[0][:4] + ("raw", True, WIRE_MARK))  # the wire's old marker forged as SO_MARK
    for label, mac, ethertype, l3, kind, bypass, mark in matrix:
        before = refusals(phone.name)
        with probe(phone, 1) as seen:
            handed = inject(sb.name, phone.host[1], kind, bypass, mac, ethertype, l3, mark=mark)
        after = refusals(phone.name)
        refused = after["refused"] - before["refused"]
        what = f"{label} {kind} bypass={int(bypass)}" + (f" SO_MARK={mark:#x}" if mark else "")
        assert handed == FRAMES, (what, handed)
        assert seen == {"packet": 0, "udp": 0}, f"{what}: {seen} reached yogurt 2"
        assert refused == handed, f"{what}: refused +{refused}, handed {handed}"
        assert after["unknown_ifindex"] == before["unknown_ifindex"]
        total += handed
        lines.append(f"{what}: handed {handed}, packet socket 0, UDP 0, refused +{refused}")
    report(request, f"veth/{phone.mode} host -> yogurt, {len(matrix)} cases x {FRAMES} frames ({total}):\n  "
                    + "\n  ".join(lines))
    call_works(phone)


def test_yogurt_frames_reach_nothing_of_the_host(wired, request):
    phone, sb = wired, wired.sandbox
    # Give the host something to answer with: an address on the host side (which the
    # phones module would remove) and one on lo, and a UDP socket on every address.
    sb.ip("addr", "add", "10.42.0.100/24", "dev", phone.host[0])
    sb.ip("addr", "add", "10.42.99.1/32", "dev", "lo")
    host_mac = json.loads(sb.ip("-j", "link", "show", phone.host[0]).stdout)[0]["address"]
    neigh0 = sb.ip("neigh", "show").stdout
    forged_ip = "10.42.0.77"
    frames = [
        ("UDP to the host side's address, forged source", host_mac, "0800", ipv4_udp(forged_ip, "10.42.0.100")),
        ("UDP to the host's lo address", host_mac, "0800", ipv4_udp(forged_ip, "10.42.99.1")),
        ("UDP broadcast", "ff:ff:ff:ff:ff:ff", "0800", ipv4_udp(forged_ip, "255.255.255.255")),
        ("UDP subnet broadcast", "ff:ff:ff:ff:ff:ff", "0800", ipv4_udp(forged_ip, "10.42.0.255")),
        ("ARP who-has 10.42.0.100 (broadcast)", "ff:ff:ff:ff:ff:ff", "0806",
         arp(1, FORGED_MAC, forged_ip, "00:00:00:00:00:00", "10.42.0.100")),
        ("ARP reply to the host side", host_mac, "0806", arp(2, FORGED_MAC, forged_ip, host_mac, "10.42.0.100")),
        ("gratuitous ARP", "ff:ff:ff:ff:ff:ff", "0806", arp(1, FORGED_MAC, forged_ip, "ff:ff:ff:ff:ff:ff", forged_ip)),
    ]
    # The host's UDP sockets (its packet socket goes on lo: root on the host side sees
    # everything there anyway, a known limit).
    with listening(sb.path, "probe", "lo", PORT, MAGIC.decode()) as host:
        before = refusals(phone.name)
        handed = 0
        for _label, mac, ethertype, l3 in frames:
            for kind in ("raw", "dgram"):
                for bypass in (False, True):
                    handed += inject(phone.yogurts[0], phone.cont[0], kind, bypass, mac, ethertype, l3)
        seen = host.stop(settle=0.3)
    after = refusals(phone.name)
    assert seen["udp"] == 0, f"{seen['udp']} of the yogurt's datagrams reached a socket of the host namespace"
    assert sb.ip("neigh", "show").stdout == neigh0, "the host's neighbour table changed"
    carried = after["forwarded_packets_0to1"] - before["forwarded_packets_0to1"]
    assert carried >= handed == len(frames) * 4 * FRAMES, (handed, before, after)  # all went down the wire
    report(request, f"veth/{phone.mode} yogurt -> host: {handed} frames ({len(frames)} kinds x raw/dgram x "
                    f"bypass 0/1), host UDP sockets 0, neighbour table unchanged, wire carried +{carried}")


def test_host_side_knobs_do_not_open_a_path(sandbox, prefix, objects, request):
    """TSO, tx queues and a big MTU on the host side, as root in the host namespace can set them."""
    if not shutil.which("ethtool"):
        pytest.fail("ethtool is missing: ./scripts/setup --test installs it")
    phone = VethPhone(sandbox, prefix, objects["base"])
    for i in range(2):  # jumbo frames: the XDP guard is xdp.frags, so it attaches above a page
        sandbox.ip("link", "set", phone.host[i], "mtu", "9000")
        run(phone.yogurts[i], ["ip", "link", "set", phone.cont[i], "mtu", "9000"], check=True)
    phone.wire()
    h2 = phone.host[1]

    def features():
        out = ethtool(sandbox, "-k", h2).stdout
        return {line.split(":")[0].strip(): line.split(":", 1)[1].strip() for line in out.splitlines() if ":" in line}

    # TSO cannot be turned back on while the XDP guard is attached (veth_xdp_set took
    # NETIF_F_GSO_SOFTWARE out of the host side's hw_features): veth_xmit would else skip NAPI.
    ethtool(sandbox, "-K", h2, "tso", "on", "gso", "on")
    assert features()["tcp-segmentation-offload"].startswith("off"), features()
    # More tx queues on the host side than the yogurt side has rx queues: refused by veth.
    tried = ethtool(sandbox, "-L", h2, "tx", "2")
    chans = ethtool(sandbox, "-l", h2).stdout.split("Current hardware settings:")[1].split()
    assert tried.returncode != 0 and chans[chans.index("TX:") + 1] == "1", (tried.stderr, chans)

    big = ipv4_udp(phone.addr[0], phone.addr[1], payload=MAGIC + b"x" * 8000)
    mac = phone.cont_mac(1)
    lines = []
    for kind in ("raw", "dgram"):
        for bypass in (False, True):
            for label, l3 in (("1 page", ipv4_udp(phone.addr[0], phone.addr[1])), ("8 kB", big)):
                before = refusals(phone.name)
                with probe(phone, 1) as seen:
                    handed = inject(sandbox.name, h2, kind, bypass, mac, "0800", l3)
                refused = refusals(phone.name)["refused"] - before["refused"]
                assert seen == {"packet": 0, "udp": 0} and refused == handed == FRAMES, (kind, bypass, label, seen)
                lines.append(f"{label} {kind} bypass={int(bypass)}: 0 seen, refused +{refused}")
    # The wire still carries jumbo frames.
    assert run(phone.yogurts[0], ["ping", "-c", "2", "-i", "0.2", "-s", "8000", "-M", "do",
                                  phone.addr[1]]).returncode == 0
    report(request, f"after tso on (tcp-segmentation-offload: {features()['tcp-segmentation-offload']}) and "
                    f"tx 2 (refused: {tried.stderr.strip()}), MTU 9000: " + "; ".join(lines))
