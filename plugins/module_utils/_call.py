# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A test call through a phone: ping and TCP both ways, then break-in attempts both ways.

A socket keeps the network namespace it was created in, so every socket here is opened
inside the right namespace (`enter_netns`) and then used from this one process: no
`ip netns exec`, no ping binary, one module run for all phones of a host.

Packets go only to addresses inside the phone's own namespaces, and frames are only ever
written on the phone's own devices (AF_PACKET forces the device and never routes):

- injection (host -> yogurt): on each host-side device, SOCK_RAW and SOCK_DGRAM, each with
  and without PACKET_QDISC_BYPASS, to the yogurt's unicast address, to broadcast and to a
  multicast group. Inside the yogurt a UDP socket (bound to the targeted port on the
  wildcard address, group joined) and a packet socket (ETH_P_ALL on the yogurt's device)
  listen; only frames that carry this run's random marker count. Both must see 0, and the
  phone's refusal counters (the sum of every `refused*` counter) must move by at least the
  number of frames that left the socket (a send the device refuses, ENOBUFS on netkit, is a
  refusal at send).
- reverse (yogurt -> host): from inside each yogurt, raw frames with a forged source MAC and
  IP (unicast to a host address, broadcast, multicast) and a gratuitous ARP / unsolicited
  neighbour advertisement claiming a host-namespace-looking address. No UDP socket of the
  host namespace may receive one, and the host's neighbour table must not change.

No fixed sleeps: the phone's counters move by exactly the frames handed to its devices, so a
check ends as soon as they account for each frame (refused, or forwarded by the wire), and the
listeners are read then; only a frame no counter sees is waited for, at most `wait` seconds.
Packet sockets are opened unbound to a protocol and closed together: each release of one waits
for an RCU grace period.

The functions at the end (summary_line, failure_lines) turn results into the one line per
phone that site.yml and call.yml print, and into a failure message that names the check.

PRIVATE to the yogurt.phone collection (like community.crypto's module_utils): no public API,
names may change in any release.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import platform
import re
import select
import socket
import struct
import threading
import time

from ansible_collections.yogurt.phone.plugins.module_utils import _bpf as bpf
from ansible_collections.yogurt.phone.plugins.module_utils import _switchboard as switchboard, _wire as wire
from ansible_collections.yogurt.phone.plugins.module_utils._phone_converge import read_records
from ansible_collections.yogurt.phone.plugins.module_utils._netlink import default_gateways, neighbour_entries, read_namespace
from ansible_collections.yogurt.phone.plugins.module_utils._netns import NetnsError, enter_netns, in_netns

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
ARPHRD_ETHER = 1
SOL_PACKET = 263
PACKET_QDISC_BYPASS = 20
PACKET_OUTGOING = 4
SIOCGIFHWADDR = 0x8927
IPV6_JOIN_GROUP = 20

BROADCAST_MAC = b"\xff" * 6
MCAST_MAC = {4: bytes.fromhex("01005e000001"), 6: bytes.fromhex("333300000001")}
MCAST_IP = {4: "224.0.0.1", 6: "ff02::1"}
# Sources of forged frames: documentation addresses and a locally administered MAC.
FORGED_IP = {4: "192.0.2.66", 6: "2001:db8::66"}
FORGED_MAC = bytes.fromhex("027967000066")

# A send that fails with these is the device refusing the frame inside its transmit (netkit's
# primary program dropping it reads as ENOBUFS); any other errno is not a refusal.
REFUSAL_ERRNOS = ("ENOBUFS",)
SOCKET_TYPES = (("raw", socket.SOCK_RAW), ("dgram", socket.SOCK_DGRAM))
DESTINATIONS = ("unicast", "broadcast", "multicast")

# The call's defaults: the one place for them (call_argument_spec() and the functions below).
COUNT = 3      # echo requests per direction and address
FRAMES = 4     # frames per injection or reverse check
WAIT = 0.25    # seconds after an end's last frame before the listeners are read


def call_argument_spec():
    """The call's options, as the call module takes them and the phones module's call option.

    Documented once each in plugins/doc_fragments/_call.py (top level and as suboptions).
    """
    return dict(
        host=dict(type="str"),
        count=dict(type="int", default=COUNT),
        injection=dict(type="bool", default=True),
        reverse=dict(type="bool", default=True),
        frames=dict(type="int", default=FRAMES),
        wait=dict(type="float", default=WAIT),
    )


def _in_netns(netns, factory):
    with in_netns(netns):
        return factory()


def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(src_netns, dst_ip, count=COUNT, timeout=1.0):
    """Echo requests from inside src_netns; returns the number of replies."""
    ip = ipaddress.ip_address(dst_ip)
    if ip.version == 4:
        family, proto, req_type, rep_type = socket.AF_INET, socket.IPPROTO_ICMP, 8, 0
    else:
        family, proto, req_type, rep_type = socket.AF_INET6, socket.IPPROTO_ICMPV6, 128, 129
    sock = _in_netns(src_netns, lambda: socket.socket(family, socket.SOCK_RAW, proto))
    ident = os.getpid() & 0xFFFF
    answered = 0
    try:
        for seq in range(1, count + 1):
            body = struct.pack("!d", time.time()) + b"yogurt-phone"
            header = struct.pack("!BBHHH", req_type, 0, 0, ident, seq)
            if ip.version == 4:
                header = struct.pack("!BBHHH", req_type, 0, _checksum(header + body), ident, seq)
            sock.sendto(header + body, (str(ip), 0))
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([sock], [], [], left)[0]:
                    break
                data = sock.recv(2048)
                icmp = data[(data[0] & 0x0F) * 4:] if ip.version == 4 else data
                if len(icmp) >= 8:
                    rtype, _code, _sum, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
                    if rtype == rep_type and rid == ident and rseq == seq:
                        answered += 1
                        break
    finally:
        sock.close()
    return answered


def tcp_exchange(src_netns, dst_netns, dst_ip, payload=b"hello through the wire", timeout=3.0):
    """Connect from src_netns to a listener inside dst_netns; True if the echo came back."""
    family = socket.AF_INET if ipaddress.ip_address(dst_ip).version == 4 else socket.AF_INET6
    server = _in_netns(dst_netns, lambda: socket.socket(family, socket.SOCK_STREAM))
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((dst_ip, 0))
    server.listen(1)
    server.settimeout(timeout)
    port = server.getsockname()[1]

    def serve():
        try:
            conn, _addr = server.accept()
            with conn:
                conn.settimeout(timeout)
                conn.sendall(conn.recv(1024))
        except OSError:
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = _in_netns(src_netns, lambda: socket.socket(family, socket.SOCK_STREAM))
    try:
        client.settimeout(timeout)
        client.connect((dst_ip, port))
        client.sendall(payload)
        return client.recv(1024) == payload
    except OSError:
        return False
    finally:
        client.close()
        thread.join(timeout)
        server.close()


# ---------------------------------------------------------------- frames

def _udp_packet(src_ip, dst_ip, dport, payload):
    udp = struct.pack("!HHHH", 40000, dport, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, socket.IPPROTO_UDP, 0,
                         socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + udp


def _ip6_packet(src_ip, dst_ip, next_header, body, hop_limit=64):
    src, dst = socket.inet_pton(socket.AF_INET6, src_ip), socket.inet_pton(socket.AF_INET6, dst_ip)
    return struct.pack("!IHBB", 6 << 28, len(body), next_header, hop_limit) + src + dst + body


def _pseudo6(src_ip, dst_ip, length, next_header):
    return (socket.inet_pton(socket.AF_INET6, src_ip) + socket.inet_pton(socket.AF_INET6, dst_ip)
            + struct.pack("!IxxxB", length, next_header))


def _udp6_packet(src_ip, dst_ip, dport, payload):
    length = 8 + len(payload)
    udp = struct.pack("!HHHH", 40000, dport, length, 0) + payload
    # UDP over IPv6 must carry a checksum (over the pseudo-header); 0 would be dropped.
    csum = _checksum(_pseudo6(src_ip, dst_ip, length, socket.IPPROTO_UDP) + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
    return _ip6_packet(src_ip, dst_ip, socket.IPPROTO_UDP, udp)


def udp_packet(version, src_ip, dst_ip, dport, payload):
    """An IPv4 or IPv6 UDP packet (no link-layer header)."""
    return (_udp_packet if version == 4 else _udp6_packet)(src_ip, dst_ip, dport, payload)


def garp_packet(claimed_ip, mac):
    """A gratuitous ARP reply: `claimed_ip` is at `mac` (sender and target are the same, as Linux
    requires of a gratuitous reply)."""
    ip = socket.inet_aton(claimed_ip)
    return struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, 2, mac, ip, mac, ip)


def unsolicited_na_packet(claimed_ip, mac):
    """An unsolicited neighbour advertisement (override flag) to ff02::1: `claimed_ip` is at `mac`."""
    target = socket.inet_pton(socket.AF_INET6, claimed_ip)
    body = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + target + struct.pack("!BB", 2, 1) + mac
    csum = _checksum(_pseudo6(claimed_ip, MCAST_IP[6], len(body), socket.IPPROTO_ICMPV6) + body)
    body = body[:2] + struct.pack("!H", csum) + body[4:]
    return _ip6_packet(claimed_ip, MCAST_IP[6], socket.IPPROTO_ICMPV6, body, hop_limit=255)


def ether(dst_mac, src_mac, proto, packet):
    return dst_mac + src_mac + struct.pack("!H", proto) + packet


def new_marker():
    """A per-run random marker: only frames carrying it count as ours."""
    return b"YGRT" + os.urandom(12)


def tagged(marker, index):
    return marker + struct.pack("!H", index) + b" injected by yogurt.phone call"


def find_tags(data, marker):
    """Indexes of the checks whose tag is in `data` (a frame or a datagram)."""
    found = []
    start = 0
    while True:
        pos = data.find(marker, start)
        if pos < 0 or pos + len(marker) + 2 > len(data):
            return found
        found.append(struct.unpack("!H", data[pos + len(marker):pos + len(marker) + 2])[0])
        start = pos + len(marker)


# ---------------------------------------------------------------- counters

def read_counters(phone_name):
    """{counter name: sum over CPUs} of the phone's pinned counters, or None if it has none."""
    if not phone_name:
        return None
    fd = bpf.try_obj_get(f"{wire.phone_dir(phone_name)}/map_counters")
    if fd is None:
        return None
    try:
        totals = {}
        for key, val in bpf.map_items(fd):
            slot = struct.unpack("=I", key)[0]
            if slot < len(wire.COUNTERS):
                totals[wire.COUNTERS[slot]] = bpf.percpu_sum_u64(val)
        return totals
    finally:
        os.close(fd)


def read_refusals(phone_name):
    """Sum of every `refused*` counter of the phone (over CPUs), or None if it has none.

    Read generically by name so that a datapath that adds, renames or merges refusal
    counters keeps working: whatever bpf/wire.h calls refused-something is summed.
    """
    totals = read_counters(phone_name)
    return None if totals is None else sum(v for k, v in totals.items() if k.startswith("refused"))


def read_frames_counted(phone_name):
    """Frames the phone's programs have handled, whatever they did (forwarded, refused, from an
    unknown device): the sum of every counter that counts packets, not bytes; None without counters."""
    totals = read_counters(phone_name)
    return None if totals is None else sum(v for k, v in totals.items() if "bytes" not in k)


def _wait_refusals(phone_name, before, want, timeout):
    """Poll the refusal counters until they moved by `want` (or timeout); returns the delta."""
    if before is None:
        return None
    deadline = time.monotonic() + timeout
    while True:
        now = read_refusals(phone_name)
        delta = (now or 0) - before
        if delta >= want or time.monotonic() >= deadline:
            return delta
        time.sleep(0.005)


def _settle(listeners, marker, accounted, bound):
    """Drain the listeners until `accounted(udp, packet)` holds for all they saw so far, or `bound`
    seconds passed (a frame that no counter and no listener ever sees): no fixed sleep, a call on a
    working phone reads its listeners as soon as the counters account for every frame.
    Returns ({check index: count} seen by UDP, {check index: count} seen by the packet socket)."""
    udp, packet = {}, {}
    deadline = time.monotonic() + bound
    while True:
        for total, got in zip((udp, packet), listeners.drain(marker)):
            for index, count in got.items():
                total[index] = total.get(index, 0) + count
        if accounted(udp, packet) or time.monotonic() >= deadline:
            return udp, packet
        time.sleep(0.005)


# ---------------------------------------------------------------- listeners

class _Listeners:
    """A UDP socket per family on the wildcard address (groups joined) and, optionally, a packet
    socket on `ifname`, all opened inside `netns` (None: this namespace)."""

    def __init__(self, netns, ifnames, families, packet_ifname=None):
        self.udp = {}
        self.packet = None
        self.netns = netns
        with _Entered(netns):
            indexes = [socket.if_nametoindex(n) for n in ifnames]
            for version in families:
                fam = socket.AF_INET if version == 4 else socket.AF_INET6
                sock = socket.socket(fam, socket.SOCK_DGRAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                if version == 6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(("0.0.0.0" if version == 4 else "::", 0))
                for ifindex in indexes:
                    try:  # joining the all-hosts / all-nodes group sends no report
                        if version == 4:
                            mreq = socket.inet_aton(MCAST_IP[4]) + struct.pack("=4si", b"\0" * 4, ifindex)
                            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
                        else:
                            mreq = socket.inet_pton(socket.AF_INET6, MCAST_IP[6]) + struct.pack("=I", ifindex)
                            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_JOIN_GROUP, mreq)
                    except OSError:
                        pass  # already a member through the device: receiving works the same
                sock.setblocking(False)
                self.udp[version] = sock
            if packet_ifname:
                # Protocol 0 until bound: binding a socket that already receives (ETH_P_ALL at
                # creation) unhooks it first, which waits for an RCU grace period.
                self.packet = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
                self.packet.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
                self.packet.bind((packet_ifname, ETH_P_ALL))
                self.packet.setblocking(False)

    def port(self, version):
        return self.udp[version].getsockname()[1]

    def drain(self, marker):
        """({check index: count} seen by UDP, {check index: count} seen by the packet socket)."""
        udp, packet = {}, {}
        for sock in self.udp.values():
            for data, _addr in _drain(sock):
                for idx in find_tags(data, marker):
                    udp[idx] = udp.get(idx, 0) + 1
        if self.packet is not None:
            for data, addr in _drain(self.packet):
                if addr[2] == PACKET_OUTGOING:
                    continue  # the yogurt's own transmissions (an ICMP error quoting a frame)
                for idx in find_tags(data, marker):
                    packet[idx] = packet.get(idx, 0) + 1
        return udp, packet

    def sockets(self):
        return list(self.udp.values()) + ([self.packet] if self.packet is not None else [])

    def close(self):
        _close_together(self.sockets())


class _Entered:
    def __init__(self, netns):
        self.netns = netns
        self.ctx = None

    def __enter__(self):
        if self.netns is not None:
            self.ctx = enter_netns(self.netns)
            self.ctx.__enter__()

    def __exit__(self, *exc):
        if self.ctx is not None:
            return self.ctx.__exit__(*exc)
        return False


def _drain(sock):
    out = []
    while True:
        try:
            out.append(sock.recvfrom(65535))
        except (BlockingIOError, InterruptedError):
            return out
        except OSError as exc:
            # A packet socket bound to a device that is down reports ENETDOWN once (sk_err);
            # the frames queued before or after are still there to read.
            if exc.errno != errno.ENETDOWN:
                raise


def _device_mac(netns, ifname):
    """(hatype, hardware address) of a device, by SIOCGIFHWADDR on a UDP socket: a packet socket
    would cost a full RCU grace period when it is closed (packet_release calls synchronize_net)."""
    def probe():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            ifreq = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, struct.pack("16s16x", ifname.encode()))
        hatype = struct.unpack_from("=H", ifreq, 16)[0]
        return hatype, ifreq[18:24] if hatype == ARPHRD_ETHER else b""
    return _in_netns(netns, probe)


def _close_together(socks):
    """Close sockets in parallel: each packet socket's release waits for an RCU grace period
    (synchronize_net), and waits that overlap end with one grace period, not one per socket."""
    threads = [threading.Thread(target=sock.close, daemon=True) for sock in socks if sock is not None]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# ---------------------------------------------------------------- host -> yogurt

def _send_batch(sock, items, counts):
    """Send each (payload, address) of items; count sent and errnos into counts."""
    for payload, addr in items:
        try:
            sock.sendto(payload, addr)
            counts["sent"] += 1
        except OSError as exc:
            # The device dropped it inside its transmit (a BPF drop reads as ENOBUFS):
            # refused at send time is a refusal too.
            key = errno.errorcode.get(exc.errno, str(exc.errno))
            counts["refused_at_send"][key] = counts["refused_at_send"].get(key, 0) + 1


def inject_matrix(end, phone_name=None, frames=FRAMES, wait=WAIT, refusal_timeout=0.2, marker=None, end_index=0):
    """Every host -> yogurt injection of one end; a list of check dicts (see the module's RETURN).

    end: {netns, host_ifname, cont_ifname, addresses}. The caller is in the host namespace.
    """
    marker = marker or new_marker()
    unicast = _unicast_by_version(end["addresses"])
    versions = sorted(unicast)
    hatype, cont_mac = _device_mac(end["netns"], end["cont_ifname"])
    l2 = hatype == ARPHRD_ETHER
    listeners = _Listeners(end["netns"], [end["cont_ifname"]], versions, packet_ifname=end["cont_ifname"])
    sockets = {}
    checks = []
    try:
        for label, stype in SOCKET_TYPES:
            sockets[label] = socket.socket(socket.AF_PACKET, stype, 0)
            sockets[label].bind((end["host_ifname"], 0))
        attempt = {"end": end, "end_index": end_index, "phone_name": phone_name, "frames": frames,
                   "marker": marker, "refusal_timeout": refusal_timeout, "l2": l2}
        for version in versions:
            targets = _inject_targets(version, unicast[version], cont_mac if l2 else None)
            for label, _stype in SOCKET_TYPES:
                for bypass in (0, 1):
                    sockets[label].setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, bypass)
                    for dest in DESTINATIONS:
                        checks.append(_inject_once(attempt, sockets[label], label, bool(bypass), version,
                                                   listeners.port(version), dest, targets[dest], len(checks)))
        udp, packet = _settle(listeners, marker, lambda u, p: all(
            _inject_accounted(check, u.get(i, 0), p.get(i, 0)) for i, check in enumerate(checks)), wait)
        for index, check in enumerate(checks):
            check["reached_udp"] = udp.get(index, 0)
            check["reached_packet"] = packet.get(index, 0)
    finally:
        _close_together(list(sockets.values()) + listeners.sockets())
    for check in checks:
        judge_inject(check, counted=phone_name is not None)
    return checks


def _inject_accounted(check, seen_udp, seen_packet):
    """Whether every frame of one injection check is accounted for: the refusal counters moved by
    all of them (a refused frame reaches nothing any more), or both listeners saw every frame that
    left the socket (a datapath that lets them through; the controls on a plain pair)."""
    delta = check["refused_delta"]
    if delta is not None and delta >= needed_refusals(check):
        return True
    return seen_udp >= check["sent"] and seen_packet >= check["sent"]


def _unicast_by_version(addresses):
    """{IP version: the first non-link-local address of that version} of an end's addresses."""
    unicast = {}
    for addr in addresses:
        iface = ipaddress.ip_interface(addr)
        if not iface.ip.is_link_local:
            unicast.setdefault(iface.version, str(iface.ip))
    return unicast


def _inject_targets(version, unicast_ip, cont_mac):
    """{destination kind: (dst ip, dst mac)}; cont_mac None: the device has no link layer (netkit l3)."""
    l2 = cont_mac is not None
    return {
        "unicast": (unicast_ip, cont_mac if l2 else b""),
        "broadcast": ("255.255.255.255" if version == 4 else MCAST_IP[6], BROADCAST_MAC if l2 else b""),
        "multicast": (MCAST_IP[version], MCAST_MAC[version] if l2 else b""),
    }


def _inject_once(attempt, sock, label, bypass, version, port, dest, target, index):
    """Send one batch of forged frames of one kind; the check dict (reached_* filled in later)."""
    end, frames, phone_name = attempt["end"], attempt["frames"], attempt["phone_name"]
    dst_ip, dst_mac = target
    proto = ETH_P_IP if version == 4 else ETH_P_IPV6
    packet = udp_packet(version, FORGED_IP[version], dst_ip, port, tagged(attempt["marker"], index))
    if label == "raw":
        frame = ether(dst_mac, FORGED_MAC, proto, packet) if attempt["l2"] else packet
        items = [(frame, (end["host_ifname"], proto))] * frames
    else:
        items = [(packet, (end["host_ifname"], proto, 0, 0, dst_mac))] * frames
    counts = {"sent": 0, "refused_at_send": {}}
    before = read_refusals(phone_name)
    _send_batch(sock, items, counts)
    need = counts["sent"] + sum(v for k, v in counts["refused_at_send"].items() if k in REFUSAL_ERRNOS)
    delta = _wait_refusals(phone_name, before, need, attempt["refusal_timeout"])
    return {
        "kind": "inject", "end": attempt["end_index"], "device": end["host_ifname"], "netns": end["netns"],
        "cont_ifname": end["cont_ifname"], "family": f"IPv{version}", "socket": label,
        "bypass": bypass, "dest": dest, "dst_ip": dst_ip, "port": port,
        "attempts": frames, "sent": counts["sent"], "refused_at_send": counts["refused_at_send"],
        "refused_delta": delta, "reached_udp": 0, "reached_packet": 0,
    }


def judge_inject(check, counted=True):
    """Set ok and detail of one injection check."""
    refused_send = sum(check["refused_at_send"].values())
    problems = []
    if check["reached_udp"]:
        problems.append(f"{check['reached_udp']} of {check['attempts']} frames reached the UDP socket in the yogurt")
    if check["reached_packet"]:
        problems.append(f"{check['reached_packet']} of {check['attempts']} frames reached a packet socket "
                        f"on {check['cont_ifname']} in the yogurt")
    other = {k: v for k, v in check["refused_at_send"].items() if k not in REFUSAL_ERRNOS}
    if other:
        problems.append("sends failed with " + ", ".join(f"{k} {v}/{check['attempts']}" for k, v in sorted(other.items()))
                        + " (the frames never left the socket, which is not a refusal by the phone)")
    delta = check["refused_delta"]
    if counted and (delta is None or delta < needed_refusals(check)):
        problems.append(f"the refusal counters moved by {delta if delta is not None else 'nothing (unreadable)'} "
                        f"for {needed_refusals(check)} frames ({check['sent']} sent, {refused_send} refused at send)")
    check["ok"] = not problems
    check["check"] = (f"inject end {check['end']} {check['device']} {check['family']} {check['socket']}"
                      f"{'+bypass' if check['bypass'] else ''} {check['dest']} {check['dst_ip']}")
    counters = "" if delta is None else f", refusal counters +{delta}"
    base = (f"{check['attempts']} frames, {check['sent']} sent, {refused_send} refused at send{counters}; "
            f"reached UDP {check['reached_udp']}, packet socket {check['reached_packet']}")
    check["detail"] = base if not problems else "; ".join(problems) + f" ({base})"
    return check


# ---------------------------------------------------------------- yogurt -> host

def ifindexes_of(ifnames):
    """Ifindexes of those of `ifnames` that exist in this process's network namespace."""
    found = set()
    for name in ifnames:
        try:
            found.add(socket.if_nametoindex(name))
        except OSError:
            pass
    return found


def host_view(host_ifnames):
    """What the host namespace looks like to a forger: {4: [addresses], 6: [...], 'gateway': {4: ip, 6: ip}}.

    Only the host's own addresses (never routed off: they are delivered locally) and its
    default gateways (claimed, never sent to) are used. Read with the raw rtnetlink reader.
    """
    view = {4: [], 6: [], "gateway": {}}
    own = ifindexes_of(host_ifnames)
    for dev in read_namespace().values():
        if dev["index"] in own:
            continue
        for cidr in dev["addresses"]:
            ip = ipaddress.ip_interface(cidr).ip
            if ip.is_loopback or ip.is_link_local or ip.is_multicast:
                continue
            view[ip.version].append(str(ip))
    try:
        view["gateway"].update(default_gateways())
    except Exception:  # pylint: disable=broad-except
        pass
    return view


def neighbours(ifindexes, ips, macs):
    """The host's neighbour entries that a forged frame could have made or changed."""
    return {(ifindex, dst, mac) for ifindex, dst, mac in neighbour_entries()
            if ifindex in ifindexes or dst in ips or mac in macs}


def run_reverse(phone, frames=FRAMES, wait=WAIT):
    """Every yogurt -> host attempt of one phone; a list of check dicts."""
    marker = new_marker()
    ends = phone["ends"]
    host_ifnames = [e["host_ifname"] for e in ends]
    view = host_view(host_ifnames)
    versions = sorted({ipaddress.ip_interface(a).version for e in ends for a in e["addresses"]})
    listeners = _Listeners(None, host_ifnames, versions)
    claims = {v: (view["gateway"].get(v) or (view[v][0] if view[v] else FORGED_IP[v])) for v in (4, 6)}
    ifindexes = ifindexes_of(host_ifnames)
    forged_mac = ":".join(f"{b:02x}" for b in FORGED_MAC)
    ips = set(claims.values()) | set(FORGED_IP.values())
    before = neighbours(ifindexes, ips, {forged_mac})
    counted = read_frames_counted(phone.get("name"))
    checks, opened = [], []
    try:
        for end_index, end in enumerate(ends):
            attempt = {"end": end, "end_index": end_index, "frames": frames, "marker": marker, "view": view,
                       "claims": claims, "listeners": listeners, "opened": opened}
            _reverse_end(attempt, checks)
        # Every forged frame is handled by the wire (forwarded to the other yogurt, or refused):
        # once the phone's counters moved by all of them, none can reach the host any more.
        need = sum(needed_refusals(c) for c in checks)
        udp, _packet = _settle(listeners, marker, lambda _u, _p: counted is not None and
                               (read_frames_counted(phone.get("name")) or 0) - counted >= need, wait)
        for index, check in enumerate(checks):
            check["reached_udp"] = udp.get(index, 0)
    finally:
        _close_together(opened + listeners.sockets())
    after = neighbours(ifindexes, ips, {forged_mac})
    for check in checks:
        _judge_reverse(check)
    checks.append(neighbour_check(before, after))
    return checks


def _reverse_end(attempt, checks):
    """From one yogurt's device: forged UDP to the host and a claim of a host address, per IP version."""
    end = attempt["end"]
    hatype, _mac = _device_mac(end["netns"], end["cont_ifname"])
    attempt["l2"] = hatype == ARPHRD_ETHER
    attempt["host_mac"] = _device_mac(None, end["host_ifname"])[1] if attempt["l2"] else b""
    sock = _in_netns(end["netns"], lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))
    attempt["opened"].append(sock)  # closed with the others by run_reverse (_close_together)
    sock.bind((end["cont_ifname"], 0))
    for version in sorted({ipaddress.ip_interface(a).version for a in end["addresses"]}):
        _reverse_udp(attempt, sock, version, checks)
        _reverse_claim(attempt, sock, version, checks)


