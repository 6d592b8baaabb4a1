# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One veth pair of a phone: host side in the current namespace, peer in a yogurt.

converge_veth() takes the same spec as netkit.converge_netkit(), so the phone engine
treats both backends alike: host_ifname, peer_ifname, peer_netns, peer_addresses, mtu,
and host_addresses ('remove' or 'report' what someone added on the host side).
"""

from __future__ import annotations

from ansible_collections.yogurt.phone.plugins.module_utils.links import (
    ADDR_GEN_MODE_NONE,
    LinkError,
    create_veth,
    delete_link,
    disable_ipv6_autoconf,
    open_ipr,
    read_device,
    read_namespace,
    set_addresses,
    set_link,
)


def _is_pair(host, peer, kind):
    return (host is not None and peer is not None and host["kind"] == kind and peer["kind"] == kind
            and peer["peer_index"] == host["index"])


def converge_pair(spec, check_mode, host_devices, ipr, kind="veth", create=None, owned=False):
    """Make the pair exist as specified. Returns a dict: changed, actions, before, after, host_index, warnings.

    host_devices: read_namespace() of the host side, read once by the caller for all phones.
    create(ipr, spec): makes the pair when it is missing or wrong (default: a veth pair).
    owned: the host-side device, if it exists, was made by this collection and may be replaced.
    """
    host_ifname, peer_ifname, netns = spec["host_ifname"], spec["peer_ifname"], spec["peer_netns"]
    actions, warnings = [], []
    host = host_devices.get(host_ifname)
    peer_ipr = open_ipr(netns) if not check_mode or _netns_live(netns) else None
    try:
        peer_devices = read_namespace(peer_ipr) if peer_ipr else {}
        peer = peer_devices.get(peer_ifname)
        before = {
            "kind": host["kind"] if host else None,
            "host_addresses": sorted(host["addresses"]) if host else [],
            "peer_addresses": sorted(a for a in peer["addresses"] if not a.startswith("fe80:")) if peer else [],
            "mtu": host["mtu"] if host else None,
            "up": bool(host and host["up"] and peer and peer["up"]),
        }
        wanted_mtu = spec.get("mtu") or (host["mtu"] if _is_pair(host, peer, kind) else 1500)
        after = {"kind": kind, "host_addresses": [], "peer_addresses": sorted(spec["peer_addresses"]),
                 "mtu": wanted_mtu, "up": True}

        if not _is_pair(host, peer, kind):
            if host is not None and not owned:
                raise LinkError(f"device {host_ifname} exists but is not a {kind} pair with {netns}/{peer_ifname}, "
                                "and this collection did not make it: remove or rename it, or choose another host_ifname")
            if host is not None:
                actions.append(f"removed {host_ifname} ({host['kind'] or 'device'} not paired with {netns}/{peer_ifname})")
                if not check_mode:
                    delete_link(ipr, host_ifname)
            if peer is not None:
                actions.append(f"removed stray {netns}/{peer_ifname}")
                if not check_mode:
                    delete_link(peer_ipr, peer_ifname)
            actions.append(f"created {kind} pair {host_ifname} <-> {netns}/{peer_ifname}")
            if check_mode:
                return _result(actions, before, after, None, warnings)
            (create or _create_veth)(ipr, spec)
            host = read_device(ipr, host_ifname)
            peer = read_device(peer_ipr, peer_ifname)

        # Host side: no IPv6 link-local ever, no address, up.
        if host.get("addr_gen_mode") != ADDR_GEN_MODE_NONE:
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
                after["host_addresses"] = sorted(host["addresses"])
        if spec.get("mtu") and host["mtu"] != spec["mtu"]:
            actions.append(f"set mtu {spec['mtu']} on {host_ifname} and {netns}/{peer_ifname}")
            if not check_mode:
                set_link(ipr, host["index"], f"setting mtu on {host_ifname}", mtu=spec["mtu"])
                set_link(peer_ipr, peer["index"], f"setting mtu on {peer_ifname}", mtu=spec["mtu"])
        if not host["up"]:
            actions.append(f"brought {host_ifname} up")
            if not check_mode:
                set_link(ipr, host["index"], f"bringing {host_ifname} up", state="up")

        # Yogurt side: exactly the asked addresses, up.
        added, removed = set_addresses(peer_ipr, peer, spec["peer_addresses"], check_mode)
        if added or removed:
            actions.append(f"{netns}/{peer_ifname} addresses: +{added} -{removed}")
        if not peer["up"]:
            actions.append(f"brought {netns}/{peer_ifname} up")
            if not check_mode:
                set_link(peer_ipr, peer["index"], f"bringing {peer_ifname} up", state="up")
        return _result(actions, before, after, host["index"], warnings, peer["index"])
    finally:
        if peer_ipr is not None:
            peer_ipr.close()


def remove_pair(ipr, host_devices, host_ifname, check_mode):
    """Delete the host side (the peer goes with it). Returns the actions taken."""
    if host_ifname not in host_devices:
        return []
    if not check_mode:
        delete_link(ipr, host_ifname)
    return [f"removed {host_ifname} and its peer"]


def _create_veth(ipr, spec):
    create_veth(ipr, spec["host_ifname"], spec["peer_ifname"], spec["peer_netns"], spec.get("mtu"))


def _netns_live(name):
    from ansible_collections.yogurt.phone.plugins.module_utils.netns import netns_exists
    return netns_exists(name)


def _result(actions, before, after, host_index, warnings, peer_index=None):
    return {"changed": bool(actions), "actions": actions, "before": before, "after": after,
            "host_index": host_index, "peer_index": peer_index, "warnings": warnings}
