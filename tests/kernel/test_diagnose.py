# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""yogurt.phone.diagnose on veth: break one phone in known ways, one at a time, next to an intact one.

Each fault is made by hand as root would make it (bpffs unlink, bpftool, ip), the diagnosis
must name the right end, device, hook and reason and call the intact phone healthy; the
phones module then heals the phone before the next fault. Everything runs in the sandbox.
"""

import os
import struct
import threading
import time

from yogurt_test.frames import ipv4_udp
from yogurt_test.netns import mac_of, run as netns_cmd
from yogurt_test.phones import PIN_ROOT, converge, report, veth_phone
from yogurt_test.traffic import inject

PINS = str(PIN_ROOT)


def diagnose(sandbox, specs, **args):
    res = sandbox.run_module("diagnose", dict({"phones": specs, "window": 1.0}, **args), timeout=180)
    assert res["rc"] == 0 and not res.get("failed"), res
    assert res["changed"] is False
    return res


def by_name(res):
    return {p["phone"]: p for p in res["phones"]}


def test_diagnose_names_each_fault_and_calls_the_intact_phone_healthy(sandbox, veth_object, request):
    good, bad = veth_phone(sandbox.prefix, 0), veth_phone(sandbox.prefix, 1)
    specs = [good, bad]
    converge(sandbox, specs, veth_object)
    name = bad["name"]
    (y0, h0, c0), (y1, h1, c1) = [(e["netns"], e["host_ifname"], e["cont_ifname"]) for e in bad["ends"]]
    seen = []

    def check(label, verdict, first, **args):
        res = diagnose(sandbox, specs, **args)
        phones = by_name(res)
        assert phones[good["name"]]["verdict"] == "healthy", phones[good["name"]]
        got = phones[name]
        assert got["verdict"] == verdict, (label, got["verdict"], got["problems"], res["msg"])
        if first:
            assert got["first_failure"] and got["first_failure"].startswith(first), (label, got["first_failure"])
        seen.append(f"{label}: {got['verdict_text']} - {got['first_failure']}")
        converge(sandbox, specs, veth_object)  # heal before the next fault
        return got, res

    # 0. Intact: both healthy, with the probe's pings answered and the run counts moving.
    res = diagnose(sandbox, specs, probe=True)
    for phone in res["phones"]:
        assert phone["verdict"] == "healthy" and phone["first_failure"] is None, phone
        assert phone["probe"]["replies"] == phone["probe"]["pings"] > 0, phone["probe"]
        assert phone["window"]["runs"]["wire_in"] > 0, phone["window"]
        assert phone["traffic"]["0to1"]["forwarded"] > 0 and phone["traffic"]["1to0"]["forwarded"] > 0
    assert res["trace"]["available"] is False and "python3-bpfcc" in " ".join(res["trace"]["install"]) or \
        res["trace"]["bcc"], res["trace"]
    report(request, "intact:\n" + res["msg"])

    # 1. One program detached: end 1's wire_in unpinned (its link dies).
    os.unlink(os.path.join(PINS, name, "link_end1_in"))
    got, _res = check("wire_in of end 1 unpinned", "dead", f"{name}, end 1, host side {h1}: wire_in (tcx_ingress)")
    assert any(p["hook"] == "in" and p["end"] == 1 for p in got["problems"]), got["problems"]

    # 2. One wires map entry deleted: end 0's host side is unknown to the wire.
    wires = sandbox.run_module("phone_info", {"name": name})["phones"][0]["wires"]
    key = " ".join(str(b) for b in struct.pack("=I", [w["ifindex"] for w in wires if w["direction"] == 0][0]))
    netns_cmd(None, ["bpftool", "map", "delete", "pinned", os.path.join(PINS, name, "map_wires"),
                     "key"] + key.split(), check=True)
    got, res = check("wires entry of end 0 deleted", "dead", f"{name}, end 0, host side {h0}: no wires map entry",
                     probe=True)
    assert got["probe"]["replies"] == 0 and got["window"]["counters"]["unknown_ifindex"] > 0, got["window"]
    report(request, "wires map entry deleted:\n" + res["msg"])

    # 3. A yogurt device down.
    netns_cmd(y1, ["ip", "link", "set", c1, "down"], check=True)
    got, res = check("yogurt side of end 1 down", "dead", f"{name}, end 1, yogurt side {c1}: down")
    report(request, "yogurt device down:\n" + res["msg"])

    # 4. An address and a route on a host side: the call works, the isolation does not.
    sandbox.ip("addr", "add", "10.99.0.1/32", "dev", h0)
    sandbox.ip("route", "add", "10.99.1.0/24", "dev", h0)
    got, _res = check("address and route on end 0's host side", "exposed", f"{name}, end 0, host side {h0}: carries")
    assert "10.99.0.1/32" in got["first_failure"] and "10.99.1.0/24" in got["first_failure"], got["first_failure"]

    # 5. The XDP guard of end 0 detached (bpftool): the call works, the host can reach yogurt 0.
    links = {link["pin"]: link for link in sandbox.run_module("phone_info", {"name": name})["phones"][0]["links"]}
    netns_cmd(None, ["bpftool", "link", "detach", "id", str(links["link_end0_xdp"]["id"])], check=True)
    check("XDP guard of end 0 detached", "exposed", f"{name}, end 0, yogurt side {c0}: guard_xdp (xdp) is detached")

    # 6. Injection from the host on end 1 during the window: refused, named, the phone healthy.
    frames = 20
    sent = {}

    def later():  # after the module's start-up and first sample (~1 s; 3 s seen under load), well inside the window
        time.sleep(4.0)
        sent.update(inject(sandbox.name, h1, mac_of(y1, c1), ipv4_udp("10.42.1.1", "10.42.1.2", 5700, b"injected by the host"),
                           bypass=True, count=frames))

    thread = threading.Thread(target=later)
    thread.start()
    res = diagnose(sandbox, specs, window=12.0)
    thread.join()
    got = by_name(res)[name]
    assert got["verdict"] == "healthy", got
    notes = [o for o in got["observations"] if f"end 1, host side {h1}" in o]
    assert sent.get("ok") == frames and notes and f"transmitted {frames} frame" in notes[0], (sent, got["observations"])
    assert got["window"]["counters"]["refused"] == frames, got["window"]
    assert not by_name(res)[good["name"]]["observations"], by_name(res)[good["name"]]
    seen.append(f"injection on end 1: {got['verdict_text']} - {notes[0]}")
    report(request, "faults and what the diagnosis said:\n" + "\n".join(seen))


def test_diagnose_fail_on_dead_and_check_mode(sandbox, veth_object):
    spec = veth_phone(sandbox.prefix, 0)
    converge(sandbox, [spec], veth_object)
    y1, c1 = spec["ends"][1]["netns"], spec["ends"][1]["cont_ifname"]
    netns_cmd(y1, ["ip", "link", "set", c1, "down"], check=True)
    res = sandbox.run_module("diagnose", {"phones": [spec], "window": 0.5, "fail_on": "dead"})
    assert res["rc"] != 0 and res.get("failed"), res
    assert f"end 1, yogurt side {c1}: down" in res["msg"], res["msg"]
    checked = sandbox.module("diagnose", {"phones": [spec], "window": 0.5, "name": spec["name"]}, check=True)
    assert not checked.failed and checked["changed"] is False and checked["verdicts"] == {spec["name"]: "dead"}, checked
