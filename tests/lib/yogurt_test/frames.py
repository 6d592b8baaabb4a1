# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Frames for the injector, built by the collection's own builders (plugins/module_utils/_call.py)."""

import socket
import struct

from ansible_collections.yogurt.phone.plugins.module_utils._call import ETH_P_IP, udp_packet

MAGIC = b"yogurt-inject-probe"
PORT = 5600
FORGED_MAC = "02:00:00:00:00:01"
WIRE_MARK = 0x79677274  # WIRE_MARK in bpf/wire.h: a host process may forge it as SO_MARK


def mac(text):
    return bytes.fromhex(text.replace(":", ""))


def ipv4_udp(src, dst, port=PORT, payload=MAGIC):
    return udp_packet(4, src, dst, port, payload)


def ipv6_udp(src, dst, port=PORT, payload=MAGIC):
    return udp_packet(6, src, dst, port, payload)


def arp(op, sha, spa, tha, tpa):
    """An ARP request (op 1) or reply (op 2), addresses as text."""
    return (struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, op) + mac(sha) + socket.inet_aton(spa) + mac(tha)
            + socket.inet_aton(tpa))
