# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Attaching the wire's programs where bpf_link is not the whole story: tc clsact filters
over netlink (kernels without tcx), native XDP state over netlink, and whether a pinned
link (tcx, netkit or xdp) sits where it should.

The bpf(2)/libbpf layer (load, link_create, prog_query) is _bpf.py; this file is the
netlink side of attaching. Every function takes an IPRoute socket or works in the
calling thread's namespace; a socket works in the namespace it was opened in.

PRIVATE to the yogurt.phone collection (like community.crypto's module_utils): no public API,
names may change in any release.
"""

from __future__ import annotations

import errno as errno_mod
import struct

from ansible_collections.yogurt.phone.plugins.module_utils._bpf import BpfError, prog_query
from ansible_collections.yogurt.phone.plugins.module_utils._netlink import read_link_raw
from ansible_collections.yogurt.phone.plugins.module_utils._netns import in_netns

XDP_NATIVE_MODES = (1, 4)  # IFLA_XDP_ATTACHED: native (driver) alone, or among several


# No tcx before Linux 6.6: the same SCHED_CLS programs attach as direct-action cls_bpf
# filters on a clsact qdisc. A filter holds its program itself, so it outlives the
# loader without a pin; `tc filter replace` swaps the program atomically.

TC_PARENTS = {"ingress": 0xFFFFFFF2, "egress": 0xFFFFFFF3}
TC_PRIO = 0x7967    # "yg": the priority that marks our filters
_TCA_BPF_NAME, _TCA_BPF_TAG, _TCA_BPF_ID = 7, 10, 11


def _tc_options(msg):
    """Raw TCA_OPTIONS attributes of a cls_bpf filter (pyroute2 0.9 decodes neither id nor tag)."""
    opts = msg.get_attr("TCA_OPTIONS")
    if opts is None:
        return {}
    buf = opts.data[opts.offset + 4:opts.offset + opts.length]
    attrs, i = {}, 0
    while i + 4 <= len(buf):
        length, kind = struct.unpack_from("=HH", buf, i)
        if length < 4:
            break
        attrs[kind & 0x3FFF] = buf[i + 4:i + length]
        i += (length + 3) & ~3
    return attrs


def tc_filters(ipr, ifindex):
    """{'ingress'|'egress': {'prog_id', 'tag', 'name'}} of our filters on ifindex (netns of `ipr`)."""
    found = {}
    for direction, parent in TC_PARENTS.items():
        try:
            msgs = ipr.get_filters(index=ifindex, parent=parent)
        except Exception as exc:  # no clsact qdisc yet, or no device any more: nothing of ours
            if getattr(exc, "code", None) in (errno_mod.EINVAL, errno_mod.ENOENT, errno_mod.ENODEV):
                continue
            raise
        for msg in msgs:
            attrs = _tc_options(msg)
            if msg["info"] >> 16 != TC_PRIO or _TCA_BPF_ID not in attrs:
                continue
            found[direction] = {"prog_id": struct.unpack("=I", attrs[_TCA_BPF_ID][:4])[0],
                                "tag": attrs.get(_TCA_BPF_TAG, b"").hex(),
                                "name": attrs.get(_TCA_BPF_NAME, b"").split(b"\0", 1)[0].decode()}
    return found


def tc_attach(ipr, ifindex, direction, prog_fd, name):
    """Attach (or atomically replace) our direct-action filter on ifindex's clsact hook."""
    try:
        ipr.tc("add", "clsact", ifindex)
    except Exception as exc:
        if getattr(exc, "code", None) != errno_mod.EEXIST:
            raise BpfError(getattr(exc, "code", errno_mod.EIO), f"adding a clsact qdisc on ifindex {ifindex}: {exc}") from None
    try:
        ipr.tc("replace-filter", "bpf", ifindex, handle=1, fd=prog_fd, name=name, parent=TC_PARENTS[direction],
               classid=1, direct_action=True, prio=TC_PRIO)
    except Exception as exc:
        raise BpfError(getattr(exc, "code", errno_mod.EIO),
                       f"attaching {name} as a tc {direction} filter on ifindex {ifindex}: {exc}") from None


def tc_detach(ipr, ifindex, direction):
    """Remove our filter (not the clsact qdisc: other filters may live there)."""
    try:
        ipr.tc("del-filter", "bpf", ifindex, handle=1, parent=TC_PARENTS[direction], prio=TC_PRIO)
    except Exception as exc:
        if getattr(exc, "code", None) not in (errno_mod.ENOENT, errno_mod.EINVAL, errno_mod.ENODEV):
            raise BpfError(getattr(exc, "code", errno_mod.EIO),
                           f"removing the tc {direction} filter on ifindex {ifindex}: {exc}") from None


# ---------------------------------------------------------------- XDP

def xdp_query(ifindex, netns=None):
    """{'mode', 'drv_prog_id', 'skb_prog_id'} of ifindex's XDP in `netns`; None if no such device.

    mode: 0 none, 1 native (driver), 2 generic (skb), 3 offload, 4 several. BPF_PROG_QUERY
    does not answer for XDP; this is IFLA_XDP over netlink, as `ip link show` reads it.
    """
    try:
        dev = read_link_raw(ifindex, netns)
    except OSError as exc:
        raise BpfError(exc.errno or errno_mod.EIO, f"reading XDP state of ifindex {ifindex}: {exc}") from None
    return dev["xdp"] if dev else None


# ---------------------------------------------------------------- where links sit

def link_attached(link, ifindex, attach_type, netns=None):
    """Is the pinned link `link` (_bpf.link_info plus its 'id') attached at (ifindex, attach_type) in `netns`?

    tcx and netkit: BPF_PROG_QUERY lists the link. XDP: the link reports its ifindex but not
    its namespace, and BPF_PROG_QUERY does not cover XDP; so the link must name this ifindex
    and the device there must run the link's program in native mode (IFLA_XDP_DRV_PROG_ID).
    """
    if attach_type == "xdp":
        if link.get("type") != "xdp" or link.get("ifindex") != ifindex:
            return False
        xdp = xdp_query(ifindex, netns)
        return bool(xdp and xdp["mode"] in XDP_NATIVE_MODES and xdp["drv_prog_id"] == link.get("prog_id"))
    try:
        with in_netns(netns):
            return link["id"] in prog_query(ifindex, attach_type)["link_ids"]
    except BpfError as exc:
        if exc.errno == errno_mod.ENODEV:
            return False
        raise
