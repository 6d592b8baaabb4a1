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
that name what they do raise LinkError with that sentence. pyroute2 is imported when the
first IPRoute socket opens (_pyroute2_dep); the raw readers below never need it.

PRIVATE to the yogurt.phone collection (like community.crypto's module_utils): no public API,
names may change in any release.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ipaddress
import os
import socket
import struct

from ansible_collections.yogurt.phone.plugins.module_utils._netns import IFF_UP, in_netns
from ansible_collections.yogurt.phone.plugins.module_utils import _pyroute2_dep as pyroute2_dep

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
        return pyroute2_dep.require().IPRoute(ext_ack=True)


class LazyIPR:
    """open_ipr(netns), opened on first use: a run that only reads never sets one up."""

    def __init__(self, netns=None):
        self._netns = netns
        self._ipr = None

    def __getattr__(self, name):
        if self._ipr is None:
            self._ipr = open_ipr(self._netns)
        return getattr(self._ipr, name)

    def close(self):
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None


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
    except pyroute2_dep.NetlinkError as exc:
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
    except pyroute2_dep.NetlinkError as exc:
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
    """One device and its addresses (read_namespace()'s dict without 'xdp'), without dumping the namespace."""
    with netlink_errors(f"reading {ifname}"):
        dev = read_link(ipr, ifname=ifname)
        if dev is None:
            raise LinkError(f"reading {ifname}: no such device")
        dev["addresses"] = read_addresses(ipr, dev["index"])
    return dev


# ---------------------------------------------------------------- reading, fast

# A read-only rtnetlink reader with no pyroute2 in the way: a no-op converge of 50 phones
# reads 101 namespaces, and pyroute2's socket set-up and message decoding were most of its
# time (cProfile: read_namespace 1.4 s of 2.9 s). Only what decode_link() reports is parsed.
_NLMSG_HDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTA = struct.Struct("=HH")
_RTM_NEWLINK, _RTM_GETLINK, _RTM_NEWADDR, _RTM_GETADDR = 16, 18, 20, 22
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_DUMP, _NLM_F_EXCL, _NLM_F_CREATE = 0x1, 0x4, 0x300, 0x200, 0x400
_NLM_F_CAPPED, _NLM_F_ACK_TLVS = 0x100, 0x200  # in the flags of an error message
_SOL_NETLINK, _NETLINK_CAP_ACK, _NETLINK_EXT_ACK = 270, 10, 11
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_IFLA = {1: "mac", 3: "ifname", 4: "mtu", 5: "link_index", 18: "linkinfo", 26: "af_spec", 37: "link_netnsid",
         43: "xdp"}


def _attrs(data, offset, end):
    """{type: payload} of the rtattrs in data[offset:end] (nested flag bit cleared)."""
    out = {}
    while offset + 4 <= end:
        length, kind = _RTA.unpack_from(data, offset)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[offset + 4:offset + length]
        offset += (length + 3) & ~3
    return out


def _u32(blob):
    return struct.unpack_from("=I", blob)[0]


class RawNetlinkError(OSError):
    """An rtnetlink request of the raw reader failed: errno, strerror, and `ext_ack`, the
    kernel's extended-ack message (NETLINK_EXT_ACK: 'Unknown device type'), or None."""

    def __init__(self, code, ext_ack=None):
        super().__init__(code, os.strerror(code))
        self.ext_ack = ext_ack


def _ext_ack(flags, body):
    """NLMSGERR_ATTR_MSG of an error message (the request is capped: NETLINK_CAP_ACK), or None."""
    if not flags & _NLM_F_ACK_TLVS:
        return None
    offset = 4 + _NLMSG_HDR.size
    if not flags & _NLM_F_CAPPED:
        offset = 4 + _NLMSG_HDR.unpack_from(body, 4)[0]
    text = _attrs(body, (offset + 3) & ~3, len(body)).get(1)  # NLMSGERR_ATTR_MSG
    return text.split(b"\0", 1)[0].decode(errors="replace") if text else None


def _rtnl(request_type, payload, netns=None, dump=True, flags=0):
    """The payloads (type, bytes) of the answers to one rtnetlink request, in `netns`.

    A failed request raises RawNetlinkError (an OSError) with the kernel's extended ack.
    """
    with in_netns(netns):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
    try:
        for option in (_NETLINK_EXT_ACK, _NETLINK_CAP_ACK):
            try:
                sock.setsockopt(_SOL_NETLINK, option, 1)
            except OSError:  # a kernel older than 4.12: errors without their message
                pass
        flags |= _NLM_F_REQUEST | (_NLM_F_DUMP if dump else 0)
        sock.send(_NLMSG_HDR.pack(_NLMSG_HDR.size + len(payload), request_type, flags, 1, 0) + payload)
        messages = []
        while True:
            data = sock.recv(1 << 20)
            offset = 0
            while offset + _NLMSG_HDR.size <= len(data):
                length, kind, msg_flags, _seq, _pid = _NLMSG_HDR.unpack_from(data, offset)
                if length < _NLMSG_HDR.size:
                    return messages
                body = data[offset + _NLMSG_HDR.size:offset + length]
                offset += (length + 3) & ~3
                if kind == _NLMSG_DONE:
                    return messages
                if kind == _NLMSG_ERROR:
                    code = -struct.unpack_from("=i", body)[0]
                    if code:
                        raise RawNetlinkError(code, _ext_ack(msg_flags, body))
                    return messages
                messages.append((kind, body))
            if not dump:
                return messages
    finally:
        sock.close()


def _decode_link_raw(body):
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(body)
    raw = _attrs(body, _IFINFOMSG.size, len(body))
    got = {name: raw[key] for key, name in _IFLA.items() if key in raw}
    kind = None
    if "linkinfo" in got:
        info = _attrs(got["linkinfo"], 0, len(got["linkinfo"]))
        kind = info.get(1, b"").split(b"\0", 1)[0].decode() or None
    gen_mode = None
    if "af_spec" in got:
        inet6 = _attrs(got["af_spec"], 0, len(got["af_spec"])).get(socket.AF_INET6)
        if inet6 is not None:
            mode = _attrs(inet6, 0, len(inet6)).get(8)  # IFLA_INET6_ADDR_GEN_MODE
            gen_mode = mode[0] if mode else None
    xdp = {"mode": 0, "drv_prog_id": 0, "skb_prog_id": 0}
    if "xdp" in got:
        x = _attrs(got["xdp"], 0, len(got["xdp"]))
        mode = x[2][0] if 2 in x else 0  # IFLA_XDP_ATTACHED
        drv = _u32(x[5]) if 5 in x else 0
        skb = _u32(x[6]) if 6 in x else 0
        one = _u32(x[4]) if 4 in x else 0  # IFLA_XDP_PROG_ID: the only program
        xdp = {"mode": mode, "drv_prog_id": drv or (one if mode == 1 else 0),
               "skb_prog_id": skb or (one if mode == 2 else 0)}
    mac = got.get("mac")
    return {
        "ifname": got["ifname"].split(b"\0", 1)[0].decode() if "ifname" in got else None,
        "index": index,
        "kind": kind,
        "up": bool(flags & IFF_UP),
        "mtu": _u32(got["mtu"]) if "mtu" in got else None,
        "mac": ":".join(f"{b:02x}" for b in mac) if mac else None,
        "link_index": _u32(got["link_index"]) if "link_index" in got else None,
        "link_netnsid": struct.unpack_from("=i", got["link_netnsid"])[0] if "link_netnsid" in got else None,
        "addr_gen_mode": ADDR_GEN_MODES.get(gen_mode, gen_mode),
        "addresses": [],
        "xdp": xdp,
    }


def _rta(kind, payload):
    return _RTA.pack(4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


def create_link_raw(ifname, kind, netns=None):
    """Create device `ifname` of link kind `kind` with the kernel's defaults in `netns` (raw: no
    pyroute2). Raises RawNetlinkError: EOPNOTSUPP with ext_ack 'Unknown device type' when the
    kernel has no such kind (what a probe asks)."""
    linkinfo = _rta(1, kind.encode() + b"\0")  # IFLA_INFO_KIND
    payload = (_IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _rta(3, ifname.encode() + b"\0")  # IFLA_IFNAME
               + _rta(18 | 0x8000, linkinfo))  # IFLA_LINKINFO, nested
    _rtnl(_RTM_NEWLINK, payload, netns, dump=False, flags=_NLM_F_ACK | _NLM_F_CREATE | _NLM_F_EXCL)


def read_namespace(netns=None):
    """One dump of devices and addresses of namespace `netns` (None: this one): {ifname: device dict}.

    The dicts are decode_link()'s, plus 'xdp' ({'mode', 'drv_prog_id', 'skb_prog_id'}, see
    _attach.xdp_query); addresses normalized and sorted.
    """
    devices, by_index = {}, {}
    for _kind, body in _rtnl(_RTM_GETLINK, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0), netns):
        dev = _decode_link_raw(body)
        devices[dev["ifname"]] = dev
        by_index[dev["index"]] = dev
    for _kind, body in _rtnl(_RTM_GETADDR, _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0), netns):
        family, prefixlen, _flags, _scope, index = _IFADDRMSG.unpack_from(body)
        dev = by_index.get(index)
        if dev is None or family not in (socket.AF_INET, socket.AF_INET6):
            continue
        raw = _attrs(body, _IFADDRMSG.size, len(body))
        addr = raw.get(2) or raw.get(1)  # IFA_LOCAL, else IFA_ADDRESS (see _address_of)
        if addr:
            dev["addresses"].append(normalize_cidr(socket.inet_ntop(family, addr), prefixlen))
    for dev in devices.values():
        dev["addresses"] = sort_cidrs(dev["addresses"])
    return devices


