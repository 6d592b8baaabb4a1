# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Diagnose the phones of a host: state, a window of counters, a verdict per phone.

State, per phone and end, in inventory terms: the host-side and yogurt-side devices
(ifindex, namespace, up, carrier, peer), each hook's program and whether its link is live
where it should be, the wires map against the devices' ifindexes, and the host side's
addresses and routes (there must be none). Then a window: the wire's counter deltas per
direction, each program's run count (BPF_ENABLE_STATS held for the window), the devices'
packet and drop counters, optionally a probe (the call's ping and TCP both ways, and its
injection matrix), and the kernel's drops when bcc can trace them (_drop_trace.py: each
labelled with its end, device, hook and the running kernel's reason name).

The verdict: dead (a hop on the path is broken, or nothing got through), lossy (k of n),
exposed (the call works but the isolation does not: a host-side address or route, a guard
missing) or healthy; the first failed hop is named ("phone, end 1, yogurt side yg2-cont:
down"). Everything here only reads, apart from the probe's own packets.

PRIVATE to the yogurt.phone collection (like community.crypto's module_utils): no public API,
names may change in any release.
"""

from __future__ import annotations

import os
import time

from ansible_collections.yogurt.phone.plugins.module_utils import _attach as attach_utils
from ansible_collections.yogurt.phone.plugins.module_utils import _bpf as bpf
from ansible_collections.yogurt.phone.plugins.module_utils import _call as call
from ansible_collections.yogurt.phone.plugins.module_utils import _drop_trace as drop_trace
from ansible_collections.yogurt.phone.plugins.module_utils import _wire as wire
from ansible_collections.yogurt.phone.plugins.module_utils._netlink import read_device_state, routes_by_device
from ansible_collections.yogurt.phone.plugins.module_utils._netns import netns_exists, netns_path

STAT_KEYS = ("rx_packets", "tx_packets", "rx_dropped", "tx_dropped", "rx_errors", "tx_errors")
DIRECTIONS = ("0to1", "1to0")
SIDE_NAMES = {"host": "host side", "cont": "yogurt side"}
# Hooks whose loss breaks the call (the rest guard the isolation).
PATH_HOOKS = {"in", "peer", "primary"}


# ---------------------------------------------------------------- state

def read_device(ifname, netns=None):
    """One device in `netns` (None: this one): ifindex, up, carrier, operstate, peer, addresses, stats."""
    dev = read_device_state(ifname, netns)
    if dev is None:
        return {"ifname": ifname, "exists": False}
    return {
        "ifname": ifname, "exists": True, "ifindex": dev["index"], "kind": dev["kind"], "up": dev["up"],
        "carrier": dev["carrier"], "operstate": str(dev["operstate"]) if dev["operstate"] is not None else None,
        "peer_ifindex": dev["link_index"], "addresses": dev["addresses"],
        "stats": {k: int(dev["stats"].get(k) or 0) for k in STAT_KEYS},
    }


def _netns_inode(netns=None):
    path = netns_path(netns) if netns else "/proc/thread-self/ns/net"
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def read_end(end, routes, switchboard_name=""):
    """Both devices of one end (the host side in the calling thread's namespace, the switchboard's
    when `switchboard_name` names it)."""
    host = read_device(end["host_ifname"])
    host["netns"], host["netns_inode"] = switchboard_name or None, _netns_inode()
    host["routes"] = [r["text"] for r in routes.get(host.get("ifindex"), [])] if host["exists"] else []
    if netns_exists(end["netns"]):
        cont = read_device(end["cont_ifname"], end["netns"])
        cont["netns_exists"] = True
    else:
        cont = {"ifname": end["cont_ifname"], "exists": False, "netns_exists": False}
    cont["netns"], cont["netns_inode"] = end["netns"], _netns_inode(end["netns"])
    return {"netns": end["netns"], "host": host, "cont": cont}


def _hook_state(info, links, ends_state, i, hook):
    name, prog, attach, side = hook
    dev = ends_state[i][side]
    entry = {"end": i, "hook": name, "program": prog, "attach": attach, "side": side, "ifname": dev["ifname"],
             "pin": f"link_end{i}_{name}", "pinned": False, "live": False, "prog_id": None}
    if info["attach_mode"] == "tc" and attach.startswith("tcx"):
        found = [f for f in info["filters"] if f["ifindex"] == dev.get("ifindex") and f["name"] == prog]
        entry.update(kind="tc filter", pinned=bool(found), live=bool(found),
                     prog_id=found[0]["prog_id"] if found else None)
        return entry
    link = links.get(entry["pin"])
    entry["kind"] = "bpf_link"
    if link is None:
        return entry
    entry.update(pinned=True, link_id=link["id"], prog_id=link["prog_id"], defunct=link["defunct"])
    if dev["exists"] and link["program"] == prog:
        netns = dev["netns"] if side == "cont" else None
        try:
            entry["live"] = attach_utils.link_attached(link, dev["ifindex"], attach, netns)
        except (bpf.BpfError, OSError):
            entry["live"] = False
    return entry


def read_state(phone, switchboard_name=""):
    """State of one normalized phone: ends, backend, hooks, wires map."""
    routes = routes_by_device()
    ends = [read_end(end, routes, switchboard_name) for end in phone["ends"]]
    info = wire.read_wire(phone["name"])
    kinds = {e["host"].get("kind") for e in ends} & set(wire.HOOKS)
    backend = info["backend"] or (kinds.pop() if len(kinds) == 1 else None)
    links = {link["pin"]: link for link in info["links"]}
    hooks = [_hook_state(info, links, ends, i, hook) for hook in wire.HOOKS.get(backend, ()) for i in range(2)]
    host_ix = [e["host"].get("ifindex") for e in ends]
    have = {w["ifindex"]: (w["target"], w["direction"]) for w in info["wires"]}
    wires = []
    for i in (0, 1):
        want = (host_ix[1 - i], i)
        got = have.get(host_ix[i])
        wires.append({"end": i, "ifindex": host_ix[i], "target": got[0] if got else None,
                      "want_target": want[0], "ok": got == want and host_ix[i] is not None})
    stale = sorted(set(have) - set(host_ix))
    return {"phone": phone["name"], "built": info["exists"], "backend": backend, "attach_mode": info["attach_mode"],
            "ends": ends, "hooks": hooks, "wires": wires, "stale_wires": stale, "programs": info["programs"]}


# ---------------------------------------------------------------- problems, hop by hop

def _where(phone, i, side, ifname):
    return f"{phone}, end {i}, {SIDE_NAMES[side]} {ifname}"


def _device_problem(dev, side, other_up):
    if side == "cont" and not dev.get("netns_exists", True):
        return f"namespace {dev['netns']} is missing"
    if not dev["exists"]:
        return "missing" + (f" from namespace {dev['netns']}" if dev.get("netns") else " from the host namespace")
    if not dev["up"]:
        return "down"
    if not dev["carrier"] and other_up:
        return "no carrier"
    return None


def end_problems(state, i):
    """The hops of one end, yogurt side first (a host side without carrier follows a down yogurt side)."""
    end = state["ends"][i]
    found = []
    for side in ("cont", "host"):
        other = end["host" if side == "cont" else "cont"]
        problem = _device_problem(end[side], side, other.get("exists") and other.get("up"))
        if problem:
            found.append({"end": i, "side": side, "ifname": end[side]["ifname"], "hook": None, "problem": problem})
    return found


def _hook_problem(hook):
    if hook["live"]:
        return None
    what = f"{hook['program']} ({hook['attach']})"
    if not hook["pinned"]:
        return f"{what} is not attached (no {hook['pin']})" if hook["kind"] == "bpf_link" else f"{what} filter missing"
    if hook.get("defunct"):
        return f"{what} is detached (link {hook.get('link_id')} pinned as {hook['pin']} is defunct)"
    return f"{what} link {hook.get('link_id')} is not attached to this device"


def hook_problems(state, i, path_only):
    found = []
    for hook in state["hooks"]:
        if hook["end"] != i or (hook["hook"] in PATH_HOOKS) != path_only:
            continue
        problem = _hook_problem(hook)
        if problem:
            found.append({"end": i, "side": hook["side"], "ifname": hook["ifname"], "hook": hook["hook"],
                          "program": hook["program"], "problem": problem})
    return found


def wires_problem(state, i):
    entry = state["wires"][i]
    if entry["ok"] or entry["ifindex"] is None:
        return []
    if entry["target"] is None:
        text = (f"no wires map entry for ifindex {entry['ifindex']}: "
                f"{'wire_in' if state['backend'] == 'veth' else 'wire_peer'} drops its packets as unknown_ifindex")
    else:
        text = f"wires map sends ifindex {entry['ifindex']} to {entry['target']}, not to {entry['want_target']}"
    return [{"end": i, "side": "host", "ifname": state["ends"][i]["host"]["ifname"], "hook": "wires", "problem": text}]


def path_problems(state, src):
    """The broken hops of one direction, in the order a packet meets them."""
    dst = 1 - src
    if not state["built"] or state["backend"] is None:
        return [{"end": src, "side": "host", "ifname": state["ends"][src]["host"]["ifname"], "hook": None,
                 "problem": "the phone has no wire (nothing pinned): run site.yml --tags phones"}]
    return (end_problems(state, src) + hook_problems(state, src, True) + wires_problem(state, src)
            + end_problems(state, dst) + (hook_problems(state, dst, True) if state["backend"] == "netkit" else []))


def isolation_problems(state):
    found = []
    for i, end in enumerate(state["ends"]):
        host = end["host"]
        if host.get("addresses") or host.get("routes"):
            bits = [f"address {a}" for a in host.get("addresses", [])] + [f"route {r}" for r in host.get("routes", [])]
            found.append({"end": i, "side": "host", "ifname": host["ifname"], "hook": None,
                          "problem": f"carries {', '.join(bits)}: the host can send into the phone "
                                     "(remove them, or converge with yogurt_phone_host_addresses: remove)"})
        found.extend(hook_problems(state, i, False))
    return found


# ---------------------------------------------------------------- the window

def _counters(phone):
    fd = bpf.try_obj_get(f"{wire.phone_dir(phone)}/map_counters")
    if fd is None:
        return {}
    try:
        return {wire.COUNTERS[k]: bpf.percpu_sum_u64(v) for k, v in
                ((int.from_bytes(key, "little"), val) for key, val in bpf.map_items(fd)) if k < len(wire.COUNTERS)}
    finally:
        os.close(fd)


def sample(state):
    """Counters, program run counts and device stats, now."""
    runs = {}
    for prog in state["programs"]:
        try:
            runs[prog["name"]] = bpf.prog_run_stats(prog["id"])["run_cnt"]
        except bpf.BpfError:
            runs[prog["name"]] = None
    devices = {}
    for i, end in enumerate(state["ends"]):
        devices[f"end{i}_host"] = read_device(end["host"]["ifname"]).get("stats", {})
    for i, end in enumerate(state["ends"]):
        dev = end["cont"]
        if dev.get("netns_exists"):
            devices[f"end{i}_cont"] = read_device(dev["ifname"], end["netns"]).get("stats", {})
    return {"counters": _counters(state["phone"]), "runs": runs, "devices": devices}


def _delta(before, after):
    out = {}
    for key, value in after.items():
        if isinstance(value, dict):
            out[key] = _delta(before.get(key, {}), value)
        elif value is not None and before.get(key) is not None:
            out[key] = value - before[key]
    return out


def probe_phone(phone, inject):
    """The call's ping and TCP both ways (and its injection matrix when asked): the checks."""
    result = call.call_phone(phone, count=call.COUNT, injection=inject, reverse=False)
    return result["checks"]


def window(phones_states, phones, seconds, probe, inject, tracer):
    """Sample, wait (probing meanwhile), sample again; {phone: {delta, probe}}."""
    stats_fd = bpf.enable_stats()
    try:
        before = {s["phone"]: sample(s) for s in phones_states}
        started = time.monotonic()
        probes = {}
        for phone in phones:
            if probe or inject:
                probes[phone["name"]] = probe_phone(phone, inject) if probe else probe_inject_only(phone)
        left = seconds - (time.monotonic() - started)
        if left > 0:
            time.sleep(left)
        after = {s["phone"]: sample(s) for s in phones_states}
    finally:
        os.close(stats_fd)
    drops = tracer.collect() if tracer else {}
    return {name: {"delta": _delta(before[name], after[name]), "probe": probes.get(name, []),
                   "drops": drops.get(name, [])} for name in before}


def probe_inject_only(phone):
    checks = []
    for i, end in enumerate(phone["ends"]):
        checks.extend(call.inject_matrix(end, phone_name=phone["name"], end_index=i))
    return checks


# ---------------------------------------------------------------- verdict

def traffic(delta):
    """Per direction: frames the sending yogurt transmitted and what the wire forwarded."""
    counters, devices = delta.get("counters", {}), delta.get("devices", {})
    out = {}
    for src, name in ((0, "0to1"), (1, "1to0")):
        out[name] = {"sent": devices.get(f"end{src}_cont", {}).get("tx_packets"),
                     "forwarded": counters.get(f"forwarded_packets_{name}", 0),
                     "unknown": counters.get("unknown_ifindex", 0) if src == 0 else None}
    return out


def _probe_counts(checks):
    pings = [c for c in checks if c.get("kind") == "ping"]
    return sum(c.get("replies", 0) for c in pings), sum(c.get("count", 0) for c in pings)


def observations(state, delta):
    """What the window saw that is not a fault: frames the host sent towards a yogurt, refused."""
    notes = []
    refused = delta.get("counters", {}).get("refused", 0)
    guard = "guard_xdp (XDP guard)" if state["backend"] == "veth" else "wire_primary"
    for i, end in enumerate(state["ends"]):
        host = delta.get("devices", {}).get(f"end{i}_host", {})
        sent = host.get("tx_packets", 0)
        if state["backend"] == "netkit":
            # The wire's redirects into this end leave through its host side (tx_packets); what the
            # host sends is refused inside netkit_xmit and counted as tx_dropped.
            into = delta.get("counters", {}).get(f"forwarded_packets_{'1to0' if i == 0 else '0to1'}", 0)
            sent = max(sent - into, 0) + host.get("tx_dropped", 0)
        if sent > 0:
            notes.append(f"{state['phone']}, end {i}, host side {end['host']['ifname']}: the host transmitted {sent} "
                         f"frame(s) towards {end['netns']} {end['cont']['ifname']}; {guard} refused {refused} "
                         "on this phone in the window (injection from the host, refused as designed)")
    return notes


def verdict(phone, state, seen):
    """{'verdict', 'first_failure', 'problems', 'observations', 'traffic', 'probe'}."""
    problems = path_problems(state, 0) + path_problems(state, 1)
    isolation = isolation_problems(state)
    flows = traffic(seen["delta"])
    replies, asked = _probe_counts(seen["probe"])
    lost = [n for n, f in flows.items() if f["sent"] and f["forwarded"] < f["sent"]]
    if problems or (asked and replies == 0):
        word = "dead"
    elif (asked and replies < asked) or lost:
        word = "lossy"
    elif isolation:
        word = "exposed"
    else:
        word = "healthy"
    first = (problems or isolation or [None])[0]
    first_text = f"{_where(phone, first['end'], first['side'], first['ifname'])}: {first['problem']}" if first else None
    if word == "lossy":
        k, n = (replies, asked) if asked else (sum(flows[d]["forwarded"] for d in lost), sum(flows[d]["sent"] for d in lost))
        word_text = f"lossy ({k} of {n})"
    elif word == "dead" and not first_text:
        first_text = f"{phone}: no reply to {asked} pings through the wire"
        word_text = "dead"
    else:
        word_text = word
    return {"verdict": word, "verdict_text": word_text, "first_failure": first_text,
            "problems": [dict(p, text=f"{_where(phone, p['end'], p['side'], p['ifname'])}: {p['problem']}")
                         for p in _unique(problems + isolation)],
            "observations": observations(state, seen["delta"]), "traffic": flows,
            "probe": {"replies": replies, "pings": asked} if asked else None}


def _unique(problems):
    seen, out = set(), []
    for p in problems:
        key = (p["end"], p["side"], p.get("hook"), p["problem"])
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


# ---------------------------------------------------------------- one run, and what a person reads

def diagnose(phones, seconds=3.0, probe=False, inject=False, trace="auto", run_command=None, switchboard_name=""):
    """The whole diagnosis of `phones` (normalized, present), run in the namespace of their host
    sides (`switchboard_name`, "" = the host's). Returns (results, trace info).

    run_command (the module's) runs the drop tracer."""
    states = [read_state(p, switchboard_name) for p in phones]
    tracer, trace_info = drop_trace.start(states, trace, run_command, seconds)
    try:
        seen = window(states, phones, seconds, probe, inject, tracer)
    finally:
        if tracer:
            tracer.stop()
    if tracer and tracer.problem:
        trace_info.update(available=False, reason=tracer.problem)
    results = []
    for phone, state in zip(phones, states):
        judged = verdict(phone["name"], state, seen[phone["name"]])
        judged.update(drops=seen[phone["name"]]["drops"], traced=trace_info["available"])
        results.append(dict(judged, phone=phone["name"], state=state, window=seen[phone["name"]]["delta"],
                            checks=seen[phone["name"]]["probe"]))
    return results, trace_info


def text_of(result):
    """The readable lines of one phone's diagnosis."""
    lines = [f"{result['phone']}: {result['verdict_text']}" + (f" - first failed hop: {result['first_failure']}"
                                                               if result["first_failure"] else "")]
    state = result["state"]
    for i, end in enumerate(state["ends"]):
        for side in ("host", "cont"):
            dev = end[side]
            facts = (f"ifindex {dev['ifindex']}, {'up' if dev['up'] else 'down'}, "
                     f"{'carrier' if dev['carrier'] else 'no carrier'}, peer {dev['peer_ifindex']}"
                     if dev["exists"] else "missing")
            lines.append(f"  end {i} {SIDE_NAMES[side]} {dev['ifname']} (netns {dev['netns'] or 'host'}): {facts}")
    for hook in state["hooks"]:
        lines.append(f"  end {hook['end']} {hook['program']} ({hook['attach']} on {hook['ifname']}): "
                     f"{'live' if hook['live'] else 'NOT LIVE'}")
    for name, flow in result["traffic"].items():
        sent = "? (no device)" if flow["sent"] is None else flow["sent"]
        lines.append(f"  {name}: yogurt sent {sent}, wire forwarded {flow['forwarded']}")
    runs = result["window"].get("runs", {})
    if runs:
        lines.append("  program runs: " + ", ".join(f"{k} {v}" for k, v in sorted(runs.items())))
    lines.extend(f"  problem: {p['text']}" for p in result["problems"])
    lines.extend(f"  seen: {o}" for o in result["observations"])
    lines.extend(f"  kernel drop: {d['text']}" for d in result["drops"])
    if result.get("traced") and not result["drops"]:
        lines.append("  kernel drops (skb:kfree_skb) on its devices: none in the window")
    return lines
