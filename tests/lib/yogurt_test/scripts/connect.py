# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""connect.py DST PORT TIMEOUT: a TCP connect; prints "reply <what came back>" or "error <errno|timeout>"."""

import socket
import sys


def main(dst, port, timeout):
    s = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET)
    s.settimeout(float(timeout))
    try:
        s.connect((dst, int(port)))
        print("reply " + s.recv(100).decode())
    except OSError as exc:
        print("error " + ("timeout" if isinstance(exc, socket.timeout) else str(exc.errno)))


if __name__ == "__main__":
    main(*sys.argv[1:])
