# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The veth wire on the real kernel, through the yogurt.phone.wire and phone_info modules.

Each test builds its own phone inside the sandbox: two yogurt namespaces and two veth pairs
whose host sides sit in the sandbox (standing in for the host namespace). Packets are only
ever sent between those namespaces.
"""

import json
import pathlib
import subprocess
import time

import pytest

from ansible_collections.yogurt.phone.plugins.module_utils import _wire as wire

ROOT = pathlib.Path(__file__).resolve().parents[2]
PIN_ROOT = pathlib.Path(wire.PIN_ROOT)
MARKER = 0x79677274  # WIRE_MARK in bpf/wire.h

# Counts datagrams on UDP port argv[1] until stdin closes: the count window is the sender's
# whole run however long it takes to start (a fixed silence timeout ended before a slow sender
# began, under load, and read 0 for the positive control).
LISTEN = r"""
import select, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
n = 0
while True:
    ready = select.select([s, sys.stdin], [], [])[0]
    if s in ready:
        s.recv(100)
        n += 1
    elif sys.stdin in ready:
        break
print(n, flush=True)
"""

# Raw UDP frames on an AF_PACKET socket bound to a host-side device (what root can do).
INJECT = r"""
import socket, struct, sys
dev, dst_mac, src_ip, dst_ip, port, count, bypass, mark = sys.argv[1:9]
payload = b"injected"
udp = struct.pack("!HHHH", 40000, int(port), 8 + len(payload), 0) + payload
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
words = struct.unpack("!10H", ip)
csum = sum(words)
csum = (csum >> 16) + (csum & 0xffff)
csum = ~(csum + (csum >> 16)) & 0xffff
ip = ip[:10] + struct.pack("!H", csum) + ip[12:]
frame = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex("020000000001") + b"\x08\x00" + ip + udp
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((dev, 0))
if bypass == "1":
    s.setsockopt(263, 20, 1)  # SOL_PACKET, PACKET_QDISC_BYPASS: skips tc egress
if int(mark):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, int(mark))
sent = 0
for _ in range(int(count)):
    try:
        s.send(frame)
        sent += 1
    except OSError:
        pass
print(sent)
"""

SEND_UDP = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sent = 0
for _ in range(int(sys.argv[3])):
    try:
        s.sendto(b"x", (sys.argv[1], int(sys.argv[2])))
        sent += 1
    except OSError:
        pass
print(sent)
"""


def netns_run(ns, argv):
    return subprocess.run(["nsenter", f"--net=/run/netns/{ns}", "--"] + list(argv),
                          capture_output=True, text=True, check=False)


