# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One veth pair of a phone: host side in the current namespace, cont side in a yogurt.

converge_pair() takes a phone end's spec: host_ifname, cont_ifname, netns, addresses, mtu,
and host_addresses ('remove' or 'report' what someone added on the host side). Its
before/after views name the cont side's addresses `peer_addresses`, as the netkit pair
views do: both are returned by the phones module, whose return values are frozen.

PRIVATE to the yogurt.phone collection (like community.crypto's module_utils): no public API,
names may change in any release.
"""

from __future__ import annotations

from ansible_collections.yogurt.phone.plugins.module_utils._netlink import (
    LinkError,
    create_veth,
    delete_link,
    disable_ipv6_autoconf,
    managed_addresses,
    LazyIPR,
    read_device_raw,
    read_namespace,
    set_addresses,
    set_link,
)
from ansible_collections.yogurt.phone.plugins.module_utils._netns import netns_exists


KIND = "veth"


def _is_pair(host, cont):
    return (host is not None and cont is not None and host["kind"] == KIND and cont["kind"] == KIND
            and cont["link_index"] == host["index"])


def converge_pair(spec, check_mode, host_devices, ipr, owned=False):
    """Make the veth pair exist as specified. Returns a dict: changed, actions, before, after, host_index, warnings.

    host_devices: read_namespace() of the host side, read once by the caller for all phones.
    owned: the host-side device, if it exists, was made by this collection and may be replaced.
    """
    host = host_devices.get(spec["host_ifname"])
    cont_ipr = LazyIPR(spec["netns"]) if not check_mode or netns_exists(spec["netns"]) else None
    try:
        cont = (read_namespace(spec["netns"]) if cont_ipr else {}).get(spec["cont_ifname"])
        before, after = _views(spec, host, cont)
        actions, warnings = [], []
        if not _is_pair(host, cont):
            _replace(spec, host, cont, (ipr, cont_ipr), owned, check_mode, actions)
            if check_mode:
                return _result(actions, before, after, None, warnings)
            host = _made(spec["host_ifname"], None)
            cont = _made(spec["cont_ifname"], spec["netns"])
        after["host_addresses"] = _converge_host_side(spec, host, ipr, check_mode, actions, warnings)
        _converge_mtu(spec, host, cont, (ipr, cont_ipr), check_mode, actions)
        _bring_up(ipr, host, spec["host_ifname"], check_mode, actions)
        _converge_cont_side(spec, cont, cont_ipr, check_mode, actions)
        return _result(actions, before, after, host["index"], warnings, cont["index"])
    finally:
        if cont_ipr is not None:
            cont_ipr.close()


def _made(ifname, netns):
    """A device this run has just made, read back (raw netlink: no pyroute2 decoding)."""
    dev = read_device_raw(ifname, netns)
    if dev is None:
        raise LinkError(f"reading {ifname}: no such device right after creating it")
    return dev


def _views(spec, host, cont):
    """The diff's before (as found) and after (as asked) of one pair."""
    before = {
        "kind": host["kind"] if host else None,
        "host_addresses": sorted(host["addresses"]) if host else [],
        "peer_addresses": sorted(managed_addresses(cont["addresses"])) if cont else [],
        "mtu": host["mtu"] if host else None,
        "up": bool(host and host["up"] and cont and cont["up"]),
    }
    wanted_mtu = spec.get("mtu") or (host["mtu"] if _is_pair(host, cont) else 1500)
    after = {"kind": KIND, "host_addresses": [], "peer_addresses": sorted(spec["addresses"]),
             "mtu": wanted_mtu, "up": True}
    return before, after


def _replace(spec, host, cont, iprs, owned, check_mode, actions):
    """Delete what stands where the pair should be (if ours), then create the pair."""
    host_ifname, cont_ifname, netns = spec["host_ifname"], spec["cont_ifname"], spec["netns"]
    if host is not None and not owned:
        raise LinkError(f"device {host_ifname} exists but is not a {KIND} pair with {netns}/{cont_ifname}, "
                        "and this collection did not make it: remove or rename it, or choose another host_ifname")
    if host is not None:
        actions.append(f"removed {host_ifname} ({host['kind'] or 'device'} not paired with {netns}/{cont_ifname})")
        if not check_mode:
            delete_link(iprs[0], host_ifname)
    if cont is not None:
        actions.append(f"removed stray {netns}/{cont_ifname}")
        if not check_mode:
            delete_link(iprs[1], cont_ifname)
    actions.append(f"created {KIND} pair {host_ifname} <-> {netns}/{cont_ifname}")
    if not check_mode:
        create_veth(iprs[0], host_ifname, cont_ifname, netns, spec.get("mtu"))


def _converge_host_side(spec, host, ipr, check_mode, actions, warnings):
    """No IPv6 link-local ever, no address. Returns the addresses left on it (as told)."""
    host_ifname = spec["host_ifname"]
    kept = []
    if host["addr_gen_mode"] != "none":
        actions.append(f"turned off IPv6 address generation on {host_ifname}")
        if not check_mode:
            disable_ipv6_autoconf(ipr, host["index"], host_ifname)
    if host["addresses"]:
        text = f"host-side device {host_ifname} carries {', '.join(sorted(host['addresses']))}"
        if spec.get("host_addresses", "remove") == "remove":
            actions.append(f"removed from {host_ifname}: {', '.join(sorted(host['addresses']))}")
            if not check_mode:
                set_addresses(ipr, host, [], check_mode, keep_link_local=False)
        else:
            warnings.append(text + ": the host side of a phone must carry no address (left as told)")
            kept = sorted(host["addresses"])
    return kept


def _converge_mtu(spec, host, cont, iprs, check_mode, actions):
    if not spec.get("mtu") or host["mtu"] == spec["mtu"]:
        return
    actions.append(f"set mtu {spec['mtu']} on {spec['host_ifname']} and {spec['netns']}/{spec['cont_ifname']}")
    if not check_mode:
        set_link(iprs[0], host["index"], f"setting mtu on {spec['host_ifname']}", mtu=spec["mtu"])
        set_link(iprs[1], cont["index"], f"setting mtu on {spec['cont_ifname']}", mtu=spec["mtu"])


def _converge_cont_side(spec, cont, cont_ipr, check_mode, actions):
    """Yogurt side: exactly the asked addresses, up."""
    where = f"{spec['netns']}/{spec['cont_ifname']}"
    added, removed = set_addresses(cont_ipr, cont, spec["addresses"], check_mode)
    if added or removed:
        actions.append(f"{where} addresses: +{added} -{removed}")
    _bring_up(cont_ipr, cont, where, check_mode, actions)


def _bring_up(ipr, dev, label, check_mode, actions):
    if not dev["up"]:
        actions.append(f"brought {label} up")
        if not check_mode:
            set_link(ipr, dev["index"], f"bringing {dev['ifname']} up", state="up")


def remove_pair(ipr, host_devices, host_ifname, check_mode):
    """Delete the host side (the cont side goes with it). Returns the actions taken."""
    if host_ifname not in host_devices:
        return []
    if not check_mode:
        try:
            delete_link(ipr, host_ifname)
        except LinkError as exc:
            if "No such device" not in str(exc):  # gone meanwhile (with its namespace): what we want
                raise
    return [f"removed {host_ifname} and its peer"]


def _result(actions, before, after, host_index, warnings, cont_index=None):
    return {"changed": bool(actions), "actions": actions, "before": before, "after": after,
            "host_index": host_index, "cont_index": cont_index, "warnings": warnings}
