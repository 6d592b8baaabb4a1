# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The compiled wire objects, opened with libbpf but never loaded (no root, no kernel feature).

Loading, maps and links against the real kernel: tests/kernel/test_bpf_kernel.py.
"""

import os
import pathlib
import subprocess

import pytest

from ansible_collections.yogurt.phone.plugins.module_utils import _bpf as bpf, _wire as wire
from yogurt_test import PYTHON

ROOT = pathlib.Path(__file__).resolve().parents[4]


@pytest.fixture(scope="module")
def objects(tmp_path_factory):
    out = tmp_path_factory.mktemp("bpf")
    paths = {}
    for backend in ("veth", "netkit"):
        proc = subprocess.run([PYTHON, str(ROOT / "bpf" / "build.py"),
                               str(ROOT / "bpf" / f"wire_{backend}.bpf.c"), str(out)],
                              capture_output=True, text=True, check=True)
        paths[backend] = proc.stdout.strip()
    return paths


def test_build_skips_unchanged_source(objects, tmp_path):
    again = subprocess.run([PYTHON, str(ROOT / "bpf" / "build.py"), str(ROOT / "bpf" / "wire_veth.bpf.c"),
                            os.path.dirname(objects["veth"])], capture_output=True, text=True, check=True)
    assert again.stdout.strip() == objects["veth"]


@pytest.mark.parametrize("backend", ["veth", "netkit"])
def test_object_has_the_programs_and_maps_wire_expects(objects, backend):
    with bpf.BpfObject(objects[backend]) as obj:
        assert set(obj.maps) == set(wire.MAPS)
        assert set(obj.programs) == {hook[1] for hook in wire.HOOKS[backend]}
        for _hook, prog, attach, _side in wire.HOOKS[backend]:
            # xdp.frags: the XDP guard still attaches when the host side's MTU exceeds a page
            section = bpf.lib().bpf_program__section_name(obj.programs[prog]).decode()
            assert section == ("xdp.frags" if attach == "xdp" else attach.replace("_", "/", 1))


def test_counter_names_are_in_step_with_wire_h():
    """COUNTERS[slot] names the slot bpf/wire.h's enum gives it; C_SLOTS stays 8 (pinned maps are reused)."""
    import re

    text = (ROOT / "bpf" / "wire.h").read_text()
    slots = dict((name, int(value)) for name, value in re.findall(r"\b(C_[A-Z_]+) = (\d+)", text))
    assert slots.pop("C_SLOTS") == 8
    named = {"C_FWD_PKTS": "forwarded_packets_0to1", "C_FWD_BYTES": "forwarded_bytes_0to1",
             "C_REFUSED": "refused", "C_UNKNOWN": "unknown_ifindex"}
    assert set(slots) == set(named), slots
    for name, slot in slots.items():
        assert wire.COUNTERS[slot] == named[name]
    assert len(wire.COUNTERS) == max(slots.values()) + 1
