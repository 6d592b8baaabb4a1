# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The wire of one phone: load, pin, attach, route, swap, detach, read.

Plain functions (no AnsibleModule) used by the `wire` module and the whole-phone module:
converge_wire(), remove_wire(), read_wire(). Each phone has its own object instance,
pinned under /sys/fs/bpf/yogurt/<phone>/:

    map_wires, map_counters          reused by every later load (routes and counters survive)
    prog_<program>                   the programs the links run (for operators and info)
    link_end<i>_<hook>               one bpf_link per end and hook; a link dies with its last
                                     reference, so the pin is what keeps the wire attached

Idempotence is judged on what the kernel reports: program tags, link presence on the right
ifindex (BPF_PROG_QUERY for tcx and netkit; for XDP, which BPF_PROG_QUERY does not cover,
the link's own ifindex and the device's IFLA_XDP program id in its namespace) and the wires
map content. A changed object is swapped in with BPF_LINK_UPDATE (atomic: no packet sees no
program); a recreated device gets a new link.

On veth, what the host transmits on a host-side device is dropped by guard_xdp, native XDP
on the yogurt-side device (before any packet tap in the yogurt); the wire's packets arrive
by bpf_redirect_peer and pass no XDP. Phones built by older objects also had a tcx guard
(guard_in, yogurt-side ingress) and a host-side egress drop (wire_out): LEGACY_HOOKS, which
a converge detaches (links or tc filters) once the XDP guard is in place.

