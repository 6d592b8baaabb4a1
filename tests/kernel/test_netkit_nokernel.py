"""On a kernel without netkit (this project's 6.18 machines): the real probe and the real refusal.

Runs as root against the real kernel: the probe creates and removes its scratch namespace,
and converge/remove run inside a throwaway namespace of this test, so nothing touches the
machine's own namespace. Skipped where the kernel does have netkit (the VM test covers that).
"""

import json
import os
import platform
import subprocess
import uuid

import pytest

from ansible_collections.yogurt.phone.plugins.module_utils import _netkit as nk
from ansible_collections.yogurt.phone.plugins.module_utils._netns import create_netns, delete_netns, enter_netns
from yogurt_test import ROOT


def _kernel_has_netkit():
    """Can this kernel create a netkit pair? Asked in a throwaway namespace that dies with `ip`."""
    if os.geteuid() != 0:
        return False
    made = subprocess.run(["unshare", "--net", "ip", "link", "add", "nkprobe", "type", "netkit"],
                          capture_output=True, text=True, check=False)
    return made.returncode == 0


pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the probe creates a scratch network namespace)"),
    pytest.mark.skipif(_kernel_has_netkit(), reason="this kernel has netkit (tests/vm covers that case)"),
]

EXPECTED = (f"netkit is not available on this host (Linux {platform.release()}, CONFIG_NETKIT missing or "
            f"Linux < 6.7): use backend: veth, or a kernel >= 6.7 with CONFIG_NETKIT=y")


def _named_netns():
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


@pytest.fixture(scope="module")
def probe():
    before = _named_netns()
    facts = nk.probe_netkit(refresh=True)
    leaked = {n for n in _named_netns() - before if n.startswith("ygnk-probe-")}
    assert not leaked, f"probe left namespaces behind: {leaked}"
    assert not facts["netkit"], f"the probe found netkit on Linux {facts['kernel']}, `ip link add type netkit` did not"
    return facts


@pytest.fixture
def scratch():
    name = f"yt{uuid.uuid4().hex[:5]}-nk"
    create_netns(name)
    try:
        yield name
    finally:
        delete_netns(name)


def _links(netns):
    out = subprocess.run(["ip", "-n", netns, "-j", "link", "show"], capture_output=True, text=True, check=True)
    return [link["ifname"] for link in json.loads(out.stdout)]


def test_probe_finds_no_netkit(probe):
    assert probe["kernel"] == platform.release()
    assert probe == dict(probe, netkit=False, scrub=False, headroom=False, tailroom=False)
    assert "Unknown device type" in probe["detail"] or "not supported" in probe["detail"]


@pytest.mark.parametrize("check_mode", [False, True])
def test_converge_fails_with_one_line_and_changes_nothing(probe, scratch, check_mode):
    spec = {"host_ifname": "yg1-host", "peer_ifname": "yg1-cont", "peer_addresses": ["10.42.0.1/24"]}
    with enter_netns(scratch):
        with pytest.raises(nk.NetkitUnavailable) as err:
            nk.converge_netkit(spec, check_mode=check_mode)
    assert str(err.value) == EXPECTED
    assert _links(scratch) == ["lo"]


def test_absent_is_fine_without_netkit(probe, scratch):
    with enter_netns(scratch):
        out = nk.remove_netkit("yg1-host", check_mode=False)
    assert out["changed"] is False and out["after"]["state"] == "absent"


def test_module_reports_the_line(probe, scratch):
    """What a user sees from `yogurt.phone.netkit` on this machine."""
    argv = ["nsenter", f"--net=/run/netns/{scratch}", "--", str(ROOT / ".venv" / "bin" / "ansible"), "localhost",
            "-m", "yogurt.phone.netkit", "-a", json.dumps({"host_ifname": "yg1-host", "peer_ifname": "yg1-cont"})]
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0
    assert f'"msg": "{EXPECTED}"' in proc.stdout, proc.stdout + proc.stderr
    assert _links(scratch) == ["lo"]


def test_probe_and_module_start_import_no_pyroute2(probe):
    """pyroute2 is imported on first use (its import is most of a module's start-up): the
    phones module's imports, the kernel probes on a kernel without netkit and the check that
    pyroute2 is there leave it unimported."""
    code = ("import sys\n"
            "from ansible_collections.yogurt.phone.plugins.modules import phones, call  # noqa: F401\n"
            "from ansible_collections.yogurt.phone.plugins.module_utils import _pyroute2_dep, _probes\n"
            "facts = _probes.probe_kernel()\n"
            "assert _pyroute2_dep.has_pyroute2() and _pyroute2_dep.missing_pyroute2_message() is None\n"
            "print(facts['netkit'], 'pyroute2' in sys.modules)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT / ".ansible" / "collections"))
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c", code], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"], proc.stdout + proc.stderr