class Phone:
    """Two yogurts, two veth pairs, host sides in the sandbox; no wire yet."""

    def __init__(self, sandbox, prefix, obj):
        self.sandbox = sandbox
        self.name = prefix
        self.obj = obj
        self.yogurts = [f"{prefix}-y1", f"{prefix}-y2"]
        self.host = [f"{prefix}h1", f"{prefix}h2"]
        self.cont = [f"{prefix}c1", f"{prefix}c2"]
        self.addr = ["10.42.0.1", "10.42.0.2"]
        for ns in self.yogurts:
            subprocess.run(["ip", "netns", "add", ns], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        for i in range(2):
            self.make_pair(i)

    def make_pair(self, i):
        sb = self.sandbox
        sb.ip("link", "add", self.host[i], "type", "veth", "peer", "name", self.cont[i], "netns", self.yogurts[i])
        sb.ip("link", "set", self.host[i], "addrgenmode", "none", "up")
        subprocess.run(["ip", "-n", self.yogurts[i], "addr", "add", f"{self.addr[i]}/24", "dev", self.cont[i]], check=True)
        subprocess.run(["ip", "-n", self.yogurts[i], "link", "set", self.cont[i], "up"], check=True)

    def args(self, obj=None, **extra):
        ends = [{"host_ifname": self.host[i], "cont_netns": self.yogurts[i], "cont_ifname": self.cont[i]}
                for i in range(2)]
        return dict(phone=self.name, backend="veth", object=obj or self.obj, ends=ends, **extra)

    def wire(self, obj=None, check=False, **extra):
        res = self.sandbox.module("wire", self.args(obj, **extra), check=check)
        assert not res.failed, res
        return res

    def info(self):
        res = self.sandbox.module("phone_info", {"name": self.name})
        assert not res.failed, res
        return res["phones"][0] if res["phones"] else None

    def ping(self, src, count=3, interval="0.2"):
        """Echo replies received by yogurt `src` pinging the other one."""
        proc = netns_run(self.yogurts[src], ["ping", "-c", str(count), "-i", interval, "-W", "1",
                                             self.addr[1 - src]])
        for line in proc.stdout.splitlines():
            if "packets transmitted" in line:
                return int(line.split(",")[1].split()[0])
        raise AssertionError(proc.stdout + proc.stderr)

    def cont_mac(self, i):
        out = subprocess.run(["ip", "-n", self.yogurts[i], "-j", "link", "show", self.cont[i]],
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)[0]["address"]

    def received_in_yogurt(self, i, send, port=5555):
        """Run send() while a UDP listener in yogurt i counts what reaches it."""
        listener = subprocess.Popen(["nsenter", f"--net=/run/netns/{self.yogurts[i]}", "--", "python3", "-c",
                                     LISTEN, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert listener.stdout.readline().strip() == "ready"
            send()
            time.sleep(0.2)  # let the stack finish with the last datagram
            out = listener.communicate(input="", timeout=10)[0]
            return int(out)
        finally:
            if listener.poll() is None:
                listener.kill()


@pytest.fixture
def phone(sandbox, prefix, objects):
    return Phone(sandbox, prefix, objects["base"])


def _pins(name):
    path = PIN_ROOT / name
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


def test_traffic_flows_only_through_the_wire(phone):
    assert phone.ping(0) == 0 and phone.ping(1) == 0  # no wire, no path

    res = phone.wire(check=True)
    assert res.changed and any("attach link_end0_in" in a for a in res["actions"]), res
    assert _pins(phone.name) == []  # check mode touched nothing

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
    pinger = subprocess.Popen(["nsenter", f"--net=/run/netns/{phone.yogurts[0]}", "--", "ping", "-c", "500",
                               "-i", "0.01", "-W", "1", phone.addr[1]], stdout=subprocess.PIPE, text=True)
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
        shown = netns_run(ns, ["bpftool", "net", "show"]).stdout
        assert "tcx" not in shown and "driver id" not in shown, shown  # no tcx, no XDP guard left
    assert phone.ping(0) == 0
    again = phone.sandbox.module("wire", {"phone": phone.name, "state": "absent"})
    assert not again.failed and not again.changed, again


def test_host_cannot_inject_into_a_yogurt(phone):
    phone.wire()
    sb = phone.sandbox
    mac = phone.cont_mac(1)

    # Positive control: the listener hears datagrams that come through the wire.
    got = phone.received_in_yogurt(
        1, lambda: netns_run(phone.yogurts[0], ["python3", "-c", SEND_UDP, phone.addr[1], "5555", "20"]))
    assert got == 20

    # (a) an address and a route on the host-side device, a static neighbour so the IP
    # packets themselves leave: the XDP guard on the yogurt's device drops them.
    sb.ip("addr", "add", "10.42.0.100/24", "dev", phone.host[1])
    sb.ip("neigh", "replace", phone.addr[1], "lladdr", mac, "dev", phone.host[1], "nud", "permanent")
    before = phone.info()["counters"]
    got = phone.received_in_yogurt(1, lambda: sb.command(["python3", "-c", SEND_UDP, phone.addr[1], "5555", "20"]))
    after = phone.info()["counters"]
    assert got == 0
    assert after["refused"] - before["refused"] >= 20, (before, after)
    sb.ip("addr", "del", "10.42.0.100/24", "dev", phone.host[1])

    # (b) raw frames with PACKET_QDISC_BYPASS skip tc egress; the XDP guard stops them too.
    assert_bypass_injection_refused(phone)


def assert_bypass_injection_refused(phone):
    """AF_PACKET + PACKET_QDISC_BYPASS on the host side, with and without the wire's marker as SO_MARK."""
    mac = phone.cont_mac(1)
    for mark in (0, MARKER):
        before = phone.info()["counters"]
        sent = []
        got = phone.received_in_yogurt(1, lambda: sent.append(phone.sandbox.command(
            ["python3", "-c", INJECT, phone.host[1], mac, phone.addr[0], phone.addr[1], "5555", "20", "1",
             str(mark)]).stdout.strip()))
        after = phone.info()["counters"]
        assert sent == ["20"], sent
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
        shown = netns_run(phone.yogurts[i], ["tc", "filter", "show", "dev", phone.cont[i], "ingress"]).stdout
        assert "bpf" not in shown, shown
        shown = netns_run(phone.yogurts[i], ["ip", "-d", "link", "show", phone.cont[i]]).stdout
        assert "xdp" not in shown.split("\n")[0] and "prog/xdp" not in shown, shown
    assert phone.ping(0) == 0
