# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The netkit ansible-test target (tests/integration/targets/netkit) on the netkit VM.

ansible-test skips that target on this project's machines (no netkit: `unsupported`); here
it runs as ansible-test runs a target, as a role, against the VM the other vm tests share.
"""

from __future__ import annotations

import pathlib

import pytest
from playbook_run import run_playbook  # pylint: disable=import-error  # tests/vm is on sys.path (conftest)

pytestmark = pytest.mark.vm

ROOT = pathlib.Path(__file__).resolve().parents[2]
TARGETS = ROOT / "tests" / "integration" / "targets"


def test_the_netkit_target_passes_on_a_netkit_kernel(netkit_vm_inventory, tmp_path, monkeypatch):
    play = tmp_path / "netkit-target.yml"
    play.write_text("- name: The netkit target\n  hosts: all\n  gather_facts: false\n"
                    "  roles: [netkit]\n")
    monkeypatch.setenv("ANSIBLE_ROLES_PATH", str(TARGETS))
    run = run_playbook(netkit_vm_inventory, play, title="netkit target in the VM")
    assert run.rc == 0, "".join(run.output[-80:])
    assert run["netkit : Check the creation"]["_status"] == "ok"
    assert run["netkit : Check the removal"]["_status"] == "ok"
