# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Faults: a converge killed at several points, concurrent converges, a wire detached by hand.

The phones module runs as a plain process (its main(), arguments on stdin) inside the sandbox,
so that it can be SIGKILLed at a chosen point. The points are not delays: a fresh converge
spends its first ~1 s importing and probing the kernel, so fixed delays such as 0.05-0.6 s all
land before the first change. Instead the test watches what the run has made so far
(record, namespaces, devices, pins) and kills it the moment a milestone appears.
"""

import contextlib
import json
import os
import signal
import subprocess
import time


from yogurt_test.ansible import module_argv, module_env
from yogurt_test.frames import ipv4_udp
from yogurt_test.netns import RECORDS, mac_of, popen, run as netns_cmd
from yogurt_test.phones import PIN_ROOT, counters, ends_of, pins_of, report, veth_phone
from yogurt_test.traffic import inject, listening

PINS = str(PIN_ROOT)


EXPECTED_PINS = sorted(["map_counters", "map_wires", "prog_guard_xdp", "prog_wire_in"]
                       + [f"link_end{i}_{hook}" for i in (0, 1) for hook in ("xdp", "in")])


class Watch:
    """What a converge has made so far, read cheaply enough to poll every few milliseconds.

    Devices come from /proc/<pid>/net/dev of an idle process inside the sandbox (a netlink
    dump costs ~15 ms on a loaded machine; this file ~0.05 ms).
    """

    def __init__(self, sandbox):
        self.sandbox = sandbox
        self.idle = popen(sandbox.path, ["sleep", "900"])

    def close(self):
        self.idle.kill()
        self.idle.wait()

    def devices(self):
        with open(f"/proc/{self.idle.pid}/net/dev", encoding="utf-8") as handle:
            return sorted(line.split(":", 1)[0].strip() for line in handle.readlines()[2:])

    def netns(self):
        return sorted(n for n in os.listdir("/run/netns") if n.startswith(self.sandbox.prefix) and n != self.sandbox.name)

    def snapshot(self, specs):
        """What exists of `specs` (their records, namespaces, host-side devices, pins)."""
        netns, devices = set(self.netns()), set(self.devices())
        return {
            "records": sum(os.path.exists(RECORDS / f"{s['name']}.json") for s in specs),
            "netns": sum(e["netns"] in netns for s in specs for e in s["ends"]),
            "devices": sum(e["host_ifname"] in devices for s in specs for e in s["ends"]),
            "pins": [len(pins_of(s["name"])) for s in specs],
        }


def start_converge(sandbox, specs, obj, state="present"):
    args = {"phones": [dict(s, state=state) for s in specs], "veth_object": obj, "switchboard": ""}
    proc = subprocess.Popen(module_argv(sandbox.path, "phones"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=module_env())
    proc.stdin.write(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    proc.stdin.close()
    return proc


def finish(proc, timeout=120):
    out = proc.stdout.read()
    err = proc.stderr.read()
    proc.wait(timeout)
    try:
        data = json.loads(out)
    except ValueError:
        data = {"unparsed": out}
    data["rc"], data["stderr"] = proc.returncode, err[-2000:]
    return data


def kill_at(proc, milestone, timeout=30):
    """SIGKILL `proc` as soon as milestone() is true; False if the run ended first."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if milestone():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
            return True
        time.sleep(0.002)
    finish(proc)
    return False


def tcx_programs(ns, dev):
    """[(kind, program name)] attached to `dev` in `ns` (None: the sandbox, given as ns name)."""
    out = netns_cmd(ns, ["bpftool", "-j", "net", "show", "dev", dev], check=True).stdout
    return sorted((entry["kind"], entry["name"]) for entry in json.loads(out)[0]["tc"])


def xdp_program(ns, dev):
    """(mode, program name) of `dev`'s XDP in `ns` (mode 1: native), or None."""
    out = netns_cmd(ns, ["ip", "-j", "-d", "link", "show", dev], check=True).stdout
    xdp = json.loads(out)[0].get("xdp")
    return (xdp["mode"], xdp["prog"]["name"]) if xdp else None


