# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Network devices over netlink (pyroute2): read a namespace in one dump, veth pairs,
addresses, MTU, up/down and IPv6 address generation.

Every reader takes an IPRoute socket; the socket's namespace is the one it was opened in,
so open it inside `enter_netns()` to work on a yogurt. Nothing here reads /sys/class/net
(a sandboxed test runs under nsenter, where /sys belongs to another namespace).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress

try:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError
    HAS_PYROUTE2 = True
    PYROUTE2_IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - reported by the modules
    IPRoute = None
    NetlinkError = OSError
    HAS_PYROUTE2 = False
    PYROUTE2_IMPORT_ERROR = _exc

from ansible_collections.yogurt.phone.plugins.module_utils.netns import enter_netns

IFF_UP = 0x1
ADDR_GEN_MODE_NONE = 1
RTPROT_KERNEL = 2
IPV6_LINK_LOCAL = ipaddress.ip_network("fe80::/10")


class LinkError(Exception):
    """A netlink operation failed; the message names the device and the cause."""


def open_ipr(netns=None):
    """An IPRoute socket in the current namespace, or in `netns` if given."""
    if netns is None:
        return IPRoute(ext_ack=True)
    with enter_netns(netns):
        return IPRoute(ext_ack=True)


@contextlib.contextmanager
def netlink_errors(what):
    try:
        yield
    except NetlinkError as exc:
        raise LinkError(f"{what}: {exc}") from None


def read_device(ipr, ifname):
    """One device and its addresses (the read_namespace() dict), without dumping the namespace."""
    with netlink_errors(f"reading {ifname}"):
        msgs = ipr.link("get", ifname=ifname)
        dev = _decode(msgs[0])
        dev["addresses"] = [f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}" for m in ipr.get_addr(index=dev["index"])]
    return dev


def read_namespace(ipr):
    """One dump of devices and addresses: {ifname: device dict}."""
    devices = {}
    by_index = {}
    for msg in ipr.get_links():
        dev = _decode(msg)
        devices[dev["ifname"]] = dev
        by_index[dev["index"]] = dev
    for msg in ipr.get_addr():
        dev = by_index.get(msg["index"])
        if dev is not None:
            dev["addresses"].append(f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}")
    return devices


def _decode(msg):
    info = msg.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info else None
    af_spec = msg.get_attr("IFLA_AF_SPEC")
    inet6 = af_spec.get_attr("AF_INET6") if af_spec else None
    dev = {
        "ifname": msg.get_attr("IFLA_IFNAME"),
        "index": msg["index"],
        "kind": kind,
        "up": bool(msg["flags"] & IFF_UP),
        "mtu": msg.get_attr("IFLA_MTU"),
        "mac": msg.get_attr("IFLA_ADDRESS"),
        "peer_index": msg.get_attr("IFLA_LINK"),
        "link_netnsid": msg.get_attr("IFLA_LINK_NETNSID"),
        "addr_gen_mode": inet6.get_attr("IFLA_INET6_ADDR_GEN_MODE") if inet6 else None,
        "addresses": [],
    }
    return dev


def managed_addresses(addresses):
    """The addresses we manage on a yogurt device: all but IPv6 link-local ones."""
    return sorted(a for a in addresses if ipaddress.ip_interface(a).ip not in IPV6_LINK_LOCAL)


def _canonical(addresses):
    return sorted(str(ipaddress.ip_interface(a)) for a in addresses)


def create_veth(ipr, host_ifname, cont_ifname, netns, mtu=None):
    """A veth pair whose peer is created directly inside /run/netns/<netns>."""
    peer = {"ifname": cont_ifname, "net_ns_fd": f"/run/netns/{netns}"}
    kwargs = {"ifname": host_ifname, "kind": "veth", "peer": peer}
    if mtu:
        kwargs["mtu"] = mtu
        peer["mtu"] = mtu
    with netlink_errors(f"creating veth pair {host_ifname} <-> {netns}/{cont_ifname}"):
        ipr.link("add", **kwargs)


