# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Converge every phone of one host: namespaces, pairs, wire, and the record of what we made.

Order per phone: namespaces, then the two pairs (veth or netkit), then the wire. Each step
is idempotent and re-reads nothing it already knows, so a run killed at any point is
healed by the next run. A record per phone under /run/yogurt/phones/ says which devices,
namespaces and pins belong to the collection, so that teardown removes those and nothing
else; /run is empty after a reboot, like the devices and pins it describes.

PRIVATE to the yogurt.phone collection (like community.crypto's module_utils): no public API,
names may change in any release.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time

from ansible_collections.yogurt.phone.plugins.module_utils import _rcu as rcu, _switchboard as switchboard, _wire as wire
from ansible_collections.yogurt.phone.plugins.module_utils._diff import DifferenceTracker
from ansible_collections.yogurt.phone.plugins.module_utils._netlink import (
    delete_route,
    disable_ipv6,
    ipv6_disabled,
    ipr_in,
    LazyIPR,
    read_namespace,
    routes_by_device,
)
from ansible_collections.yogurt.phone.plugins.module_utils._netkit import converge_netkit
from ansible_collections.yogurt.phone.plugins.module_utils._probes import probe_kernel
from ansible_collections.yogurt.phone.plugins.module_utils._netns import (
    create_netns,
    delete_netns,
    list_netns,
    loopback_is_up,
    netns_exists,
    netns_path,
    set_loopback,
)
from ansible_collections.yogurt.phone.plugins.module_utils._veth import converge_pair, remove_pair

RUN_DIR = "/run/yogurt"
RECORD_DIR = os.path.join(RUN_DIR, "phones")
LOCK_PATH = os.path.join(RUN_DIR, "lock")
# Seconds without one more host side gone before those left are deleted by hand. The kernel
# cleans up namespaces in batches and a batch's devices go at its end: 400 namespaces under
# normal RCU took several seconds with none gone (measured), so this is no small number.
DEVICE_WAIT = 60.0


class PhoneError(Exception):
    """A phone could not be converged; the message names the phone and the step."""


@contextlib.contextmanager
def host_lock():
    """One converge at a time per host: a second run waits for the first, then finds it done.

    Teardown removes the lock file with the run dir (tidy_run_dir) while holding it, so a
    run that waited on the old file must not trust it: after flock, the path has to name
    the very file that is locked, else the lock is taken again on the new file.
    """
    while True:
        os.makedirs(RUN_DIR, mode=0o755, exist_ok=True)
        handle = open(LOCK_PATH, "a", encoding="utf-8")  # pylint: disable=consider-using-with
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                current = os.stat(LOCK_PATH).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(handle.fileno()).st_ino:
                break
        except BaseException:
            handle.close()
            raise
        handle.close()  # the file we locked was removed meanwhile: lock the new one
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def read_records():
    records = {}
    try:
        names = os.listdir(RECORD_DIR)
    except FileNotFoundError:
        return records
    for entry in names:
        if entry.endswith(".json"):
            with contextlib.suppress(OSError, ValueError):
                with open(os.path.join(RECORD_DIR, entry), encoding="utf-8") as handle:
                    records[entry[:-5]] = json.load(handle)
    return records


def host_netns_id():
    """Identity of the namespace the host sides live in (a test sandbox is not the host)."""
    return os.stat("/proc/thread-self/ns/net").st_ino


def write_record(phone, backend, host_netns=None, switchboard_name="", moved_from=None):
    """host_netns: the host's namespace (whose phone this is); switchboard_name: where its host sides
    are; moved_from: the switchboard they left, until it is removed (a run killed first leaves it)."""
    data = {"name": phone["name"], "backend": backend, **({"moved_from": moved_from} if moved_from else {}),
            "host_netns": host_netns_id() if host_netns is None else host_netns,
            "switchboard": switchboard_name,
            "ends": [{k: e[k] for k in ("netns", "host_ifname", "cont_ifname")} for e in phone["ends"]]}
    _write_record_data(data)


def _write_record_data(data):
    os.makedirs(RECORD_DIR, mode=0o755, exist_ok=True)
    path = os.path.join(RECORD_DIR, data["name"] + ".json")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, sort_keys=True)
    os.replace(tmp, path)


