# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The netlink layer (pyroute2): sockets in a namespace, links and addresses read and
written, veth pairs, MTU, up/down, IPv6 address generation, routes.

netkit, veth, the wire and the host converge all read and change devices through this
file. Every reader takes an IPRoute socket; a socket works in the namespace it was opened
in, so open it with open_ipr(netns) to work on a yogurt. Nothing here reads
/sys/class/net (a sandboxed test runs under nsenter, where /sys belongs to another
namespace). Low-level calls raise pyroute2's NetlinkError; the *_device/*_link helpers
that name what they do raise LinkError with that sentence.

PRIVATE to the yogurt.phone collection (like community.crypto's module_utils): no public API,
names may change in any release.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os

from ansible_collections.yogurt.phone.plugins.module_utils._netns import IFF_UP, in_netns
from ansible_collections.yogurt.phone.plugins.module_utils._pyroute2_dep import IPRoute, NetlinkError

IFA_F_NODAD = 0x02
ADDR_GEN_MODE_NONE = 1
ADDR_GEN_MODES = {0: "eui64", 1: "none", 2: "stable_privacy", 3: "random"}
RTPROT_KERNEL = 2


class LinkError(Exception):
    """A netlink operation failed; the message names the device and the cause."""


# ---------------------------------------------------------------- sockets and errors

def open_ipr(netns=None):
    """An IPRoute socket in the current namespace, or in named namespace `netns`."""
    with in_netns(netns):
        return IPRoute(ext_ack=True)


@contextlib.contextmanager
def ipr_in(netns=None):
    """open_ipr() as a context: the socket is closed on the way out."""
    ipr = open_ipr(netns)
    try:
        yield ipr
    finally:
        ipr.close()


def netlink_text(exc):
    """'Operation not supported (Unknown device type)' from a NetlinkError."""
    reason = os.strerror(exc.code)
    text = exc.args[1] if len(exc.args) > 1 else ""
    return f"{reason} ({text})" if text and text != reason else reason


@contextlib.contextmanager
def netlink_errors(what):
    try:
        yield
    except NetlinkError as exc:
        raise LinkError(f"{what}: {exc}") from None


# ---------------------------------------------------------------- reading

def decode_link(msg, decode_data=None):
    """The facts of one RTM_NEWLINK message as a plain dict.

    decode_data(kind, IFLA_INFO_DATA): the link kind's own attributes as a dict merged in
    (netkit passes its decoder); without it only the facts every device has.
    """
    info = msg.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    af_spec = msg.get_attr("IFLA_AF_SPEC")
    inet6 = af_spec.get_attr("AF_INET6") if af_spec is not None else None
    gen_mode = inet6.get_attr("IFLA_INET6_ADDR_GEN_MODE") if inet6 is not None else None
    dev = {
        "ifname": msg.get_attr("IFLA_IFNAME"),
        "index": msg["index"],
        "kind": kind,
        "up": bool(msg["flags"] & IFF_UP),
        "mtu": msg.get_attr("IFLA_MTU"),
        "mac": msg.get_attr("IFLA_ADDRESS"),
        "link_index": msg.get_attr("IFLA_LINK"),     # the other device of a pair
        "link_netnsid": msg.get_attr("IFLA_LINK_NETNSID"),
        "addr_gen_mode": ADDR_GEN_MODES.get(gen_mode, gen_mode),
        "addresses": [],
    }
    if decode_data is not None:
        data = info.get_attr("IFLA_INFO_DATA") if info is not None else None
        dev.update(decode_data(kind, None if isinstance(data, str) else data))
    return dev


def read_link(ipr, ifname=None, index=None, decode_data=None):
    """decode_link() of one device by name or index, or None if there is no such device."""
    try:
        msgs = ipr.link("get", ifname=ifname) if ifname is not None else ipr.link("get", index=index)
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise
    return decode_link(msgs[0], decode_data) if msgs else None


def _address_of(msg):
    # IFA_LOCAL is the device's own IPv4 address (IFA_ADDRESS may be a point-to-point peer);
    # IPv6 addresses carry only IFA_ADDRESS.
    return normalize_cidr(msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS"), msg["prefixlen"])


def read_addresses(ipr, index):
    """The addresses of one device, normalized and sorted (sort_cidrs)."""
    return sort_cidrs(_address_of(msg) for msg in ipr.addr("dump", index=index))


def read_device(ipr, ifname):
    """One device and its addresses (the read_namespace() dict), without dumping the namespace."""
    with netlink_errors(f"reading {ifname}"):
        dev = read_link(ipr, ifname=ifname)
        if dev is None:
            raise LinkError(f"reading {ifname}: no such device")
        dev["addresses"] = read_addresses(ipr, dev["index"])
    return dev


def read_namespace(ipr):
    """One dump of devices and addresses: {ifname: device dict}."""
    devices = {}
    by_index = {}
    for msg in ipr.get_links():
        dev = decode_link(msg)
        devices[dev["ifname"]] = dev
        by_index[dev["index"]] = dev
    for msg in ipr.get_addr():
        dev = by_index.get(msg["index"])
        if dev is not None:
            dev["addresses"].append(_address_of(msg))
    for dev in devices.values():
        dev["addresses"] = sort_cidrs(dev["addresses"])
    return devices


# ---------------------------------------------------------------- addresses

def normalize_cidr(address, prefixlen=None):
    text = address if prefixlen is None else f"{address}/{prefixlen}"
    return ipaddress.ip_interface(text).with_prefixlen


def sort_cidrs(cidrs):
    """Normalized, without duplicates, IPv4 before IPv6, in address order."""
    unique = {normalize_cidr(c) for c in cidrs}
    return sorted(unique, key=lambda c: (ipaddress.ip_interface(c).version, ipaddress.ip_interface(c)))


def is_link_local6(cidr):
    iface = ipaddress.ip_interface(cidr)
    return iface.version == 6 and iface.ip.is_link_local


def managed_addresses(addresses, keep=()):
    """The addresses we manage on a yogurt device: all but IPv6 link-local ones (bar `keep`)."""
    return [a for a in addresses if not is_link_local6(a) or a in keep]


def add_address(ipr, index, cidr):
    """Add `cidr` to device `index`; IPv6 without duplicate address detection (usable at once:
    a pair is point to point, nothing on it can clash)."""
    iface = ipaddress.ip_interface(cidr)
    kwargs = {"index": index, "address": str(iface.ip), "prefixlen": iface.network.prefixlen}
    if iface.version == 6:
        kwargs["flags"] = IFA_F_NODAD
    ipr.addr("add", **kwargs)


def delete_address(ipr, index, cidr):
    iface = ipaddress.ip_interface(cidr)
    ipr.addr("del", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)


def set_addresses(ipr, dev, wanted, check_mode, keep_link_local=True):
    """Make `dev` carry exactly `wanted`. Returns (added, removed) lists."""
    current = sorted(managed_addresses(dev["addresses"]) if keep_link_local else dev["addresses"])
    wanted = sorted(normalize_cidr(a) for a in wanted)
    added = [a for a in wanted if a not in current]
    removed = [a for a in current if a not in wanted]
    if not check_mode:
        for addr in removed:
            with netlink_errors(f"removing {addr} from {dev['ifname']}"):
                delete_address(ipr, dev["index"], addr)
        for addr in added:
            with netlink_errors(f"adding {addr} to {dev['ifname']}"):
                add_address(ipr, dev["index"], addr)
    return added, removed


# ---------------------------------------------------------------- links

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
    """Change a device (mtu=..., state='up'|'down', ...); `what` names the change in errors."""
    with netlink_errors(what):
        ipr.link("set", index=index, **attrs)


def addr_gen_mode_spec(mode=ADDR_GEN_MODE_NONE):
    """IFLA_AF_SPEC that sets the IPv6 address generation mode of a device."""
    return {"attrs": [("AF_INET6", {"attrs": [("IFLA_INET6_ADDR_GEN_MODE", mode)]})]}


def disable_ipv6_autoconf(ipr, index, ifname):
    """addr_gen_mode none: no IPv6 link-local address is ever generated on the device."""
    set_link(ipr, index, f"turning off IPv6 address generation on {ifname}", IFLA_AF_SPEC=addr_gen_mode_spec())


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


# ---------------------------------------------------------------- routes

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
