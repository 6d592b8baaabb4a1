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

import contextlib
import json
import os
import shutil
import socket
import struct
import subprocess
import time

import pytest

from ansible_collections.yogurt.phone.plugins.module_utils import _bpf as bpf, _wire as wire
from test_wire_veth import Phone, netns_run

MAGIC = b"yogurt-inject-probe"
PORT = 5600
FRAMES = 10
WIRE_MARK = 0x79677274  # bpf/wire.h; a host process can forge it as SO_MARK

# Counts, until stdin closes, frames carrying MAGIC that a packet socket on DEV receives
# (not its own outgoing ones) and datagrams carrying MAGIC on UDP PORT (IPv4 and IPv6).
LISTEN = r"""
import json, select, socket, sys
dev, port, magic = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
pkt = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
pkt.bind((dev, 0))
u4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u4.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
u4.bind(("0.0.0.0", port))
u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
u6.bind(("::", port))
seen = {"packet": 0, "udp": 0}
print("ready", flush=True)
while True:
    ready = select.select([pkt, u4, u6, sys.stdin], [], [])[0]
    if sys.stdin in ready:
        break
    for s in ready:
        data, addr = s.recvfrom(65536)
        if magic not in data:
            continue
        if s is pkt:
            if addr[2] != socket.PACKET_OUTGOING:
                seen["packet"] += 1
        else:
            seen["udp"] += 1
print(json.dumps(seen), flush=True)
"""

# Writes COUNT frames on DEV: SOCK_RAW (the whole frame, forged source MAC) or SOCK_DGRAM
# (the kernel adds the Ethernet header). Prints {"ok", "enobufs", "other"}.
INJECT = r"""
import errno, json, socket, sys
dev, kind, bypass, mark, count, dst_mac, src_mac, ethertype, l3 = sys.argv[1:10]
dst, src, proto, l3 = (bytes.fromhex(dst_mac.replace(":", "")), bytes.fromhex(src_mac.replace(":", "")),
                       int(ethertype, 16), bytes.fromhex(l3))
if kind == "raw":
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((dev, 0))
    frame, addr = dst + src + proto.to_bytes(2, "big") + l3, None
else:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM)
    frame, addr = l3, (dev, proto, 0, 0, dst)
s.setsockopt(263, 20, int(bypass))  # SOL_PACKET, PACKET_QDISC_BYPASS: straight to the driver
if int(mark):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, int(mark))
res = {"ok": 0, "enobufs": 0, "other": 0}
for _i in range(int(count)):
    try:
        s.send(frame) if addr is None else s.sendto(frame, addr)
        res["ok"] += 1
    except OSError as exc:
        res["enobufs" if exc.errno == errno.ENOBUFS else "other"] += 1
print(json.dumps(res))
"""

SERVE_TCP = r"""
import socket, sys
s = socket.socket(socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(4)
s.settimeout(10)
print("ready", flush=True)
conn, _peer = s.accept()
conn.sendall(b"hello from " + sys.argv[1].encode())
conn.close()
"""

CONNECT = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
print(s.recv(100).decode())
"""


# ---------------------------------------------------------------- frames

def _csum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total >> 16) + (total & 0xFFFF)
    return ~total & 0xFFFF


def ipv4_udp(src, dst, port=PORT, payload=MAGIC):
    udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    return hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:] + udp


def ipv6_udp(src, dst, port=PORT, payload=MAGIC):
    s6, d6 = socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)
    length = 8 + len(payload)
    udp = struct.pack("!HHHH", 40000, port, length, 0) + payload
    pseudo = s6 + d6 + struct.pack("!IxxxB", length, 17)
    udp = udp[:6] + struct.pack("!H", _csum(pseudo + udp) or 0xFFFF) + udp[8:]
    return struct.pack("!IHBB", 6 << 28, length, 17, 255) + s6 + d6 + udp


def arp(op, sha, spa, tha, tpa):
    def mac(text):
        return bytes.fromhex(text.replace(":", ""))
    return struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + mac(sha) + socket.inet_aton(spa) + mac(tha) + socket.inet_aton(tpa)


FORGED_MAC = "02:00:00:00:00:01"


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

def refusals(phone_name):
    """The phone's counters read straight from its pinned map (milliseconds, no module run)."""
    fd = bpf.obj_get(f"{wire.phone_dir(phone_name)}/map_counters")
    try:
        out = {}
        for key, val in bpf.map_items(fd):
            slot = struct.unpack("=I", key)[0]
            if slot < len(wire.COUNTERS):
                out[wire.COUNTERS[slot]] = bpf.percpu_sum_u64(val)
        return out
    finally:
        os.close(fd)