def assert_whole(sandbox, specs, all_specs):
    """Every phone of `specs` exactly once: namespaces, devices, pins, links, attachments, record."""
    names = {s["name"] for s in all_specs}
    host_devices = json.loads(sandbox.ip("-j", "link", "show").stdout)
    expected = sorted(["lo"] + [e["host_ifname"] for s in all_specs for e in s["ends"]])
    assert sorted(d["ifname"] for d in host_devices) == expected, "extra or missing devices in the host namespace"
    ours = sorted(n for n in os.listdir("/run/netns") if n.startswith(sandbox.prefix) and n != sandbox.name)
    assert ours == sorted(e["netns"] for s in all_specs for e in s["ends"]), ours
    assert sorted(d for d in os.listdir(PINS) if d.startswith(sandbox.prefix)) == sorted(names)
    records = sorted(p.name for p in RECORDS.glob(f"{sandbox.prefix}*"))
    assert records == sorted(f"{n}.json" for n in names), records  # no .tmp left behind
    infos = {p["phone"]: p for p in sandbox.run_module("phone_info", {})["phones"]}
    for spec in specs:
        assert pins_of(spec["name"]) == EXPECTED_PINS, pins_of(spec["name"])
        info = infos[spec["name"]]
        assert len(info["links"]) == 4 and not any(link["defunct"] for link in info["links"]), info["links"]
        for ns, host, cont, _ip in ends_of(spec):
            assert tcx_programs(sandbox.name, host) == [("tcx/ingress", "wire_in")]
            assert tcx_programs(ns, cont) == [] and xdp_program(ns, cont) == (1, "guard_xdp")
            inside = json.loads(netns_cmd(ns, ["ip", "-j", "link", "show"], check=True).stdout)
            assert sorted(d["ifname"] for d in inside) == sorted(["lo", cont])


def assert_call(sandbox, specs):
    res = sandbox.run_module("call", {"phones": specs, "count": 2})
    assert res["rc"] == 0 and not res.get("failed"), res
    return res


def test_converge_killed_at_several_points_is_healed(sandbox, veth_object, request):
    """Each milestone gets its own two phones; a killed run is re-run and must give whole phones."""
    watch = Watch(sandbox)
    prefix = sandbox.prefix
    milestones = [
        ("first namespace made", lambda s: s[0]["ends"][0]["netns"] in watch.netns()),
        ("first pair made", lambda s: s[0]["ends"][0]["host_ifname"] in watch.devices()),
        ("first wire half attached", lambda s: len(pins_of(s[0]["name"])) >= 5),
        ("second phone's first pair made", lambda s: s[1]["ends"][0]["host_ifname"] in watch.devices()),
        ("everything pinned, result not yet printed", lambda s: len(pins_of(s[1]["name"])) == len(EXPECTED_PINS)),
    ]
    done = []
    seen = []
    try:
        for index, (label, reached) in enumerate(milestones):
            specs = [veth_phone(prefix, 2 * index), veth_phone(prefix, 2 * index + 1)]
            proc = start_converge(sandbox, specs, veth_object)
            started = time.monotonic()
            assert kill_at(proc, lambda specs=specs, reached=reached: reached(specs)), f"run ended before: {label}"
            at = time.monotonic() - started
            left = watch.snapshot(specs)
            seen.append(left)
            again = start_converge(sandbox, specs, veth_object)
            res = finish(again)
            assert res["rc"] == 0 and not res.get("failed"), res
            done.extend(specs)
            assert_whole(sandbox, specs, done)
            report(request, f"killed at {at:.2f} s ({label}): left {left}; re-run: "
                            f"{sum(len(p['actions']) for p in res['phones'])} actions, phones whole")
        # The kills landed at distinct points; every phone calls; a run over everything changes nothing.
        assert len({json.dumps(s, sort_keys=True) for s in seen}) == len(milestones), seen
        calls = assert_call(sandbox, done)["calls"]
        assert len(calls) == len(done) and all(c["ok"] for c in calls), calls
        res = sandbox.run_module("phones", {"phones": done, "veth_object": veth_object})
        assert res["rc"] == 0 and not res["changed"], res

        # A teardown killed half-way, then run again: nothing of any phone is left.
        proc = start_converge(sandbox, done, veth_object, state="absent")
        assert kill_at(proc, lambda: len(watch.netns()) <= len(done)), "teardown ended before half-way"
        left = watch.snapshot(done)
        left["pins"] = sum(left["pins"])
        res = sandbox.run_module("phones", {"phones": [dict(s, state="absent") for s in done], "veth_object": veth_object})
        assert res["rc"] == 0 and res["changed"], res
        assert watch.netns() == [] and watch.devices() == ["lo"], (watch.netns(), watch.devices())
        assert not any(d.startswith(prefix) for d in (os.listdir(PINS) if os.path.isdir(PINS) else []))
        assert list(RECORDS.glob(f"{prefix}*")) == []
        report(request, f"teardown killed half-way: left {left}; re-run removed the rest")
    finally:
        watch.close()


