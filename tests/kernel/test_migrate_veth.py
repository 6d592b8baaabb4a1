# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A veth phone built by main's code and object (tcx guard_in + wire_out) converged with today's.

Main's modules are taken from git (LEGACY_COMMIT, the commit this branch left main at) and
run as they would have; its object is compiled from tests/kernel/legacy/.

The old links (tcx) or filters (tc) of the removed programs must be detached and unpinned,
the XDP guard attached, nothing of the call lost while it happens, and a second converge
must report no change. Both attach modes.
"""

import json
import pathlib
import subprocess
import time

import pytest

from yogurt_test import ROOT
from yogurt_test.ansible import run_module
from yogurt_test.frames import ipv4_udp
from yogurt_test.netns import popen, run
from yogurt_test.objects import build_object
from yogurt_test.phones import VethPhone, pins_of, refusals
from yogurt_test.traffic import handed, inject, probing

LEGACY = pathlib.Path(__file__).resolve().parent / "legacy" / "wire_veth.bpf.c"
LEGACY_COMMIT = "9f0cdf5"
FRAMES = 10


@pytest.fixture(scope="module")
def legacy(tmp_path_factory):
    """(object, collection path) of main before the XDP guard."""
    tree = tmp_path_factory.mktemp("legacy")
    coll = tree / "ansible_collections" / "yogurt" / "phone"
    coll.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", LEGACY_COMMIT, "plugins"], capture_output=True,
                             check=False)
    if archive.returncode != 0:
        pytest.fail(f"git archive {LEGACY_COMMIT} failed (a checkout with history is needed): {archive.stderr}")
    subprocess.run(["tar", "-x", "-C", str(coll)], input=archive.stdout, check=True)
    return build_object(LEGACY, tree / "obj"), str(tree)


def legacy_wire(sandbox, phone, coll, obj, mode):
    """Run main's wire module (its own code) in the sandbox, as a plain process."""
    res = run_module(sandbox.path, "wire", phone.args(obj, attach=mode), collections=coll)
    assert res["rc"] == 0 and not res.get("failed"), res
    return res


def tc_names(ns, dev, direction):
    out = run(ns, ["tc", "-j", "filter", "show", "dev", dev, direction]).stdout
    return sorted(f["options"]["bpf_name"].split(":")[0] for f in json.loads(out or "[]")
                  if f.get("kind") == "bpf" and "bpf_name" in f.get("options", {}))


def tcx_names(ns, dev):
    out = run(ns, ["bpftool", "-j", "net", "show", "dev", dev]).stdout
    return sorted((e["kind"], e["name"]) for e in json.loads(out)[0]["tc"])


def xdp_name(ns, dev):
    xdp = json.loads(run(ns, ["ip", "-j", "-d", "link", "show", dev]).stdout)[0].get("xdp")
    return (xdp["mode"], xdp["prog"]["name"]) if xdp else None


@pytest.mark.parametrize("mode", ["tcx", "tc"])
def test_a_phone_of_the_old_object_is_migrated(sandbox, prefix, objects, legacy, mode):
    phone = VethPhone(sandbox, prefix, objects["base"])
    sbx = sandbox.name
    res = legacy_wire(sandbox, phone, legacy[1], legacy[0], mode)
    assert res["attach_mode"] == mode
    if mode == "tcx":
        assert len(res["links"]) == 6, res["links"]
        assert tcx_names(sbx, phone.host[0]) == [("tcx/egress", "wire_out"), ("tcx/ingress", "wire_in")]
    else:
        assert tc_names(sbx, phone.host[0], "egress") == ["wire_out"]
        assert tc_names(phone.yogurts[0], phone.cont[0], "ingress") == ["guard_in"]
    assert phone.ping(0) == 3

    # Converge with today's object while yogurt 1 pings yogurt 2 every 10 ms.
    pinger = popen(phone.yogurts[0], ["ping", "-c", "1000", "-i", "0.01", "-W", "1", phone.addr[1]],
                   stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        res = phone.wire(obj=objects["base"], attach=mode)
        assert pinger.poll() is None, "the migration finished after the ping loop: it proves nothing"
    finally:
        out = pinger.communicate(timeout=30)[0]
    assert res.changed, res
    actions = res["actions"]
    assert "1000 packets transmitted, 1000 received" in out, (out, actions)
    for i in range(2):
        assert any(a.startswith(f"attach link_end{i}_xdp: guard_xdp as xdp") for a in actions), actions
        if mode == "tcx":
            for hook in ("guard", "out"):
                assert any(a.startswith(f"detach link_end{i}_{hook} ") for a in actions), actions
        else:
            assert any(f"remove tc egress filter wire_out from {phone.host[i]}" in a for a in actions), actions
            assert any(f"remove tc ingress filter guard_in from {phone.cont[i]}" in a for a in actions), actions
    assert any(a.startswith("unpin stale prog_guard_in") for a in actions), actions
    assert any(a.startswith("unpin stale prog_wire_out") for a in actions), actions

    expected = ["map_counters", "map_wires", "prog_guard_xdp", "prog_wire_in", "link_end0_xdp", "link_end1_xdp"]
    if mode == "tcx":
        expected += ["link_end0_in", "link_end1_in"]
    assert pins_of(phone.name) == sorted(expected)
    for i in range(2):
        assert xdp_name(phone.yogurts[i], phone.cont[i]) == (1, "guard_xdp")
        if mode == "tcx":
            assert tcx_names(sbx, phone.host[i]) == [("tcx/ingress", "wire_in")]
            assert tcx_names(phone.yogurts[i], phone.cont[i]) == []
        else:
            assert tc_names(sbx, phone.host[i], "ingress") == ["wire_in"]
            assert tc_names(sbx, phone.host[i], "egress") == []
            assert tc_names(phone.yogurts[i], phone.cont[i], "ingress") == []

    again = phone.wire(obj=objects["base"], attach=mode)
    assert not again.changed and again["actions"] == [], again
    assert not phone.wire(obj=objects["base"], attach=mode, check=True).changed
    assert phone.ping(0) == 3 and phone.ping(1) == 3

    before = refusals(phone.name)
    with probing(phone.yogurts[1], phone.cont[1]) as seen:
        sent = handed(inject(sandbox.name, phone.host[1], phone.cont_mac(1), ipv4_udp(phone.addr[0], phone.addr[1]),
                             bypass=True, count=FRAMES))
    assert seen == {"packet": 0, "udp": 0} and refusals(phone.name)["refused"] - before["refused"] == sent == FRAMES
