"""The call's break-in checks on the real kernel, inside the test's sandbox namespace.

Controls first: on a plain veth pair (no wire) every injected frame must be seen by both the
UDP socket and the packet socket in the "yogurt", and the yogurt's forged frames must reach a
UDP socket of the sandbox and poison its neighbour table; otherwise the checks could pass
without proving anything. Then phones: the one site.yml builds (veth, tcx) and one wired with
tc clsact filters (forced with the wire module's attach: tc, what Linux < 6.6 gets).

The packet-socket assertions are tests of their own (`*_packet_socket`): on the veth datapath
of today frames sent with PACKET_QDISC_BYPASS reach a packet socket on the yogurt's device
(issue 13); those tests fail until the veth datapath drops them before the taps.
"""

import subprocess

import pytest

from ansible_collections.yogurt.phone.plugins.module_utils._call import DESTINATIONS, inject_matrix, run_reverse
from ansible_collections.yogurt.phone.plugins.module_utils._netns import enter_netns
from yogurt_test.ansible import recap, run_playbook as run
from yogurt_test.phones import PIN_ROOT, VethPhone as Phone, phone_spec as phone

FRAMES = 4


def plain_pair(sandbox):
    """A veth pair with no wire: host side in the sandbox, the other side in a 'yogurt' namespace."""
    host, cont, yogurt = f"{sandbox.prefix}h", f"{sandbox.prefix}c", f"{sandbox.prefix}-y"
    subprocess.run(["ip", "netns", "add", yogurt], check=True)
    sandbox.ip("link", "add", host, "type", "veth", "peer", "name", cont, "netns", yogurt)
    sandbox.ip("link", "set", host, "addrgenmode", "none", "up")
    for argv in (["link", "set", "lo", "up"], ["link", "set", cont, "up"],
                 ["addr", "add", "10.77.0.2/24", "dev", cont], ["addr", "add", "fd77::2/64", "dev", cont, "nodad"]):
        subprocess.run(["ip", "-n", yogurt] + argv, check=True)
    return {"netns": yogurt, "host_ifname": host, "cont_ifname": cont, "addresses": ["10.77.0.2/24", "fd77::2/64"]}


def test_control_injection_is_seen_on_a_plain_veth_pair(sandbox):
    end = plain_pair(sandbox)
    with enter_netns(sandbox.path):
        checks = inject_matrix(end, frames=FRAMES)
    assert len(checks) == 2 * 2 * 2 * len(DESTINATIONS), [c["check"] for c in checks]
    missed = [(c["check"], c["sent"], c["reached_udp"], c["reached_packet"]) for c in checks
              if not c["sent"] == c["reached_udp"] == c["reached_packet"] == FRAMES]
    assert missed == [], f"the control did not see every frame: the check could miss one: {missed}"


def test_control_reverse_is_seen_on_a_plain_veth_pair(sandbox):
    """A host namespace that accepts the yogurt's frames: an address (on lo), gateways via the pair
    with neighbour entries, arp_accept. The check must see the frames and the poisoned entries."""
    end = plain_pair(sandbox)
    dev = end["host_ifname"]
    sandbox.ip("addr", "add", "10.99.0.1/32", "dev", "lo")
    sandbox.ip("route", "add", "default", "via", "10.77.0.254", "dev", dev, "onlink")
    sandbox.ip("-6", "route", "add", "default", "via", "fd77::fe", "dev", dev, "onlink")
    for gw in ("10.77.0.254", "fd77::fe"):
        sandbox.ip("neigh", "add", gw, "lladdr", "02:00:00:00:00:fe", "dev", dev, "nud", "stale")
    sandbox.command(["sysctl", "-qw", f"net.ipv4.conf.{dev}.arp_accept=1"], check=True)
    subprocess.run(["sleep", "1.1"], check=True)  # past the neighbour entries' locktime
    with enter_netns(sandbox.path):
        checks = run_reverse({"name": "control", "ends": [end]}, frames=FRAMES)
    udp = {c["check"]: c["reached_udp"] for c in checks if c["kind"] == "reverse" and "UDP" not in c["dest"]
           and c["dest"] in ("unicast", "broadcast", "multicast")}
    assert len(udp) == 5 and set(udp.values()) == {FRAMES}, udp  # unicast, broadcast, multicast; IPv6: no unicast
    neigh = checks[-1]
    assert neigh["kind"] == "neighbours" and not neigh["ok"], neigh
    assert {c["dst"] for c in neigh["changes"]} == {"10.77.0.254", "fd77::fe"}, neigh
    assert all(c["after"] == "02:79:67:00:00:66" for c in neigh["changes"]), neigh