PRIVATE to the yogurt.phone collection (like community.crypto's module_utils): no public API,
names may change in any release.
"""

from __future__ import annotations

import contextlib
import os
import struct

from ansible_collections.yogurt.phone.plugins.module_utils import _attach as attach_utils
from ansible_collections.yogurt.phone.plugins.module_utils import _bpf as bpf
from ansible_collections.yogurt.phone.plugins.module_utils._netlink import ipr_in, read_link
from ansible_collections.yogurt.phone.plugins.module_utils._netns import in_netns
from ansible_collections.yogurt.phone.plugins.module_utils._names import (
    BACKEND_CHOICES,
    BACKENDS,
    ifname_problem,
    phone_name_problem,
)
from ansible_collections.yogurt.phone.plugins.module_utils._probes import tcx_errno
from ansible_collections.yogurt.phone.plugins.module_utils._pyroute2_dep import has_pyroute2

PIN_ROOT = bpf.BPFFS + "/yogurt"   # the bpffs root of every phone: PIN_ROOT/<phone>/ (tests import it)

# (hook, program, attach type, side): attached in this order (all ends of one hook, then
# the next hook), so that on veth the guard is in place before the wire starts delivering.
# The XDP guard is a bpf_link in every attach mode (tc mode too: XDP links exist since 5.9).
HOOKS = {
    "veth": (
        ("xdp", "guard_xdp", "xdp", "cont"),
        ("in", "wire_in", "tcx_ingress", "host"),
    ),
    "netkit": (
        ("primary", "wire_primary", "netkit_primary", "host"),
        ("peer", "wire_peer", "netkit_peer", "host"),
    ),
}
# Hooks of older objects, removed when a phone is converged with the current one.
LEGACY_HOOKS = {
    "veth": (
        ("guard", "guard_in", "tcx_ingress", "cont"),
        ("out", "wire_out", "tcx_egress", "host"),
    ),
    "netkit": (),
}
# Our program names, for telling our tc filters from others' (current and legacy).
OUR_PROGRAMS = frozenset(prog for table in (HOOKS, LEGACY_HOOKS) for hooks in table.values()
                         for _hook, prog, _attach, _side in hooks)
# Hooks whose links sit on the yogurt-side device (inside its namespace).
CONT_HOOKS = frozenset(hook for table in (HOOKS, LEGACY_HOOKS) for hooks in table.values()
                       for hook, _prog, _attach, side in hooks if side == "cont")
# Counter slots by name, as bpf/wire.h's enum names them (the one definition; a unit test holds
# this and every other copy to it). Slot 6 was refused_guard, fed by the legacy guard_in.
COUNTERS = (
    "forwarded_packets_0to1",
    "forwarded_bytes_0to1",
    "forwarded_packets_1to0",
    "forwarded_bytes_1to0",
    "refused",
    "unknown_ifindex",
)
MAPS = ("wires", "counters")
_WIRE = struct.Struct("=II")   # struct wire {u32 target; u32 direction;}
_U32 = struct.Struct("=I")


class WireError(Exception):
    """Bad input or a failed step; the message names the phone, the end and the fix."""


def phone_dir(phone):
    return f"{PIN_ROOT}/{phone}"


def _check_phone_name(phone):
    problem = phone_name_problem(phone)
    if problem:
        raise WireError(f"phone {problem}")


def _validate(phone, backend, ends):
    _check_phone_name(phone)
    if backend not in BACKEND_CHOICES:
        raise WireError(f"phone {phone}: backend {backend!r} is unknown; use one of {', '.join(BACKEND_CHOICES)}")
    if not isinstance(ends, (list, tuple)) or len(ends) != 2:
        raise WireError(f"phone {phone}: ends must list exactly two ends, got {len(ends or [])}")
    for i, end in enumerate(ends):
        if not end.get("cont_netns"):
            raise WireError(f"phone {phone}: ends[{i}].cont_netns is missing")
        for key in ("host_ifname", "cont_ifname"):
            problem = ifname_problem(end.get(key))
            if problem:
                raise WireError(f"phone {phone}: ends[{i}].{key}: {problem}")
    if ends[0]["host_ifname"] == ends[1]["host_ifname"]:
        raise WireError(f"phone {phone}: both ends use host_ifname {ends[0]['host_ifname']}; each end needs its own pair")


def _link_of(ifname, netns=None):
    """(ifindex, kind) of `ifname` in named namespace `netns` (None: the current one), or (None, None)."""
    with ipr_in(netns) as ipr:
        dev = read_link(ipr, ifname=ifname)
    return (None, None) if dev is None else (dev["index"], dev["kind"])


def _resolve(phone, backend, ends):
    """The ends with the ifindexes of both sides (host, cont) and their index, and the backend
    the host devices imply: what every later step is handed."""
    resolved = [_resolve_end(phone, backend, i, end) for i, end in enumerate(ends)]
    if resolved[0]["kind"] != resolved[1]["kind"]:
        raise WireError(f"phone {phone}: one end is {resolved[0]['kind']}, the other {resolved[1]['kind']}; "
                        "both pairs of a phone must be of one kind")
    return resolved, resolved[0]["kind"]


def _resolve_end(phone, backend, i, end):
    found = {"index": i, "host_ifname": end["host_ifname"], "netns": end["cont_netns"],
             "cont_ifname": end["cont_ifname"]}
    if end.get("host_ifindex") and end.get("cont_ifindex") and end.get("kind"):
        # The caller has just converged the pair and read these: no lookup needed.
        return dict(found, host=end["host_ifindex"], cont=end["cont_ifindex"], kind=end["kind"])
    host, kind = _link_of(end["host_ifname"])
    if host is None:
        raise WireError(f"phone {phone}: ends[{i}].host_ifname {end['host_ifname']} does not exist in "
                        "the host namespace; create the pair first (the wire only attaches to it)")
    if kind not in BACKENDS:
        raise WireError(f"phone {phone}: ends[{i}].host_ifname {end['host_ifname']} is a {kind or 'plain'} "
                        "device; the wire attaches to veth or netkit pairs only")
    if backend != "auto" and kind != backend:
        raise WireError(f"phone {phone}: backend is {backend} but ends[{i}].host_ifname "
                        f"{end['host_ifname']} is {kind}; recreate the pair or change the backend")
    try:
        cont = _link_of(end["cont_ifname"], end["cont_netns"])[0]
    except Exception as exc:  # a missing namespace is as fatal as a missing device
        raise WireError(f"phone {phone}: ends[{i}].cont_netns {end['cont_netns']}: {exc}") from None
    if cont is None:
        raise WireError(f"phone {phone}: ends[{i}].cont_ifname {end['cont_ifname']} does not exist in "
                        f"netns {end['cont_netns']}; move the container side of the pair there first")
    return dict(found, host=host, cont=cont, kind=kind)


# ---------------------------------------------------------------- reading

def _pins(phone):
    try:
        return sorted(os.listdir(phone_dir(phone)))
    except FileNotFoundError:
        return []


def _prog_of_link(info):
    try:
        fd = bpf.prog_fd_by_id(info["prog_id"])
    except bpf.BpfError:
        return {}
    try:
        return bpf.prog_info(fd)
    finally:
        os.close(fd)


def _read_pinned(phone):
    """What bpffs holds for this phone: {pin name: info}, with fds closed again."""
    state = _empty_state()
    for pin in _pins(phone):
        path = f"{phone_dir(phone)}/{pin}"
        fd = bpf.try_obj_get(path)
        if fd is None:
            state["other"].append(pin)
            continue
        try:
            if pin.startswith("prog_"):
                state["programs"][pin[5:]] = bpf.prog_info(fd)
            elif pin.startswith("link_"):
                info = bpf.link_info(fd)
                info["prog"] = _prog_of_link(info)
                state["links"][pin] = info
            elif pin.startswith("map_"):
                state["maps"][pin[4:]] = bpf.map_info(fd)
                if pin == "map_wires":
                    for key, val in bpf.map_items(fd):
                        state["wires"][_U32.unpack(key)[0]] = _WIRE.unpack(val[:_WIRE.size])
            else:
                state["other"].append(pin)
        finally:
            os.close(fd)
    return state


def read_wire(phone, state=None):
    """Programs, links, wires map and counters (summed over CPUs) of one phone.

    state: _read_pinned(phone) when the caller has just read it.
    """
    if not bpf.bpffs_mounted():
        return {"phone": phone, "exists": False, "backend": None, "attach_mode": None, "programs": [],
                "links": [], "filters": [], "wires": [], "counters": {}}
    state = _read_pinned(phone) if state is None else state
    counters = {}
    path = f"{phone_dir(phone)}/map_counters"
    fd = bpf.try_obj_get(path)
    if fd is not None:
        try:
            for key, val in bpf.map_items(fd):
                slot = _U32.unpack(key)[0]
                if slot < len(COUNTERS):
                    counters[COUNTERS[slot]] = bpf.percpu_sum_u64(val)
        finally:
            os.close(fd)
    links = []
    for pin, info in sorted(state["links"].items()):
        links.append({"pin": pin, "id": info["id"], "type": info["type"], "attach_type": info["attach_type"],
                      "ifindex": info["ifindex"], "prog_id": info["prog_id"],
                      "program": info["prog"].get("name"), "defunct": info["ifindex"] == 0})
    filters = []
    if has_pyroute2() and state["wires"] and not any(link["type"] in ("tcx", "netkit") for link in links):
        with ipr_in() as ipr:
            for ifindex in sorted(state["wires"]):
                with contextlib.suppress(Exception):
                    for direction, have in sorted(attach_utils.tc_filters(ipr, ifindex).items()):
                        filters.append(dict(have, ifindex=ifindex, direction=direction))
    backend = _backend_of(state) or ("veth" if filters else None)
    return {
        "phone": phone,
        "exists": bool(state["programs"] or state["links"] or state["maps"] or state["other"]),
        "backend": backend,
        "attach_mode": "tc" if filters else ("netkit" if backend == "netkit" else ("tcx" if backend else None)),
        "filters": filters,
        "programs": [{"name": n, "id": p["id"], "tag": p["tag"]} for n, p in sorted(state["programs"].items())],
        "links": links,
        "wires": [{"ifindex": k, "target": t, "direction": d} for k, (t, d) in sorted(state["wires"].items())],
        "counters": counters,
    }


def _backend_of(state):
    types = {info["type"] for info in state["links"].values()}
    if "netkit" in types:
        return "netkit"
    if "tcx" in types or "xdp" in types:
        return "veth"
    return None


def attached_in_current_netns(phone):
    """Does any host-side link or tc filter of `phone` sit on a device of the calling thread's netns?

    For telling "an orphan of this namespace" from a phone wired from another namespace
    (a test sandbox, another host stand-in) before removing pins that have no record.
    """
    if not bpf.bpffs_mounted():
        return False
    state = _read_pinned(phone)
    for pin, info in state["links"].items():
        if _pin_hook(pin) in CONT_HOOKS or not info["ifindex"]:
            continue
        if attach_utils.link_attached(info, info["ifindex"], info["attach_type"]):
            return True
    if has_pyroute2() and state["wires"]:
        with ipr_in() as ipr:
            for ifindex in state["wires"]:
                with contextlib.suppress(Exception):
                    if any(f["name"] in OUR_PROGRAMS for f in attach_utils.tc_filters(ipr, ifindex).values()):
                        return True
    return False


def _pin_hook(pin):
    """'xdp' of 'link_end0_xdp'."""
    return pin.split("_", 2)[2] if pin.startswith("link_end") and pin.count("_") >= 2 else None


def list_phones():
    if not bpf.bpffs_mounted():
        return []
    try:
        return sorted(d for d in os.listdir(PIN_ROOT) if os.path.isdir(f"{PIN_ROOT}/{d}"))
    except FileNotFoundError:
        return []


# ---------------------------------------------------------------- converging

def _describe_link(info, ifname):
    if not info:
        return None
    where = f"{ifname} (ifindex {info['ifindex']})" if info["ifindex"] else "a deleted device"
    prog = info.get("prog") or {}
    return f"{info['attach_type']} on {where}: {prog.get('name', '?')} tag {prog.get('tag', '?')}"


def _direction(attach):
    """The tc clsact hook a tcx attach type stands for (tc mode)."""
    return "ingress" if attach == "tcx_ingress" else "egress"


def _spot(run, end, hook):
    """Where one hook of one end goes: pin, program, attach type, and the device (ifindex, netns, name)."""
    name, prog, attach, side = hook
    return {"phone": run.phone, "end": end["index"], "pin": f"link_end{end['index']}_{name}", "hook": name,
            "prog": prog, "attach": attach, "ifindex": end[side], "ifname": end[f"{side}_ifname"],
            "netns": end["netns"] if side == "cont" else None}


class _Run:
    """One converge of one phone's wire: what was resolved once (the ends with their
    ifindexes, backend, attach mode) and is handed on, plus the actions taken."""

    def __init__(self, phone, backend, ends, mode, check_mode):
        self.phone, self.backend, self.ends, self.mode, self.check_mode = phone, backend, ends, mode, check_mode
        self.hooks = HOOKS[backend]
        self.pdir = phone_dir(phone)
        self.actions = []
        self.mounted = bpf.bpffs_mounted()
        self.before = _read_pinned(phone) if self.mounted else _empty_state()

    def spots(self, hook):
        return [_spot(self, end, hook) for end in self.ends]

    def prepare(self):
        """Mount bpffs and make the phone's directory (not in check mode). Returns the map pins."""
        if self.check_mode:
            return None
        if bpf.ensure_bpffs():
            self.actions.append(f"mounted bpffs on {bpf.BPFFS}")
        os.makedirs(self.pdir, mode=0o700, exist_ok=True)
        return {m: f"{self.pdir}/map_{m}" for m in MAPS}