def _reverse_check(attempt, version, dest, dst_ip, src_ip, counts):
    end = attempt["end"]
    return {"kind": "reverse", "end": attempt["end_index"], "device": end["cont_ifname"],
            "netns": end["netns"], "family": f"IPv{version}", "dest": dest,
            "dst_ip": dst_ip, "src_ip": src_ip, "attempts": attempt["frames"],
            "sent": counts["sent"], "refused_at_send": counts["refused_at_send"], "reached_udp": 0}


def _reverse_udp(attempt, sock, version, checks):
    end, view = attempt["end"], attempt["view"]
    proto = ETH_P_IP if version == 4 else ETH_P_IPV6
    port = attempt["listeners"].port(version)
    targets = [("broadcast", "255.255.255.255" if version == 4 else MCAST_IP[6], BROADCAST_MAC),
               ("multicast", MCAST_IP[version], MCAST_MAC[version])]
    if view[version]:
        # A host address is delivered locally, never forwarded: safe to aim at.
        targets.insert(0, ("unicast", view[version][0], attempt["host_mac"]))
    for dest, dst_ip, dst_mac in targets:
        packet = udp_packet(version, FORGED_IP[version], dst_ip, port, tagged(attempt["marker"], len(checks)))
        frame = ether(dst_mac, FORGED_MAC, proto, packet) if attempt["l2"] else packet
        counts = {"sent": 0, "refused_at_send": {}}
        _send_batch(sock, [(frame, (end["cont_ifname"], proto))] * attempt["frames"], counts)
        checks.append(_reverse_check(attempt, version, dest, dst_ip, FORGED_IP[version], counts))