def site_phone(sandbox, tmp_path, dual_stack=True):
    spec = phone(sandbox.prefix, 1)
    if dual_stack:
        for i, end in enumerate(spec["ends"], start=1):
            end["addresses"].append(f"fd78::{i}/64")
    built = run(sandbox, tmp_path, [spec], yogurt_phone_call=False)
    assert built.returncode == 0, built.stdout[-3000:]
    return spec


def tc_phone(sandbox, prefix, veth_object):
    """A phone wired with tc clsact filters on this kernel, as the wire module forces it."""
    made = Phone(sandbox, prefix, veth_object)
    res = made.wire(attach="tc")
    assert res["attach_mode"] == "tc", res
    return {"name": made.name, "backend": "veth", "ends": [
        {"netns": made.yogurts[i], "host_ifname": made.host[i], "cont_ifname": made.cont[i],
         "addresses": [f"{made.addr[i]}/24"]} for i in range(2)]}


def place_call(sandbox, spec):
    res = sandbox.module("call", {"phones": [spec], "host": "localhost", "fail_on_failure": False, "frames": FRAMES})
    assert res.rc == 0 and not res.get("failed"), res
    (result,) = res["calls"]
    return res, result


def checks_of(result, kind):
    return [c for c in result["checks"] if c["kind"] == kind]


def assert_stack_and_counters(result, families, attach_mode):
    assert result["backend"] == "veth" and result["attach_mode"] == attach_mode, result
    assert all(c["ok"] for c in checks_of(result, "ping") + checks_of(result, "tcp")), result["checks"][:8]
    injects = checks_of(result, "inject")
    assert len(injects) == 2 * families * 2 * 2 * len(DESTINATIONS)
    assert {c["attempts"] for c in injects} == {FRAMES}
    reached = [(c["check"], c["reached_udp"]) for c in injects if c["reached_udp"]]
    assert reached == [], f"injected frames reached a UDP socket in a yogurt: {reached}"
    short = [(c["check"], c["refused_delta"], c["sent"]) for c in injects if c["refused_delta"] < c["sent"]]
    assert short == [], f"refusal counters moved less than the frames sent: {short}"
    reverse = checks_of(result, "reverse")
    assert reverse and all(c["sent"] == FRAMES and c["reached_udp"] == 0 for c in reverse), reverse
    assert checks_of(result, "neighbours")[0]["ok"], checks_of(result, "neighbours")


def assert_no_packet_socket_saw_a_frame(res, result):
    """Depends on the veth datapath dropping host-side frames before the taps (issue 13)."""
    seen = [(c["check"], c["reached_packet"]) for c in checks_of(result, "inject") if c["reached_packet"]]
    assert seen == [], f"{len(seen)} checks got injected frames into a packet socket in a yogurt: {seen}"
    assert result["ok"] and res["ok"], res["failures"]


def test_site_phone_tcx_refuses_injection_into_the_stack_and_counts_it(sandbox, tmp_path):
    res, result = place_call(sandbox, site_phone(sandbox, tmp_path))
    assert_stack_and_counters(result, families=2, attach_mode="tcx")
    print("\n".join(res["summary"]))


def test_site_phone_tcx_injection_reaches_no_packet_socket(sandbox, tmp_path):
    res, result = place_call(sandbox, site_phone(sandbox, tmp_path))
    print("\n".join(res["summary"]))
    assert_no_packet_socket_saw_a_frame(res, result)


def test_tc_phone_refuses_injection_into_the_stack_and_counts_it(sandbox, prefix, veth_object):
    res, result = place_call(sandbox, tc_phone(sandbox, prefix, veth_object))
    assert_stack_and_counters(result, families=1, attach_mode="tc")
    assert "veth/tc (veth asked for, tc asked for) | ping 3/3 3/3" in res["summary"][0], res["summary"]
    print("\n".join(res["summary"]))


def test_tc_phone_injection_reaches_no_packet_socket(sandbox, prefix, veth_object):
    res, result = place_call(sandbox, tc_phone(sandbox, prefix, veth_object))
    print("\n".join(res["summary"]))
    assert_no_packet_socket_saw_a_frame(res, result)