def _link_by_name(ifname, netns):
    """The RTM_NEWLINK body of one device by name in `netns`, or None if there is none."""
    name = ifname.encode() + b"\0"
    attr = _RTA.pack(4 + len(name), 3) + name + b"\0" * (-len(name) % 4)  # IFLA_IFNAME
    try:
        answers = _rtnl(_RTM_GETLINK, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr, netns, dump=False)
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            return None
        raise
    return answers[0][1] if answers else None


def read_device_raw(ifname, netns=None):
    """read_namespace()'s dict of one device by name in `netns`, addresses included; None if none."""
    body = _link_by_name(ifname, netns)
    if body is None:
        return None
    dev = _decode_link_raw(body)
    dev["addresses"] = _addresses_raw(netns, dev["index"])
    return dev


# struct rtnl_link_stats64 (linux/if_link.h): the counters a diagnosis reads, by u64 slot.
_STATS64 = {"rx_packets": 0, "tx_packets": 1, "rx_errors": 4, "tx_errors": 5, "rx_dropped": 6, "tx_dropped": 7}
_OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")  # IF_OPER_*


def read_device_state(ifname, netns=None):
    """read_device_raw()'s dict plus what a diagnosis needs: 'carrier', 'operstate' and 'stats'
    (rx/tx packets, errors, dropped); None if there is no such device."""
    body = _link_by_name(ifname, netns)
    if body is None:
        return None
    dev = _decode_link_raw(body)
    dev["addresses"] = _addresses_raw(netns, dev["index"])
    raw = _attrs(body, _IFINFOMSG.size, len(body))
    dev["carrier"] = bool(raw[33][0]) if 33 in raw else False  # IFLA_CARRIER
    oper = raw[16][0] if 16 in raw else None  # IFLA_OPERSTATE
    dev["operstate"] = _OPERSTATES[oper] if oper is not None and oper < len(_OPERSTATES) else oper
    blob = raw.get(23, b"")  # IFLA_STATS64
    dev["stats"] = {key: (struct.unpack_from("=Q", blob, 8 * slot)[0] if len(blob) >= 8 * slot + 8 else 0)
                    for key, slot in _STATS64.items()}
    return dev