def test_teardown_finishes_a_namespace_a_killed_run_left_unmounted(sandbox, veth_object):
    """A teardown killed between unmounting a namespace and unlinking its file leaves the file
    (seen in CI: the kill of the test above landed there once); the next teardown removes it."""
    watch = Watch(sandbox)
    try:
        specs = [veth_phone(sandbox.prefix, 0)]
        res = sandbox.run_module("phones", {"phones": specs, "veth_object": veth_object})
        assert res["rc"] == 0 and res["changed"], res
        stale = f"/run/netns/{specs[0]['ends'][0]['netns']}"
        subprocess.run(["umount", stale], check=True)  # what the killed run had done so far
        assert os.path.isfile(stale)
        res = sandbox.run_module("phones", {"phones": [dict(s, state="absent") for s in specs],
                                            "veth_object": veth_object})
        assert res["rc"] == 0 and res["changed"], res
        assert any("stale namespace file" in a for a in res["phones"][0]["actions"]), res["phones"][0]["actions"]
        assert not os.path.lexists(stale) and watch.netns() == [], watch.netns()
        assert watch.devices() == ["lo"], watch.devices()  # nothing left when the teardown returns
    finally:
        watch.close()


def test_two_converges_at_once_make_one_phone(sandbox, veth_object, request):
    specs = [veth_phone(sandbox.prefix, 0)]
    procs = [start_converge(sandbox, specs, veth_object) for _i in range(2)]
    results = [finish(p) for p in procs]
    for res in results:
        assert res["rc"] == 0 and not res.get("failed"), res
    assert sorted(r["changed"] for r in results) == [False, True], "the second run must find the phone built"
    assert_whole(sandbox, specs, specs)
    assert_call(sandbox, specs)
    report(request, "two converges at once: both rc 0, one changed, one found it done; one set of devices")


# ---------------------------------------------------------------- the host lock and teardown

