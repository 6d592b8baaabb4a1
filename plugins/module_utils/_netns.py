# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Named network namespaces, the way `ip netns` keeps them.

A named namespace is an nsfs bind mount at /run/netns/<name>. This file creates,
lists, enters and deletes them with the same system calls iproute2 uses, so namespaces
made here and by `ip netns add` are interchangeable. No pyroute2 is needed.

Namespaces are switched per thread (setns(2) acts on the calling thread); every switch
is undone by `enter_netns` on the way out, even on error.

PRIVATE to the yogurt.phone collection (like community.crypto's module_utils): no public API,
names may change in any release.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import socket
import struct

from ansible_collections.yogurt.phone.plugins.module_utils._names import netns_problem

NETNS_RUN_DIR = "/run/netns"

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_SHARED = 1 << 20
MNT_DETACH = 2

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

_libc = None


class NetnsError(Exception):
    """A namespace operation failed; the message says which and why."""


def _c():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
        _libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        _libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
        _libc.unshare.argtypes = [ctypes.c_int]
    return _libc


def _check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise NetnsError(f"{what}: {os.strerror(err)} (errno {err})")


def netns_path(name):
    return os.path.join(NETNS_RUN_DIR, name)


def _is_nsfs(path):
    """True if `path` is a live namespace bind mount (not a stale empty file)."""
    try:
        return os.stat(path).st_dev == os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return False


def list_netns():
    """Names of the live named namespaces (exact names, nothing else)."""
    try:
        entries = os.listdir(NETNS_RUN_DIR)
    except FileNotFoundError:
        return []
    return sorted(e for e in entries if _is_nsfs(netns_path(e)))


def netns_exists(name):
    """Exact-name match: 'yogurt-10' never counts as 'yogurt-1'."""
    return _is_nsfs(netns_path(name))


@contextlib.contextmanager
def enter_netns(name):
    """Run the body with the calling thread inside network namespace `name`."""
    path = netns_path(name)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NetnsError(f"network namespace '{name}' does not exist ({path} is missing)") from None
    try:
        with _entered_fd(target, name):
            yield
    finally:
        os.close(target)


@contextlib.contextmanager
def in_netns(name):
    """enter_netns(name); with name None, stay in the calling thread's namespace (the host side)."""
    if name is None:
        yield
        return
    with enter_netns(name):
        yield


@contextlib.contextmanager
def _away(enter, what):
    """This thread in another network namespace for the span of the block: `enter()` (a setns or
    an unshare, returning libc's result; `what` names it in an error), then back home."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(enter(), what)
        try:
            yield
        finally:
            _check(_c().setns(home, CLONE_NEWNET), "returning to the original network namespace")
    finally:
        os.close(home)


def _entered_fd(target_fd, label):
    return _away(lambda: _c().setns(target_fd, CLONE_NEWNET), f"entering network namespace '{label}'")


def scratch_netns():
    """A new unnamed network namespace for this thread, for the span of the block; it goes with
    its last reference."""
    return _away(lambda: _c().unshare(CLONE_NEWNET), "creating a scratch network namespace")


def _ensure_run_dir():
    """Make /run/netns a shared mount point, as `ip netns add` does, so mounts propagate."""
    os.makedirs(NETNS_RUN_DIR, mode=0o755, exist_ok=True)
    libc = _c()
    if libc.mount(b"", NETNS_RUN_DIR.encode(), b"none", MS_SHARED | MS_REC, None) == 0:
        return
    if ctypes.get_errno() != errno.EINVAL:
        _check(-1, f"making {NETNS_RUN_DIR} a shared mount")
    # EINVAL: not a mount point yet. Bind it onto itself, then make it shared.
    _check(libc.mount(NETNS_RUN_DIR.encode(), NETNS_RUN_DIR.encode(), b"none", MS_BIND | MS_REC, None),
           f"bind-mounting {NETNS_RUN_DIR} onto itself")
    _check(libc.mount(b"", NETNS_RUN_DIR.encode(), b"none", MS_SHARED | MS_REC, None),
           f"making {NETNS_RUN_DIR} a shared mount")


def create_netns(name):
    """Create /run/netns/<name> holding a new network namespace. Heals a stale file."""
    reason = netns_problem(name)
    if reason:
        raise NetnsError(reason)
    _ensure_run_dir()
    path = netns_path(name)
    if os.path.lexists(path) and not _is_nsfs(path):
        os.unlink(path)  # left by an interrupted create: nothing is mounted on it
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0)
    os.close(fd)
    libc = _c()
    try:
        with _away(lambda: libc.unshare(CLONE_NEWNET), f"creating network namespace '{name}'"):
            _check(libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none", MS_BIND, None),
                   f"bind-mounting the new namespace on {path}")
    except Exception:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def delete_netns(name):
    """Unmount and remove /run/netns/<name>. Devices inside go with the last reference."""
    path = netns_path(name)
    if _c().umount2(path.encode(), MNT_DETACH) != 0 and ctypes.get_errno() not in (errno.EINVAL, errno.ENOENT):
        _check(-1, f"unmounting {path}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _lo_flags(sock, flags=None):
    if flags is None:
        res = fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack("16sH14x", b"lo", 0))
        return struct.unpack("16sH14x", res)[1]
    fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags))
    return flags


def loopback_is_up(name):
    with enter_netns(name):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            return bool(_lo_flags(sock) & IFF_UP)


def set_loopback(name, up):
    """Bring `lo` of namespace `name` up or down."""
    with enter_netns(name):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            flags = _lo_flags(sock)
            wanted = flags | IFF_UP if up else flags & ~IFF_UP
            if wanted != flags:
                _lo_flags(sock, wanted)