def _reverse_claim(attempt, sock, version, checks):
    """Claim a host-namespace-looking address (the host's gateway, else its own)."""
    claimed = attempt["claims"][version]
    if version == 4:
        claim = ether(BROADCAST_MAC, FORGED_MAC, ETH_P_ARP, garp_packet(claimed, FORGED_MAC))
        dest = "gratuitous ARP"
    else:
        claim = ether(MCAST_MAC[6], FORGED_MAC, ETH_P_IPV6, unsolicited_na_packet(claimed, FORGED_MAC))
        dest = "unsolicited NA"
    if not attempt["l2"]:
        claim = claim[14:]
    claim_proto = ETH_P_ARP if version == 4 else ETH_P_IPV6
    counts = {"sent": 0, "refused_at_send": {}}
    _send_batch(sock, [(claim, (attempt["end"]["cont_ifname"], claim_proto))] * attempt["frames"], counts)
    checks.append(_reverse_check(attempt, version, dest, claimed, claimed, counts))


def _judge_reverse(check):
    check["ok"] = check["reached_udp"] == 0
    check["check"] = (f"reverse end {check['end']} {check['device']} {check['family']} {check['dest']} "
                      f"{check['dst_ip']} (source {check['src_ip']})")
    base = f"{check['attempts']} frames, {check['sent']} sent; reached a UDP socket of the host {check['reached_udp']}"
    check["detail"] = base if check["ok"] else f"{check['reached_udp']} of {check['attempts']} frames reached a " \
                                               f"UDP socket of the host namespace ({base})"