def delete_link(ipr, ifname):
    with netlink_errors(f"deleting {ifname}"):
        ipr.link("del", ifname=ifname)


def set_link(ipr, index, what, **attrs):
    with netlink_errors(what):
        ipr.link("set", index=index, **attrs)


def disable_ipv6_autoconf(ipr, index, ifname):
    """addr_gen_mode none: no IPv6 link-local address is ever generated on the device."""
    set_link(ipr, index, f"turning off IPv6 address generation on {ifname}",
             af_spec={"attrs": [["AF_INET6", {"attrs": [["IFLA_INET6_ADDR_GEN_MODE", ADDR_GEN_MODE_NONE]]}]]})


def ipv6_disabled(ifname):
    """Is IPv6 off on `ifname` (of the caller's namespace)? None if the kernel has no IPv6.

    /proc/sys/net is per network namespace (the one of the reading task), so this reads
    the device of the namespace we run in, as netlink would.
    """
    try:
        with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", encoding="ascii") as handle:
            return handle.read().strip() == "1"
    except FileNotFoundError:
        return None


def disable_ipv6(ifname):
    """Turn IPv6 off on a host-side device: no address, no link-local, no multicast route."""
    with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "w", encoding="ascii") as handle:
        handle.write("1\n")


def routes_by_device(ipr):
    """Every route of every table and family, by output ifindex: {oif: [route dict]} (one dump)."""
    routes = {}
    for msg in ipr.route("dump"):
        oif = msg.get_attr("RTA_OIF")
        # Routes the kernel made for an address (proto kernel) come and go with it; the
        # address itself is what gets reported and removed.
        if oif is None or msg["proto"] == RTPROT_KERNEL:
            continue
        dst = msg.get_attr("RTA_DST") or ("0.0.0.0" if msg["family"] == 2 else "::")
        table = msg.get_attr("RTA_TABLE") or msg["table"]
        routes.setdefault(oif, []).append({
            "family": msg["family"], "dst": dst, "dst_len": msg["dst_len"], "table": table, "oif": oif,
            "type": msg["type"], "scope": msg["scope"], "text": f"{dst}/{msg['dst_len']} (table {table})",
        })
    return routes


def delete_route(ipr, route):
    try:
        ipr.route("del", family=route["family"], dst=route["dst"], dst_len=route["dst_len"],
                  oif=route["oif"], table=route["table"], type=route["type"], scope=route["scope"])
    except NetlinkError as exc:
        if exc.code != errno.ESRCH:  # already gone (with its device or address) is what we want
            raise LinkError(f"removing route {route['text']}: {exc}") from None


def set_addresses(ipr, dev, wanted, check_mode, keep_link_local=True):
    """Make `dev` carry exactly `wanted`. Returns (added, removed) lists."""
    current = managed_addresses(dev["addresses"]) if keep_link_local else _canonical(dev["addresses"])
    wanted = _canonical(wanted)
    added = [a for a in wanted if a not in current]
    removed = [a for a in current if a not in wanted]
    if not check_mode:
        for addr in removed:
            iface = ipaddress.ip_interface(addr)
            with netlink_errors(f"removing {addr} from {dev['ifname']}"):
                ipr.addr("del", index=dev["index"], address=str(iface.ip), prefixlen=iface.network.prefixlen)
        for addr in added:
            iface = ipaddress.ip_interface(addr)
            kwargs = {"index": dev["index"], "address": str(iface.ip), "prefixlen": iface.network.prefixlen}
            if iface.version == 6:
                kwargs["flags"] = 0x02  # IFA_F_NODAD: usable at once, nothing on the wire can clash
            with netlink_errors(f"adding {addr} to {dev['ifname']}"):
                ipr.addr("add", **kwargs)
    return added, removed