def _empty_state():
    return {"programs": {}, "links": {}, "wires": {}, "maps": {}, "other": []}


def _converge_link(spot, have, obj, tag, pdir, check_mode):
    """One pinned bpf_link (tcx, netkit or xdp): keep, update its program, or attach anew."""
    pin, prog, attach, ifname, ifindex = spot["pin"], spot["prog"], spot["attach"], spot["ifname"], spot["ifindex"]
    path = f"{pdir}/{pin}"
    if have and have["attach_type"] == attach and attach_utils.link_attached(have, ifindex, attach, spot["netns"]):
        if have["prog"].get("tag") == tag:
            return []
        if not check_mode:
            fd = bpf.obj_get(path)
            try:
                bpf.link_update(fd, obj.prog_fd(prog))
            finally:
                os.close(fd)
        return [f"update {pin} ({attach} on {ifname}): {prog} tag {have['prog'].get('tag')} -> {tag}"]
    actions = []
    if have:
        actions.append(f"detach stale {pin} ({_describe_link(have, ifname)})")
        if not check_mode:
            _detach_and_unpin(path)
    actions.append(f"attach {pin}: {prog} as {attach} on {ifname} (ifindex {ifindex})")
    if not check_mode:
        try:
            with in_netns(spot["netns"]):
                fd = bpf.link_create(obj.prog_fd(prog), ifindex, attach)
        except bpf.BpfError as exc:
            raise WireError(f"phone {spot['phone']}: ends[{spot['end']}] {ifname}: {exc}") from None
        try:
            bpf.pin_replace(fd, path)
        finally:
            os.close(fd)
    return actions