def delete_record(name):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(RECORD_DIR, name + ".json"))


def tidy_run_dir():
    """With no phone left on the host, leave no file of ours in /run either."""
    with contextlib.suppress(OSError):
        os.rmdir(RECORD_DIR)
        os.unlink(LOCK_PATH)
        os.rmdir(RUN_DIR)


def resolve_backend(requested, facts):
    """(backend, reason). facts: _probes.probe_kernel() (kernel, netkit, netkit_reason, tcx, tcx_reason).

    veth attaches its programs with tcx links where the kernel has tcx (Linux >= 6.6) and with
    tc clsact filters before that (wire.attach_mode asks the kernel the same question).
    """
    kernel = facts.get("kernel", "?")
    hooks = "tcx" if facts.get("tcx") else f"tc clsact filters (no tcx: {facts.get('tcx_reason') or 'tcx probe failed'})"
    if requested == "veth":
        return "veth", f"veth was asked for; {hooks}"
    if requested == "netkit":
        if facts.get("netkit"):
            return "netkit", "netkit was asked for"
        raise PhoneError(
            f"backend netkit was asked for, but this host cannot create netkit devices (Linux {kernel}: "
            f"{facts.get('netkit_reason', 'no netkit')}): use backend: veth (or auto), or boot a kernel >= 6.7 "
            "with CONFIG_NETKIT=y")
    if facts.get("netkit"):
        return "netkit", f"auto: Linux {kernel} can create netkit devices"
    return "veth", f"auto: Linux {kernel} has no netkit ({facts.get('netkit_reason', 'probe failed')}); veth with {hooks}"