def neighbour_check(before, after):
    """The check that the host's neighbour entries (ifindex, address, lladdr) did not change."""
    was = {(i, d): m for i, d, m in before}
    now = {(i, d): m for i, d, m in after}
    changes = []
    for key in sorted(set(was) | set(now), key=str):
        if was.get(key) != now.get(key):
            changes.append({"ifindex": key[0], "dst": key[1], "before": was.get(key), "after": now.get(key)})
    text = ", ".join(f"{c['dst']} on ifindex {c['ifindex']}: {c['before'] or 'no entry'} -> {c['after'] or 'no entry'}"
                     for c in changes)
    return {"kind": "neighbours", "check": "host neighbour table", "ok": not changes, "changes": changes,
            "detail": "unchanged" if not changes else f"changed by the yogurts' frames: {text}"}


# ---------------------------------------------------------------- the whole call

class _stage:  # pylint: disable=invalid-name
    """A stage of the call that could not run (a device or namespace gone) is a failed check
    named after the stage; the other stages still run."""

    def __init__(self, checks, name):
        self.checks = checks
        self.name = name

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, _tb):
        if exc is None or not isinstance(exc, (OSError, NetnsError)):
            return False
        self.checks.append({"kind": "error", "check": self.name, "ok": False, "detail": f"{type(exc).__name__}: {exc}"})
        return True