@contextlib.contextmanager
def listening(phone, i):
    """Packet socket + UDP sockets on yogurt i's device; yields a dict filled on exit."""
    proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{phone.yogurts[i]}", "--", "python3", "-c", LISTEN,
                             phone.cont[i], str(PORT), MAGIC.decode()],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = {}
    try:
        line = proc.stdout.readline().strip()
        assert line == "ready", (line, proc.stderr.read())
        yield seen
        time.sleep(0.2)  # let NAPI and the stack finish with the last frame
        out, err = proc.communicate(input="", timeout=10)
        assert proc.returncode == 0, err
        seen.update(json.loads(out))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def inject(ns, dev, kind, bypass, dst_mac, ethertype, l3, count=FRAMES, mark=0, src_mac=FORGED_MAC):
    argv = ["python3", "-c", INJECT, dev, kind, str(int(bypass)), str(mark), str(count), dst_mac, src_mac,
            ethertype, l3.hex()]
    proc = netns_run(ns, argv)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["other"] == 0, res
    return res["ok"] + res["enobufs"]


def call_works(phone):
    """Ping and TCP both ways through the wire."""
    for ns in phone.yogurts:  # failed attempts may have left unresolved neighbour entries
        subprocess.run(["ip", "-n", ns, "neigh", "flush", "all"], check=True)
    assert phone.ping(0) == 3 and phone.ping(1) == 3
    for src in (0, 1):
        dst = 1 - src
        server = subprocess.Popen(["nsenter", f"--net=/run/netns/{phone.yogurts[dst]}", "--", "python3", "-c",
                                   SERVE_TCP, phone.addr[dst], "5601"], stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout.readline().strip() == "ready"
            out = netns_run(phone.yogurts[src], ["python3", "-c", CONNECT, phone.addr[dst], "5601"])
            assert out.stdout.strip() == f"hello from {phone.addr[dst]}", out
        finally:
            server.wait(timeout=15)


def report(request, text):
    print(text)
    request.node.user_properties.append(("measured", text))


def ethtool(sandbox, *args):
    return sandbox.command(["ethtool"] + list(args))


@pytest.fixture(params=["tcx", "tc"])
def wired(request, sandbox, prefix, objects):
    """A phone wired in one attach mode (tc: forced, as on kernels < 6.6)."""
    phone = Phone(sandbox, prefix, objects["base"])
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
            with listening(phone, 1) as seen:
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
        with listening(phone, 1) as seen:
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
    proc = subprocess.Popen(["nsenter", f"--net={sb.path}", "--", "python3", "-c", LISTEN, "lo", str(PORT),
                             MAGIC.decode()], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        before = refusals(phone.name)
        handed = 0
        for _label, mac, ethertype, l3 in frames:
            for kind in ("raw", "dgram"):
                for bypass in (False, True):
                    handed += inject(phone.yogurts[0], phone.cont[0], kind, bypass, mac, ethertype, l3)
        time.sleep(0.3)
        out = proc.communicate(input="", timeout=10)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    after = refusals(phone.name)
    seen = json.loads(out)
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
    phone = Phone(sandbox, prefix, objects["base"])
    for i in range(2):  # jumbo frames: the XDP guard is xdp.frags, so it attaches above a page
        sandbox.ip("link", "set", phone.host[i], "mtu", "9000")
        subprocess.run(["ip", "-n", phone.yogurts[i], "link", "set", phone.cont[i], "mtu", "9000"], check=True)
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
                with listening(phone, 1) as seen:
                    handed = inject(sandbox.name, h2, kind, bypass, mac, "0800", l3)
                refused = refusals(phone.name)["refused"] - before["refused"]
                assert seen == {"packet": 0, "udp": 0} and refused == handed == FRAMES, (kind, bypass, label, seen)
                lines.append(f"{label} {kind} bypass={int(bypass)}: 0 seen, refused +{refused}")
    # The wire still carries jumbo frames.
    assert netns_run(phone.yogurts[0], ["ping", "-c", "2", "-i", "0.2", "-s", "8000", "-M", "do",
                                        phone.addr[1]]).returncode == 0
    report(request, f"after tso on (tcp-segmentation-offload: {features()['tcp-segmentation-offload']}) and "
                    f"tx 2 (refused: {tried.stderr.strip()}), MTU 9000: " + "; ".join(lines))