class HostConverger:
    """Converge a normalized list of phones (phone_model.normalize_phones) on this host."""

    def __init__(self, phones, facts, objects, check_mode=False, host_addresses="remove", exclusive=False,
                 switchboard_name=""):
        self.phones = phones
        self.switchboard = switchboard_name  # where the host sides go; "" = the host's own namespace
        self.host_netns = None
        self.facts = facts
        self.objects = objects  # {'veth': path, 'netkit': path}
        self.check_mode = check_mode
        self.host_addresses = host_addresses
        self.exclusive = exclusive
        self.warnings = []
        self.moving = set()  # phones this run moves between layouts (set in run())

    def plan_backends(self):
        """Resolve every present phone's backend before anything changes (bad input fails here)."""
        plans = {}
        problems = []
        for phone in self.phones:
            if phone["state"] != "present":
                continue
            try:
                plans[phone["name"]] = resolve_backend(phone["backend"], self.facts)
            except PhoneError as exc:
                problems.append(f"phone '{phone['name']}', field 'backend': {exc}")
            else:
                backend = plans[phone["name"]][0]
                if not self.objects.get(backend):
                    problems.append(f"phone '{phone['name']}': no BPF object for the {backend} backend was given "
                                    f"(option objects.{backend}): compile bpf/wire_{backend}.bpf.c first")
        if problems:
            raise PhoneError("; ".join(problems))
        return plans

    def run(self):
        plans = self.plan_backends()
        # Records name the host's namespace (where the run starts), wherever the host sides are.
        self.host_netns = host_netns_id()
        all_records = read_records()
        records = {n: r for n, r in all_records.items() if r.get("host_netns") == self.host_netns}
        self.moved_from = {n: r["moved_from"] for n, r in records.items() if r.get("moved_from")}
        moves = self._move_out(records)
        self.moving = set(moves)
        building = any(p["state"] == "present" for p in self.phones)
        with switchboard.inside(self.switchboard, create=building, check_mode=self.check_mode) as existed:
            results = self._converge(plans, all_records, records, moves)
        board = self._tidy_switchboards(records, results, existed, building)
        tracker = DifferenceTracker()
        for phone in results:
            tracker.add(phone["name"], phone.pop("_before"), phone.pop("_after"))
        if board["actions"]:
            # a key no phone can have (phone names have no spaces)
            tracker.add("switchboard namespace", board.pop("_before"), board.pop("_after"))
        board.pop("_before", None), board.pop("_after", None)
        return {
            "changed": any(r["changed"] for r in results) or bool(board["actions"]),
            "phones": results,
            "switchboard": board,
            "diff": tracker.get_diff(),
            "warnings": self.warnings,
        }

    def _converge(self, plans, all_records, records, moves):
        """Every phone, in the switchboard (this thread's namespace by now). Returns the results."""
        results = []
        ipr = LazyIPR()
        try:
            host_devices = read_namespace()
            self.host_routes = routes_by_device()
            live_netns = set(list_netns())
            self.owned = {e["host_ifname"] for r in records.values() for e in r.get("ends", [])}
            listed = {p["name"] for p in self.phones}
            removals = []  # (name, ends), done together after the present phones
            for phone in self.phones:
                if phone["state"] == "present":
                    res = self._present(ipr, host_devices, live_netns, phone, *plans[phone["name"]])
                    results.append(_with_layout(res, records.get(phone["name"]), moves, self.switchboard))
                else:
                    results.append(None)
                    removals.append((len(results) - 1, phone["name"], phone["ends"] or
                                     records.get(phone["name"], {}).get("ends", [])))
            if self.exclusive:
                # Ours: recorded in this namespace, or pinned with no record at all (orphans)
                # whose links sit in this namespace or that hold no link at all. A phone wired
                # from another namespace (a test sandbox) is not ours to remove.
                orphans = {name for name in set(wire.list_phones()) - set(all_records) if _orphan_is_ours(name)}
                unlisted = set(records) | orphans
                for name in sorted(unlisted - listed):
                    results.append(None)
                    removals.append((len(results) - 1, name, records.get(name, {}).get("ends", [])))
            for index, res in self._remove_phones(ipr, host_devices, live_netns, removals):
                results[index] = _with_layout(res, records.get(res["name"]), moves, None)
        finally:
            ipr.close()
        return results

    def _move_out(self, records):
        """Phones recorded in another layout lose their pairs and wire there (their yogurts stay),
        to be built again in this run's switchboard. {name: (from switchboard, actions)}.

        The record names the new layout only once nothing of the phone is left in the old
        one, so a run killed meanwhile leaves a record that makes the next run finish the move.
        """
        moves = {}
        for name, record in sorted(records.items()):
            source = switchboard.recorded(record)
            if source == self.switchboard:
                continue
            actions = [f"moved its host sides from {switchboard.label(source)} to {switchboard.label(self.switchboard)}"]
            if not self.check_mode:
                self._step(f"phone '{name}'", f"moving its host sides out of {switchboard.label(source)}",
                           self._evacuate, name, record, source)
            moves[name] = (source, actions)
        return moves

    def _evacuate(self, name, record, source):
        # In the old namespace (an empty scratch one if it is gone): the wire's tc filters are
        # found there by ifindex, and the host sides are deleted there, taking their peers.
        with switchboard.inside(source):
            wire.remove_wire(name)
            devices = read_namespace()
            with ipr_in() as ipr:
                for end in record.get("ends", []):
                    if end["host_ifname"] in devices:
                        rcu.before_grace_period()
                        remove_pair(ipr, devices, end["host_ifname"], False)
        if source:
            self.moved_from[name] = source
        _write_record_data(dict(record, switchboard=self.switchboard, **({"moved_from": source} if source else {})))

    def _tidy_switchboards(self, records, results, existed, building):
        """Report the switchboard made for this run; remove every switchboard left without a phone."""
        name = self.switchboard
        actions = [f"created the switchboard namespace {name}"] if name and building and not existed else []
        if self.exclusive and not self.check_mode and not building:
            tidy_run_dir()
        gone = {r["name"] for r in results if r["state"] == "absent"}
        after = read_records() if not self.check_mode else {
            n: dict(r, switchboard=self.switchboard) for n, r in records.items() if n not in gone}
        if self.check_mode:
            after.update({p["name"]: {"switchboard": self.switchboard} for p in self.phones if p["state"] == "present"})
        leaving = {e["host_ifname"] for n, r in records.items() for e in r.get("ends", [])
                   if n in gone or switchboard.recorded(r) != self.switchboard} if self.check_mode else set()
        removed = []
        boards = {name} | {switchboard.recorded(r) for r in records.values()} | set(self.moved_from.values())
        for board in sorted(boards):
            removed += switchboard.remove_if_unused(board, after, self.check_mode, leaving)
        actions += removed
        if not self.check_mode:
            self._forget_moves()
        state = "present" if name and (building or (existed and not removed)) else "absent"
        return {"name": name, "state": state, "actions": actions,
                "_before": {"name": name, "state": "present" if existed and name else "absent"},
                "_after": {"name": name, "state": state}}

    def _present(self, ipr, host_devices, live_netns, phone, backend, reason):
        name = phone["name"]
        self._check_owned(phone, host_devices)
        if not self.check_mode:
            # Recorded before anything is made: a run killed halfway leaves devices the next run owns.
            write_record(phone, backend, self.host_netns, self.switchboard, self.moved_from.get(name))
        actions, converged = [], []
        for end_index, end in enumerate(phone["ends"]):
            where = f"phone '{name}' ends[{end_index}]"
            ns_before = self._ensure_netns(where, end["netns"], live_netns, actions)
            spec = {
                "host_ifname": end["host_ifname"], "cont_ifname": end["cont_ifname"], "netns": end["netns"],
                "addresses": end["addresses"], "mtu": phone["mtu"], "host_addresses": self.host_addresses,
                "mode": phone["mode"],
                # check mode: the move out of the old layout, which deletes the old pairs, was only planned
                "moving": self.check_mode and name in self.moving,
            }
            pair = self._step(where, f"converging its {backend} pair", self._pair, ipr, host_devices, spec, backend)
            actions.extend(pair["actions"])
            self._keep_host_side_bare(ipr, where, name, end["host_ifname"], pair["host_index"], actions)
            self.warnings.extend(f"phone '{name}': {text}" for text in pair["warnings"])
            converged.append((end, ns_before, pair))
        wire_res = self._wire(name, backend, converged)
        actions.extend(wire_res.get("actions", []))
        return _present_result(name, backend, reason, actions, converged, wire_res)

    def _forget_moves(self):
        """Records stop naming a switchboard their phone left once it is gone (or in use again)."""
        for phone_name, board in self.moved_from.items():
            path = os.path.join(RECORD_DIR, phone_name + ".json")
            with contextlib.suppress(OSError, ValueError):
                with open(path, encoding="utf-8") as handle:
                    record = json.load(handle)
                if record.get("moved_from") == board and (board == record.get("switchboard") or not netns_exists(board)
                                                          or switchboard.devices_in(board)):
                    record.pop("moved_from")
                    _write_record_data(record)

    def _check_owned(self, phone, host_devices):
        """Never take over a device we did not make: records written before this run say what is ours."""
        for end_index, end in enumerate(phone["ends"]):
            if end["host_ifname"] in host_devices and end["host_ifname"] not in self.owned:
                raise PhoneError(
                    f"phone '{phone['name']}' ends[{end_index}].host_ifname: device {end['host_ifname']} already "
                    "exists and this collection did not make it: remove or rename it, or choose another host_ifname")

    def _ensure_netns(self, where, netns, live_netns, actions):
        """The end's namespace exists with lo up. Returns whether it existed before."""
        ns_before = netns in live_netns
        if not ns_before:
            actions.append(f"created namespace {netns}")
            if not self.check_mode:
                self._step(where, "creating its namespace", create_netns, netns)
                live_netns.add(netns)
        if (not ns_before and not self.check_mode) or (ns_before and not loopback_is_up(netns)):
            if ns_before:
                actions.append(f"brought lo up in {netns}")
            if not self.check_mode:
                self._step(where, "bringing lo up", set_loopback, netns, True)
        return ns_before

    def _keep_host_side_bare(self, ipr, where, name, host_ifname, host_index, actions):
        """No IPv6 and no route on a host-side device (its addresses are the pair's job)."""
        if host_index is None:
            return
        # The host side takes no part in IPv6 at all: no address, no link-local, and no
        # multicast route in the local table (the wire acts before the protocol handlers).
        if ipv6_disabled(host_ifname) is False:
            actions.append(f"turned IPv6 off on {host_ifname}")
            if not self.check_mode:
                self._step(where, "turning IPv6 off on the host side", disable_ipv6, host_ifname)
        # Nor does it carry a route: one added by hand is reported, and removed unless told not to.
        for route in self.host_routes.get(host_index, []) if host_index else []:
            text = f"route {route['text']} through host-side device {host_ifname}"
            if self.host_addresses == "remove":
                actions.append(f"removed {text}")
                if not self.check_mode:
                    self._step(where, f"removing {text}", delete_route, ipr, route)
            else:
                self.warnings.append(f"phone '{name}': {text}: the host side of a phone must carry no route "
                                     "(left as told)")

    def _wire(self, name, backend, converged):
        # The ifindexes were read while converging the pairs: the wire need not look them up.
        wire_ends = [{"host_ifname": end["host_ifname"], "cont_netns": end["netns"], "cont_ifname": end["cont_ifname"],
                      "host_ifindex": pair["host_index"], "cont_ifindex": pair["cont_index"], "kind": backend}
                     for end, _ns_before, pair in converged]
        if self.check_mode and any(e["host_ifindex"] is None for e in wire_ends):
            # The pairs do not exist yet, so the wire cannot be inspected: it will be attached.
            return {"changed": True, "actions": [f"attach the {backend} wire"],
                    "before": wire_state_absent(), "after": {"attached": True}}
        return self._step(f"phone '{name}'", "attaching its wire", wire.converge_wire,
                          name, backend, wire_ends, self.objects[backend], self.check_mode)

    def _pair(self, ipr, host_devices, spec, backend):
        host_ifname = spec["host_ifname"]
        host = host_devices.get(host_ifname)
        replaced = []
        if host is not None and host["kind"] != backend:
            replaced.append(f"removed {host_ifname} ({host['kind']}) to rebuild it on {backend}")
            if not self.check_mode:
                remove_pair(ipr, host_devices, host_ifname, False)
            host_devices.pop(host_ifname)
        if backend == "veth":
            res = converge_pair(spec, self.check_mode, host_devices, ipr, owned=True)
            res["actions"][:0] = replaced
            return res
        res = converge_netkit({
            # converge_netkit takes the netkit module's options, which name the cont side the peer.
            # Always a pair: a single device (pairing single, Linux >= 7.1) takes no BPF links,
            # and the wire attaches both of its programs through the host side of a pair.
            "pairing": "pair",
            "host_ifname": host_ifname, "peer_ifname": spec["cont_ifname"], "peer_netns": spec["netns"],
            "mode": spec["mode"], "mtu": spec["mtu"], "peer_addresses": spec["addresses"], "up": True,
            "keep_host_addresses": spec["host_addresses"] == "report",
        }, self.check_mode, recreate=True, peer_leaves=spec["moving"])
        return {"changed": res["changed"] or bool(replaced), "actions": replaced + res["actions"],
                "before": dict(res["before"], kind="netkit" if res["before"].get("state") == "present" else None),
                "after": dict(res["after"], kind="netkit"),
                "host_index": res["netkit"].get("host_ifindex"), "cont_index": res["netkit"].get("peer_ifindex"),
                "warnings": res.get("warnings", [])}

    def _remove_end(self, name, end, actions, live_netns, host_devices, lived_in, waiting, by_hand):
        """Delete one end's namespace (or the file a killed run left of it); file its host side under
        `waiting` (goes with the namespace) or `by_hand` (to delete here)."""
        netns, host_ifname = end["netns"], end["host_ifname"]
        live = netns in live_netns or netns_exists(netns)
        # A process living in it (a shell inside the yogurt) keeps the namespace, and its
        # devices, after its mount goes: then the host side goes by hand, taking its peer.
        held = live and _held(netns, lived_in)
        if live:
            actions.append(f"removed namespace {netns}")
            if not self.check_mode:
                rcu.before_grace_period()
                self._step(f"phone '{name}'", f"removing namespace {netns}", delete_netns, netns)
            live_netns.discard(netns)
        elif os.path.lexists(netns_path(netns)):
            # A run killed between unmounting a namespace and unlinking its file left the
            # empty file behind (`ip netns` would list it): finish that run's work.
            actions.append(f"removed stale namespace file {netns_path(netns)}")
            if not self.check_mode:
                self._step(f"phone '{name}'", f"removing {netns_path(netns)}", delete_netns, netns)
        if host_ifname in host_devices:
            actions.append(f"removed {host_ifname} and its peer")
            (waiting if live and not held else by_hand)[host_ifname] = name

    def _remove_phones(self, ipr, host_devices, live_netns, removals):
        """Remove phones the way the kernel removes them fastest, then check that nothing is left.

        Their namespaces go first, all of them: the kernel deletes the devices inside in one
        batch (one cleanup_net for many namespaces), the host sides of their pairs with them,
        and the programs' links on those devices go defunct on the way. Unpinning a defunct
        link waits for nothing, where detaching a live one waits for an RCU grace period
        under RTNL (five per phone). Namespace cleanup is asynchronous, so the host sides are
        waited for (deleted by hand after DEVICE_WAIT seconds without progress); one whose
        namespace a process lives in (a shell inside it) is deleted by hand at once. Yields
        (index, result).
        """
        if not removals:
            return
        jobs = []
        for index, name, ends in removals:
            before_ends = [{"netns": e["netns"] if e["netns"] in live_netns else None,
                            "host_ifname": e["host_ifname"] if e["host_ifname"] in host_devices else None}
                           for e in ends]
            jobs.append((index, name, ends, before_ends, []))
        waiting, by_hand = {}, {}  # host_ifname -> phone: goes with its namespace / to delete here
        lived_in = _namespaces_of_processes() if not self.check_mode else set()
        for _index, name, ends, _before, actions in jobs:
            for end in ends:
                self._remove_end(name, end, actions, live_netns, host_devices, lived_in, waiting, by_hand)
        if not self.check_mode:
            # what the namespaces take along is waited for; what is still there after the wait goes by hand
            by_hand.update((ifname, waiting[ifname]) for ifname in _wait_gone(waiting))
            for host_ifname, name in sorted(by_hand.items()):
                rcu.before_grace_period()
                self._step(f"phone '{name}'", f"removing {host_ifname}", remove_pair,
                           ipr, host_devices, host_ifname, False)
        for host_ifname in list(waiting) + list(by_hand):
            host_devices.pop(host_ifname, None)
        for index, name, ends, before_ends, actions in jobs:
            wire_res = self._step(f"phone '{name}'", "removing its wire", wire.remove_wire, name, self.check_mode)
            actions.extend(wire_res.get("actions", []))
            if not self.check_mode:
                delete_record(name)
            yield index, {
                "name": name, "state": "absent", "changed": bool(actions), "actions": actions,
                "_before": {"state": "present" if actions else "absent", "ends": before_ends},
                "_after": {"state": "absent"},
            }

    @staticmethod
    def _step(where, what, func, *args):
        try:
            return func(*args)
        except PhoneError:
            raise
        except Exception as exc:  # every failure names the phone and the step
            raise PhoneError(f"{where}: {what} failed: {exc}") from exc


