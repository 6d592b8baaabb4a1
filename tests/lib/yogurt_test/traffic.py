# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The listener, the injector, the UDP sender and the TCP client, run inside namespaces.

Each is a stdlib-only script in scripts/ run by the system python3 (what a yogurt has);
frames are built here, in the test's process, and handed to the injector as hex.
"""

import contextlib
import json
import subprocess
import time

from . import SCRIPTS
from .frames import FORGED_MAC, MAGIC, PORT
from .netns import popen, run


def script(name):
    return ["python3", str(SCRIPTS / f"{name}.py")]


class Listener:
    """scripts/listen.py in `ns` (udp, tcp or probe mode); stop() closes its stdin and reads its count."""

    def __init__(self, ns, mode, *args):
        self.ns = ns
        self.proc = popen(ns, script("listen") + [mode] + [str(a) for a in args], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.kill()
            raise AssertionError(f"listener in {ns} did not start: {line} {self.proc.stderr.read()}")

    def stop(self, settle=0.0):
        """What arrived: connections (tcp), datagrams (udp), or {"packet", "udp"} (probe)."""
        time.sleep(settle)  # let the stack finish with the last frame
        out, err = self.proc.communicate(input="", timeout=10)
        assert self.proc.returncode == 0, err
        return json.loads(out)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def listening(ns, mode, *args):
    lst = Listener(ns, mode, *args)
    try:
        yield lst
    finally:
        lst.kill()


@contextlib.contextmanager
def probing(ns, dev, port=PORT, settle=0.2):
    """A packet socket on `dev` and UDP sockets on `port` in `ns`; yields a dict filled on exit."""
    seen = {}
    with listening(ns, "probe", dev, port, MAGIC.decode()) as lst:
        yield seen
        seen.update(lst.stop(settle))


def inject(ns, dev, dst_mac, l3, ethertype="0800", kind="raw", bypass=False, mark=0, count=10,
           src_mac=FORGED_MAC):
    """`count` frames written as root on an AF_PACKET socket on `dev` in `ns`: {"ok", "enobufs", "other"}.

    ENOBUFS means the device took the frame and a program dropped it: handed all the same."""
    proc = run(ns, script("inject") + [dev, kind, int(bool(bypass)), mark, count, dst_mac, src_mac, ethertype,
                                       l3.hex()])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def handed(res):
    """Frames the injector handed to the device."""
    assert res["other"] == 0, res
    return res["ok"] + res["enobufs"]


def send_udp(ns, dst, port, count, check=False):
    """Datagrams sent from `ns` (the sender's own count)."""
    proc = run(ns, script("send_udp") + [dst, port, count], check=check)
    return int(proc.stdout.strip() or 0)


def connect(ns, dst, port, timeout=1.0):
    """"reply <what the server said>" or "error <errno|timeout>"."""
    return run(ns, script("connect") + [dst, port, timeout], timeout=timeout + 30).stdout.strip()
