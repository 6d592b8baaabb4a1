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
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import struct

from ansible_collections.yogurt.phone.plugins.module_utils import bpf

try:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError
    HAS_PYROUTE2 = True
    PYROUTE2_IMPORT_ERROR = None
except ImportError as exc:  # reported by the modules through fail_json
    HAS_PYROUTE2 = False
    PYROUTE2_IMPORT_ERROR = str(exc)

try:
    from ansible_collections.yogurt.phone.plugins.module_utils.netns import enter_netns
except ImportError:  # pragma: no cover - the collection always ships netns.py
    enter_netns = None

PIN_ROOT = bpf.BPFFS + "/yogurt"
PHONE_RE = re.compile(r"^[a-z0-9_-]{1,64}$")
BACKENDS = ("veth", "netkit")

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
# Counter slots of bpf/wire.h, by name (slot 6 was refused_guard, fed by the legacy guard_in).
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


def _validate(phone, backend, ends):
    if not isinstance(phone, str) or not PHONE_RE.match(phone):
        raise WireError(f"phone name {phone!r} is invalid: use 1-64 characters of [a-z0-9_-] "
                        "(it names the bpffs directory; dots are refused by bpffs)")
    if backend not in BACKENDS + ("auto",):
        raise WireError(f"phone {phone}: backend {backend!r} is unknown; use one of auto, netkit, veth")
    if not isinstance(ends, (list, tuple)) or len(ends) != 2:
        raise WireError(f"phone {phone}: ends must list exactly two ends, got {len(ends or [])}")
    for i, end in enumerate(ends):
        for key in ("host_ifname", "cont_netns", "cont_ifname"):
            if not end.get(key):
                raise WireError(f"phone {phone}: ends[{i}].{key} is missing")
        if len(end["host_ifname"]) > 15 or len(end["cont_ifname"]) > 15:
            raise WireError(f"phone {phone}: ends[{i}] interface names are limited to 15 characters")
    if ends[0]["host_ifname"] == ends[1]["host_ifname"]:
        raise WireError(f"phone {phone}: both ends use host_ifname {ends[0]['host_ifname']}; each end needs its own pair")


@contextlib.contextmanager
def _in_netns(name):
    if name is None:
        yield
        return
    if enter_netns is None:
        raise WireError("module_utils/netns.py is missing: cannot enter a yogurt namespace")
    with enter_netns(name):
        yield


def _link_of(ifname, where):
    """(ifindex, kind) of `ifname` in the calling thread's netns, or (None, None)."""
    if not HAS_PYROUTE2:
        raise WireError(f"pyroute2 is needed to look up {ifname} in {where}: {PYROUTE2_IMPORT_ERROR}")
    with IPRoute() as ipr:
        try:
            msg = ipr.link("get", ifname=ifname)[0]
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return None, None
            raise
    info = msg.get_attr("IFLA_LINKINFO")
    return msg["index"], (info.get_attr("IFLA_INFO_KIND") if info else None)


def _resolve(phone, backend, ends):
    """Ifindexes of both sides of both ends, and the backend the host devices imply."""
    found = []
    for i, end in enumerate(ends):
        if end.get("host_ifindex") and end.get("cont_ifindex") and end.get("kind"):
            # The caller has just converged the pair and read these: no lookup needed.
            found.append({"host": end["host_ifindex"], "cont": end["cont_ifindex"], "kind": end["kind"]})
            continue
        host, kind = _link_of(end["host_ifname"], "the host namespace")
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
            with _in_netns(end["cont_netns"]):
                cont = _link_of(end["cont_ifname"], f"netns {end['cont_netns']}")[0]
        except Exception as exc:  # a missing namespace is as fatal as a missing device
            raise WireError(f"phone {phone}: ends[{i}].cont_netns {end['cont_netns']}: {exc}") from None
        if cont is None:
            raise WireError(f"phone {phone}: ends[{i}].cont_ifname {end['cont_ifname']} does not exist in "
                            f"netns {end['cont_netns']}; move the container side of the pair there first")
        found.append({"host": host, "cont": cont, "kind": kind})
    if found[0]["kind"] != found[1]["kind"]:
        raise WireError(f"phone {phone}: one end is {found[0]['kind']}, the other {found[1]['kind']}; "
                        "both pairs of a phone must be of one kind")
    return found, found[0]["kind"]


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
    state = {"programs": {}, "links": {}, "wires": {}, "maps": {}, "other": []}
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


