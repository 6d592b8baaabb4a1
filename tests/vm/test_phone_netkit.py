# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The eBPF wire and the isolation of whole phones on the netkit backend (the test VM, Debian 6.12).

One ansible-playbook run (tests/vm/phone_netkit/phone_netkit.yml) in the session VM builds
two netkit phones with the same addresses through yogurt.phone.phones, and between module
runs feeds tests/vm/phone_netkit/probe.py to python3 in the VM for the packet-level work:
ping both ways with the counters read by bpftool, every way root on the host could try to
reach a yogurt, taking the wire off by hand, a continuous ping across a program swap,
deleting a device, and what is left after absent. The playbook asserts on its own; the
tests below read every task's result again (one JSON line per task, from the
yogurt_test_json callback) so that a failure names what broke. Module tasks cost 5-18 s
each in the TCG guest, so everything rides on that one run.

Issue 4 (the wire on netkit) and issue 7 (the host cannot reach a yogurt) on netkit.
"""

from __future__ import annotations

import os
import pathlib

import pytest
from playbook_run import run_playbook  # pylint: disable=import-error  # tests/vm is on sys.path (conftest)

pytestmark = pytest.mark.vm

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "tests" / "vm" / "phone_netkit" / "phone_netkit.yml"
PREFIX = f"vw{os.getpid() % 10000}"
PHONE_A, PHONE_B = f"{PREFIX}a", f"{PREFIX}b"
PROBE_1 = "Ping through both phones; try to reach a yogurt from the host, B from A, the host from a yogurt"
CHECK_REPAIRED = "Check the repaired phones, then start a continuous ping in phone A"
FINISH_PING = "Collect the ping, then delete phone A's end-1 host side by hand"
REBUILD = "Converge rebuilds the device and re-attaches"
CHECK_REBUILT = "Check the rebuilt phone, then put an address and a route on phone A's host sides"
TAMPERED = "Converge after someone tampered with the host sides"
PING_COUNT = 800  # at 0.05 s: 40 s of ping; the swap task returned after 20-25 s under load (load 3)


@pytest.fixture(scope="module")
def run(netkit_vm_inventory):
    result = run_playbook(netkit_vm_inventory, PLAYBOOK, {"vw_prefix": PREFIX, "vw_ping_count": PING_COUNT},
                          title=f"netkit phones in the VM (prefix {PREFIX})")
    with_numbers(result)
    return result


def with_numbers(run):
    """Print the numbers the report quotes (they also land in the captured output of a failure)."""
    try:
        iso = run.probe(PROBE_1, "isolation")
        swapped = run.probe(FINISH_PING, "finish_ping")
        traffic = run.probe(PROBE_1, "traffic")[PHONE_A]
    except (AssertionError, ValueError, KeyError, IndexError):
        return
    detach = run.probe("Detach end 0's links and unpin end 1's links of phone A by hand", "detach")
    lines = [f"detached by hand (bpftool link detach): {detach['detached']}, unpinned: {detach['unpinned']}",
             f"ping {traffic['count']} A0->A1: forwarded_packets_0to1 +{traffic['delta_ping_0to1']['forwarded_packets_0to1']}"
             f", 1to0 +{traffic['delta_ping_0to1']['forwarded_packets_1to0']}",
             f"swap under ping: {swapped.get('received')}/{swapped.get('sent')} answered, "
             f"{swapped.get('replies_when_swap_done')} before the swap task returned"]
    for label, res in iso["attempts"].items():
        lines.append(f"{label:28s} handed {res.get('handed_to_device', '-')!s:>3} "
                     f"reached {res['received_udp'] + res.get('received_tcp', 0)} refused +{res['delta']['refused']} "
                     f"{res.get('errors') or res.get('tcp') or ''}")
    tampered = run.results.get(TAMPERED, {})
    lines.append(f"converge after tampering: {tampered.get('_status')} {tampered.get('msg', '')}")
    print("\n".join(lines))


def _actions(run, task, name):
    return run.phone(task, name)["actions"]


def test_playbook_passed_its_own_asserts(run):
    assert run.rc == 0, "".join(run.output[-80:])
    assert run["What the runs reported"]["_status"] == "ok"


# ---------------------------------------------------------------- issue 4: the wire on netkit

def test_both_phones_are_built_on_netkit(run):
    create = run["Build both phones"]
    assert create["changed"]
    for name in (PHONE_A, PHONE_B):
        phone = run.phone("Build both phones", name)
        assert phone["backend"] == "netkit" and phone["backend_reason"] == "netkit was asked for"
        assert phone["wire"]["attach_mode"] == "netkit"
        links = {link["pin"]: link["attach_type"] for link in phone["wire"]["links"]}
        assert links == {"link_end0_primary": "netkit_primary", "link_end0_peer": "netkit_peer",
                         "link_end1_primary": "netkit_primary", "link_end1_peer": "netkit_peer"}
        for end in phone["ends"]:
            assert (end["mode"], end["policy"], end["peer_policy"]) == ("l3", "blackhole", "blackhole")


def test_pings_flow_and_counters_move_by_what_was_sent(run):
    traffic = run.probe(PROBE_1, "traffic")
    for name in (PHONE_A, PHONE_B):
        phone = traffic[name]
        count = phone["count"]
        assert phone["ping_0to1"] == {"sent": count, "received": count}
        assert phone["ping_1to0"] == {"sent": count, "received": count}
        # Requests one way, replies the other; a neighbour or MLD packet at most on top.
        for window in ("delta_ping_0to1", "delta_ping_1to0"):
            moved = phone[window]
            assert count <= moved["forwarded_packets_0to1"] <= count + 3, (window, moved)
            assert count <= moved["forwarded_packets_1to0"] <= count + 3, (window, moved)
            assert moved["forwarded_bytes_0to1"] >= count * 84  # 20 + 8 + 56 bytes of IPv4 echo
            assert moved["refused"] == 0 and moved["unknown_ifindex"] == 0


def test_without_its_programs_the_blackhole_pair_drops_everything(run):
    detach = run.probe("Detach end 0's links and unpin end 1's links of phone A by hand", "detach")
    assert detach["unpinned"] == ["link_end1_primary", "link_end1_peer"]
    assert all(isinstance(link_id, int) for link_id in detach["detached"].values()), detach["detached"]
    assert "link_end0_primary" in detach["pins_after"] and "link_end1_primary" not in detach["pins_after"]
    assert detach["attachments_left"] == []
    for device in detach["devices"].values():
        assert (device["policy"], device["peer_policy"]) == ("blackhole", "blackhole")
    assert detach["ping_0to1"]["received"] == 0 and detach["ping_1to0"]["received"] == 0
    # No program ran: nothing was counted either.
    assert detach["delta"]["forwarded_packets_0to1"] == 0 and detach["delta"]["forwarded_packets_1to0"] == 0


def test_converge_repairs_the_wire_and_says_what_it_fixed(run):
    repair = run["Converge repairs phone A"]
    actions = _actions(run, "Converge repairs phone A", PHONE_A)
    assert repair["changed"]
    for hook in ("primary", "peer"):
        # end 0: the pin was still there, its link detached (defunct); end 1: the pin was gone
        assert any(a.startswith(f"detach stale link_end0_{hook} (netkit_{hook} on a deleted device") for a in actions)
        assert any(a.startswith(f"attach link_end0_{hook}: wire_{hook} as netkit_{hook}") for a in actions)
        assert any(a.startswith(f"attach link_end1_{hook}: wire_{hook} as netkit_{hook}") for a in actions)
    assert not any(a.startswith("pin prog_") for a in actions), actions  # same object: programs kept
    assert _actions(run, "Converge repairs phone A", PHONE_B) == []
    repaired = run.probe(CHECK_REPAIRED, "check")[PHONE_A]
    assert repaired["ping_0to1"]["received"] == 3 and repaired["ping_1to0"]["received"] == 3
    assert len(repaired["attachments"]) == 4


def test_rerun_is_unchanged(run):
    rerun = run["Converge again (no change)"]
    assert rerun["changed"] is False
    assert all(p["actions"] == [] for p in rerun["phones"])


def test_program_swap_under_a_continuous_ping_loses_nothing_and_keeps_the_links(run):
    swap = run["Swap the programs under the ping"]
    assert swap["changed"]
    assert run["Compile a variant (same source, other instructions)"]["objects"] != \
        run["Compile the wire"]["objects"]
    for name in (PHONE_A, PHONE_B):
        actions = _actions(run, "Swap the programs under the ping", name)
        updates = [a for a in actions if a.startswith("update link_end")]
        assert len(updates) == 4, actions
        assert not any(a.startswith(("attach", "detach")) for a in actions), actions
        before = {link["pin"]: link["id"] for link in run.phone("Converge again (no change)", name)["wire"]["links"]}
        after = {link["pin"]: link["id"] for link in run.phone("Swap the programs under the ping", name)["wire"]["links"]}
        assert after == before  # same bpf_links, new programs
    tags_before = {p["name"]: p["tag"] for p in run.phone("Converge again (no change)", PHONE_A)["wire"]["programs"]}
    tags_after = {p["name"]: p["tag"] for p in run.phone("Swap the programs under the ping", PHONE_A)["wire"]["programs"]}
    assert all(tags_before[n] != tags_after[n] for n in tags_before), (tags_before, tags_after)

    ping = run.probe(FINISH_PING, "finish_ping")
    assert ping["alive_after_swap"], "the ping ended before the swap did: it proves nothing"
    assert 0 < ping["replies_when_swap_done"] < PING_COUNT
    assert (ping["sent"], ping["received"]) == (PING_COUNT, PING_COUNT), ping["summary"]
    assert ping["missing_seq"] == []


def test_deleted_device_is_rebuilt_and_reattached(run):
    ping = run.probe(FINISH_PING, "finish_ping")
    assert ping["ping_after_delete"]["received"] == 0
    actions = _actions(run, REBUILD, PHONE_A)
    end1 = run.phone("Build both phones", PHONE_A)["ends"][1]["host_ifname"]
    assert any(a.startswith(f"create netkit pair {end1} ") for a in actions), actions
    assert any(a.startswith("set wires map:") for a in actions), actions
    for hook in ("primary", "peer"):
        assert any(a.startswith(f"detach stale link_end1_{hook}") for a in actions), actions
        assert any(a.startswith(f"attach link_end1_{hook}") for a in actions), actions
    assert not any("link_end0" in a for a in actions), actions
    assert _actions(run, REBUILD, PHONE_B) == []
    rebuilt = run.phone(REBUILD, PHONE_A)
    assert rebuilt["ends"][1]["host_ifindex"] != ping["ifindex_before_delete"]
    before = {link["pin"]: link["id"] for link in run.phone("Swap the programs under the ping", PHONE_A)["wire"]["links"]}
    after = {link["pin"]: link["id"] for link in rebuilt["wire"]["links"]}
    assert after["link_end0_primary"] == before["link_end0_primary"] and after["link_end0_peer"] == before["link_end0_peer"]
    check = run.probe(CHECK_REBUILT, "check")[PHONE_A]
    assert check["ping_0to1"]["received"] == 3 and check["ping_1to0"]["received"] == 3
    assert len(check["attachments"]) == 4


def test_rebuilt_wire_routes_the_new_device_and_kept_counting(run):
    """The wire as the converge read it back (wire.read_wire, what yogurt.phone.phone_info shows)."""
    rebuilt = run.phone(REBUILD, PHONE_A)
    wire = rebuilt["wire"]
    assert wire["backend"] == "netkit" and wire["attach_mode"] == "netkit"
    assert len(wire["links"]) == 4 and not any(link["defunct"] for link in wire["links"])
    ifindexes = [end["host_ifindex"] for end in rebuilt["ends"]]
    wires = sorted((w["ifindex"], w["target"], w["direction"]) for w in wire["maps"]["wires"])
    assert wires == sorted([(ifindexes[0], ifindexes[1], 0), (ifindexes[1], ifindexes[0], 1)])
    # The maps outlived the swap and the new device: counters kept counting.
    traffic = run.probe(PROBE_1, "traffic")[PHONE_A]["counters"]
    assert wire["maps"]["counters"]["forwarded_packets_0to1"] >= traffic["forwarded_packets_0to1"] + PING_COUNT
    assert wire["maps"]["counters"]["refused"] > 0


def test_absent_leaves_nothing(run):
    absent = run["Remove both phones"]
    assert absent["changed"]
    for name in (PHONE_A, PHONE_B):
        actions = _actions(run, "Remove both phones", name)
        assert f"remove /sys/fs/bpf/yogurt/{name}" in actions
        assert any(a.startswith("removed namespace") for a in actions)
    gone = run.probe("Nothing is left", "gone")
    assert gone["pin_dirs"] == {PHONE_A: False, PHONE_B: False}
    assert gone["netkit_attachments"] == [] and gone["netkit_links"] == []
    assert gone["netns"] == [] and gone["devices"] == []
    assert gone["records"] == {PHONE_A: False, PHONE_B: False}


# ---------------------------------------------------------------- issue 7 on netkit

def _isolation(run):
    return run.probe(PROBE_1, "isolation")


def test_host_sides_carry_no_address(run):
    iso = _isolation(run)
    assert iso["host_addresses_before"] and all(a == [] for a in iso["host_addresses_before"].values())
    assert all(r == [] for r in iso["host_routes_before"].values())
    for phone in run["Build both phones"]["phones"]:
        for end in phone["ends"]:
            assert end["host_addresses"] == [] and end["host_addr_gen_mode"] == "none"


def test_host_cannot_reach_a_yogurt_by_any_path(run):
    """Ping, UDP and TCP over a route or an address on the host side, AF_PACKET frames with
    and without PACKET_QDISC_BYPASS (and with the wire's marker as SO_MARK): none arrives,
    and the primary program counts every packet handed to the device as refused."""
    iso = _isolation(run)
    # Without help the VM routes the yogurts' subnet to qemu's NIC: the probe never sends that way.
    assert '"dev":"eth0"' in iso["route_get_without_help"]
    a1_host = run.phone("Build both phones", PHONE_A)["ends"][1]["host_ifname"]
    assert f'"dev":"{a1_host}"' in iso["route_get_with_route"]
    assert f'"dev":"{a1_host}"' in iso["route_get_with_address"]
    attempts = iso["attempts"]
    assert set(attempts) == {"route_ping", "route_udp", "route_tcp", "address_ping", "address_udp", "address_tcp",
                             "packet_dgram_bypass0", "packet_dgram_bypass1", "packet_raw_bypass0",
                             "packet_raw_bypass1", "packet_dgram_bypass1_mark", "packet_dgram_bypass1_end0"}
    for label, res in attempts.items():
        assert res["received_udp"] == 0 and res.get("received_tcp", 0) == 0, (label, res)
        if "handed_to_device" in res:
            assert res["delta"]["refused"] >= res["handed_to_device"], (label, res)
        else:  # TCP: at least the SYN was refused
            assert res["tcp"] != "connected" and res["delta"]["refused"] >= 1, (label, res)
        assert res["delta"]["unknown_ifindex"] == 0
    for label in (a for a in attempts if a.startswith("packet_")):
        # The drop happens inside the device's transmit: the sender sees ENOBUFS per frame.
        assert attempts[label]["errors"] == {"ENOBUFS": 20}, (label, attempts[label])


def test_two_phones_with_the_same_addresses_stay_apart(run):
    iso = _isolation(run)
    assert iso["control_received_a"] == 20 and iso["control_received_b"] == 0
    assert iso["control_tcp"] == "connected" and iso["control_tcp_accepted"] == 1
    assert iso["control_delta_a"]["forwarded_packets_0to1"] >= 20
    # B's own counters may see its yogurts' background IPv6 chatter; never a refusal of A's packets.
    assert iso["control_delta_b"]["refused"] == 0
    for label, res in iso["attempts"].items():
        assert res.get("received_b", 0) == 0, label
        if res.get("delta_b"):
            assert res["delta_b"]["refused"] == 0, label  # nothing aimed at A landed on B's devices


def test_a_yogurt_cannot_reach_the_host_namespace(run):
    """Even with a default route out of its device, everything a yogurt sends goes over the
    wire to the other yogurt (counted), none of it to the host's 10.0.2.15."""
    to_host = _isolation(run)["to_host"]
    assert to_host["udp"]["sent"] == 20 and to_host["received_udp"] == 0
    assert to_host["ping"]["received"] == 0
    assert to_host["tcp"] != "connected" and to_host["received_tcp"] == 0
    assert to_host["delta"]["forwarded_packets_0to1"] >= 20 + 5


def test_a_route_through_a_host_side_is_removed_and_reported(run):
    left = _isolation(run)["left_for_converge"]["route"]
    (device, routes), = left.items()
    assert routes == ["unicast 10.42.0.1 table main"]
    said = _actions(run, "Converge repairs phone A", PHONE_A)
    assert f"removed route 10.42.0.1/32 (table 254) through host-side device {device}" in said, said
    assert run.probe(CHECK_REPAIRED, "check")[PHONE_A]["host_routes"][device] == []
    assert run.probe(CHECK_REPAIRED, "check")[PHONE_A]["host_addresses"][device] == []


def test_an_address_put_on_a_host_side_is_removed_and_reported(run):
    """With a route through the other host side in the same converge. Before 147614b this
    converge failed: the address's kernel routes, read at the start of the run, were gone
    with the address when the route loop tried to delete them (ESRCH)."""
    left = run.probe(CHECK_REBUILT, "tamper")
    (device, addresses), = left["address"].items()
    assert addresses == ["10.42.0.100/24"]
    tampered = run[TAMPERED]
    assert tampered["_status"] == "ok", tampered.get("msg")
    said = _actions(run, TAMPERED, PHONE_A)
    assert f"remove host-side address 10.42.0.100/24 from {device}" in said, said
    assert any("10.42.0.100/24" in w for w in tampered.get("warnings", []))
    assert any(a.startswith("removed route 10.42.0.1/32 (table 254)") for a in said), said
    assert not any("link_end" in a for a in said), said  # the wire was left alone
    assert _actions(run, TAMPERED, PHONE_B) == []
    after = run.probe("Read the host sides again", "check")[PHONE_A]
    assert all(a == [] for a in after["host_addresses"].values()), after
    assert all(r == [] for r in after["host_routes"].values()), after
    assert after["ping_0to1"]["received"] == 3
