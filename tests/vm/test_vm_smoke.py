# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The test VM boots the kernel and tools the netkit backend needs, and leaves no qemu behind."""

from __future__ import annotations

import pathlib
import secrets

import pytest

import vm as vm_harness

pytestmark = pytest.mark.vm


def qemu_processes(run_dir: pathlib.Path) -> list[int]:
    """Pids of live processes whose command line mentions run_dir (its qemu)."""
    pids = []
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if str(run_dir).encode() in cmdline and b"qemu" in cmdline and state != "Z":
            pids.append(int(proc.name))
    return pids


def test_vm_has_netkit_kernel_and_tools():
    name = f"smoke-{secrets.token_hex(3)}"
    ns = f"smk{secrets.token_hex(3)}"
    with vm_harness.booted_vm(name=name) as vm:
        run_dir = vm.run_dir
        assert qemu_processes(run_dir) == [vm.pid]

        assert vm.run("uname -r").stdout.strip().startswith("6.12.")

        created = vm.run(
            f"ip netns add {ns} && ip -n {ns} link add yt0 type netkit blackhole peer blackhole name yt1"
            f" && ip -n {ns} -d link show yt0; rc=$?; ip netns del {ns}; exit $rc",
            check=False,
        )
        assert created.returncode == 0, created.stderr
        assert "netkit" in created.stdout

        assert "bpftool v7.5" in vm.run("bpftool version").stdout
        pyroute2 = vm.run("python3 -c 'import pyroute2; print(pyroute2.__version__)'").stdout.strip()
        assert pyroute2 == "0.9.7"

        # The VM's NIC cannot reach anything but qemu's own user-mode network.
        assert vm.run("ip -4 -o addr show eth0").stdout.split()[3] == "10.0.2.15/24"

    assert not vm.alive()
    assert qemu_processes(run_dir) == []
    assert not run_dir.exists()
