# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""yogurt.phone.netkit on a kernel with netkit (the test VM, Debian's 6.12).

One ansible-playbook run (tests/vm/netkit/netkit_module.yml) does the whole lifecycle in
the VM: check mode, create, re-run, change in place, refusal and recreate of the mode,
headroom on this kernel, read back with iproute2 and ping from inside the peer's
namespace, absent twice. The playbook asserts on its own; the tests below parse every
task's result (the yogurt_test_json callback prints one JSON line per task) and check the
same facts, each in its own test so a failure names what broke. Module tasks cost 5-8 s
each over ssh to the TCG guest, so everything rides on one run.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import pytest
from playbook_run import run_playbook  # pylint: disable=import-error  # tests/vm is on sys.path (conftest)

pytestmark = pytest.mark.vm

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "tests" / "vm" / "netkit" / "netkit_module.yml"


@pytest.fixture(scope="module")
def run(netkit_vm_inventory):
    return run_playbook(netkit_vm_inventory, PLAYBOOK, title="netkit module in the VM")


def _json_after(stdout, tag):
    for line in stdout.splitlines():
        if line.startswith(tag + " "):
            return json.loads(line.split(" ", 1)[1])
    raise AssertionError(f"no {tag} line in:\n{stdout}")


def test_playbook_passed_its_own_asserts(run):
    assert run.rc == 0, "".join(run.output[-80:])
    assert run["What the runs reported"]["_status"] == "ok"


def test_check_mode_predicts_and_creates_nothing(run):
    check, create = run["Create (check mode)"], run["Create"]
    assert check["changed"] and any(a.startswith("create netkit pair nkt1-host") for a in check["actions"])
    # The real run found no pair: check mode left nothing behind.
    assert any(a.startswith("create netkit pair") for a in create["actions"])


def test_create_then_rerun_is_unchanged(run):
    pair = run["Create"]["netkit"]
    assert run["Create"]["changed"]
    assert (pair["mode"], pair["policy"], pair["peer_policy"]) == ("l3", "blackhole", "blackhole")
    assert (pair["peer_ifname"], pair["peer_netns"]) == ("nkt1-cont", "nkt-yogurt-1")
    assert pair["peer_addresses"] == ["10.42.0.1/24", "fd00:42::1/64"]
    assert (pair["mtu"], pair["peer_mtu"], pair["up"], pair["peer_up"]) == (1400, 1400, True, True)
    assert run["Create"]["features"]["netkit"] is True
    again = run["Create again (no change)"]
    assert again["changed"] is False and again["actions"] == []


def test_change_in_place_keeps_the_device(run):
    inplace, created = run["Change in place (policy, mtu)"], run["Create"]
    assert inplace["changed"]
    assert inplace["netkit"]["policy"] == "forward" and inplace["netkit"]["mtu"] == 1300
    assert inplace["netkit"]["peer_mtu"] == 1300
    assert inplace["netkit"]["host_ifindex"] == created["netkit"]["host_ifindex"]
    assert inplace["diff"]["before"]["policy"] == "blackhole" and inplace["diff"]["after"]["policy"] == "forward"


def test_host_side_address_is_reported_and_removed(run):
    inplace = run["Change in place (policy, mtu)"]
    assert "remove host-side address 192.0.2.9/24 from nkt1-host" in inplace["actions"]
    assert any("192.0.2.9/24" in w for w in inplace.get("warnings", []))
    assert inplace["diff"]["before"]["host_addresses"] == ["192.0.2.9/24"]
    assert inplace["netkit"]["host_addresses"] == []


def test_mode_change_is_refused_then_recreated(run):
    refused = run["Mode change without recreate is refused"]
    assert refused["_status"] == "failed"
    assert "mode is 'l3', asked 'l2'" in refused["msg"] and "recreate: true" in refused["msg"]
    recreated = run["Mode change with recreate"]
    assert recreated["changed"] and recreated["netkit"]["mode"] == "l2"
    assert recreated["netkit"]["host_ifindex"] != run["Create"]["netkit"]["host_ifindex"]
    assert recreated["netkit"]["peer_addresses"] == ["10.42.0.1/24", "fd00:42::1/64"]


def test_headroom_follows_the_kernel(run):
    headroom = run["Headroom on this kernel (refused before any change where unsupported)"]
    if headroom["_status"] == "failed":
        assert "headroom is not supported by this kernel (Linux 6.12" in headroom["msg"]
        assert "Linux >= 6.14" in headroom["msg"]
    else:
        assert headroom["netkit"]["headroom"] == 64