def _detach_and_unpin(path):
    """Detach the link pinned at `path` now (not when bpffs lets go of it), then unpin it."""
    fd = bpf.try_obj_get(path)
    if fd is not None:
        try:
            bpf.link_detach(fd)
        finally:
            os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _remove_legacy(run):
    """Take off what older objects attached and this one no longer has (LEGACY_HOOKS).

    Links are found by pin name (the stale-pin pass would unpin them too, but later and
    without detaching first); tc filters of legacy programs by their name on the device.
    """
    actions = []
    for end in run.ends:
        for hook in LEGACY_HOOKS.get(run.backend, ()):
            spot = _spot(run, end, hook)
            path = f"{run.pdir}/{spot['pin']}"
            if os.path.lexists(path):
                actions.append(f"detach {spot['pin']} ({spot['prog']}: the XDP guard replaces it)")
                if not run.check_mode:
                    _detach_and_unpin(path)
            if run.mode == "tc" and has_pyroute2():
                actions.extend(_remove_legacy_filter(spot, run.check_mode))
    return actions


def _remove_legacy_filter(spot, check_mode):
    direction = _direction(spot["attach"])
    with ipr_in(spot["netns"]) as ipr:
        have = attach_utils.tc_filters(ipr, spot["ifindex"]).get(direction)
        if not have or have["name"] != spot["prog"]:
            return []
        if not check_mode:
            attach_utils.tc_detach(ipr, spot["ifindex"], direction)
    return [f"remove tc {direction} filter {spot['prog']} from {spot['ifname']} (the XDP guard replaces it)"]