def call_phone(phone, count=COUNT, injection=True, reverse=True, frames=FRAMES, wait=WAIT, wire_state=None):
    """Run the whole call for one normalized phone; returns a result dict with ok True/False."""
    ends = phone["ends"]
    checks = []
    for src, dst in ((0, 1), (1, 0)):
        for addr in ends[dst]["addresses"]:
            ip = str(ipaddress.ip_interface(addr).ip)
            why = ""
            try:
                replies = ping(ends[src]["netns"], ip, count=count)
            except OSError as exc:  # no route (a device down): no reply, and the reason why
                if getattr(exc, "errno", None) is None:
                    raise
                replies, why = 0, f" ({exc.strerror or exc})"
            checks.append({"kind": "ping", "end": src, "check": f"ping {ends[src]['netns']} -> {ip}",
                           "ok": replies == count, "replies": replies, "count": count,
                           "detail": f"{replies}/{count} replies{why}"})
            tcp = tcp_exchange(ends[src]["netns"], ends[dst]["netns"], ip)
            checks.append({"kind": "tcp", "end": src, "check": f"tcp {ends[src]['netns']} -> {ip}", "ok": tcp,
                           "detail": "echo received" if tcp else "no echo"})
    if injection:
        marker = new_marker()
        for end_index, end in enumerate(ends):
            with _stage(checks, f"injection on end {end_index} ({end['host_ifname']} -> {end['netns']} "
                                f"{end['cont_ifname']})"):
                checks.extend(inject_matrix(end, phone_name=phone["name"], frames=frames, wait=wait, marker=marker,
                                            end_index=end_index))
    if reverse:
        with _stage(checks, "reverse attempts from the yogurts"):
            checks.extend(run_reverse(phone, frames=frames, wait=wait))
    result = {"name": phone["name"], "ok": all(c["ok"] for c in checks), "checks": checks}
    result.update(wire_state or {})
    return result


