# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The test listener (stdlib only). Prints "ready", then, when stdin closes, a JSON count.

  listen.py udp ADDR PORT          datagrams on ADDR:PORT
  listen.py tcp ADDR PORTS IDENT   answers every connection on each port with IDENT; connections
  listen.py probe DEV PORT MAGIC   frames carrying MAGIC a packet socket on DEV receives (not its
                                   own outgoing ones) and datagrams carrying MAGIC on UDP PORT
                                   (IPv4 and IPv6): {"packet": n, "udp": n}

Counting until stdin closes makes the window the sender's whole run, however long it takes
to start (a fixed silence timeout ended before a slow sender began, under load).
"""

import json
import select
import socket
import sys


def udp(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, int(port)))
    return [s]


def tcp(addr, ports):
    socks = []
    for port in ports.split(","):
        s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, int(port)))
        s.listen(16)
        socks.append(s)
    return socks


def probe(dev, port):
    pkt = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    pkt.bind((dev, 0))
    u4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u4.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    u4.bind(("0.0.0.0", int(port)))
    u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    u6.bind(("::", int(port)))
    return [pkt, u4, u6]


def main(mode, *args):
    socks = {"udp": udp, "tcp": tcp, "probe": probe}[mode](*args[:2])
    seen = {"packet": 0, "udp": 0} if mode == "probe" else 0
    print("ready", flush=True)
    while True:
        ready = select.select(socks + [sys.stdin], [], [])[0]
        if sys.stdin in ready:
            break
        for s in ready:
            if mode == "tcp":
                conn, _peer = s.accept()
                conn.sendall(args[2].encode())
                conn.close()
                seen += 1
            elif mode == "udp":
                s.recv(65536)
                seen += 1
            else:
                data, addr = s.recvfrom(65536)
                if args[2].encode() not in data:
                    continue
                if s is socks[0]:
                    if addr[2] != socket.PACKET_OUTGOING:
                        seen["packet"] += 1
                else:
                    seen["udp"] += 1
    print(json.dumps(seen), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
