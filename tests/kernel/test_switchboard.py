# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The switchboard: every phone's host sides in one namespace, none in the host's (the sandbox).

Both attach modes of veth: tcx, and tc clsact filters (what Linux < 6.6 gets), forced here by
running the phones module with the tcx probe answering "not supported". The host's namespace
must list no phone device, a packet socket on every device there (ifindex 0, as `tcpdump -i
any`) must see no frame of the call, and frames injected from inside the switchboard (SOCK_RAW
and SOCK_DGRAM, with and without PACKET_QDISC_BYPASS) must reach no socket in a yogurt. The
seed's layout (switchboard "") is the control: there the capture sees the call.
"""

import json
import os
import signal
import subprocess
import time

import pytest

from ansible_collections.yogurt.phone.plugins.module_utils._netlink import read_namespace
from yogurt_test import VENV_BIN
from yogurt_test.ansible import module_env
from yogurt_test.netns import RECORDS
from yogurt_test.phones import PIN_ROOT, report, veth_phone

PINS = str(PIN_ROOT)

SWITCHBOARD = "yogurt-switchboard"
RUN = r"""
import importlib, sys
from ansible_collections.yogurt.phone.plugins.module_utils import _probes, _wire
name, mode = sys.argv[1:3]
del sys.argv[1:]  # AnsibleModule reads its arguments from stdin only without argv
if mode == "tc":  # what a kernel without tcx (Linux < 6.6) answers
    _probes.tcx_errno = _wire.tcx_errno = lambda: 95