def _converge_filter(spot, obj, tag, check_mode):
    """One tc clsact filter (kernels without tcx): keep, or attach/replace atomically."""
    direction = _direction(spot["attach"])
    with ipr_in(spot["netns"]) as ipr:
        have = attach_utils.tc_filters(ipr, spot["ifindex"]).get(direction)
        if have and have["tag"] == tag:
            return []
        if not check_mode:
            try:
                attach_utils.tc_attach(ipr, spot["ifindex"], direction, obj.prog_fd(spot["prog"]), spot["prog"])
            except bpf.BpfError as exc:
                raise WireError(f"phone {spot['phone']}: ends[{spot['end']}] {spot['ifname']}: {exc}") from None
    if have:
        return [f"update tc {direction} filter on {spot['ifname']}: {spot['prog']} tag {have['tag']} -> {tag}"]
    return [f"attach {spot['prog']} as tc {direction} filter on {spot['ifname']} (ifindex {spot['ifindex']})"]


def attach_mode(backend, attach="auto"):
    """'netkit' for netkit; for veth 'tcx' (Linux >= 6.6) or 'tc' (clsact filters) as asked or found."""
    if backend == "netkit":
        return "netkit"
    if attach in ("tcx", "tc"):
        return attach
    return "tcx" if tcx_errno() == 0 else "tc"


def _as_filter(run, attach):
    """Does this hook attach as a tc clsact filter (tc mode) rather than a bpf_link?"""
    return run.mode == "tc" and attach.startswith("tcx")


def converge_wire(phone, backend, ends, obj_path, check_mode=False, attach="auto"):
    """Make the phone's wire match (backend, ends, object). See the file docstring.

    attach (veth only): 'tcx' links, 'tc' clsact filters (kernels < 6.6), or 'auto'.
    ends: host_ifname, cont_netns, cont_ifname each; with host_ifindex, cont_ifindex and
    kind too (a caller that has just converged the pairs), nothing is looked up again.

    Returns dict(changed, backend, actions, before, after, links, programs, maps).
    """
    _validate(phone, backend, ends)
    ends, backend = _resolve(phone, backend, ends)
    run = _Run(phone, backend, ends, attach_mode(backend, attach), check_mode)
    with bpf.BpfObject(obj_path, pin_maps=run.prepare()) as obj:
        tags = _load(run, obj)
        wires = {ends[0]["host"]: (ends[1]["host"], 0), ends[1]["host"]: (ends[0]["host"], 1)}
        _converge_wires_map(run, obj, wires)
        before_filters = _filters(run) if run.mode == "tc" else None
        wanted_pins = _converge_hooks(run, obj, tags)
        _converge_prog_pins(run, obj, tags)
        _unpin_stale(run, wanted_pins)
    return _converge_result(run, tags, wires, before_filters)


def _load(run, obj):
    """Load the object; {program: tag} of the programs this backend runs."""
    progs = sorted({hook[1] for hook in run.hooks})
    for prog in progs:
        obj.prog_fd(prog)  # raises if the object lacks a program of this backend
    try:
        obj.load()
    except bpf.BpfError as exc:
        raise WireError(f"phone {run.phone}: {exc}") from None
    return {p: bpf.prog_info(obj.prog_fd(p))["tag"] for p in progs}