def _addresses_raw(netns, index):
    out = []
    for _kind, body in _rtnl(_RTM_GETADDR, _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, index), netns):
        family, prefixlen, _flags, _scope, got = _IFADDRMSG.unpack_from(body)
        if got != index or family not in (socket.AF_INET, socket.AF_INET6):
            continue
        raw = _attrs(body, _IFADDRMSG.size, len(body))
        addr = raw.get(2) or raw.get(1)
        if addr:
            out.append(normalize_cidr(socket.inet_ntop(family, addr), prefixlen))
    return sort_cidrs(out)


def read_link_raw(index, netns=None):
    """_decode_link_raw() of one device by ifindex in `netns`, or None if there is none."""
    try:
        answers = _rtnl(_RTM_GETLINK, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0), netns, dump=False)
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            return None
        raise
    return _decode_link_raw(answers[0][1]) if answers else None


# ---------------------------------------------------------------- addresses

# Cached: a no-op re-run of 50 phones parses the same few hundred addresses ~1700 times
# (wanted and read, normalized and sorted), ~18 us each through ipaddress.
@functools.lru_cache(maxsize=4096)
def _cidr(text):
    iface = ipaddress.ip_interface(text)
    return iface.with_prefixlen, (iface.version, iface)


def normalize_cidr(address, prefixlen=None):
    text = address if prefixlen is None else f"{address}/{prefixlen}"
    return _cidr(text)[0] if isinstance(text, str) else ipaddress.ip_interface(text).with_prefixlen