def read_wire(phone):
    """Programs, links, wires map and counters (summed over CPUs) of one phone."""
    if not bpf.bpffs_mounted():
        return {"phone": phone, "exists": False, "backend": None, "attach_mode": None, "programs": [],
                "links": [], "filters": [], "wires": [], "counters": {}}
    state = _read_pinned(phone)
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
    if HAS_PYROUTE2 and state["wires"] and not any(link["type"] in ("tcx", "netkit") for link in links):
        with IPRoute() as ipr:
            for ifindex in sorted(state["wires"]):
                with contextlib.suppress(Exception):
                    for direction, have in sorted(bpf.tc_filters(ipr, ifindex).items()):
                        filters.append(dict(have, ifindex=ifindex, direction=direction))
    backend = _backend_of(state) or ("veth" if filters else None)
    return {
        "phone": phone,
        "exists": bool(_pins(phone)),
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
        if _attached_here(info["id"], info["ifindex"], info["attach_type"], None):
            return True
    if HAS_PYROUTE2 and state["wires"]:
        with IPRoute() as ipr:
            for ifindex in state["wires"]:
                with contextlib.suppress(Exception):
                    if any(f["name"] in OUR_PROGRAMS for f in bpf.tc_filters(ipr, ifindex).values()):
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


def _attached_here(link_id, ifindex, attach_type, netns, have=None):
    """Is link `link_id` attached at (ifindex, attach_type) in `netns`? (BPF_PROG_QUERY)

    XDP (`have`: the link's info): the link reports its ifindex but not its namespace, and
    BPF_PROG_QUERY does not cover XDP; so the link must name this ifindex and the device
    there must run the link's program in native mode (IFLA_XDP_DRV_PROG_ID).
    """
    if attach_type == "xdp":
        if not have or have.get("type") != "xdp" or have.get("ifindex") != ifindex:
            return False
        with _in_netns(netns), IPRoute() as ipr:
            xdp = bpf.xdp_query(ipr, ifindex)
        return bool(xdp and xdp["mode"] in (1, 4) and xdp["drv_prog_id"] == have.get("prog_id"))
    with _in_netns(netns):
        try:
            return link_id in bpf.prog_query(ifindex, attach_type)["link_ids"]
        except bpf.BpfError as exc:
            if exc.errno == errno.ENODEV:
                return False
            raise


def _converge_link(spot, have, obj, tag, pdir, check_mode):
    """One pinned bpf_link (tcx, netkit or xdp): keep, update its program, or attach anew."""
    pin, prog, attach, ifname, ifindex = spot["pin"], spot["prog"], spot["attach"], spot["ifname"], spot["ifindex"]
    path = f"{pdir}/{pin}"
    if have and have["attach_type"] == attach and _attached_here(have["id"], ifindex, attach, spot["netns"], have):
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
        with _in_netns(spot["netns"]):
            try:
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


def _remove_legacy(phone, backend, ends, devs, mode, check_mode):
    """Take off what older objects attached and this one no longer has (LEGACY_HOOKS).

    Links are found by pin name (the stale-pin pass would unpin them too, but later and
    without detaching first); tc filters of legacy programs by their name on the device.
    """
    actions = []
    pdir = phone_dir(phone)
    for i, end in enumerate(ends):
        for hook, prog, attach, side in LEGACY_HOOKS.get(backend, ()):
            pin = f"link_end{i}_{hook}"
            if os.path.lexists(f"{pdir}/{pin}"):
                actions.append(f"detach {pin} ({prog}: the XDP guard replaces it)")
                if not check_mode:
                    _detach_and_unpin(f"{pdir}/{pin}")
            if mode != "tc" or not HAS_PYROUTE2:
                continue
            direction = "ingress" if attach == "tcx_ingress" else "egress"
            netns = end["cont_netns"] if side == "cont" else None
            ifname = end["cont_ifname"] if side == "cont" else end["host_ifname"]
            with _in_netns(netns), IPRoute() as ipr:
                have = bpf.tc_filters(ipr, devs[i][side]).get(direction)
                if have and have["name"] == prog:
                    actions.append(f"remove tc {direction} filter {prog} from {ifname} (the XDP guard replaces it)")
                    if not check_mode:
                        bpf.tc_detach(ipr, devs[i][side], direction)
    return actions


def _converge_filter(spot, obj, tag, check_mode):
    """One tc clsact filter (kernels without tcx): keep, or attach/replace atomically."""
    direction = "ingress" if spot["attach"] == "tcx_ingress" else "egress"
    with _in_netns(spot["netns"]), IPRoute() as ipr:
        have = bpf.tc_filters(ipr, spot["ifindex"]).get(direction)
        if have and have["tag"] == tag:
            return []
        if not check_mode:
            try:
                bpf.tc_attach(ipr, spot["ifindex"], direction, obj.prog_fd(spot["prog"]), spot["prog"])
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
    return "tcx" if bpf.tcx_available() else "tc"


def converge_wire(phone, backend, ends, obj_path, check_mode=False, attach="auto"):
    """Make the phone's wire match (backend, ends, object). See the file docstring.

    attach (veth only): 'tcx' links, 'tc' clsact filters (kernels < 6.6), or 'auto'.

    Returns dict(changed, backend, actions, before, after, links, programs, maps).
    """
    _validate(phone, backend, ends)
    devs, kind = _resolve(phone, backend, ends)
    backend = kind
    hooks = HOOKS[backend]
    mode = attach_mode(backend, attach)
    pdir = phone_dir(phone)
    actions = []

    mounted = bpf.bpffs_mounted()
    before_state = _read_pinned(phone) if mounted else {"programs": {}, "links": {}, "wires": {}, "maps": {}, "other": []}

    pin_maps = None if check_mode else {m: f"{pdir}/map_{m}" for m in MAPS}
    if not check_mode:
        if bpf.ensure_bpffs():
            actions.append(f"mounted bpffs on {bpf.BPFFS}")
        os.makedirs(pdir, mode=0o700, exist_ok=True)

    with bpf.BpfObject(obj_path, pin_maps=pin_maps) as obj:
        wanted_progs = sorted({hook[1] for hook in hooks})
        for prog in wanted_progs:
            obj.prog_fd(prog)  # raises if the object lacks a program of this backend
        try:
            obj.load()
        except bpf.BpfError as exc:
            raise WireError(f"phone {phone}: {exc}") from None
        new_tags = {p: bpf.prog_info(obj.prog_fd(p))["tag"] for p in wanted_progs}

        # 1. routes: wires[host ifindex] = (other host ifindex, direction)
        want_wires = {devs[0]["host"]: (devs[1]["host"], 0), devs[1]["host"]: (devs[0]["host"], 1)}
        have_wires = before_state["wires"]
        if want_wires != have_wires:
            actions.append(f"set wires map: {_fmt_wires(want_wires, devs, ends)}")
            if not check_mode:
                fd = obj.map_fd("wires")
                for key, val in want_wires.items():
                    if have_wires.get(key) != val:
                        bpf.map_update(fd, _U32.pack(key), _WIRE.pack(*val))
                for key in set(have_wires) - set(want_wires):
                    bpf.map_delete(fd, _U32.pack(key))

        before_filters = _filters(hooks, ends, devs) if mode == "tc" else None

        # 2. attachments: one per end and hook, at the right ifindex, running the new program.
        # Hook by hook (the guard on both ends first); what older objects attached goes once
        # the guard is in place and before wire_in changes.
        wanted_pins = {f"map_{m}" for m in MAPS} | {f"prog_{p}" for p in wanted_progs}
        for hook, prog, attach, side in hooks:
            for i, end in enumerate(ends):
                spot = {"phone": phone, "end": i, "pin": f"link_end{i}_{hook}", "prog": prog, "attach": attach,
                        "ifindex": devs[i][side], "netns": end["cont_netns"] if side == "cont" else None,
                        "ifname": end["cont_ifname"] if side == "cont" else end["host_ifname"]}
                if mode == "tc" and attach.startswith("tcx"):
                    actions.extend(_converge_filter(spot, obj, new_tags[prog], check_mode))
                else:
                    wanted_pins.add(spot["pin"])
                    actions.extend(_converge_link(spot, before_state["links"].get(spot["pin"]), obj,
                                                  new_tags[prog], pdir, check_mode))
            if side == "cont" and mounted:
                actions.extend(_remove_legacy(phone, backend, ends, devs, mode, check_mode))

        # 3. program pins follow the links (links hold their own references)
        for prog in wanted_progs:
            have = before_state["programs"].get(prog)
            if have and have["tag"] == new_tags[prog]:
                continue
            actions.append(f"pin prog_{prog} (tag {new_tags[prog]})")
            if not check_mode:
                bpf.pin_replace(obj.prog_fd(prog), f"{pdir}/prog_{prog}")

        # 4. whatever else is pinned here belongs to an older layout or backend
        legacy = {f"link_end{i}_{hook}" for i in range(len(ends)) for hook, *_rest in LEGACY_HOOKS.get(backend, ())}
        for pin in _pins(phone) if mounted else []:
            if pin not in wanted_pins and not (check_mode and pin in legacy):  # legacy: reported above
                actions.append(f"unpin stale {pin}")
                if not check_mode:
                    os.unlink(f"{pdir}/{pin}")
        if not mounted and check_mode:
            actions.append(f"create {pdir}/map_wires and map_counters")

    after_state = _read_pinned(phone) if not check_mode else None
    before = _summary(before_state, ends, devs)
    after = _summary(after_state, ends, devs) if after_state else _planned(hooks, ends, devs, new_tags, want_wires, mode)
    if mode == "tc":
        before["filters"] = before_filters
        if after_state:
            after["filters"] = _filters(hooks, ends, devs)
    result = {
        "changed": bool(actions),
        "backend": backend,
        "attach_mode": mode,
        "actions": actions,
        "before": before,
        "after": after,
    }
    if after_state:
        info = read_wire(phone)
        result.update(programs=info["programs"], links=info["links"],
                      maps={"wires": info["wires"], "counters": info["counters"]})
    return result


def _fmt_wires(wires, devs, ends):
    names = {d["host"]: e["host_ifname"] for d, e in zip(devs, ends)}
    return ", ".join(f"{names.get(k, k)}({k}) -> {names.get(t, t)}({t})" for k, (t, _direction) in sorted(wires.items()))


def _summary(state, ends, devs):
    names = {}
    for i, end in enumerate(ends):
        names[f"link_end{i}_"] = end
    links = {}
    for pin, info in state["links"].items():
        end = names.get(pin[:len("link_endN_")], {})
        ifname = end.get("cont_ifname") if _pin_hook(pin) in CONT_HOOKS else end.get("host_ifname")
        links[pin] = _describe_link(info, ifname)
    return {
        "programs": {n: p["tag"] for n, p in sorted(state["programs"].items())},
        "links": dict(sorted(links.items())),
        "wires": _fmt_wires(state["wires"], devs, ends) if state["wires"] else "",
    }


def _planned(hooks, ends, devs, tags, wires, mode):
    links, filters = {}, {}
    for i, end in enumerate(ends):
        for hook, prog, attach, side in hooks:
            ifname = end["cont_ifname"] if side == "cont" else end["host_ifname"]
            if mode == "tc" and attach.startswith("tcx"):
                direction = "ingress" if attach == "tcx_ingress" else "egress"
                filters[f"end{i}_{hook}"] = f"tc {direction} on {ifname}: {prog} tag {tags[prog]}"
                continue
            info = {"attach_type": attach, "ifindex": devs[i][side], "prog": {"name": prog, "tag": tags[prog]}}
            links[f"link_end{i}_{hook}"] = _describe_link(info, ifname)
    planned = {
        "programs": dict(sorted(tags.items())),
        "links": dict(sorted(links.items())),
        "wires": _fmt_wires(wires, devs, ends),
    }
    if mode == "tc":
        planned["filters"] = filters
    return planned


def _filters(hooks, ends, devs):
    """Our tc filters, as {end<i>_<hook>: description} (tc mode)."""
    found = {}
    for i, end in enumerate(ends):
        for hook, _prog, attach, side in hooks:
            if not attach.startswith("tcx"):
                continue
            direction = "ingress" if attach == "tcx_ingress" else "egress"
            ifname = end["cont_ifname"] if side == "cont" else end["host_ifname"]
            with _in_netns(end["cont_netns"] if side == "cont" else None), IPRoute() as ipr:
                have = bpf.tc_filters(ipr, devs[i][side]).get(direction)
            if have:
                found[f"end{i}_{hook}"] = f"tc {direction} on {ifname}: {have['name']} tag {have['tag']}"
    return found


def _remove_filters(phone, wires, ends, check_mode):
    """Detach our tc filters (tc mode) from the host sides and, given the ends, the yogurt sides."""
    if not HAS_PYROUTE2:
        return []
    spots = [(None, ifindex, f"ifindex {ifindex}") for ifindex in wires]
    for i, end in enumerate(ends or []):
        for side, netns, ifname in (("host", None, end.get("host_ifname")),
                                    ("cont", end.get("cont_netns"), end.get("cont_ifname"))):
            try:
                with _in_netns(netns):
                    ifindex = _link_of(ifname, netns or "the host namespace")[0]
            except Exception:  # a namespace that is gone took its filters along
                continue
            if ifindex is not None:
                spots.append((netns, ifindex, ifname))
    actions, seen = [], set()
    for netns, ifindex, label in spots:
        if (netns, ifindex) in seen:
            continue
        seen.add((netns, ifindex))
        with _in_netns(netns), IPRoute() as ipr:
            for direction, have in sorted(bpf.tc_filters(ipr, ifindex).items()):
                if have["name"] not in OUR_PROGRAMS:
                    continue
                actions.append(f"remove tc {direction} filter {have['name']} from {label}")
                if not check_mode:
                    bpf.tc_detach(ipr, ifindex, direction)
    return actions


def remove_wire(phone, check_mode=False, ends=None):
    """Detach and unpin everything of `phone` (links first), then remove its directory.

    tc filters (kernels without tcx) hold their programs without pins: they are found on
    the host-side devices named in the wires map and, when `ends` is given, on the yogurt
    sides too (without it, a yogurt-side guard filter goes with its namespace).
    """
    if not isinstance(phone, str) or not PHONE_RE.match(phone):
        raise WireError(f"phone name {phone!r} is invalid: use 1-64 characters of [a-z0-9_-]")
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