def _converge_wires_map(run, obj, wires):
    """Routes: wires[host ifindex] = (other host ifindex, direction)."""
    have = run.before["wires"]
    if wires == have:
        return
    run.actions.append(f"set wires map: {_fmt_wires(wires, run.ends)}")
    if run.check_mode:
        return
    fd = obj.map_fd("wires")
    for key, val in wires.items():
        if have.get(key) != val:
            bpf.map_update(fd, _U32.pack(key), _WIRE.pack(*val))
    for key in set(have) - set(wires):
        bpf.map_delete(fd, _U32.pack(key))


def _converge_hooks(run, obj, tags):
    """One attachment per end and hook, at the right ifindex, running the new program.

    Hook by hook (the guard on both ends first); what older objects attached goes once the
    guard is in place and before wire_in changes. Returns the pins that belong here.
    """
    wanted_pins = {f"map_{m}" for m in MAPS} | {f"prog_{p}" for p in tags}
    for hook in run.hooks:
        for spot in run.spots(hook):
            if _as_filter(run, spot["attach"]):
                run.actions.extend(_converge_filter(spot, obj, tags[spot["prog"]], run.check_mode))
            else:
                wanted_pins.add(spot["pin"])
                run.actions.extend(_converge_link(spot, run.before["links"].get(spot["pin"]), obj,
                                                  tags[spot["prog"]], run.pdir, run.check_mode))
        if hook[3] == "cont" and run.mounted:
            run.actions.extend(_remove_legacy(run))
    return wanted_pins


def _converge_prog_pins(run, obj, tags):
    """Program pins follow the links (links hold their own references)."""
    for prog, tag in sorted(tags.items()):
        have = run.before["programs"].get(prog)
        if have and have["tag"] == tag:
            continue
        run.actions.append(f"pin prog_{prog} (tag {tag})")
        if not run.check_mode:
            bpf.pin_replace(obj.prog_fd(prog), f"{run.pdir}/prog_{prog}")


def _unpin_stale(run, wanted_pins):
    """Whatever else is pinned here belongs to an older layout or backend."""
    legacy = {_spot(run, end, hook)["pin"] for end in run.ends for hook in LEGACY_HOOKS.get(run.backend, ())}
    for pin in _pins(run.phone) if run.mounted else []:
        if pin not in wanted_pins and not (run.check_mode and pin in legacy):  # legacy: reported already
            run.actions.append(f"unpin stale {pin}")
            if not run.check_mode:
                os.unlink(f"{run.pdir}/{pin}")
    if not run.mounted and run.check_mode:
        run.actions.append(f"create {run.pdir}/map_wires and map_counters")


def _converge_result(run, tags, wires, before_filters):
    before = _summary(run.before, run.ends)
    if run.check_mode:
        after = _planned(run, tags, wires)
    else:
        # nothing done: bpffs holds what was read before (a no-op of 50 phones read it 3 times)
        now = _read_pinned(run.phone) if run.actions else run.before
        after = _summary(now, run.ends)
        if run.mode == "tc":
            after["filters"] = _filters(run)
    if run.mode == "tc":
        before["filters"] = before_filters
    result = {"changed": bool(run.actions), "backend": run.backend, "attach_mode": run.mode,
              "actions": run.actions, "before": before, "after": after}
    if not run.check_mode:
        info = read_wire(run.phone, state=now)
        result.update(programs=info["programs"], links=info["links"],
                      maps={"wires": info["wires"], "counters": info["counters"]})
    return result


def _fmt_wires(wires, ends):
    names = {end["host"]: end["host_ifname"] for end in ends}
    return ", ".join(f"{names.get(k, k)}({k}) -> {names.get(t, t)}({t})" for k, (t, _direction) in sorted(wires.items()))


def _summary(state, ends):
    by_prefix = {f"link_end{end['index']}_": end for end in ends}
    links = {}
    for pin, info in state["links"].items():
        end = by_prefix.get(pin[:len("link_endN_")], {})
        ifname = end.get("cont_ifname") if _pin_hook(pin) in CONT_HOOKS else end.get("host_ifname")
        links[pin] = _describe_link(info, ifname)
    return {
        "programs": {n: p["tag"] for n, p in sorted(state["programs"].items())},
        "links": dict(sorted(links.items())),
        "wires": _fmt_wires(state["wires"], ends) if state["wires"] else "",
    }


