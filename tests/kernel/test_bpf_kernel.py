# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The bpf(2)/libbpf layer against the real kernel, with nothing pinned or attached.

Objects are loaded and closed again (the kernel frees them with their last fd); the one
attachment test uses `lo` of a scratch namespace. Needs root and libbpf.so.1.
"""

import errno
import os
import struct
import subprocess
import sys

import pytest

from ansible_collections.yogurt.phone.plugins.module_utils import _bpf as bpf
from yogurt_test import ROOT


@pytest.fixture(scope="module")
def objects(tmp_path_factory):
    out = tmp_path_factory.mktemp("bpf")
    paths = {}
    for backend in ("veth", "netkit"):
        proc = subprocess.run([sys.executable, str(ROOT / "bpf" / "build.py"),
                               str(ROOT / "bpf" / f"wire_{backend}.bpf.c"), str(out)],
                              capture_output=True, text=True, check=True)
        paths[backend] = proc.stdout.strip()
    return paths


def test_load_gives_stable_tags_and_info(objects):
    tags = []
    for _round in range(2):
        with bpf.BpfObject(objects["veth"]) as obj:
            obj.load()
            info = bpf.prog_info(obj.prog_fd("wire_in"))
            assert info["name"] == "wire_in" and info["type"] == bpf.PROG_TYPE_SCHED_CLS and info["id"] > 0
            assert len(info["tag"]) == 16
            tags.append(info["tag"])
    assert tags[0] == tags[1]  # the tag is what converge_wire compares across runs


def test_map_update_lookup_iterate_delete(objects):
    with bpf.BpfObject(objects["veth"]) as obj:
        obj.load()
        fd = obj.map_fd("wires")
        info = bpf.map_info(fd)
        assert (info["name"], info["key_size"], info["value_size"]) == ("wires", 4, 8)
        bpf.map_update(fd, struct.pack("=I", 7), struct.pack("=II", 9, 0))
        bpf.map_update(fd, struct.pack("=I", 9), struct.pack("=II", 7, 1))
        assert bpf.map_lookup(fd, struct.pack("=I", 7), 8) == struct.pack("=II", 9, 0)
        assert sorted(bpf.map_items(fd)) == [(struct.pack("=I", 7), struct.pack("=II", 9, 0)),
                                             (struct.pack("=I", 9), struct.pack("=II", 7, 1))]
        bpf.map_delete(fd, struct.pack("=I", 7))
        bpf.map_delete(fd, struct.pack("=I", 7))  # deleting what is gone is no error
        assert bpf.map_lookup(fd, struct.pack("=I", 7), 8) is None

        counters = obj.map_fd("counters")
        items = bpf.map_items(counters)
        assert len(items) == 8  # PERCPU_ARRAY: every slot exists
        assert all(len(v) == 8 * bpf.num_possible_cpus() for _key, v in items)
        assert bpf.percpu_sum_u64(struct.pack("=3Q", 1, 2, 3)) == 6


def test_errors_carry_errno_and_advice(tmp_path):
    with pytest.raises(bpf.BpfError) as exc:
        bpf.obj_get(str(tmp_path / "nothing"))
    assert exc.value.errno in (errno.ENOENT, errno.EPERM, errno.EINVAL)
    with pytest.raises(bpf.BpfError) as exc:
        bpf.BpfObject(str(tmp_path / "missing.o"))
    assert exc.value.errno == errno.ENOENT and "compile it first" in str(exc.value)
    assert bpf.try_obj_get("/sys/fs/bpf/yogurt-does-not-exist") is None or not bpf.bpffs_mounted()


def test_link_on_lo_of_a_scratch_netns():
    """tcx attach, query, info and update on lo; netkit attach on a non-netkit device is refused."""
    from ansible_collections.yogurt.phone.plugins.module_utils._netns import create_netns, delete_netns, enter_netns
    name = f"ygwire-unit-{os.getpid()}"
    create_netns(name)
    try:
        prog = bpf.prog_load_trivial()
        prog2 = bpf.prog_load_trivial("yg_probe2")
        try:
            with enter_netns(name):
                link = bpf.link_create(prog, 1, "tcx_ingress")
                try:
                    info = bpf.link_info(link)
                    assert (info["type"], info["ifindex"], info["attach_type"]) == ("tcx", 1, "tcx_ingress")
                    assert bpf.prog_query(1, "tcx_ingress")["link_ids"] == [info["id"]]
                    bpf.link_update(link, prog2)
                    assert bpf.link_info(link)["prog_id"] == bpf.prog_info(prog2)["id"]
                finally:
                    os.close(link)
                assert bpf.prog_query(1, "tcx_ingress")["link_ids"] == []  # gone with its last fd
                with pytest.raises(bpf.BpfError) as exc:
                    bpf.link_create(prog, 1, "netkit_primary")
                assert exc.value.errno in (errno.ENXIO, errno.EINVAL)
                assert "netkit" in str(exc.value)
                with pytest.raises(bpf.BpfError) as exc:
                    bpf.prog_query(4242, "tcx_ingress")
                assert exc.value.errno == errno.ENODEV
        finally:
            os.close(prog)
            os.close(prog2)
    finally:
        delete_netns(name)