def wire_state(phone, kernel):
    """backend, attach_mode and reason of a phone, read from its pinned wire."""
    try:
        info = wire.read_wire(phone["name"])
    except Exception:  # pylint: disable=broad-except
        info = {}
    backend, mode = info.get("backend"), info.get("attach_mode")
    return {"backend": backend, "attach_mode": mode,
            "reason": backend_reason(phone.get("backend"), backend, kernel, mode)}


def place_calls(phones, host=None, count=COUNT, injection=True, reverse=True, frames=FRAMES, wait=WAIT):
    """The call of every present phone of a host, as the call module returns it (without 'changed').

    {'ok', 'calls', 'summary', 'failures'}: one call dict and one summary line per phone (each
    line led by `host`), and one failure line per failed check. A broken phone (a device or
    namespace gone) is a failed check, not an exception.
    """
    kernel = short_kernel()
    calls = []
    records = read_records()
    for phone in phones:
        if phone.get("state", "present") != "present":
            continue
        board = switchboard.of_phones([phone["name"]], records)
        capture = switchboard.HostCapture([a for e in phone["ends"] for a in e["addresses"]])
        state = {}
        try:
            # From inside the switchboard: the wire is read there, and the injections come from
            # there, the nearest point root has to the yogurts.
            with in_netns(board or None):
                state = wire_state(phone, kernel)
                calls.append(call_phone(phone, count=count, injection=injection, reverse=reverse, frames=frames,
                                        wait=wait, wire_state=state))
        except Exception as exc:  # pylint: disable=broad-except
            calls.append(dict(state, name=phone["name"], ok=False, checks=[
                {"kind": "error", "check": "call", "ok": False, "detail": f"{type(exc).__name__}: {exc}"}]))
        finally:
            seen = capture.drain()
            capture.close()
        calls[-1]["switchboard"] = board
        calls[-1]["checks"].extend(switchboard.host_checks(phone, board, seen, read_namespace()))
        calls[-1]["ok"] = all(c["ok"] for c in calls[-1]["checks"])
    prefix = f"{host} " if host else ""
    failures = []
    for call in calls:
        call["summary"] = prefix + summary_line(call)
        failures.extend(failure_lines(call, host=host))
    return {"ok": not failures, "calls": calls, "summary": [c["summary"] for c in calls], "failures": failures}