def test_a_yogurt_reaches_no_socket_and_no_neighbour_entry_of_a_host_with_an_address(sandbox, tmp_path):
    """The reverse attempts aim unicast at the host's own address when it has one."""
    sandbox.ip("addr", "add", "10.99.0.1/32", "dev", "lo")
    res, result = place_call(sandbox, site_phone(sandbox, tmp_path, dual_stack=False))
    unicast = [c for c in checks_of(result, "reverse") if c["dest"] == "unicast"]
    assert [c["dst_ip"] for c in unicast] == ["10.99.0.1", "10.99.0.1"], unicast
    assert all(c["ok"] for c in checks_of(result, "reverse")), checks_of(result, "reverse")
    assert checks_of(result, "neighbours")[0]["ok"]
    assert "| reverse kept out 32/32, neighbours unchanged" in res["summary"][0], res["summary"]


def test_site_prints_one_summary_line_per_phone(sandbox, tmp_path):
    """The line appears whether or not the call passes (it comes before the failure)."""
    phones = [phone(sandbox.prefix, 0), phone(sandbox.prefix, 1)]
    first = run(sandbox, tmp_path, phones)
    for spec in phones:
        head = f"localhost {spec['name']}: veth/tcx (Linux "
        tail = "has no netkit) | ping 3/3 3/3 | tcp ok ok | injection refused 96/96 ("
        lines = [line for line in first.stdout.splitlines() if head in line]
        assert len(lines) == 1 and tail in lines[0], first.stdout[-3000:]
        assert "| reverse kept out 24/24, neighbours unchanged" in lines[0], lines
    again = run(sandbox, tmp_path, phones)
    assert recap(again.stdout)["changed"] == 0, again.stdout[-3000:]
    check = run(sandbox, tmp_path, phones, args=("--tags", "phones", "--check"))
    assert check.returncode == 0 and recap(check.stdout)["changed"] == 0, check.stdout[-3000:]
    assert "injection refused" not in check.stdout, "--check must not place the call"


def test_site_summary_line_of_one_phone_is_a_plain_string(sandbox, tmp_path):
    spec = phone(sandbox.prefix, 0)
    out = run(sandbox, tmp_path, [spec]).stdout
    assert f'"msg": "localhost {spec["name"]}: veth/tcx (Linux ' in out, out[-3000:]


@pytest.mark.parametrize("damage", ["pin", "down", "netns"])
def test_a_broken_phone_fails_with_a_message_naming_the_check(sandbox, tmp_path, damage):
    spec = site_phone(sandbox, tmp_path, dual_stack=False)
    y1, y2 = spec["ends"][0]["netns"], spec["ends"][1]["netns"]
    if damage == "pin":
        subprocess.run(["rm", f"{PIN_ROOT}/{spec['name']}/link_end0_in"], check=True)
        # The link goes when bpffs lets go of the pin: the first echo may still make it.
        words = [f"host localhost, phone {spec['name']}, end 0: ping {y1} -> 10.42.1.2: ", "/3 replies"]
    elif damage == "down":
        subprocess.run(["ip", "-n", y2, "link", "set", spec["ends"][1]["cont_ifname"], "down"], check=True)
        # A down yogurt-side veth drops what its host side sends before the XDP guard sees it,
        # so no frame of the matrix is counted as refused, and the message says which.
        words = [f"host localhost, phone {spec['name']}, end 1: ping {y2} -> 10.42.1.1: 0/3 replies (Network is unreachable)",
                 f"phone {spec['name']}, end 1, host device {spec['ends'][1]['host_ifname']}: injection the refusal "
                 "counters moved less than the frames sent or refused at send: IPv4 raw unicast +0 for 4",
                 "IPv4 raw+bypass unicast +0 for 4"]
    else:
        subprocess.run(["ip", "netns", "del", y2], check=True)
        words = [f"host localhost, phone {spec['name']}, call: NetnsError: ", f"'{y2}' does not exist"]
    proc = run(sandbox, tmp_path, [spec], playbook="playbooks/call.yml", args=())
    assert proc.returncode != 0
    fatal = [line for line in proc.stdout.splitlines() if line.startswith("fatal: [localhost]: FAILED!")]
    assert len(fatal) == 1, proc.stdout[-3000:]
    for word in words:
        assert word in fatal[0], f"{word!r} not in {fatal[0]}"
    assert "Traceback" not in proc.stdout + proc.stderr and '"calls"' not in fatal[0]
    assert f"localhost {spec['name']}: veth/tcx" in proc.stdout  # the summary line came first
