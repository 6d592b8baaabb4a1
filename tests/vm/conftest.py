# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures for tests that need the netkit test VM (see tests/vm/README.md)."""

from __future__ import annotations

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import vm as vm_harness  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture(scope="session")
def netkit_vm():
    """One booted VM shared by the whole session (a boot costs ~40 s under TCG).

    Tests must clean up what they create in it (random name prefixes, netns per test).
    """
    name = vm_harness.os.environ.get("YOGURT_VM_NAME") or f"pytest-{vm_harness.os.getpid()}"
    with vm_harness.booted_vm(name=name) as booted:
        yield booted


@pytest.fixture(scope="session")
def netkit_vm_inventory(netkit_vm, tmp_path_factory):
    """Path of an Ansible inventory (YAML) whose only host is the session VM."""
    return netkit_vm.write_inventory(tmp_path_factory.mktemp("vm") / "inventory.yml")
