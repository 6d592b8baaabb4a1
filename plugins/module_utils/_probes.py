# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Kernel feature probes, Cilium style: try the real operation on a throwaway object and
read the errno. Nothing here changes the host: attachments are tried on `lo` of a scratch
network namespace that is deleted afterwards.

probe_kernel() is the one set of kernel facts (the `kernel` result of kernel_info, phones
and phone_info); tcx_errno() is the one tcx probe (the wire asks it in attach: auto).
Attach results are cached for the process: the kernel does not change under a module run.
The netkit DEVICE probe (can a pair be created, scrub, headroom, pairing) is _netkit.probe_netkit().

PRIVATE to the yogurt.phone collection (like community.crypto's module_utils): no public API,
names may change in any release.
"""

from __future__ import annotations

import errno
import os
import platform
import threading
import uuid

from ansible_collections.yogurt.phone.plugins.module_utils import _bpf as bpf
from ansible_collections.yogurt.phone.plugins.module_utils._netkit import probe_netkit
from ansible_collections.yogurt.phone.plugins.module_utils._netns import create_netns, delete_netns, enter_netns

PROBED_ATTACH_TYPES = ("tcx_ingress", "netkit_primary")
TCX_NEEDS = "tcx needs Linux >= 6.6"

_attach_cache = {}
_attach_lock = threading.Lock()


def _scratch_attach(prog_fd, attach_types):
    """{attach type: errno or 0} for attaching prog_fd to lo of a scratch netns."""
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


def attach_errnos():
    """{attach type: errno or 0} of PROBED_ATTACH_TYPES (cached); BpfError if no program loads."""
    with _attach_lock:
        if not _attach_cache:
            prog = bpf.prog_load_trivial()
            try:
                _attach_cache.update(_scratch_attach(prog, PROBED_ATTACH_TYPES))
            finally:
                os.close(prog)
        return dict(_attach_cache)


def tcx_errno():
    """0 if tcx links attach on this kernel, else the errno of trying (EINVAL before Linux 6.6)."""
    return attach_errnos()["tcx_ingress"]


def _attach_facts(facts):
    res = attach_errnos()
    tcx = res["tcx_ingress"]
    facts["tcx"] = tcx == 0
    facts["tcx_reason"] = "tcx attach works" if tcx == 0 else f"tcx attach failed: {os.strerror(tcx)}; {TCX_NEEDS}"
    nk = res["netkit_primary"]
    # On lo (not netkit), a kernel with netkit answers ENXIO; one older than 6.7 or built
    # without CONFIG_NETKIT answers EINVAL (6.18 without CONFIG_NETKIT, measured).
    facts["netkit_attach"] = nk == errno.ENXIO
    facts["netkit_attach_reason"] = ("the kernel can attach netkit programs" if nk == errno.ENXIO else
                                     f"netkit attach refused ({os.strerror(nk)}): needs Linux >= 6.7 "
                                     "built with CONFIG_NETKIT")


def _netkit_facts(facts):
    try:
        found = probe_netkit()
    except Exception as exc:  # a failed probe is a fact, not a crash
        facts["netkit_reason"] = f"netkit probe failed: {exc}"
        return
    facts["netkit"] = bool(found.get("netkit"))
    facts["netkit_reason"] = found.get("detail", "")
    facts["netkit_features"] = {k: found.get(k) for k in ("scrub", "headroom", "tailroom", "pairing")}


def probe_kernel():
    """The kernel facts, one dict (documented once, as kernel_info's RETURN `kernel`).

    {kernel, libbpf, bpffs, bpf_load, tcx, tcx_reason, netkit_attach, netkit_attach_reason,
    netkit, netkit_reason, netkit_features (when the device probe ran)}. When libbpf cannot
    be loaded or no program loads, no further probe runs: the reasons say why.
    """
    facts = {"kernel": platform.release(), "libbpf": None, "bpffs": bpf.bpffs_mounted(), "bpf_load": False,
             "tcx": False, "tcx_reason": "", "netkit_attach": False, "netkit_attach_reason": "",
             "netkit": False, "netkit_reason": ""}
    try:
        facts["libbpf"] = bpf.libbpf_version()
        _attach_facts(facts)
    except bpf.BpfError as exc:
        facts["tcx_reason"] = facts["netkit_attach_reason"] = facts["netkit_reason"] = f"not probed: {exc}"
        return facts
    facts["bpf_load"] = True
    _netkit_facts(facts)
    return facts