# ---------------------------------------------------------------- what a person reads

def short_kernel(release=None):
    release = release or platform.release()
    match = re.match(r"\d+\.\d+", release)
    return match.group(0) if match else release


def backend_reason(requested, backend, kernel, attach_mode=None):
    """Why the phone is on its backend, in a few words."""
    if not backend:
        return "no wire found"
    if requested == backend:
        why = f"{backend} asked for"
    elif backend == "netkit":
        why = f"Linux {kernel} has netkit"
    else:
        why = f"Linux {kernel} has no netkit"
    if attach_mode == "tc":
        nums = tuple(int(x) for x in re.findall(r"\d+", kernel)[:2])
        why += ", no tcx" if len(nums) == 2 and nums < (6, 6) else ", tc asked for"
    return why


def summary_line(call):
    """One line per phone: backend and why | ping both ways | tcp | injection | reverse."""
    checks = call.get("checks", [])
    parts = []
    backend = call.get("backend") or "?"
    attach = call.get("attach_mode")
    head = f"{call['name']}: {backend}{'/' + attach if attach and attach != backend else ''}"
    if call.get("reason"):
        head += f" ({call['reason']})"
    parts.append(head)
    pings = [c for c in checks if c.get("kind") == "ping"]
    if pings:
        parts.append("ping " + " ".join(f"{c['replies']}/{c['count']}" for c in pings))
    tcps = [c for c in checks if c.get("kind") == "tcp"]
    if tcps:
        parts.append("tcp " + " ".join("ok" if c["ok"] else "FAIL" for c in tcps))
    injects = [c for c in checks if c.get("kind") == "inject"]
    if injects:
        total = sum(c["attempts"] for c in injects)
        refused = sum(_refused(c) for c in injects)
        udp = sum(c["reached_udp"] for c in injects)
        pkt = sum(c["reached_packet"] for c in injects)
        reached = "0 reached" if not (udp or pkt) else f"{udp + pkt} REACHED: packet socket {pkt}, UDP {udp}"
        text = f"injection refused {refused}/{total} ({reached})"
        if not all(c["ok"] for c in injects):
            text += f" FAILED {sum(not c['ok'] for c in injects)}/{len(injects)} checks"
        parts.append(text)
    reverse = [c for c in checks if c.get("kind") == "reverse"]
    neigh = [c for c in checks if c.get("kind") == "neighbours"]
    if reverse or neigh:
        total = sum(c["attempts"] for c in reverse)
        reached = sum(c["reached_udp"] for c in reverse)
        text = f"reverse kept out {total - reached}/{total}"
        if neigh:
            text += ", neighbours " + ("unchanged" if neigh[0]["ok"] else "CHANGED")
        parts.append(text)
    host = [c for c in checks if c.get("kind") == "hostns"]
    if host:
        where = f"host sides in {call['switchboard']}" if call.get("switchboard") else "host sides in the host ns"
        parts.append(f"{where}: host ns lists {len(host[0]['devices'])} phone devices, saw {host[-1]['frames']} frames")
    errors = [c for c in checks if c.get("kind") == "error"]
    for c in errors:
        parts.append(f"ERROR {c['detail']}")
    return " | ".join(parts)