def _lock_holders(inode):
    """{'held': [pid], 'waiting': [pid]} for FLOCKs on `inode`, from /proc/locks."""
    found = {"held": [], "waiting": []}
    with open("/proc/locks", encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            waiting = fields[1] == "->"
            if waiting:
                fields = fields[:1] + fields[2:]
            if fields[1] != "FLOCK" or int(fields[5].rsplit(":", 1)[1]) != inode:
                continue
            found["waiting" if waiting else "held"].append(int(fields[4]))
    return found


def _wait(predicate, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.002)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def private_run_dir():
    """A mount namespace with its own /run/yogurt (tmpfs) and bpffs, sharing /run/netns with us.

    Teardown only tidies /run/yogurt when no record is left on the host; on a shared
    machine other phones' records exist, and removing the real lock file would break other
    runs. Here the test has the host to itself.
    """
    os.makedirs("/run/yogurt", exist_ok=True)
    holder = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "unchanged", "--", "sh", "-c",
         "mount -t tmpfs yogurt-test /run/yogurt && mount -t bpf bpf /sys/fs/bpf && echo ready && exec sleep 600"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def _start_in(mnt_pid, sandbox, phones, obj, exclusive=False):
    args = {"phones": phones, "veth_object": obj, "exclusive": exclusive, "switchboard": ""}
    proc = subprocess.Popen(["nsenter", f"--mount=/proc/{mnt_pid}/ns/mnt"] + module_argv(sandbox.path, "phones")[1:],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=module_env())
    proc.stdin.write(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    proc.stdin.close()
    return proc


class HostLockViolated(AssertionError):
    """Two converges were inside the host lock at once."""


def test_teardown_keeps_the_host_lock_for_a_waiting_converge(sandbox, veth_object, request):
    p0, p1 = veth_phone(sandbox.prefix, 0), veth_phone(sandbox.prefix, 1)
    with private_run_dir() as mnt:
        lock = f"/proc/{mnt}/root/run/yogurt/lock"
        # Six phones for the teardown to remove: with expedited RCU and namespaces removed first, one
        # phone's teardown held the lock too briefly to be caught holding it on a loaded machine.
        extra = [veth_phone(sandbox.prefix, i) for i in range(2, 7)]
        first = finish(_start_in(mnt, sandbox, [p0] + extra, veth_object))
        assert first["rc"] == 0, first
        inode = os.stat(lock).st_ino
        teardown = _start_in(mnt, sandbox, [], veth_object, exclusive=True)  # removes them, then tidies /run/yogurt
        waiting = late = None
        results = []
        try:
            _wait(lambda: teardown.pid in _lock_holders(inode)["held"], "the teardown to take the lock")
            teardown.send_signal(signal.SIGSTOP)
            waiting = _start_in(mnt, sandbox, [p1], veth_object)
            _wait(lambda: waiting.pid in _lock_holders(inode)["waiting"], "a converge to wait for the lock")
            teardown.send_signal(signal.SIGCONT)
            assert finish(teardown)["rc"] == 0
            replaced = not os.path.exists(lock) or os.stat(lock).st_ino != inode
            # Its record appears only inside the lock (it is written before anything is made):
            # then, and not at the flock() itself, it is surely converging.
            record = f"/proc/{mnt}/root/run/yogurt/phones/{p1['name']}.json"
            _wait(lambda: os.path.exists(record), "the waiting converge to get the lock and start")
            waiting.send_signal(signal.SIGSTOP)  # it holds the host lock: nobody else may converge now
            # Under heavy load the waiting converge may have finished before the SIGSTOP landed;
            # then a later run is rightly sequential. /proc/locks says which case this is.
            inside = waiting.pid in _lock_holders(os.stat(lock).st_ino)["held"]
            late = _start_in(mnt, sandbox, [p1], veth_object)
            try:
                late.wait(timeout=8)
            except subprocess.TimeoutExpired:
                pass
            outcome = f"ran to the end, rc {late.returncode}" if late.poll() is not None else "waited"
            report(request, f"teardown replaced the lock file: {replaced}; a converge started while another "
                            f"held the lock {outcome} (the other was stopped inside the lock: {inside})")
            if inside and late.poll() is not None:
                raise HostLockViolated(f"a converge ran to the end ({outcome}) while another one held the host lock")
        finally:
            for proc in (teardown, waiting, late):
                if proc is not None and proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signal.SIGCONT)
            for proc in (waiting, late):
                if proc is not None:
                    results.append(finish(proc))
        # Both converges of p1 went through, one after the other, and left one whole phone
        # (its pins live in the private bpffs, seen through the holder's root).
        assert [r["rc"] for r in results] == [0, 0], results
        assert sorted(r["changed"] for r in results) == [False, True], results
        assert sorted(os.listdir(f"/proc/{mnt}/root{PINS}/{p1['name']}")) == EXPECTED_PINS
        assert sorted(d["ifname"] for d in json.loads(sandbox.ip("-j", "link", "show").stdout)) == \
            sorted(["lo"] + [e["host_ifname"] for e in p1["ends"]])
        ends = ends_of(p1)
        for ns, host, cont, _ip in ends:
            assert tcx_programs(sandbox.name, host) == [("tcx/ingress", "wire_in")]
            assert tcx_programs(ns, cont) == [] and xdp_program(ns, cont) == (1, "guard_xdp")
        # The phone's pins (and so its counters) live in the holder's private bpffs, out of the
        # call module's sight: the wire is proven by pings both ways instead of a whole call.
        for (src, _h, _c, _src_ip), (_dst, _h2, _c2, dst_ip) in ((ends[0], ends[1]), (ends[1], ends[0])):
            pinged = netns_cmd(src, ["ping", "-c", "2", "-W", "2", dst_ip])
            assert pinged.returncode == 0, pinged.stdout


# ---------------------------------------------------------------- detached by hand

def test_a_wire_detached_by_hand_is_reattached(sandbox, veth_object, request):
    spec = veth_phone(sandbox.prefix, 0)
    res = sandbox.run_module("phones", {"phones": [spec], "veth_object": veth_object})
    assert res["rc"] == 0, res
    (y1, h1, c1, ip1), (_y2, _h2, _c2, ip2) = ends_of(spec)
    pin_dir = os.path.join(PINS, spec["name"])
    links = {link["pin"]: link for link in
             sandbox.run_module("phone_info", {"name": spec["name"]})["phones"][0]["links"]}

    # 1. Unpinned by hand: the link dies with its last reference and wire_in leaves the device.
    os.unlink(os.path.join(pin_dir, "link_end1_in"))
    assert ("tcx/ingress", "wire_in") not in tcx_programs(sandbox.name, spec["ends"][1]["host_ifname"])
    # 2. The XDP guard detached with bpftool (the link stays pinned, but defunct): now, and
    #    only now, root's qdisc-bypass frames reach yogurt-1.
    netns_cmd(None, ["bpftool", "link", "detach", "id", str(links["link_end0_xdp"]["id"])], check=True)
    info = sandbox.run_module("phone_info", {"name": spec["name"]})["phones"][0]
    assert [link["pin"] for link in info["links"] if link["defunct"]] == ["link_end0_xdp"], info["links"]
    assert xdp_program(y1, c1) is None
    # 3. `ip link set xdp off` cannot take a link-owned XDP program off (EBUSY): yogurt-2's stays.
    y2, c2 = spec["ends"][1]["netns"], spec["ends"][1]["cont_ifname"]
    tried = netns_cmd(y2, ["ip", "link", "set", "dev", c2, "xdp", "off"])
    assert tried.returncode != 0 and xdp_program(y2, c2) == (1, "guard_xdp"), tried.stderr
    port, frames = 5600, 20
    with listening(y1, "udp", ip1, port) as udp:
        inject(sandbox.name, h1, mac_of(y1, c1), ipv4_udp(ip2, ip1, port, b"injected by the host"), bypass=True,
               count=frames)
        time.sleep(0.3)
        leaked = udp.stop()

    res = sandbox.run_module("phones", {"phones": [spec], "veth_object": veth_object})
    assert res["rc"] == 0 and res["changed"], res
    actions = res["phones"][0]["actions"]
    assert any(a.startswith("attach link_end1_in") for a in actions), actions
    assert any(a.startswith("detach stale link_end0_xdp") for a in actions), actions
    assert any(a.startswith("attach link_end0_xdp") for a in actions), actions
    assert_whole(sandbox, [spec], [spec])
    assert_call(sandbox, [spec])
    before = counters(sandbox, spec["name"])[spec["name"]]
    with listening(y1, "udp", ip1, port) as udp:
        sent = inject(sandbox.name, h1, mac_of(y1, c1), ipv4_udp(ip2, ip1, port, b"injected by the host"), bypass=True,
                      count=frames)
        time.sleep(0.3)
        assert udp.stop() == 0
    after = counters(sandbox, spec["name"])[spec["name"]]
    assert after["refused"] - before["refused"] == sent["ok"] == frames, (before, after)
    again = sandbox.run_module("phones", {"phones": [spec], "veth_object": veth_object})
    assert again["rc"] == 0 and not again["changed"], again
    report(request, f"detached by hand (unpin link_end1_in, bpftool link detach xdp guard): {leaked}/{frames} "
                    f"bypass frames reached yogurt-1 meanwhile; re-run actions {actions}; afterwards 0/{frames}, "
                    f"refused +{after['refused'] - before['refused']}")