def test_iproute2_sees_what_the_module_made(run):
    stdout = run["Read back with iproute2 and ping the peer's addresses from inside its namespace"]["stdout"]
    host = _json_after(stdout, "HOSTLINK")[0]
    data = host["linkinfo"]["info_data"]
    assert host["linkinfo"]["info_kind"] == "netkit"
    assert data["mode"] == "l2" and data["policy"] == "forward" and data["peer_policy"] == "blackhole"
    assert data["scrub"] == "none" and data["peer_scrub"] == "none"
    assert host.get("inet6_addr_gen_mode") == "none"
    assert _json_after(stdout, "HOSTADDR")[0]["addr_info"] == []
    peer_addrs = {f"{a['local']}/{a['prefixlen']}" for a in _json_after(stdout, "PEERADDR")[0]["addr_info"]}
    assert {"10.42.0.1/24", "fd00:42::1/64"} <= peer_addrs
    assert "PING4 ok" in stdout and "PING6 ok" in stdout


def test_absent_removes_both_sides_once(run):
    assert run["Absent"]["changed"] and run["Absent"]["netkit"]["state"] == "absent"
    assert run["Absent again (no change)"]["changed"] is False
    gone = run["Nothing is left"]["stdout"]
    assert "HOST gone" in gone and "PEERNS 1 links" in gone


@pytest.fixture(scope="module")
def edge(netkit_vm):
    """tests/vm/netkit/edge_cases.py run in the VM against the module_utils of this checkout."""
    utils = ROOT / "plugins" / "module_utils"
    prefix = f"nke{os.getpid() % 100000}"
    bundle = subprocess.run(
        ["tar", "-cf", "-", "--transform", "s,^,ansible_collections/yogurt/phone/plugins/module_utils/,",
         "-C", str(utils)] + sorted(p.name for p in utils.glob("_*.py")), capture_output=True, check=True).stdout
    script = (ROOT / "tests" / "vm" / "netkit" / "edge_cases.py").read_text()
    staged = f"/tmp/{prefix}"
    # tar on stdin, then the script; one ssh round trip each.
    subprocess.run(netkit_vm.ssh_argv(f"rm -rf {staged} && mkdir -p {staged} && tar -C {staged} -xf -"),
                   input=bundle, check=True, capture_output=True, timeout=120)
    out = netkit_vm.run(f"cat > {staged}/edge.py && python3 {staged}/edge.py {staged} {prefix}; rc=$?; "
                        f"rm -rf {staged}; exit $rc", input=script, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_edge_same_namespace_pair_down(edge):
    first, again = edge["same_netns_down"]["ok"], edge["same_netns_again"]["ok"]
    assert first["changed"] and first["netkit"]["peer_netns"] is None
    assert (first["netkit"]["up"], first["netkit"]["peer_up"]) == (False, False)
    assert again["changed"] is False


def test_edge_errors_name_field_and_fix(edge):
    assert "is the peer side of a netkit pair" in edge["peer_named_as_host"]["error"]
    assert edge["peer_name_taken"]["error"].startswith("netkit pair e2-host: peer_ifname 'taken' is already taken")
    missing = edge["netns_missing"]["error"]
    assert missing.startswith("netkit pair e3-host: peer_netns:") and "yogurt.phone.netns" in missing
    assert any("does not exist yet" in a for a in edge["netns_missing_check"]["ok"]["actions"])
    assert "peer_netns is None, asked" in edge["move_refused"]["error"]
    assert "scrub is 'none', asked 'default'" in edge["scrub_back_to_default_refused"]["error"]


def test_edge_recreate_moves_peer_and_drift_is_repaired(edge):
    assert edge["move_recreate"]["ok"]["netkit"]["peer_netns"].endswith("-y1")
    assert edge["peer_address_drift"]["ok"]["actions"] == ["remove address 10.9.9.9/32 from e1-peer"]
    assert edge["noop"]["ok"]["changed"] is False
    # Check mode on a pair that stays reports its ifindexes, as a real run does: the phone
    # converge reads them to inspect the wire (without them, --check on a netkit phone always
    # said "attach the wire").
    noop_check, noop = edge["noop_check"]["ok"], edge["noop"]["ok"]
    assert noop_check["changed"] is False, noop_check
    assert noop_check["netkit"]["host_ifindex"] == noop["netkit"]["host_ifindex"], (noop_check, noop)
    assert noop_check["netkit"]["peer_ifindex"] == noop["netkit"]["peer_ifindex"], (noop_check, noop)
    print(f"\nno-op converge in the VM (module_utils only, no Ansible): {edge['noop']['seconds']} s")


def test_edge_leaves_nothing(edge):
    assert edge["remove_e1"]["ok"]["changed"] and edge["remove_e4"]["ok"]["changed"]
    assert edge["links_left"] == {"host": 1, "peer": 2}  # lo; lo + the dummy 'taken'
    assert edge["netns_left"] == []