def converge_host(phones, objects, check_mode=False, host_addresses="remove", exclusive=False, expedite_rcu=True,
                  switchboard_name=switchboard.DEFAULT_SWITCHBOARD):
    """The whole converge of a host, as the phones module and the boot runner both run it.

    Under the host lock: the kernel probes, then the converger inside the expedited-RCU span
    (opened after the probes, which attach on a scratch namespace, so only the run's own link
    work turns expedited grace periods on; check mode attaches nothing). Returns the
    converger's result plus 'kernel' (the probes' facts) and 'rcu_expedited' (the span's
    report). Raises PhoneError.
    """
    with host_lock():
        facts = probe_kernel()
        converger = HostConverger(phones, facts, objects, check_mode=check_mode,
                                  host_addresses=host_addresses, exclusive=exclusive,
                                  switchboard_name=switchboard_name)
        with rcu.expedited_span(expedite_rcu, check_mode) as span:
            result = converger.run()
    result["rcu_expedited"] = span.report()
    result["kernel"] = facts
    return result


def _present_result(name, backend, reason, actions, converged, wire_res):
    ends_before, ends_after = [], []
    for end, ns_before, pair in converged:
        names = {"host_ifname": end["host_ifname"], "cont_ifname": end["cont_ifname"]}
        ends_before.append(dict(netns=end["netns"] if ns_before else None, **names, **pair["before"]))
        ends_after.append(dict(netns=end["netns"], **names, **pair["after"]))
    return {
        "name": name, "state": "present", "backend": backend, "backend_reason": reason,
        "changed": bool(actions), "actions": actions,
        "ends": [dict(e, host_ifindex=pair["host_index"]) for e, (_end, _ns, pair) in zip(ends_after, converged)],
        "wire": {k: v for k, v in wire_res.items() if k not in ("before", "after", "changed", "actions")},
        "_before": {"backend": ends_before[0].get("kind"), "ends": ends_before, "wire": wire_res.get("before")},
        "_after": {"backend": backend, "ends": ends_after, "wire": wire_res.get("after")},
    }


