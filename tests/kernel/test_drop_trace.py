# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the drop tracer reads from the running kernel, read on this machine's kernel.

bcc cannot run here (6.18 has no headers package: tests/fresh runs the tracer itself on
Debian 12 + 6.12), but the struct offsets it is given come from this kernel's BTF and the
reason names from its tracepoint format: both are checked against each other here.
"""

import os
import subprocess

import pytest

from ansible_collections.yogurt.phone.plugins.module_utils import _btf as btf_utils
from ansible_collections.yogurt.phone.plugins.module_utils import _drop_trace as drop_trace


@pytest.fixture(scope="module")
def btf():
    return btf_utils.load()


def test_offsets_the_tracer_follows_come_from_btf(btf):
    offsets = drop_trace.offsets(btf)
    assert set(offsets) == set(drop_trace.OFFSETS)
    # sk_buff.dev sits after next and prev in an anonymous union: 16 on 64-bit kernels.
    assert offsets["SKB_DEV_OFF"] == 16, offsets
    assert 0 < offsets["DEV_IFINDEX_OFF"] < 512 and 0 < offsets["DEV_NET_OFF"] < 2048, offsets
    assert offsets["NET_INUM_OFF"] < 256, offsets
    with pytest.raises(btf_utils.BtfError, match="no member nosuch"):
        btf.offset("net_device.nosuch")


def _format_text():
    """The tracepoint's format file; tracefs mounted in a private mount namespace if it is not mounted."""
    path = next((p for p in drop_trace.FORMAT_FILES if os.path.exists(p)), None)
    if path:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-ec",
                           f"mount -t tracefs none /sys/kernel/tracing; cat {drop_trace.FORMAT_FILES[0]}"],
                          check=True, capture_output=True, text=True).stdout


def test_reason_names_from_the_tracepoint_format_and_btf_agree(btf, tmp_path):
    from_btf = {v: n.replace("SKB_DROP_REASON_", "", 1) for v, n in btf.enum("skb_drop_reason").items()}
    fmt = tmp_path / "format"
    fmt.write_text(_format_text())
    names, where = drop_trace.reason_names(btf, format_files=(str(fmt),))
    assert where == str(fmt)
    assert names == drop_trace.parse_print_fmt(fmt.read_text()) and len(names) > 50, names
    assert {"NOT_SPECIFIED", "TC_INGRESS", "TC_EGRESS", "QDISC_DROP"} <= set(names.values()), names
    assert all(from_btf[number] == name for number, name in names.items()), \
        {n: (name, from_btf.get(n)) for n, name in names.items() if from_btf.get(n) != name}
    tc_ingress = next(n for n, name in names.items() if name == "TC_INGRESS")
    assert drop_trace.reason_name(tc_ingress, names, drop_trace.subsystem_names(btf)) == "TC_INGRESS"
    assert drop_trace.reason_name((1 << 16) | 3, names, {1: "MAC80211_UNUSABLE"}) == "MAC80211_UNUSABLE reason 3"


@pytest.mark.skipif(drop_trace.availability()["available"], reason="bcc and headers are present here")
def test_without_bcc_or_headers_the_diagnosis_says_what_to_install():
    info = drop_trace.availability()
    assert not info["available"] and info["install"], info
    text = " ".join(info["install"])
    assert ("python3-bpfcc" in text) == (info["bcc"] is None), info
    assert (f"linux-headers-{os.uname().release}" in text) == (info["headers"] is None), info
    with pytest.raises(RuntimeError, match="trace: yes, but kernel drop tracing needs"):
        drop_trace.start([], "yes")