def needed_refusals(check):
    """How far the refusal counters must move for one injection check: every frame that left the
    socket, and every send refused with ENOBUFS. A device that drops a frame inside its transmit
    returns ENOBUFS whoever dropped it: netkit's primary program counts its drop before it
    returns NETKIT_DROP, while a veth whose peer is down drops without any program (ENOBUFS too,
    measured on 6.18), which must not pass as a refusal by the phone."""
    return check["sent"] + sum(v for k, v in check["refused_at_send"].items() if k in REFUSAL_ERRNOS)


def _refused(check):
    """Frames of one injection check accounted for as refused by the phone (what the counters show)."""
    delta = check.get("refused_delta")
    if delta is None:
        return sum(v for k, v in check["refused_at_send"].items() if k in REFUSAL_ERRNOS)
    return min(max(delta, 0), needed_refusals(check))


def _inject_problems(check):
    """[(problem, numbers)] of one failed injection check."""
    out = []
    if check["reached_packet"]:
        out.append((f"frames reached a packet socket on {check['cont_ifname']} in {check['netns']}",
                    f"{check['reached_packet']}/{check['attempts']}"))
    if check["reached_udp"]:
        out.append((f"frames reached the UDP socket (port {check['port']}) in {check['netns']}",
                    f"{check['reached_udp']}/{check['attempts']}"))
    other = {k: v for k, v in check["refused_at_send"].items() if k not in REFUSAL_ERRNOS}
    if other:
        out.append(("sends failed (not a refusal by the phone)",
                    " ".join(f"{k} {v}/{check['attempts']}" for k, v in sorted(other.items()))))
    delta = check.get("refused_delta")
    if delta is None or delta < needed_refusals(check):
        if not out or delta is not None:
            out.append(("the refusal counters moved less than the frames sent or refused at send",
                        f"+{delta if delta is not None else '?'} for {needed_refusals(check)}"))
    return out


def failure_lines(call, host=None, limit=12):
    """One line per failed check (injections: per device and problem), naming host, phone, end,
    device, check and numbers."""
    where = f"host {host}, " if host else ""
    lines = []
    grouped = {}
    for c in call.get("checks", []):
        if c["ok"]:
            continue
        if c.get("kind") == "inject":
            for problem, numbers in _inject_problems(c):
                key = (c["end"], c["device"], problem)
                if key not in grouped:
                    grouped[key] = []
                    lines.append(key)
                grouped[key].append(f"{c['family']} {c['socket']}{'+bypass' if c['bypass'] else ''} "
                                    f"{c['dest']} {numbers}")
            continue
        if c.get("kind") == "reverse":
            place = f"end {c['end']}, yogurt {c['netns']} device {c['device']}: reverse {c['family']} {c['dest']} " \
                    f"to {c['dst_ip']}"
        elif c.get("kind") in ("ping", "tcp"):
            place = f"end {c['end']}: {c['check']}"
        else:
            place = c["check"]
        lines.append(f"{where}phone {call['name']}, {place}: {c['detail']}")
    out = []
    for line in lines:
        if isinstance(line, tuple):
            end, device, problem = line
            line = (f"{where}phone {call['name']}, end {end}, host device {device}: injection {problem}: "
                    + ", ".join(grouped[line]))
        out.append(line)
    if len(out) > limit:
        out = out[:limit] + [f"{where}phone {call['name']}: and {len(out) - limit} more failed checks"]
    return out