def _planned(run, tags, wires):
    links, filters = {}, {}
    for end in run.ends:
        for hook in run.hooks:
            spot = _spot(run, end, hook)
            prog = spot["prog"]
            if _as_filter(run, spot["attach"]):
                filters[f"end{spot['end']}_{spot['hook']}"] = (f"tc {_direction(spot['attach'])} on {spot['ifname']}: "
                                                               f"{prog} tag {tags[prog]}")
                continue
            info = {"attach_type": spot["attach"], "ifindex": spot["ifindex"], "prog": {"name": prog, "tag": tags[prog]}}
            links[spot["pin"]] = _describe_link(info, spot["ifname"])
    planned = {
        "programs": dict(sorted(tags.items())),
        "links": dict(sorted(links.items())),
        "wires": _fmt_wires(wires, run.ends),
    }
    if run.mode == "tc":
        planned["filters"] = filters
    return planned


def _filters(run):
    """Our tc filters, as {end<i>_<hook>: description} (tc mode)."""
    found = {}
    for end in run.ends:
        for hook in run.hooks:
            spot = _spot(run, end, hook)
            if not spot["attach"].startswith("tcx"):
                continue
            direction = _direction(spot["attach"])
            with ipr_in(spot["netns"]) as ipr:
                have = attach_utils.tc_filters(ipr, spot["ifindex"]).get(direction)
            if have:
                found[f"end{spot['end']}_{spot['hook']}"] = (f"tc {direction} on {spot['ifname']}: "
                                                             f"{have['name']} tag {have['tag']}")
    return found


def _remove_filters(phone, wires, ends, check_mode):
    """Detach our tc filters (tc mode) from the host sides and, given the ends, the yogurt sides."""
    if not has_pyroute2():
        return []
    spots = [(None, ifindex, f"ifindex {ifindex}") for ifindex in wires]
    for i, end in enumerate(ends or []):
        for side, netns, ifname in (("host", None, end.get("host_ifname")),
                                    ("cont", end.get("cont_netns"), end.get("cont_ifname"))):
            try:
                ifindex = _link_of(ifname, netns)[0]
            except Exception:  # a namespace that is gone took its filters along
                continue
            if ifindex is not None:
                spots.append((netns, ifindex, ifname))
    actions, seen = [], set()
    for netns, ifindex, label in spots:
        if (netns, ifindex) in seen:
            continue
        seen.add((netns, ifindex))
        with ipr_in(netns) as ipr:
            for direction, have in sorted(attach_utils.tc_filters(ipr, ifindex).items()):
                if have["name"] not in OUR_PROGRAMS:
                    continue
                actions.append(f"remove tc {direction} filter {have['name']} from {label}")
                if not check_mode:
                    attach_utils.tc_detach(ipr, ifindex, direction)
    return actions


def remove_wire(phone, check_mode=False, ends=None):
    """Detach and unpin everything of `phone` (links first), then remove its directory.

    tc filters (kernels without tcx) hold their programs without pins: they are found on
    the host-side devices named in the wires map and, when `ends` is given, on the yogurt
    sides too (without it, a yogurt-side guard filter goes with its namespace).
    """
    _check_phone_name(phone)
    pdir = phone_dir(phone)
    mounted = bpf.bpffs_mounted()
    wires = _read_pinned(phone)["wires"] if mounted else {}
    actions = _remove_filters(phone, wires, ends, check_mode)
    if not mounted or not os.path.isdir(pdir):
        return {"changed": bool(actions), "actions": actions, "before": {}, "after": {}}
    pins = _pins(phone)
    before = {"pins": pins}
    # unpinning drops the last reference of a link, which detaches it, but only once bpffs
    # and a workqueue get to it: links are detached first, so nothing is left behind on return
    for pin in sorted(pins, key=lambda p: (not p.startswith("link_"), p)):
        actions.append(f"unpin {pin}")
        if not check_mode:
            if pin.startswith("link_"):
                _detach_and_unpin(f"{pdir}/{pin}")
            else:
                os.unlink(f"{pdir}/{pin}")
    actions.append(f"remove {pdir}")
    if not check_mode:
        os.rmdir(pdir)
        with contextlib.suppress(OSError):
            os.rmdir(PIN_ROOT)  # only if no other phone is left
    return {"changed": True, "actions": actions, "before": before, "after": {"pins": []}}