def sort_cidrs(cidrs):
    """Normalized, without duplicates, IPv4 before IPv6, in address order."""
    unique = {normalize_cidr(c) for c in cidrs}
    return sorted(unique, key=lambda c: _cidr(c)[1])


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

_RTMSG = struct.Struct("=BBBBBBBBI")
_RTM_GETROUTE = 24 + 2


def routes_by_device(netns=None):
    """Every route of every table and family, by output ifindex: {oif: [route dict]} (one dump).

    Parsed without pyroute2: a host with a full routing table answers a million routes, of
    which none may name a phone's device; only RTA_OIF, RTA_DST and RTA_TABLE are read.
    """
    routes = {}
    for _kind, body in _rtnl(_RTM_GETROUTE, _RTMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0, 0), netns):
        family, dst_len, _src_len, _tos, table, proto, scope, rtype, _flags = _RTMSG.unpack_from(body)
        raw = _attrs(body, _RTMSG.size, len(body))
        # Routes the kernel made for an address (proto kernel) come and go with it; the
        # address itself is what gets reported and removed. Multipath routes carry no RTA_OIF.
        if 4 not in raw or proto == RTPROT_KERNEL or family not in (socket.AF_INET, socket.AF_INET6):
            continue
        oif = _u32(raw[4])
        dst = socket.inet_ntop(family, raw[1]) if 1 in raw else ("0.0.0.0" if family == socket.AF_INET else "::")
        table = _u32(raw[15]) if 15 in raw else table  # RTA_TABLE
        routes.setdefault(oif, []).append({
            "family": family, "dst": dst, "dst_len": dst_len, "table": table, "oif": oif,
            "type": rtype, "scope": scope, "text": f"{dst}/{dst_len} (table {table})",
        })
    return routes


def default_gateways(netns=None):
    """{4: ip, 6: ip}: the gateway of the first default route of the main table per family (one dump each)."""
    found = {}
    for family, version in ((socket.AF_INET, 4), (socket.AF_INET6, 6)):
        try:
            answers = _rtnl(_RTM_GETROUTE, _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0), netns)
        except OSError:  # a kernel without the family (no IPv6): no gateway of that family
            continue
        for _kind, body in answers:
            got_family, dst_len, _src_len, _tos, table, _proto, _scope, _type, _flags = _RTMSG.unpack_from(body)
            raw = _attrs(body, _RTMSG.size, len(body))
            table = _u32(raw[15]) if 15 in raw else table  # RTA_TABLE
            if got_family == family and dst_len == 0 and table == 254 and 5 in raw:  # RTA_GATEWAY
                found.setdefault(version, socket.inet_ntop(family, raw[5]))
    return found


_NDMSG = struct.Struct("=BxxxiHBB")
_RTM_GETNEIGH = 30


def neighbour_entries(netns=None):
    """Every neighbour entry of namespace `netns`: [(ifindex, dst ip or None, lladdr 'aa:bb:..' or '')] (one dump)."""
    entries = []
    for _kind, body in _rtnl(_RTM_GETNEIGH, _NDMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0), netns):
        family, ifindex, _state, _flags, _type = _NDMSG.unpack_from(body)
        raw = _attrs(body, _NDMSG.size, len(body))
        dst = raw.get(1)  # NDA_DST
        dst = socket.inet_ntop(family, dst) if dst and family in (socket.AF_INET, socket.AF_INET6) else None
        mac = ":".join(f"{b:02x}" for b in raw[2]) if raw.get(2) else ""  # NDA_LLADDR
        entries.append((ifindex, dst, mac))
    return entries


def delete_route(ipr, route):
    try:
        ipr.route("del", family=route["family"], dst=route["dst"], dst_len=route["dst_len"],
                  oif=route["oif"], table=route["table"], type=route["type"], scope=route["scope"])
    except pyroute2_dep.NetlinkError as exc:
        if exc.code != errno.ESRCH:  # already gone (with its device or address) is what we want
            raise LinkError(f"removing route {route['text']}: {exc}") from None
