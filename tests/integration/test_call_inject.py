"""The call's injection check can see an injected frame, for IPv4 and IPv6, and sees none through a phone.

The control runs call.inject against a plain veth pair (no wire): every frame must arrive,
or the check could pass without proving anything. Then a dual-stack phone built by site.yml:
call.yml reports 0 frames in, for both families. All inside the test's sandbox namespace.
"""

import subprocess

import pytest

from ansible_collections.yogurt.phone.plugins.module_utils.call import inject
from ansible_collections.yogurt.phone.plugins.module_utils.netns import enter_netns
from conftest import ROOT
from test_site import phone, run


@pytest.mark.parametrize("dst_ip", ["10.77.0.2", "fd77::2"])
def test_injection_check_sees_frames_on_a_plain_veth_pair(sandbox, dst_ip):
    host, cont, yogurt = f"{sandbox.prefix}h", f"{sandbox.prefix}c", f"{sandbox.prefix}-y"
    subprocess.run(["ip", "netns", "add", yogurt], check=True)
    sandbox.ip("link", "add", host, "type", "veth", "peer", "name", cont, "netns", yogurt)
    sandbox.ip("link", "set", host, "up")
    for argv in (["link", "set", cont, "up"], ["addr", "add", "10.77.0.2/24", "dev", cont],
                 ["addr", "add", "fd77::2/64", "dev", cont, "nodad"]):
        subprocess.run(["ip", "-n", yogurt] + argv, check=True)
    with enter_netns(sandbox.path):
        res = inject(host, yogurt, dst_ip)
    assert res["attempted"] == 20 and res["sent"] == 20, res
    assert res["received"] == 20, f"the control got {res['received']} of 20 frames in: the check could not see one"


def test_call_refuses_injection_into_a_dual_stack_phone(sandbox, tmp_path):
    spec = phone(sandbox.prefix, 1)
    for i, end in enumerate(spec["ends"], start=1):
        end["addresses"].append(f"fd78::{i}/64")
    assert run(sandbox, tmp_path, [spec]).returncode == 0
    proc = run(sandbox, tmp_path, [spec], playbook=ROOT / "playbooks" / "call.yml", args=())
    assert proc.returncode == 0, proc.stdout[-3000:]
    for i, end in enumerate(spec["ends"], start=1):
        for ip in (f"10.42.1.{i}", f"fd78::{i}"):
            line = f"inject on {end['host_ifname']} -> {ip}: 0 of 20 frames reached the yogurt"
            assert line in proc.stdout, f"no '{line}' in:\n{proc.stdout[-3000:]}"
