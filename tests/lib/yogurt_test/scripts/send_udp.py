# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""send_udp.py DST PORT COUNT: COUNT datagrams through the stack; prints how many were sent."""

import socket
import sys


def main(dst, port, count):
    s = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_DGRAM)
    sent = 0
    for _i in range(int(count)):
        try:
            s.sendto(b"through the wire", (dst, int(port)))
            sent += 1
        except OSError:
            pass
    print(sent)


if __name__ == "__main__":
    main(*sys.argv[1:])