importlib.import_module("ansible_collections.yogurt.phone.plugins.modules." + name).main()
"""


def module_proc(sandbox, name, args, mode):
    argv = ["nsenter", f"--net={sandbox.path}", "--", str(VENV_BIN / "python"), "-c", RUN, name, mode]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=module_env())
    check = args.pop("_check", False)
    proc.stdin.write(json.dumps({"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=check, _ansible_diff=True)}))
    proc.stdin.close()
    return proc


def finish(proc, timeout=300):
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.wait(timeout)
    try:
        data = json.loads(out)
    except ValueError:
        data = {"unparsed": out}
    data["rc"], data["stderr"] = proc.returncode, err[-3000:]
    return data


def run(sandbox, name, args, mode="tcx"):
    return finish(module_proc(sandbox, name, dict(args), mode))


def converge(sandbox, specs, obj, mode, **extra):
    res = run(sandbox, "phones", dict(phones=specs, veth_object=obj, **extra), mode)
    assert res["rc"] == 0 and not res.get("failed"), res
    return res


def devices(ns):
    """Device names of namespace `ns` (a /run/netns name)."""
    out = subprocess.run(["ip", "-n", ns, "-j", "link", "show"], capture_output=True, text=True, check=True).stdout
    return sorted(d["ifname"] for d in json.loads(out))


def host_sides(specs):
    return sorted(e["host_ifname"] for s in specs for e in s["ends"])


def call(sandbox, specs, mode):
    res = run(sandbox, "call", {"phones": specs, "count": 3}, mode)
    assert res["rc"] == 0 and not res.get("failed"), res
    return res


def host_frames(res):
    """{phone: frames of its call that the host namespace's capture saw}, and the devices it listed."""
    out = {}
    for c in res["calls"]:
        host = [k for k in c["checks"] if k["kind"] == "hostns"]
        out[c["name"]] = (host[-1]["frames"], host[0]["devices"])
    return out


def assert_layout(sandbox, specs, board):
    here = devices(sandbox.name)
    if board:
        assert here == ["lo"], f"the host's namespace lists phone devices: {here}"
        assert devices(board) == sorted(["lo"] + host_sides(specs))
    else:
        assert here == sorted(["lo"] + host_sides(specs))
        assert not os.path.exists(f"/run/netns/{SWITCHBOARD}")
    for spec in specs:
        record = json.loads((RECORDS / f"{spec['name']}.json").read_text())
        assert record["switchboard"] == board, record


def assert_gone(sandbox, specs):
    assert devices(sandbox.name) == ["lo"]
    assert not os.path.exists(f"/run/netns/{SWITCHBOARD}"), "the switchboard outlived its last phone"
    assert not [n for n in os.listdir("/run/netns") if n.startswith(sandbox.prefix) and n != sandbox.name]
    assert not [d for d in (os.listdir(PINS) if os.path.isdir(PINS) else []) if d.startswith(sandbox.prefix)]
    assert list(RECORDS.glob(f"{sandbox.prefix}*")) == []


@pytest.mark.parametrize("mode", ["tcx", "tc"])
def test_host_namespace_sees_nothing_of_a_call(sandbox, veth_object, request, mode):
    specs = [veth_phone(sandbox.prefix, i) for i in range(2)]
    # check mode on a host without the switchboard: says what it would make, makes nothing
    res = converge(sandbox, specs, veth_object, mode, _check=True)
    assert res["changed"] and res["switchboard"]["actions"] == [f"created the switchboard namespace {SWITCHBOARD}"]
    assert not os.path.exists(f"/run/netns/{SWITCHBOARD}") and devices(sandbox.name) == ["lo"]
    res = converge(sandbox, specs, veth_object, mode)
    assert res["changed"] and res["switchboard"]["state"] == "present", res["switchboard"]
    assert all(p["switchboard"] == SWITCHBOARD for p in res["phones"])
    assert_layout(sandbox, specs, SWITCHBOARD)
    again = converge(sandbox, specs, veth_object, mode)
    assert not again["changed"], [p["actions"] for p in again["phones"]] + [again["switchboard"]]
    res = call(sandbox, specs, mode)
    assert res["ok"], res["failures"]
    seen = host_frames(res)
    assert seen == {s["name"]: (0, []) for s in specs}, seen
    injects = [k for c in res["calls"] for k in c["checks"] if k["kind"] == "inject"]
    assert injects and all(k["reached_udp"] == k["reached_packet"] == 0 for k in injects)
    assert {(k["socket"], k["bypass"]) for k in injects} == {(s, b) for s in ("raw", "dgram") for b in (False, True)}
    infos = run(sandbox, "phone_info", {}, mode)["phones"]
    mine = {i["phone"]: i for i in infos if i["phone"].startswith(sandbox.prefix)}
    assert {n: (i["switchboard"], i["attach_mode"]) for n, i in mine.items()} == \
        {s["name"]: (SWITCHBOARD, mode) for s in specs}
    diag = run(sandbox, "diagnose", {"phones": specs, "window": 0.5, "trace": "no"}, mode)
    assert diag["rc"] == 0 and set(diag["verdicts"].values()) == {"healthy"}, diag.get("msg")
    assert {d["host"]["netns"] for p in diag["phones"] for d in p["state"]["ends"]} == {SWITCHBOARD}
    report(request, f"{mode}: host namespace saw {seen} frames, injections from the switchboard reached 0 of "
                    f"{sum(k['attempts'] for k in injects)}; summary: {res['summary'][0]}")
    # teardown: the switchboard goes with the last phone
    res = converge(sandbox, [dict(s, state="absent") for s in specs], veth_object, mode, exclusive=True)
    assert res["changed"] and res["switchboard"]["state"] == "absent", res["switchboard"]
    assert_gone(sandbox, specs)


@pytest.mark.parametrize("mode", ["tcx", "tc"])
def test_phones_move_both_ways_and_the_control_sees_the_call(sandbox, veth_object, request, mode):
    specs = [veth_phone(sandbox.prefix, i) for i in range(2)]
    converge(sandbox, specs, veth_object, mode, switchboard="")
    assert_layout(sandbox, specs, "")
    control = host_frames(call(sandbox, specs, mode))
    assert all(frames > 0 and len(devs) == 2 for frames, devs in control.values()), control
    numbers = [f"{mode}: host sides in the host's namespace: a capture there saw {control}"]
    for board in (SWITCHBOARD, ""):
        check = converge(sandbox, specs, veth_object, mode, switchboard=board, _check=True)
        assert check["changed"] and all(p["changed"] for p in check["phones"])
        assert all(p["actions"][0].startswith("moved its host sides") for p in check["phones"]), check["phones"]
        after = {n: v["switchboard"] for n, v in check["diff"]["after"].items() if n in {s["name"] for s in specs}}
        assert after == {s["name"]: board for s in specs}, check["diff"]
        started = time.monotonic()
        moved = converge(sandbox, specs, veth_object, mode, switchboard=board)
        took = time.monotonic() - started
        assert moved["changed"] and all(p["actions"][0].startswith("moved its host sides") for p in moved["phones"])
        assert_layout(sandbox, specs, board)
        res = call(sandbox, specs, mode)
        assert res["ok"], res["failures"]
        seen = host_frames(res)
        if board:
            assert seen == {s["name"]: (0, []) for s in specs}, seen
        else:
            assert all(frames > 0 for frames, _devs in seen.values()), seen
        again = converge(sandbox, specs, veth_object, mode, switchboard=board, _check=True)
        assert not again["changed"], [p["actions"] for p in again["phones"]] + [again["switchboard"]]
        numbers.append(f"moved to {board or 'the host namespace'} in {took:.2f} s; capture saw {seen}")
    report(request, "; ".join(numbers))
    res = converge(sandbox, [dict(s, state="absent") for s in specs], veth_object, mode, exclusive=True,
                   switchboard="")
    assert_gone(sandbox, specs)


def test_a_move_killed_half_way_is_healed(sandbox, veth_object, request):
    """SIGKILL the move at points it reaches (as test_faults does), then run again: whole phones."""
    # Four phones: the middle milestone's window spans three phones' moves, wide enough for a
    # poll of `ip` to land in it on a loaded machine.
    specs = [veth_phone(sandbox.prefix, i) for i in range(4)]
    first = [e["host_ifname"] for e in specs[0]["ends"]]
    last = specs[-1]["ends"][1]["host_ifname"]

    def first_moved_last_not():
        # One raw netlink dump (well under a millisecond), not `ip`: a poll that forks may miss
        # the window on a loaded machine.
        if not os.path.exists(f"/run/netns/{SWITCHBOARD}"):
            return False
        try:
            board = set(read_namespace(SWITCHBOARD))
        except Exception:  # pylint: disable=broad-except  # the namespace went or is half made
            return False
        return set(first) <= board and last not in board

    milestones = [
        (SWITCHBOARD, "the first host side left the host's namespace",
         lambda: first[0] not in devices(sandbox.name)),
        (SWITCHBOARD, "the switchboard holds the first phone's host sides, not the last phone's",
         first_moved_last_not),
        ("", "the last host side is back in the host's namespace", lambda: last in devices(sandbox.name)),
    ]
    for board, label, reached in milestones:
        # From the other layout, so that this run has a move to make.
        converge(sandbox, specs, veth_object, "tcx", switchboard="" if board else SWITCHBOARD)
        proc = module_proc(sandbox, "phones", {"phones": specs, "veth_object": veth_object, "switchboard": board},
                           "tcx")
        deadline, killed = time.monotonic() + 60, False
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                hit = reached()
            except subprocess.CalledProcessError:
                hit = False
            if hit:
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
            time.sleep(0.002)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        assert killed, f"the move ended before: {label}"
        healed = converge(sandbox, specs, veth_object, "tcx", switchboard=board)
        assert_layout(sandbox, specs, board)
        res = call(sandbox, specs, "tcx")
        assert res["ok"], res["failures"]
        assert not converge(sandbox, specs, veth_object, "tcx", switchboard=board)["changed"]
        report(request, f"killed at '{label}', re-run: {sum(len(p['actions']) for p in healed['phones'])} "
                        "actions, call ok, then changed=0")
    converge(sandbox, [dict(s, state="absent") for s in specs], veth_object, "tcx", exclusive=True, switchboard="")
    assert_gone(sandbox, specs)
