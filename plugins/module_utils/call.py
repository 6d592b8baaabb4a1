# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A test call through a phone: ping and TCP both ways, then an injection attempt from the host.

A socket keeps the network namespace it was created in, so every socket here is opened
inside the right namespace (`enter_netns`) and then used from this one process: no
`ip netns exec`, no ping binary, one module run for all phones of a host.

Packets go only to addresses inside the phone's own namespaces. The injection writes
frames on the host-side device through AF_PACKET (with and without qdisc bypass), which
forces the device and never relies on routing; a UDP socket inside the yogurt must
receive none of them.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import select
import socket
import struct
import threading
import time

from ansible_collections.yogurt.phone.plugins.module_utils.netns import enter_netns

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
SOL_PACKET = 263
PACKET_QDISC_BYPASS = 20


def _in_netns(netns, factory):
    if netns is None:
        return factory()
    with enter_netns(netns):
        return factory()


def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(src_netns, dst_ip, count=3, timeout=1.0):
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


def _udp_packet(src_ip, dst_ip, dport, payload):
    udp = struct.pack("!HHHH", 40000, dport, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, socket.IPPROTO_UDP, 0,
                         socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + udp


def _udp6_packet(src_ip, dst_ip, dport, payload):
    src, dst = socket.inet_pton(socket.AF_INET6, src_ip), socket.inet_pton(socket.AF_INET6, dst_ip)
    length = 8 + len(payload)
    udp = struct.pack("!HHHH", 40000, dport, length, 0) + payload
    # UDP over IPv6 must carry a checksum (over the pseudo-header); 0 would be dropped.
    pseudo = src + dst + struct.pack("!IxxxB", length, socket.IPPROTO_UDP)
    udp = udp[:6] + struct.pack("!H", _checksum(pseudo + udp) or 0xFFFF) + udp[8:]
    header = struct.pack("!IHBB", 6 << 28, length, socket.IPPROTO_UDP, 64) + src + dst
    return header + udp


def inject(host_ifname, dst_netns, dst_ip, dst_mac=None, frames=10, wait=0.5):
    """Write UDP frames for dst_ip (IPv4 or IPv6) on the host-side device (AF_PACKET, with and
    without qdisc bypass); return how many a socket bound inside the yogurt received (must be 0)."""
    # The source is a documentation address: what matters is only whether a frame gets in.
    if ipaddress.ip_address(dst_ip).version == 6:
        family, proto, build, src_ip = socket.AF_INET6, ETH_P_IPV6, _udp6_packet, "2001:db8::66"
    else:
        family, proto, build, src_ip = socket.AF_INET, ETH_P_IP, _udp_packet, "192.0.2.66"
    listener = _in_netns(dst_netns, lambda: socket.socket(family, socket.SOCK_DGRAM))
    listener.bind((dst_ip, 0))
    dport = listener.getsockname()[1]
    listener.setblocking(False)
    packet = build(src_ip, dst_ip, dport, b"injected by the host")
    ifindex = socket.if_nametoindex(host_ifname)
    # SOCK_DGRAM: the kernel builds the link-layer header (Ethernet on veth, none on L3 netkit).
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(proto))
    sent = 0
    refused_at_send = {}
    try:
        raw.bind((host_ifname, proto))
        mac = bytes.fromhex(dst_mac.replace(":", "")) if dst_mac else b"\xff" * 6
        for bypass in (0, 1):
            raw.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, bypass)
            for _frame in range(frames):
                try:
                    raw.sendto(packet, (host_ifname, proto, 0, 0, mac))
                    sent += 1
                except OSError as exc:
                    # The device dropped it inside its transmit (a BPF drop reads as ENOBUFS):
                    # refused at send time is a refusal too.
                    key = errno.errorcode.get(exc.errno, str(exc.errno))
                    refused_at_send[key] = refused_at_send.get(key, 0) + 1
        time.sleep(wait)
        received = 0
        while True:
            try:
                listener.recv(2048)
                received += 1
            except BlockingIOError:
                break
        return {"ifindex": ifindex, "attempted": 2 * frames, "sent": sent, "received": received,
                "refused_at_send": refused_at_send}
    finally:
        raw.close()
        listener.close()


def call_phone(phone, count=3, injection=True, read_mac=None):
    """Run the whole call for one normalized phone; returns a result dict with ok True/False."""
    ends = phone["ends"]
    checks = []
    for src, dst in ((0, 1), (1, 0)):
        for addr in ends[dst]["addresses"]:
            ip = str(ipaddress.ip_interface(addr).ip)
            replies = ping(ends[src]["netns"], ip, count=count)
            checks.append({"check": f"ping {ends[src]['netns']} -> {ip}", "ok": replies == count,
                           "detail": f"{replies}/{count} replies"})
            tcp = tcp_exchange(ends[src]["netns"], ends[dst]["netns"], ip)
            checks.append({"check": f"tcp {ends[src]['netns']} -> {ip}", "ok": tcp,
                           "detail": "echo received" if tcp else "no echo"})
    if injection:
        for end in ends:
            for addr in end["addresses"]:
                iface = ipaddress.ip_interface(addr)
                mac = read_mac(end) if read_mac else None
                res = inject(end["host_ifname"], end["netns"], str(iface.ip), mac)
                checks.append({"check": f"inject on {end['host_ifname']} -> {iface.ip}", "ok": res["received"] == 0,
                               "detail": f"{res['received']} of {res['attempted']} frames reached the yogurt "
                                         f"({res['attempted'] - res['sent']} refused at send)",
                               **res})
    return {"name": phone["name"], "ok": all(c["ok"] for c in checks), "checks": checks}
