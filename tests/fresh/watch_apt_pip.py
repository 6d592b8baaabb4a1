# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs inside a test VM (copied there, system python3, stdlib only): report every opening of
apt's and pip's programs and libraries until killed.

    python3 watch_apt_pip.py LOG &     # writes "READY ..." once watching, then "OPEN <path>"

An apt or pip process, or Ansible's apt module (python3-apt: apt_pkg) or pip module, has to
open one of these files: execve opens the program, import opens the module. inotify reports
each IN_OPEN, so "no line after READY" means nothing of apt or pip ran meanwhile.
"""

from __future__ import annotations

import ctypes
import glob
import os
import struct
import sys

IN_OPEN = 0x00000020
WATCHED = [
    "/usr/bin/apt", "/usr/bin/apt-get", "/usr/bin/apt-cache", "/usr/bin/apt-mark", "/usr/bin/apt-config",
    "/usr/bin/dpkg", "/usr/lib/apt/methods/http",
    "/usr/lib/python3/dist-packages/apt_pkg*.so", "/usr/lib/python3/dist-packages/apt/__init__.py",
    "/usr/bin/pip", "/usr/bin/pip3", "/usr/lib/python3/dist-packages/pip/__init__.py",
    "/usr/local/lib/python3*/dist-packages/pip/__init__.py",
]


def main() -> int:
    log = open(sys.argv[1], "a", buffering=1, encoding="utf-8")
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init()
    if fd < 0:
        log.write(f"ERROR inotify_init errno {ctypes.get_errno()}\n")
        return 1
    paths = {}
    for pattern in WATCHED:
        for path in glob.glob(pattern):
            wd = libc.inotify_add_watch(fd, path.encode(), IN_OPEN)
            if wd >= 0:
                paths[wd] = path
    log.write("READY " + " ".join(sorted(paths.values())) + "\n")
    while True:
        data = os.read(fd, 65536)
        offset = 0
        while offset < len(data):
            wd, mask, _cookie, length = struct.unpack_from("iIII", data, offset)
            offset += 16 + length
            if mask & IN_OPEN:
                log.write(f"OPEN {paths.get(wd, wd)}\n")


if __name__ == "__main__":
    sys.exit(main())
