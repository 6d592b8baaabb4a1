# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""netkit pairs over rtnetlink (pyroute2).

One concern: read, create, change and delete netkit pairs, and probe what the running
kernel supports. pyroute2 0.9.7 has no netkit link kind, so this file registers one
(process-wide, once). The peer info (IFLA_NETKIT_PEER_INFO) is a full nested ifinfomsg,
the same shape pyroute2 uses for veth's peer; the peer's name must be an IFLA_IFNAME
attribute in it (a plain key is silently ignored by the kernel).

The host side of a pair stays in the caller's network namespace and never carries an
address: IPv6 address generation is turned off on it (addr_gen_mode none) and any
address found on it is removed and reported. The peer side may live in a named
namespace (/run/netns/<name>); it is read and changed from inside that namespace.

`converge_netkit()` and `remove_netkit()` are the plain API the modules call: no
AnsibleModule in here. Errors are NetkitError with a sentence that names the pair, the
attribute and the fix.

PRIVATE to the yogurt.phone collection (like community.crypto's module_utils): no public API,
names may change in any release.
"""

from __future__ import annotations

import contextlib
import errno
import os
import platform
import threading
import uuid

from ansible_collections.yogurt.phone.plugins.module_utils._netlink import (
    add_address,
    addr_gen_mode_spec,
    create_link_raw,
    delete_address,
    ipr_in,
    is_link_local6,
    managed_addresses,
    netlink_text,
    normalize_cidr,
    read_addresses,
    read_link,
    sort_cidrs,
)
from ansible_collections.yogurt.phone.plugins.module_utils._netns import (
    NetnsError,
    create_netns,
    delete_netns,
    list_netns,
    netns_exists,
    netns_path,
)
from ansible_collections.yogurt.phone.plugins.module_utils._names import ifname_problem, netns_problem
from ansible_collections.yogurt.phone.plugins.module_utils import _pyroute2_dep as pyroute2_dep

KIND = "netkit"

# include/uapi/linux/if_link.h
MODES = {"l2": 0, "l3": 1}                   # NETKIT_L2, NETKIT_L3
POLICIES = {"forward": 0, "blackhole": 2}    # NETKIT_PASS, NETKIT_DROP
SCRUBS = {"none": 0, "default": 1}           # NETKIT_SCRUB_NONE, NETKIT_SCRUB_DEFAULT
PAIRINGS = {"pair": 0, "single": 1}          # NETKIT_DEVICE_PAIR, NETKIT_DEVICE_SINGLE (Linux >= 7.1)

# What needs which kernel; named in the errors a user sees.
NETKIT_NEEDS = "Linux >= 6.7 with CONFIG_NETKIT=y"
SCRUB_NEEDS = "Linux >= 6.13 (or a kernel with the netkit scrub backport, such as Debian's 6.12)"
ROOM_NEEDS = "Linux >= 6.14"
PAIRING_NEEDS = "Linux >= 7.1"

# Attributes the kernel fixes at creation ("... cannot be changed after device creation").
RECREATE_ATTRIBUTES = ("pairing", "peer_ifname", "peer_netns", "mode", "scrub", "peer_scrub", "headroom",
                       "tailroom")
# What a single device (pairing single) cannot have: it has no peer.
PEER_ONLY = ("peer_ifname", "peer_netns", "peer_policy", "peer_scrub")

DEFAULTS = {
    "pairing": "pair",
    "peer_netns": None,
    "mode": "l3",
    # None: blackhole on a pair; forward on a single device, the only policy the kernel takes there.
    "policy": None,
    "peer_policy": "blackhole",
    "scrub": "default",
    "peer_scrub": "default",
    "headroom": None,
    "tailroom": None,
    "mtu": None,
    "peer_addresses": [],
    "up": True,
    # True: report addresses found on the host side but leave them (the phone's
    # host_addresses: report); the default removes them.
    "keep_host_addresses": False,
}


class NetkitError(Exception):
    """A netkit operation failed or was refused; the message says what, where and how to fix it."""


class NetkitUnavailable(NetkitError):
    """The running kernel has no netkit, or lacks a netkit feature that was asked for."""


def kernel_release():
    return platform.release()


def no_netkit_message(release=None):
    release = release or kernel_release()
    return (f"netkit is not available on this host (Linux {release}, CONFIG_NETKIT missing or Linux < 6.7): "
            f"use backend: veth, or a kernel >= 6.7 with CONFIG_NETKIT=y")


# ---------------------------------------------------------------------------------------
# The pyroute2 link kind
# ---------------------------------------------------------------------------------------

_kind_classes = {}
_registered = False
_register_lock = threading.Lock()


def netkit_kind_classes():
    """{'NetkitData', 'NetkitPeerInfo'}: the pyroute2 classes of the netkit kind, built on first use
    (their bases are pyroute2's, and importing pyroute2 is most of a module's start-up)."""
    with _register_lock:
        if not _kind_classes:
            names = pyroute2_dep.require()

            class NetkitPeerInfo(names.ifinfbase, names.nla):
                """IFLA_NETKIT_PEER_INFO: a whole ifinfomsg (header fields + IFLA_* attributes)."""

            class NetkitData(names.nla):
                """IFLA_INFO_DATA of kind netkit."""

                prefix = "IFLA_NETKIT_"
                nla_map = (
                    ("IFLA_NETKIT_UNSPEC", "none"),
                    ("IFLA_NETKIT_PEER_INFO", "peer_info"),
                    ("IFLA_NETKIT_PRIMARY", "uint8"),
                    ("IFLA_NETKIT_POLICY", "uint32"),
                    ("IFLA_NETKIT_PEER_POLICY", "uint32"),
                    ("IFLA_NETKIT_MODE", "uint32"),
                    ("IFLA_NETKIT_SCRUB", "uint32"),
                    ("IFLA_NETKIT_PEER_SCRUB", "uint32"),
                    ("IFLA_NETKIT_HEADROOM", "uint16"),
                    ("IFLA_NETKIT_TAILROOM", "uint16"),
                    ("IFLA_NETKIT_PAIRING", "uint32"),
                )

                @staticmethod
                def peer_info(nla, *argv, **kwarg):  # pylint: disable=unused-argument
                    return NetkitPeerInfo

            _kind_classes.update(NetkitData=NetkitData, NetkitPeerInfo=NetkitPeerInfo)
        return dict(_kind_classes)


def __getattr__(name):
    # NetkitData and NetkitPeerInfo, as module attributes, built on first access.
    if name in ("NetkitData", "NetkitPeerInfo"):
        return netkit_kind_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register_netkit_kind(ipr):
    """Teach pyroute2 the netkit kind (process-wide; later calls do nothing)."""
    global _registered
    data = netkit_kind_classes()["NetkitData"]
    with _register_lock:
        if not _registered:
            ipr.register_link_kind(module={KIND: data})
            _registered = True


def _require_pyroute2():
    if not pyroute2_dep.has_pyroute2():
        raise NetkitError(pyroute2_dep.missing_pyroute2_message())


@contextlib.contextmanager
def _rtnl(netns=None):
    """An rtnetlink socket that knows the netkit kind, in named namespace `netns` (None: the current one)."""
    _require_pyroute2()
    try:
        with ipr_in(netns) as ipr:
            register_netkit_kind(ipr)
            yield ipr
    except NetnsError as exc:
        raise NetkitError(str(exc)) from None


# ---------------------------------------------------------------------------------------
# Messages: build (create/change) and decode (dump)
# ---------------------------------------------------------------------------------------

def linkinfo(data_attrs):
    """IFLA_LINKINFO of kind netkit carrying `data_attrs` as IFLA_INFO_DATA."""
    info = [("IFLA_INFO_KIND", KIND)]
    if data_attrs:
        info.append(("IFLA_INFO_DATA", {"attrs": list(data_attrs)}))
    return {"attrs": info}


def create_request(want, peer_netns_fd=None, features=None):
    """Keyword arguments for IPRoute.link('add', ...) that create the pair `want`.

    `features` is the probe's finding; attributes the kernel does not know are left out
    (their default values need no attribute), so the same request works on 6.7 .. 6.14+.
    """
    features = features or {"scrub": True, "headroom": True, "tailroom": True, "pairing": True}
    single = want["pairing"] == "single"
    data = [] if single else [("IFLA_NETKIT_PEER_INFO", {"attrs": _peer_info(want, peer_netns_fd)})]
    data.append(("IFLA_NETKIT_MODE", MODES[want["mode"]]))
    data.append(("IFLA_NETKIT_POLICY", POLICIES[want["policy"]]))
    # A single device refuses every peer attribute, and scrub too (EOPNOTSUPP; seen on 7.3).
    if not single:
        data.append(("IFLA_NETKIT_PEER_POLICY", POLICIES[want["peer_policy"]]))
    if features.get("scrub") and not single:
        data.append(("IFLA_NETKIT_SCRUB", SCRUBS[want["scrub"]]))
        data.append(("IFLA_NETKIT_PEER_SCRUB", SCRUBS[want["peer_scrub"]]))
    if want["headroom"] is not None:
        data.append(("IFLA_NETKIT_HEADROOM", want["headroom"]))
    if want["tailroom"] is not None:
        data.append(("IFLA_NETKIT_TAILROOM", want["tailroom"]))
    # An older kernel ignores the attribute and makes a pair, which is what 'pair' asks;
    # require_features() refuses 'single' there before anything is sent.
    if features.get("pairing"):
        data.append(("IFLA_NETKIT_PAIRING", PAIRINGS[want["pairing"]]))
    request = {"ifname": want["host_ifname"], "IFLA_LINKINFO": linkinfo(data)}
    if want["mtu"] is not None:
        request["mtu"] = want["mtu"]
    return request


def _peer_info(want, peer_netns_fd):
    peer = [("IFLA_IFNAME", want["peer_ifname"])]
    if want["mtu"] is not None:
        peer.append(("IFLA_MTU", want["mtu"]))
    if peer_netns_fd is not None:
        peer.append(("IFLA_NET_NS_FD", peer_netns_fd))
    return peer


def policy_request(index, policy=None, peer_policy=None):
    """Keyword arguments for IPRoute.link('set', ...) that change the policies in place.

    Only through the primary device, and only with the kind named: a change without
    IFLA_INFO_KIND is silently ignored by the kernel.
    """
    data = []
    if policy is not None:
        data.append(("IFLA_NETKIT_POLICY", POLICIES[policy]))
    if peer_policy is not None:
        data.append(("IFLA_NETKIT_PEER_POLICY", POLICIES[peer_policy]))
    return {"index": index, "IFLA_LINKINFO": linkinfo(data)}


def _name_of(table, value):
    if value is None:
        return None
    for name, number in table.items():
        if number == value:
            return name
    return str(value)


def decode_netkit_data(kind, data):
    """The netkit attributes of a link (decode_link's decode_data): all None on other kinds."""
    def netkit(name):
        return data.get_attr(name) if kind == KIND and data is not None else None

    primary = netkit("IFLA_NETKIT_PRIMARY")
    return {
        "primary": None if primary is None else bool(primary),
        "mode": _name_of(MODES, netkit("IFLA_NETKIT_MODE")),
        "policy": _name_of(POLICIES, netkit("IFLA_NETKIT_POLICY")),
        "peer_policy": _name_of(POLICIES, netkit("IFLA_NETKIT_PEER_POLICY")),
        "scrub": _name_of(SCRUBS, netkit("IFLA_NETKIT_SCRUB")),
        "peer_scrub": _name_of(SCRUBS, netkit("IFLA_NETKIT_PEER_SCRUB")),
        "headroom": netkit("IFLA_NETKIT_HEADROOM"),
        "tailroom": netkit("IFLA_NETKIT_TAILROOM"),
        "pairing": _name_of(PAIRINGS, netkit("IFLA_NETKIT_PAIRING")),
    }


# ---------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------

def _get_link(ipr, ifname=None, index=None):
    return read_link(ipr, ifname=ifname, index=index, decode_data=decode_netkit_data)


def _netns_name_for_nsid(ipr, nsid, hint=None):
    """Which /run/netns/<name> the current namespace knows as `nsid` (None if unnamed)."""
    names = ([hint] if hint else []) + [n for n in list_netns() if n != hint]
    for name in names:
        try:
            fd = os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            found = ipr.get_netnsid(fd=fd)
        finally:
            os.close(fd)
        if found and found.get("nsid") == nsid:
            return name
    return None


def read_pair(host_ifname, peer_netns_hint=None):
    """The pair whose primary (host side) is `host_ifname` in the current namespace, or None.

    Raises NetkitError if that name is taken by something that is not a netkit primary.
    """
    with _rtnl() as ipr:
        host = _get_link(ipr, ifname=host_ifname)
        if host is None:
            return None
        if host["kind"] != KIND:
            raise NetkitError(
                f"device '{host_ifname}' exists and is {_kind_text(host['kind'])}, not a netkit pair: "
                f"this collection never deletes devices it did not make; remove or rename it, or choose "
                f"another host_ifname")
        if host["primary"] is False:
            raise NetkitError(
                f"device '{host_ifname}' is the peer side of a netkit pair, not its primary (host side): "
                f"name the primary device as host_ifname")
        pair = {
            "host_ifname": host_ifname,
            "host_ifindex": host["index"],
            "peer_ifindex": host["link_index"],
            "peer_netnsid": host["link_netnsid"],
            "peer_netns": None,
            "peer_ifname": None,
            "mode": host["mode"],
            "policy": host["policy"],
            "peer_policy": host["peer_policy"],
            "scrub": host["scrub"],
            "peer_scrub": host["peer_scrub"],
            "headroom": host["headroom"],
            "tailroom": host["tailroom"],
            "pairing": host["pairing"],
            "mtu": host["mtu"],
            "up": host["up"],
            "host_addresses": read_addresses(ipr, host["index"]),
            "host_addr_gen_mode": host["addr_gen_mode"],
            "peer_mtu": None,
            "peer_up": None,
            "peer_addresses": [],
        }
        if pair["peer_netnsid"] is not None:
            pair["peer_netns"] = _netns_name_for_nsid(ipr, pair["peer_netnsid"], peer_netns_hint)
            if pair["peer_netns"] is None:
                # The peer sits in a namespace without a name under /run/netns: not ours to enter.
                pair["peer_netns"] = f"(unnamed, nsid {pair['peer_netnsid']})"
                return pair
    with _rtnl(pair["peer_netns"]) as pipr:
        peer = _get_link(pipr, index=pair["peer_ifindex"]) if pair["peer_ifindex"] else None
        if peer is not None:
            pair.update(peer_ifname=peer["ifname"], peer_mtu=peer["mtu"], peer_up=peer["up"],
                        peer_addresses=read_addresses(pipr, peer["index"]))
    return pair


def _kind_text(kind):
    return f"a '{kind}' device" if kind else "a device without a link kind (a physical NIC or loopback?)"


# ---------------------------------------------------------------------------------------
# Probing the kernel
# ---------------------------------------------------------------------------------------

_probe_cache = None
_probe_lock = threading.Lock()


def probe_netkit(refresh=False):
    """What the running kernel supports, found by trying it (Cilium style).

    Creates a netkit pair with scrub none, a 64-byte headroom/tailroom and pairing pair
    (IFLA_NETKIT_PAIRING) in a throwaway namespace, reads it back and removes the namespace
    (and the pair with it). Returns {kernel, netkit, scrub, headroom, tailroom, pairing,
    detail}; cached for the process.
    """
    global _probe_cache
    with _probe_lock:
        if _probe_cache is None or refresh:
            _probe_cache = _probe()
        return dict(_probe_cache)


def _probe():
    _require_pyroute2()
    facts = {"kernel": kernel_release(), "netkit": False, "scrub": False, "headroom": False,
             "tailroom": False, "pairing": False, "detail": ""}
    scratch = f"ygnk-probe-{uuid.uuid4().hex[:10]}"
    want = dict(DEFAULTS, host_ifname="probe-host", peer_ifname="probe-peer",
                policy="forward", peer_policy="forward", scrub="none", peer_scrub="none",
                headroom=64, tailroom=64)
    try:
        create_netns(scratch)
    except NetnsError as exc:
        raise NetkitError(f"probing netkit support: could not make a scratch namespace: {exc}") from None
    try:
        # First with the raw reader's one request (no pyroute2): a kernel without netkit
        # answers EOPNOTSUPP, and the probe is done without importing pyroute2.
        try:
            create_link_raw("probe-kind", KIND, scratch)
        except OSError as exc:
            if exc.errno == errno.EOPNOTSUPP:
                text = getattr(exc, "ext_ack", None)
                reason = os.strerror(exc.errno)
                facts["detail"] = f"creating a netkit device failed: {reason} ({text})" if text and text != reason \
                    else f"creating a netkit device failed: {reason}"
                return facts
        with _rtnl(scratch) as ipr:
            try:
                ipr.link("add", **create_request(want))
            except pyroute2_dep.NetlinkError as exc:
                if exc.code == errno.EOPNOTSUPP:
                    facts["detail"] = f"creating a netkit device failed: {netlink_text(exc)}"
                    return facts
                raise NetkitError(f"probing netkit support: creating a test pair failed: "
                                  f"{netlink_text(exc)}") from None
            got = _get_link(ipr, ifname="probe-host")
            facts["netkit"] = True
            # Attributes above the kernel's IFLA_NETKIT_MAX are ignored without an error,
            # so support shows only in what the kernel reports back.
            facts["scrub"] = got["scrub"] == "none" and got["peer_scrub"] == "none"
            facts["headroom"] = got["headroom"] == 64
            facts["tailroom"] = got["tailroom"] == 64
            facts["pairing"] = got["pairing"] == "pair"
            facts["detail"] = "netkit pair created and read back in a scratch namespace"
    finally:
        delete_netns(scratch)
    return facts


def _features_of(pair):
    """What a kernel supports, read off an existing pair (no probe needed)."""
    # A single device reports no scrub setting; a kernel that makes one (7.1) has scrub (6.13).
    return {"netkit": True, "scrub": pair["scrub"] is not None or pair["pairing"] == "single",
            "headroom": pair["headroom"] is not None, "tailroom": pair["tailroom"] is not None,
            "pairing": pair["pairing"] is not None,
            "kernel": kernel_release(), "detail": f"read off the existing pair {pair['host_ifname']}"}


def require_features(want, features):
    """Raise NetkitUnavailable if `want` needs something the kernel lacks."""
    release = features["kernel"]
    if not features["netkit"]:
        raise NetkitUnavailable(no_netkit_message(release))
    if not features["scrub"]:
        asked = [k for k in ("scrub", "peer_scrub") if want[k] != "default"]
        if asked:
            raise NetkitUnavailable(
                f"netkit pair {want['host_ifname']}: {'/'.join(asked)}: none is not supported by this kernel "
                f"(Linux {release}: a netkit pair made with scrub none reported no scrub setting): "
                f"leave scrub and peer_scrub at 'default', or use {SCRUB_NEEDS}")
    for room in ("headroom", "tailroom"):
        if want[room] is not None and not features[room]:
            raise NetkitUnavailable(
                f"netkit pair {want['host_ifname']}: {room} is not supported by this kernel "
                f"(Linux {release} does not report IFLA_NETKIT_{room.upper()} for netkit devices, so it would "
                f"ignore the setting): "
                f"leave {room} unset, or use {ROOM_NEEDS}")
    if want["pairing"] == "single" and not features.get("pairing"):
        raise NetkitUnavailable(
            f"netkit pair {want['host_ifname']}: pairing: single is not supported by this kernel "
            f"(Linux {release} does not report IFLA_NETKIT_PAIRING for netkit devices, so it would make a pair "
            f"instead): leave pairing at 'pair', or use {PAIRING_NEEDS}")


# ---------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------

def _pairing_problems(spec, want):
    """Fill in what depends on the pairing (policy; no peer attributes on a single device) and
    list what a single device cannot have."""
    if want["pairing"] != "single":
        want["policy"] = want["policy"] or "blackhole"
        return [] if want["pairing"] in PAIRINGS else [f"pairing: {want['pairing']!r} is not one of pair, single"]
    problems = [f"{field}: a single netkit device (pairing: single) has no peer: leave {field} unset, "
                f"or use pairing: pair" for field in PEER_ONLY + ("peer_addresses",) if spec.get(field)]
    want["policy"] = want["policy"] or "forward"
    if want["policy"] != "forward":
        problems.append(f"policy: a single netkit device (pairing: single) takes only policy forward (the kernel "
                        f"refuses {want['policy']!r} there): set policy: forward, or use pairing: pair")
    if want["scrub"] != "default":
        problems.append("scrub: a single netkit device (pairing: single) takes no scrub setting (the kernel refuses "
                        "it and reports none): leave scrub at 'default', or use pairing: pair")
    want.update(peer_ifname=None, peer_policy=None, scrub=None, peer_scrub=None)
    return problems


def normalize_spec(spec):
    """`spec` with defaults filled in and addresses normalized; NetkitError lists every problem."""
    want = dict(DEFAULTS)
    want.update({k: v for k, v in spec.items() if v is not None})
    if spec.get("peer_addresses") is None:
        want["peer_addresses"] = []
    problems = _pairing_problems(spec, want)
    for field in ("host_ifname",) if want["pairing"] == "single" else ("host_ifname", "peer_ifname"):
        reason = ifname_problem(want.get(field))
        if field == "peer_ifname" and want.get(field) is None:
            reason = "a pair needs its peer's name (required with state: present, unless pairing: single)"
        if reason:
            problems.append(f"{field}: {reason}")
    if want["peer_netns"] is not None:
        reason = netns_problem(want["peer_netns"])
        if reason:
            problems.append(f"peer_netns: {reason}")
    elif want.get("host_ifname") == want.get("peer_ifname"):
        problems.append("peer_ifname: equals host_ifname and both sides would be in the same namespace; "
                        "choose another name or set peer_netns")
    for field, table in (("mode", MODES), ("policy", POLICIES), ("peer_policy", POLICIES),
                         ("scrub", SCRUBS), ("peer_scrub", SCRUBS)):
        if want[field] is not None and want[field] not in table:  # None: the peer of a single device
            problems.append(f"{field}: '{want[field]}' is not one of {', '.join(table)}")
    for field, low, high in (("headroom", 0, 65535), ("tailroom", 0, 65535), ("mtu", 68, 65535)):
        value = want[field]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high):
            problems.append(f"{field}: {value!r} is not an integer from {low} to {high}")
    if not isinstance(want["up"], bool):
        problems.append(f"up: {want['up']!r} is not true or false")
    cidrs = []
    addresses = want["peer_addresses"]
    if not isinstance(addresses, (list, tuple)):
        problems.append(f"peer_addresses: {addresses!r} is not a list of CIDR addresses")
        addresses = []
    for address in addresses:
        if not isinstance(address, str) or "/" not in address:
            problems.append(f"peer_addresses: {address!r} is not an address with a prefix length "
                            f"(write it as 10.42.0.1/24 or fd00::1/64)")
            continue
        try:
            cidrs.append(normalize_cidr(address))
        except ValueError as exc:
            problems.append(f"peer_addresses: {address!r} is not a CIDR address ({exc})")
    want["peer_addresses"] = sort_cidrs(cidrs)
    if problems:
        where = f"netkit pair {spec.get('host_ifname')!r}"
        raise NetkitError(f"{where}: " + "; ".join(problems))
    return want


# ---------------------------------------------------------------------------------------
# Converging
# ---------------------------------------------------------------------------------------

COMPARED = ("state", "pairing", "peer_ifname", "peer_netns", "mode", "policy", "peer_policy", "scrub", "peer_scrub",
            "headroom", "tailroom", "mtu", "peer_mtu", "up", "peer_up", "peer_addresses", "host_addresses",
            "host_addr_gen_mode")


def _absent_state():
    return dict({k: None for k in COMPARED}, state="absent", peer_addresses=[], host_addresses=[])


def comparable(pair, keep_link_local=()):
    """The before/after view of a pair: what a diff shows (no ifindexes, they change)."""
    if pair is None:
        return _absent_state()
    view = {k: pair.get(k) for k in COMPARED}
    view["state"] = "present"
    # The kernel may give the peer an IPv6 link-local address of its own; it is not managed.
    view["peer_addresses"] = managed_addresses(pair["peer_addresses"], keep=keep_link_local)
    return view


def _recreate_reasons(before, want):
    reasons = []
    for key in RECREATE_ATTRIBUTES:
        wanted = want[key]
        if key in ("headroom", "tailroom") and wanted is None:
            continue
        if key in ("scrub", "peer_scrub") and before[key] is None and wanted == "default":
            continue  # kernel without scrub support behaves as 'default'
        if key == "pairing" and before[key] is None and wanted == "pair":
            continue  # kernel before 7.1: every netkit device is a pair
        if before[key] != wanted:
            reasons.append((key, before[key], wanted))
    return reasons


def _predict_created(want, features):
    single = want["pairing"] == "single"
    after = dict(_absent_state(), state="present", peer_ifname=want["peer_ifname"], peer_netns=want["peer_netns"],
                 mode=want["mode"], policy=want["policy"], peer_policy=want["peer_policy"],
                 headroom=want["headroom"], tailroom=want["tailroom"], mtu=want["mtu"],
                 peer_mtu=None if single else want["mtu"], up=False, peer_up=None if single else False,
                 host_addr_gen_mode="(kernel default)")
    if features.get("scrub") and not single:
        after.update(scrub=want["scrub"], peer_scrub=want["peer_scrub"])
    if features.get("pairing"):
        after.update(pairing=want["pairing"])
    return after


def _plan_in_place(current, want):
    """Steps (description, kind, argument) that turn `current` into `want` without recreating."""
    steps = []
    if current["policy"] != want["policy"] or current["peer_policy"] != want["peer_policy"]:
        steps.append((f"set policy {want['policy']}, peer_policy {want['peer_policy']} "
                      f"(was {current['policy']}, {current['peer_policy']})", "policy", None))
    if current["host_addr_gen_mode"] not in ("none", None):  # None: no IPv6 on this host
        steps.append((f"set IPv6 addr_gen_mode none on {want['host_ifname']} (was {current['host_addr_gen_mode']})",
                      "addr_gen_mode", None))
    for cidr in [] if want["keep_host_addresses"] else current["host_addresses"]:
        steps.append((f"remove host-side address {cidr} from {want['host_ifname']}", "host_addr_del", cidr))
    if want["mtu"] is not None and current["mtu"] != want["mtu"]:
        steps.append((f"set mtu {want['mtu']} on {want['host_ifname']} (was {current['mtu']})", "mtu", None))
    single = want["pairing"] == "single"  # no peer: nothing to change on one
    if want["mtu"] is not None and not single and current["peer_mtu"] != want["mtu"]:
        steps.append((f"set mtu {want['mtu']} on {want['peer_ifname']} (was {current['peer_mtu']})",
                      "peer_mtu", None))
    for cidr in current["peer_addresses"]:
        if cidr not in want["peer_addresses"]:
            steps.append((f"remove address {cidr} from {want['peer_ifname']}", "peer_addr_del", cidr))
    for cidr in want["peer_addresses"]:
        if cidr not in current["peer_addresses"]:
            steps.append((f"add address {cidr} to {want['peer_ifname']}", "peer_addr_add", cidr))
    state = "up" if want["up"] else "down"
    if not single and current["peer_up"] != want["up"]:
        steps.append((f"set {want['peer_ifname']} {state}", "peer_up", None))
    if current["up"] != want["up"]:
        steps.append((f"set {want['host_ifname']} {state}", "up", None))
    return steps


def _predict_in_place(current, want):
    after = dict(current)
    after.update(policy=want["policy"], peer_policy=want["peer_policy"],
                 host_addresses=list(current["host_addresses"]) if want["keep_host_addresses"] else [],
                 host_addr_gen_mode=None if current["host_addr_gen_mode"] is None else "none",
                 peer_addresses=list(want["peer_addresses"]), up=want["up"], peer_up=want["up"])
    if want["mtu"] is not None:
        after.update(mtu=want["mtu"], peer_mtu=want["mtu"])
    if want["pairing"] == "single":
        after.update(peer_up=None, peer_mtu=None)
    return after


def _open_netns_fd(name):
    try:
        return os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NetkitError(f"peer_netns: network namespace '{name}' does not exist ({netns_path(name)} is missing): "
                          f"create it first (yogurt.phone.netns)") from None


def _create(want, features):
    fd = _open_netns_fd(want["peer_netns"]) if want["peer_netns"] else None
    try:
        with _rtnl() as ipr:
            ipr.link("add", **create_request(want, peer_netns_fd=fd, features=features))
    finally:
        if fd is not None:
            os.close(fd)


def _delete(host_ifname):
    with _rtnl() as ipr:
        index = ipr.link_lookup(ifname=host_ifname)
        if index:
            ipr.link("del", index=index[0])


def _apply_in_place(pair, want, steps):
    host, host_index, peer_index = want["host_ifname"], pair["host_ifindex"], pair["peer_ifindex"]
    updown = "up" if want["up"] else "down"
    host_ops = {
        "policy": lambda ipr, _: ipr.link("set", **policy_request(host_index, want["policy"], want["peer_policy"])),
        "addr_gen_mode": lambda ipr, _: ipr.link("set", index=host_index, IFLA_AF_SPEC=addr_gen_mode_spec()),
        "host_addr_del": lambda ipr, cidr: delete_address(ipr, host_index, cidr),
        "mtu": lambda ipr, _: ipr.link("set", index=host_index, mtu=want["mtu"]),
    }
    peer_ops = {
        "peer_mtu": lambda ipr, _: ipr.link("set", index=peer_index, mtu=want["mtu"]),
        "peer_addr_del": lambda ipr, cidr: delete_address(ipr, peer_index, cidr),
        "peer_addr_add": lambda ipr, cidr: add_address(ipr, peer_index, cidr),
        "peer_up": lambda ipr, _: ipr.link("set", index=peer_index, state=updown),
    }
    # Host side first (policy, no IPv6 address generation, no addresses), then the peer
    # inside its namespace, and the host side comes up last.
    with _rtnl() as ipr:
        for description, kind, arg in steps:
            if kind in host_ops:
                _step(host, description, host_ops[kind], ipr, arg)
    if any(kind in peer_ops for _desc, kind, _arg in steps):
        with _rtnl(want["peer_netns"]) as ipr:
            for description, kind, arg in steps:
                if kind in peer_ops:
                    _step(host, description, peer_ops[kind], ipr, arg)
    for description, kind, _arg in steps:
        if kind == "up":
            with _rtnl() as ipr:
                _step(host, description, ipr.link, "set", index=host_index, state=updown)


def _netlink_error(where, exc):
    return NetkitError(f"netkit pair {where}: {netlink_text(exc)}")


def converge_netkit(spec, check_mode, recreate=False, peer_leaves=False):
    """Make the pair described by `spec` exist as described.

    Returns {changed, before, after, actions, netkit, warnings}. `before`/`after` are the
    diff views (comparable()); `netkit` is the pair as read after the run (ifindexes
    included), or the prediction in check mode. `peer_leaves`: in check mode, a device that
    holds the peer's name now goes before the pair is made (the phones module moving a phone
    between layouts deletes the old pair first), so it is no conflict.
    """
    want = normalize_spec(spec)
    host = want["host_ifname"]
    try:
        return _converge(want, check_mode, recreate, peer_leaves)
    except pyroute2_dep.NetlinkError as exc:
        raise _netlink_error(host, exc) from None


def _converge(want, check_mode, recreate, peer_leaves=False):
    host = want["host_ifname"]
    keep_ll = [a for a in want["peer_addresses"] if is_link_local6(a)]
    pair = read_pair(host, want["peer_netns"])
    before = comparable(pair, keep_ll)
    actions, warnings = [], []

    # What the kernel supports: read off the existing pair, or probed before creating one.
    features = probe_netkit() if pair is None else _features_of(pair)
    require_features(want, features)
    reasons = _recreate_reasons(before, want) if pair is not None else []
    if reasons and not recreate:
        _refuse_recreate(host, reasons)
    if before["host_addresses"]:
        verb = ("were left as asked (host_addresses: report)" if want["keep_host_addresses"] else
                "would be removed" if check_mode else "were removed")
        warnings.append(f"netkit pair {host}: the host side carried addresses {', '.join(before['host_addresses'])}; "
                        f"they {verb} (the host side of a pair must have no address)")

    current = before
    if pair is None or reasons:
        pair, current = _create_pair(want, pair, before, reasons, features, check_mode, actions, peer_leaves)
        if pair is not None:
            current = comparable(pair, keep_ll)

    steps = _plan_in_place(current, want)
    actions.extend(desc for desc, _kind, _arg in steps)
    predicted = _predict_in_place(current, want)
    if check_mode:
        # A pair that stays keeps its ifindexes (the phone converge inspects its wire by them);
        # one that would be created or recreated has none yet.
        kept = {"host_ifindex": pair["host_ifindex"], "peer_ifindex": pair["peer_ifindex"]} \
            if pair is not None and not reasons else {}
        return {"changed": bool(actions), "before": before, "after": predicted, "actions": actions,
                "netkit": dict(predicted, host_ifname=host, **kept), "warnings": warnings, "features": features}

    if steps:
        _apply_in_place(pair, want, steps)
    final = read_pair(host, want["peer_netns"]) if actions else pair
    after = comparable(final, keep_ll)
    _verify(host, predicted, after, features)
    return {"changed": bool(actions), "before": before, "after": after, "actions": actions,
            "netkit": dict(after, host_ifname=host, host_ifindex=final["host_ifindex"],
                           peer_ifindex=final["peer_ifindex"]),
            "warnings": warnings, "features": features}


def _refuse_recreate(host, reasons):
    text = ", ".join(f"{key} is {old!r}, asked {new!r}" for key, old, new in reasons)
    raise NetkitError(
        f"netkit pair {host}: {text}; the kernel fixes "
        f"{'this' if len(reasons) == 1 else 'these'} when the pair is created. Set recreate: true to delete "
        f"and recreate the pair (its addresses and attached BPF programs go with it)")


def _create_pair(want, pair, before, reasons, features, check_mode, actions, peer_leaves=False):
    """Create the pair (deleting the old one first for `reasons`). Returns (pair read back, or
    None in check mode; the predicted view in check mode, else None)."""
    host = want["host_ifname"]
    if reasons:
        actions.append(f"delete pair {host} to recreate it ("
                       + ", ".join(f"{k} {o} -> {n}" for k, o, n in reasons) + ")")
    actions.append(_create_text(want, features))
    # The peer's name must be free where the peer goes (unless it is the old peer's name there).
    moves = want["pairing"] == "pair" and (
        pair is None or (before["peer_netns"], before["peer_ifname"]) != (want["peer_netns"], want["peer_ifname"]))
    netns_missing = want["peer_netns"] and not netns_exists(want["peer_netns"])
    if check_mode:
        if netns_missing:
            actions.append(f"(namespace {want['peer_netns']} does not exist yet: it must be created first)")
        elif moves and not peer_leaves:
            _check_peer_name_free(want)
        return None, _predict_created(want, features)
    if netns_missing:
        raise NetkitError(f"netkit pair {host}: peer_netns: network namespace '{want['peer_netns']}' does not "
                          f"exist ({netns_path(want['peer_netns'])} is missing): create it first "
                          f"(yogurt.phone.netns)")
    if moves:
        _check_peer_name_free(want)
    if reasons:
        _step(host, actions[-2], _delete, host)
    _step(host, actions[-1], _create, want, features)
    created = read_pair(host, want["peer_netns"])
    if created is None:
        raise NetkitError(f"netkit pair {host}: created, but it is not there when read back")
    return created, None


def _create_text(want, features):
    host = want["host_ifname"]
    if want["pairing"] == "single":
        return f"create single netkit device {host} (no peer; mode {want['mode']}, policy {want['policy']})"
    scrub = f", scrub {want['scrub']}" if features["scrub"] else ""
    where = f" in netns {want['peer_netns']}" if want["peer_netns"] else ""
    return (f"create netkit pair {host} / {want['peer_ifname']}{where} (mode {want['mode']}, "
            f"policy {want['policy']}, peer_policy {want['peer_policy']}"
            + (f"{scrub}, peer_scrub {want['peer_scrub']}" if features["scrub"] else "") + ")")


def _step(host, description, func, *args, **kwargs):
    """Run one change; a kernel refusal names the change it refused."""
    try:
        return func(*args, **kwargs)
    except pyroute2_dep.NetlinkError as exc:
        raise NetkitError(f"netkit pair {host}: {description}: {netlink_text(exc)}") from None


def _check_peer_name_free(want):
    """A clear error instead of EEXIST when the peer's name is taken where the peer would go."""
    with _rtnl(want["peer_netns"]) as ipr:
        taken = ipr.link_lookup(ifname=want["peer_ifname"])
    if taken:
        where = f"network namespace '{want['peer_netns']}'" if want["peer_netns"] else "the host namespace"
        raise NetkitError(f"netkit pair {want['host_ifname']}: peer_ifname '{want['peer_ifname']}' is already "
                          f"taken in {where}: remove that device or choose another peer_ifname")


def _verify(host, predicted, after, features):
    """The kernel must report what was asked; some attributes are ignored without an error."""
    wrong = [k for k in COMPARED if predicted.get(k) is not None and after.get(k) != predicted.get(k)
             and k != "state"]
    if wrong:
        detail = ", ".join(f"{k} is {after.get(k)!r}, asked {predicted.get(k)!r}" for k in wrong)
        raise NetkitError(f"netkit pair {host}: after the change the kernel (Linux {features['kernel']}) reports "
                          f"{detail}")


def remove_netkit(host_ifname, check_mode):
    """Delete the pair whose host side is `host_ifname` (both sides go). Absent is fine."""
    reason = ifname_problem(host_ifname)
    if reason:
        raise NetkitError(f"netkit pair {host_ifname!r}: host_ifname: {reason}")
    try:
        pair = read_pair(host_ifname)
        before = comparable(pair)
        actions = []
        if pair is not None:
            actions.append(f"delete netkit pair {host_ifname} / {pair['peer_ifname']}" if pair["peer_ifname"]
                           else f"delete netkit device {host_ifname}")
            if not check_mode:
                _delete(host_ifname)
    except pyroute2_dep.NetlinkError as exc:
        raise _netlink_error(host_ifname, exc) from None
    return {"changed": bool(actions), "before": before, "after": _absent_state(), "actions": actions,
            "netkit": dict(_absent_state(), host_ifname=host_ifname), "warnings": []}
