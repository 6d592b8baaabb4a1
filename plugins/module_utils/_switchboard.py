# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The switchboard: one network namespace per host that holds every phone's host-side devices.

With the host sides there, the host's own namespace holds no device of any phone, so nothing
in it (`tcpdump -i any`, a network manager, udev, a firewall) sees a phone's devices or a
call's frames. The wire only needs both host sides of a phone in one namespace: netkit's
`bpf_redirect` resolves its target in the namespace of the device it runs on, and veth's
`bpf_redirect_peer` works from a host side in any namespace.

The code that builds and reads phones works on "this thread's namespace", so a module enters
the switchboard with setns(2) on its own thread (`inside`) instead of re-running itself
under `ip netns exec` (which also unshares the mount namespace, so the yogurts' /run/netns
mounts would die with it). Sockets, netlink, sysctls under /proc/sys/net and bpf_link
attaches then all act in the switchboard; /run/netns and bpffs are the host's, as before.

A phone's record says where its host sides are: `switchboard` is the namespace's name, ""
the host's own namespace (records written before 2.0.0 have no such key and mean "").

PRIVATE to the yogurt.phone collection (like community.crypto's module_utils): no public API,
names may change in any release.
"""

from __future__ import annotations

import contextlib
import socket

from ansible_collections.yogurt.phone.plugins.module_utils._netns import (
    create_netns,
    delete_netns,
    enter_netns,
    netns_exists,
    scratch_netns,
)
from ansible_collections.yogurt.phone.plugins.module_utils._netlink import read_namespace

DEFAULT_SWITCHBOARD = "yogurt-switchboard"
ETH_P_ALL = 0x0003


def label(switchboard):
    """How a person reads a layout: the namespace's name, or the host's own namespace."""
    return f"namespace {switchboard}" if switchboard else "the host's namespace"


def recorded(record):
    """The switchboard a phone's record names ("" = the host's namespace, also for old records)."""
    return (record or {}).get("switchboard", "")


def of_phones(names, records):
    """The switchboard the host sides of `names` are in, from their records; a phone without a
    record is looked for in the default switchboard when it exists, else in this namespace."""
    for name in names:
        if name in records:
            return recorded(records[name])
    return DEFAULT_SWITCHBOARD if netns_exists(DEFAULT_SWITCHBOARD) else ""


@contextlib.contextmanager
def inside(switchboard, create=False, check_mode=False):
    """Run the body with this thread in `switchboard` ("" = stay). Yields whether it existed.

    A missing one is made when `create` (and not in check mode); otherwise the body runs in a
    fresh unnamed namespace, which looks exactly like a new switchboard (empty) and goes with
    the process: check mode can then report what a converge would do without making it.
    """
    if not switchboard:
        yield True
        return
    existed = netns_exists(switchboard)
    if not existed and create and not check_mode:
        create_netns(switchboard)
    if existed or (create and not check_mode):
        with enter_netns(switchboard):
            yield existed
        return
    with scratch_netns():
        yield False


def devices_in(switchboard):
    """Names of the devices in `switchboard` other than lo (None if it does not exist)."""
    if not netns_exists(switchboard):
        return None
    return sorted(n for n in read_namespace(switchboard) if n != "lo")


def remove_if_unused(switchboard, records, check_mode, leaving=()):
    """Delete `switchboard` once no record names it and it holds no device (but those `leaving`,
    which check mode has not removed). Returns the actions."""
    if not switchboard or any(recorded(r) == switchboard for r in records.values()):
        return []
    left = devices_in(switchboard)
    if left is None or set(left) - set(leaving):
        return []
    if not check_mode:
        delete_netns(switchboard)
    return [f"removed the switchboard namespace {switchboard} (its last phone went)"]


class HostCapture:
    """A packet socket bound to no device (ifindex 0: every device, what `tcpdump -i any` opens)
    in the calling thread's namespace, counting frames that carry any of a phone's addresses."""

    def __init__(self, addresses):
        self.needles = {socket.inet_pton(socket.AF_INET6 if ":" in a else socket.AF_INET, a.split("/")[0])
                        for a in addresses}
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        # Left unbound: a packet socket with a protocol and no bind receives from every device
        # (sll_ifindex 0), what `tcpdump -i any` opens.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.setblocking(False)
        self.frames = 0

    def drain(self):
        """Read what is queued; returns the number of the phone's frames seen so far."""
        while True:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            if any(needle in data for needle in self.needles):
                self.frames += 1
        return self.frames

    def close(self):
        self.sock.close()


def host_checks(phone, switchboard, frames, host_devices):
    """The call's checks of the host's namespace: which of the phone's devices it lists, and
    how many of the call's frames a capture on every device there saw."""
    names = [e[k] for e in phone["ends"] for k in ("host_ifname", "cont_ifname")]
    listed = sorted(n for n in names if n in host_devices)
    if not switchboard:
        # The seed's layout: the host sides are in the host's namespace, so it sees the call.
        return [{"kind": "hostns", "check": "host namespace capture", "ok": True, "frames": frames,
                 "devices": listed, "detail": f"host sides in the host's namespace: {len(listed)} devices listed, "
                                              f"a capture there saw {frames} frames of the call"}]
    return [
        {"kind": "hostns", "check": "host namespace lists no phone device", "ok": not listed, "frames": frames,
         "devices": listed, "detail": f"listed {', '.join(listed)}" if listed else "none listed"},
        {"kind": "hostns", "check": "host namespace capture sees no frame of the call", "ok": frames == 0,
         "frames": frames, "devices": listed,
         "detail": f"a packet socket on every device of the host's namespace saw {frames} frames of the call"},
    ]