def _with_layout(res, record, moves, target):
    """Add where the host sides were and are to a phone's result and diff, and its move's actions."""
    moved = moves.get(res["name"])
    res["_before"]["switchboard"] = switchboard.recorded(record) if record else None
    res["_after"]["switchboard"] = target
    if res["state"] == "present":
        res["switchboard"] = target
    if moved:
        source = switchboard.label(moved[0])
        res["actions"][:0] = moved[1] if res["state"] == "present" else [f"removed its host sides and wire from {source}"]
        res["changed"] = True
    return res


def _namespaces_of_processes():
    """{(st_dev, st_ino)} of the network namespaces some process lives in (one pass over /proc)."""
    found = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                st = os.stat(f"/proc/{pid}/ns/net")
            except OSError:
                continue
            found.add((st.st_dev, st.st_ino))
    return found


def _held(netns, lived_in):
    """Does a process live in network namespace `netns`? (Its mount is not its only reference.)"""
    try:
        st = os.stat(netns_path(netns))
    except OSError:
        return False
    return (st.st_dev, st.st_ino) in lived_in


def _wait_gone(devices):
    """Wait until no device in `devices` (names, in this namespace) exists; returns those left.

    Gives up on what is left once DEVICE_WAIT seconds pass without one more device going.
    """
    left = set(devices)
    deadline = time.monotonic() + DEVICE_WAIT
    delay = 0.001
    while left:
        gone = set()
        for name in left:
            try:
                socket.if_nametoindex(name)
            except OSError:
                gone.add(name)
        if gone:
            left -= gone
            deadline = time.monotonic() + DEVICE_WAIT
            continue
        if time.monotonic() > deadline:
            break
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
    return sorted(left)


def wire_state_absent():
    return {"attached": False}


def _orphan_is_ours(name):
    if wire.attached_in_current_netns(name):
        return True
    # Not attached here. Ours only if it was never wired at all (a load killed before the
    # wires map was filled): a tc-mode phone of another namespace has no link pins and its
    # filters are invisible from here, but its wires map is filled.
    state = wire.read_wire(name)
    return not state.get("links") and not state.get("filters") and not state.get("wires")
