# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Kernel feature probes for the wire, Cilium style: try the real operation on a
throwaway object and read the errno. Nothing here changes the host: attachments are
tried on `lo` of a scratch network namespace that is deleted afterwards.

The netkit DEVICE probe (can a pair be created, scrub, headroom) lives with the netkit
code in netkit.py (probe_netkit); probe_wire() calls it when that file is present.
"""

from __future__ import annotations

import errno
import os
import platform
import uuid

from ansible_collections.yogurt.phone.plugins.module_utils import bpf


def _scratch_attach(prog_fd, attach_types):
    """{attach type: errno or 0} for attaching prog_fd to lo of a scratch netns."""
    from ansible_collections.yogurt.phone.plugins.module_utils.netns import (
        create_netns, delete_netns, enter_netns)
    scratch = f"ygwire-probe-{uuid.uuid4().hex[:10]}"
    create_netns(scratch)
    results = {}
    try:
        with enter_netns(scratch):
            for attach in attach_types:
                try:
                    fd = bpf.link_create(prog_fd, 1, attach)  # lo is ifindex 1 in a new netns
                except bpf.BpfError as exc:
                    results[attach] = exc.errno
                else:
                    os.close(fd)  # the link dies with its only fd
                    results[attach] = 0
    finally:
        delete_netns(scratch)
    return results


def probe_wire(with_netkit_device=True):
    """Facts about what the wire can use on this kernel.

    Returns {kernel, libbpf, bpffs, bpf_load, tcx, netkit_attach, netkit, details: {...}}.
    `netkit` (can a netkit device be created) is None when netkit.py is not available.
    """
    facts = {"kernel": platform.release(), "libbpf": None, "bpffs": bpf.bpffs_mounted(),
             "bpf_load": False, "tcx": False, "netkit_attach": False, "netkit": None, "details": {}}
    details = facts["details"]
    try:
        facts["libbpf"] = bpf.libbpf_version()
    except bpf.BpfError as exc:
        details["libbpf"] = str(exc)
        return facts
    try:
        prog = bpf.prog_load_trivial()
    except bpf.BpfError as exc:
        details["bpf_load"] = str(exc)
        return facts
    facts["bpf_load"] = True
    try:
        res = _scratch_attach(prog, ("tcx_ingress", "netkit_primary"))
    finally:
        os.close(prog)
    tcx = res["tcx_ingress"]
    facts["tcx"] = tcx == 0
    details["tcx"] = ("tcx attach works" if tcx == 0 else
                      f"tcx attach failed: {os.strerror(tcx)}; tcx needs Linux >= 6.6")
    nk = res["netkit_primary"]
    # On lo (not netkit), a kernel with netkit answers ENXIO; one older than 6.7 or built
    # without CONFIG_NETKIT answers EINVAL (6.18 without CONFIG_NETKIT, measured).
    facts["netkit_attach"] = nk == errno.ENXIO
    details["netkit_attach"] = ("the kernel can attach netkit programs" if nk == errno.ENXIO else
                                f"netkit attach refused ({os.strerror(nk)}): needs Linux >= 6.7 "
                                "built with CONFIG_NETKIT")
    if with_netkit_device:
        try:
            from ansible_collections.yogurt.phone.plugins.module_utils.netkit import probe_netkit
        except ImportError as exc:
            details["netkit"] = f"netkit probe not available: {exc}"
        else:
            try:
                nk_facts = probe_netkit()
                facts["netkit"] = bool(nk_facts.get("netkit"))
                details["netkit"] = nk_facts.get("detail", "")
                facts["netkit_features"] = {k: nk_facts.get(k) for k in ("scrub", "headroom", "tailroom")}
            except Exception as exc:  # a failed probe is a fact, not a crash
                details["netkit"] = f"netkit probe failed: {exc}"
    return facts
