# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The test injector (stdlib only): what root can write on a device.

  inject.py DEV KIND BYPASS MARK COUNT DST_MAC SRC_MAC ETHERTYPE L3_HEX

KIND raw: the whole frame (forged source MAC); dgram: the kernel adds the Ethernet header.
BYPASS 1 sets PACKET_QDISC_BYPASS (straight to the driver, past tc egress); MARK sets SO_MARK.
Prints {"ok": n, "enobufs": n, "other": n}: ENOBUFS means the device took the frame and a
program dropped it.
"""

import errno
import json
import socket
import sys

SOL_PACKET, PACKET_QDISC_BYPASS = 263, 20


def main(dev, kind, bypass, mark, count, dst_mac, src_mac, ethertype, l3):
    dst, src = bytes.fromhex(dst_mac.replace(":", "")), bytes.fromhex(src_mac.replace(":", ""))
    proto, l3 = int(ethertype, 16), bytes.fromhex(l3)
    if kind == "raw":
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        s.bind((dev, 0))
        frame, addr = dst + src + proto.to_bytes(2, "big") + l3, None
    else:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM)
        frame, addr = l3, (dev, proto, 0, 0, dst)
    s.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, int(bypass))
    if int(mark):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, int(mark))
    res = {"ok": 0, "enobufs": 0, "other": 0}
    for _i in range(int(count)):
        try:
            if addr is None:
                s.send(frame)
            else:
                s.sendto(frame, addr)
            res["ok"] += 1
        except OSError as exc:
            res["enobufs" if exc.errno == errno.ENOBUFS else "other"] += 1
    print(json.dumps(res))


if __name__ == "__main__":
    main(*sys.argv[1:])
