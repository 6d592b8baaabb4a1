# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The switchboard on netkit (the test VM, Debian 6.12): one playbook run, results read back.

The host's namespace lists no device of the phone and a capture on every device there sees
none of the call's frames; injection from inside the switchboard reaches no socket in a
yogurt; the move to the host's namespace (the control: the capture sees the call there) and
back, with check mode right before and after; re-run changed=0; teardown leaves nothing.
"""

from __future__ import annotations

import json
import os
import pathlib

import pytest
from playbook_run import run_playbook  # pylint: disable=import-error  # tests/vm is on sys.path (conftest)

pytestmark = pytest.mark.vm

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "tests" / "vm" / "switchboard" / "switchboard.yml"
PREFIX = f"sw{os.getpid() % 10000}"
PHONE = f"{PREFIX}a"


@pytest.fixture(scope="module")
def run(netkit_vm_inventory):
    return run_playbook(netkit_vm_inventory, PLAYBOOK, {"sw_prefix": PREFIX}, title=f"switchboard on netkit ({PREFIX})")


def host_frames(call):
    checks = [c for c in call["calls"][0]["checks"] if c["kind"] == "hostns"]
    return checks[-1]["frames"], checks[0]["devices"]


def test_the_playbook_ran(run):
    assert run.rc == 0, "".join(run.output[-80:])


def test_the_host_namespace_sees_nothing_of_a_call(run):
    check, built, again = (run[t] for t in ("Build in the switchboard (check mode)", "Build in the switchboard",
                                            "Build again (no change)"))
    assert check["changed"] and check["switchboard"]["actions"], check["switchboard"]
    assert built["changed"] and built["switchboard"]["state"] == "present"
    assert built["phones"][0]["backend"] == "netkit" and built["phones"][0]["switchboard"] == "yogurt-switchboard"
    assert not again["changed"]
    call = run["Call with the host sides in the switchboard"]
    assert call["ok"], call["failures"]
    injects = [c for c in call["calls"][0]["checks"] if c["kind"] == "inject"]
    assert injects and all(c["reached_udp"] == c["reached_packet"] == 0 for c in injects)
    assert host_frames(call) == (0, [])
    here, board = run["List the VM's own devices and the switchboard's"]["stdout"].split("\n\n")
    assert not [d["ifname"] for d in json.loads(here) if d["ifname"].startswith(PREFIX)]
    assert sorted(d["ifname"] for d in json.loads(board)) == ["lo", f"{PHONE}1h", f"{PHONE}2h"]
    print(f"netkit, switchboard: host ns saw {host_frames(call)} ; {call['summary'][0]}")


def test_the_move_there_and_back(run):
    check = run["Move to the host's namespace (check mode)"]
    assert check["changed"] and check["phones"][0]["actions"][0].startswith("moved its host sides")
    moved = run["Move to the host's namespace"]
    assert moved["changed"] and moved["phones"][0]["actions"][0].startswith("moved its host sides")
    assert moved["switchboard"]["state"] == "absent", moved["switchboard"]
    assert not run["After the move to the host's namespace (check mode)"]["changed"]
    control = run["Call with the host sides in the host's namespace"]
    assert control["ok"], control["failures"]
    frames, devices = host_frames(control)
    assert frames > 0 and len(devices) == 2
    back = run["Move back to the switchboard"]
    assert back["changed"] and back["phones"][0]["actions"][0].startswith("moved its host sides")
    assert not run["After the move back (check mode)"]["changed"]
    after = run["Call after the move back"]
    assert after["ok"], after["failures"]
    assert host_frames(after) == (0, [])
    print(f"netkit, host sides in the host's namespace: host ns saw {frames} frames; back in the switchboard: "
          f"{host_frames(after)[0]}")


def test_teardown_leaves_nothing(run):
    assert run["Tear down"]["changed"]
    netns, devices, pins, records = run["What is left (namespaces, devices, pins, records)"]["stdout"].split("|")
    assert netns.split() == [] and devices.strip() == "0", (netns, devices)
    assert PHONE not in pins.split() and f"{PHONE}.json" not in records.split()
