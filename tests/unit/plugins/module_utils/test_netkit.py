"""netkit over netlink without a netkit kernel: messages, validation, planning.

Messages are compiled by pyroute2's IPBatch (nothing is sent) and checked twice: decoded
by pyroute2 with the registered link kind, and walked as raw netlink attributes, so a
wrong attribute number or width shows even if both sides of pyroute2 agree on it.
"""

import struct

import pytest

from ansible_collections.yogurt.phone.plugins.module_utils import _netkit as nk
from ansible_collections.yogurt.phone.plugins.module_utils._netlink import addr_gen_mode_spec, decode_link

pyroute2 = pytest.importorskip("pyroute2")
from pyroute2 import IPBatch  # noqa: E402
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # noqa: E402

NLA_F_NESTED = 0x8000
IFLA_IFNAME, IFLA_MTU, IFLA_LINKINFO, IFLA_NET_NS_FD = 3, 4, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2


def want(**overrides):
    spec = {"host_ifname": "yg1-host", "peer_ifname": "yg1-cont", "peer_netns": "yogurt-1"}
    spec.update(overrides)
    return nk.normalize_spec(spec)


def compile_link(command, request):
    batch = IPBatch()
    try:
        nk.register_netkit_kind(batch)
        batch.link(command, **request)
        return bytes(batch.batch)
    finally:
        batch.close()


def attrs(buf):
    """Raw netlink attributes of `buf` as [(type, payload)], nested flag stripped."""
    out, pos = [], 0
    while pos + 4 <= len(buf):
        length, kind = struct.unpack_from("HH", buf, pos)
        out.append((kind & ~NLA_F_NESTED, buf[pos + 4:pos + length]))
        pos += (length + 3) & ~3
    return out


def raw_info_data(message):
    """The IFLA_INFO_DATA attributes of a compiled RTM_NEWLINK, walked by hand."""
    body = message[16 + 16:]  # nlmsghdr + ifinfomsg
    linkinfo = dict(attrs(body))[IFLA_LINKINFO]
    info = dict(attrs(linkinfo))
    assert info[IFLA_INFO_KIND] == b"netkit\0"
    return attrs(info[IFLA_INFO_DATA])


def test_registration_is_idempotent_and_process_wide():
    batch = IPBatch()
    try:
        nk.register_netkit_kind(batch)
        nk.register_netkit_kind(batch)
        assert batch.list_link_kind()["netkit"] is nk.NetkitData
    finally:
        batch.close()


def test_create_request_raw_attributes():
    message = compile_link("add", nk.create_request(
        want(mode="l2", policy="forward", scrub="none", headroom=64, tailroom=32, mtu=1400), peer_netns_fd=7))
    data = raw_info_data(message)
    kinds = [kind for kind, _value in data]
    assert kinds == [1, 5, 3, 4, 6, 7, 8, 9, 10]
    values = dict(data)
    assert values[5] == struct.pack("I", 0)       # MODE l2, u32
    assert values[3] == struct.pack("I", 0)       # POLICY forward (NETKIT_PASS)
    assert values[4] == struct.pack("I", 2)       # PEER_POLICY blackhole (NETKIT_DROP)
    assert values[6] == struct.pack("I", 0)       # SCRUB none
    assert values[7] == struct.pack("I", 1)       # PEER_SCRUB default
    assert values[8] == struct.pack("H", 64)      # HEADROOM, u16
    assert values[9] == struct.pack("H", 32)      # TAILROOM, u16
    assert values[10] == struct.pack("I", 0)      # PAIRING pair (NETKIT_DEVICE_PAIR), u32
    # PEER_INFO: a whole ifinfomsg (16 bytes), then the peer's own attributes.
    peer = dict(attrs(values[1][16:]))
    assert peer[IFLA_IFNAME] == b"yg1-cont\0"
    assert peer[IFLA_MTU] == struct.pack("I", 1400)
    assert peer[IFLA_NET_NS_FD] == struct.pack("I", 7)


def test_create_request_decodes_with_the_registered_kind():
    message = compile_link("add", nk.create_request(want(mtu=1400)))
    msg = ifinfmsg(message)
    msg.decode()
    assert msg.get_attr("IFLA_IFNAME") == "yg1-host"
    assert msg.get_attr("IFLA_MTU") == 1400
    data = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
    assert data.get_attr("IFLA_NETKIT_MODE") == nk.MODES["l3"]
    assert data.get_attr("IFLA_NETKIT_POLICY") == nk.POLICIES["blackhole"]
    assert data.get_nested("IFLA_NETKIT_PEER_INFO").get_attr("IFLA_IFNAME") == "yg1-cont"


def test_create_request_leaves_out_what_the_kernel_does_not_know():
    message = compile_link("add", nk.create_request(
        want(), features={"scrub": False, "headroom": False, "tailroom": False, "pairing": False}))
    assert [kind for kind, _value in raw_info_data(message)] == [1, 5, 3, 4]


def test_single_device_request_has_no_peer_attribute():
    # The kernel refuses a single device with peer info, peer policy, scrub or peer scrub (EOPNOTSUPP).
    message = compile_link("add", nk.create_request(nk.normalize_spec({"host_ifname": "nk-one", "pairing": "single"})))
    data = raw_info_data(message)
    assert [kind for kind, _value in data] == [5, 3, 10]
    assert dict(data)[3] == struct.pack("I", 0)   # POLICY forward (NETKIT_PASS), the only one taken
    assert dict(data)[10] == struct.pack("I", 1)  # PAIRING single (NETKIT_DEVICE_SINGLE)


def test_pairing_decodes_from_a_kernel_style_dump():
    for number, name in ((0, "pair"), (1, "single"), (7, "7")):
        msg = ifinfmsg()
        msg["attrs"] = [("IFLA_IFNAME", "nk-one"), ("IFLA_LINKINFO", {"attrs": [
            ("IFLA_INFO_KIND", "netkit"), ("IFLA_INFO_DATA", {"attrs": [
                ("IFLA_NETKIT_PRIMARY", 1), ("IFLA_NETKIT_PAIRING", number)]})]})]
        msg.encode()
        wire = ifinfmsg(bytes(msg.data))
        wire.decode()
        assert decode_link(wire, nk.decode_netkit_data)["pairing"] == name


def test_policy_request_names_the_kind_and_only_the_policies():
    message = compile_link("set", nk.policy_request(42, policy="forward"))
    assert struct.unpack_from("i", message, 16 + 4)[0] == 42  # ifinfomsg.ifi_index
    assert raw_info_data(message) == [(3, struct.pack("I", 0))]


def test_decode_link_reads_a_kernel_style_dump():
    msg = ifinfmsg()
    msg["index"] = 9
    msg["flags"] = 0x1 | 0x40
    msg["attrs"] = [
        ("IFLA_IFNAME", "yg1-host"), ("IFLA_MTU", 1500), ("IFLA_LINK", 2), ("IFLA_LINK_NETNSID", 0),
        ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "netkit"), ("IFLA_INFO_DATA", {"attrs": [
            ("IFLA_NETKIT_PRIMARY", 1), ("IFLA_NETKIT_POLICY", 2), ("IFLA_NETKIT_MODE", 1),
            ("IFLA_NETKIT_SCRUB", 0), ("IFLA_NETKIT_PEER_POLICY", 0), ("IFLA_NETKIT_PEER_SCRUB", 1)]})]}),
        ("IFLA_AF_SPEC", addr_gen_mode_spec()),
    ]
    msg.encode()
    wire = ifinfmsg(bytes(msg.data))
    wire.decode()
    facts = decode_link(wire, nk.decode_netkit_data)
    assert facts == {
        "ifname": "yg1-host", "index": 9, "kind": "netkit", "up": True, "mtu": 1500, "mac": None, "link_index": 2,
        "link_netnsid": 0, "addr_gen_mode": "none", "addresses": [], "primary": True, "mode": "l3", "policy": "blackhole",
        "peer_policy": "forward", "scrub": "none", "peer_scrub": "default", "headroom": None, "tailroom": None,
        "pairing": None,
    }


def test_defaults():
    w = want()
    assert (w["pairing"], w["mode"], w["policy"], w["peer_policy"], w["scrub"], w["peer_scrub"], w["up"]) == \
        ("pair", "l3", "blackhole", "blackhole", "default", "default", True)


def test_single_device_defaults_to_forward_and_no_peer():
    w = nk.normalize_spec({"host_ifname": "nk-one", "pairing": "single"})
    assert (w["policy"], w["peer_policy"], w["scrub"], w["peer_scrub"], w["peer_ifname"], w["peer_netns"]) == \
        ("forward", None, None, None, None, None)
    assert w["peer_addresses"] == [] and w["mtu"] is None and w["headroom"] is None


def test_addresses_are_normalized_and_sorted():
    w = want(peer_addresses=["fd00:0:0::1/64", "10.42.0.2/24", "10.42.0.1/24", "10.42.0.1/24"])
    assert w["peer_addresses"] == ["10.42.0.1/24", "10.42.0.2/24", "fd00::1/64"]


@pytest.mark.parametrize("overrides, words", [
    ({"host_ifname": "x" * 16}, "host_ifname: 'xxxxxxxxxxxxxxxx' is 16 bytes long"),
    ({"peer_ifname": ""}, "peer_ifname: an interface name must not be empty"),
    ({"peer_ifname": "a b"}, "whitespace"),
    ({"peer_netns": "a/b"}, "peer_netns: namespace name 'a/b' contains '/'"),
    ({"peer_netns": None, "peer_ifname": "yg1-host"}, "peer_ifname: equals host_ifname"),
    ({"mode": "l4"}, "mode: 'l4' is not one of l2, l3"),
    ({"policy": "drop"}, "policy: 'drop' is not one of forward, blackhole"),
    ({"peer_scrub": "all"}, "peer_scrub: 'all' is not one of none, default"),
    ({"headroom": 70000}, "headroom: 70000 is not an integer from 0 to 65535"),
    ({"mtu": 67}, "mtu: 67 is not an integer from 68 to 65535"),
    ({"mtu": True}, "mtu: True"),
    ({"peer_addresses": ["10.42.0.1"]}, "'10.42.0.1' is not an address with a prefix length"),
    ({"peer_addresses": ["10.42.0.1/33"]}, "'10.42.0.1/33' is not a CIDR address"),
    ({"peer_addresses": "10.42.0.1/24"}, "is not a list of CIDR addresses"),
    ({"peer_ifname": None}, "peer_ifname: a pair needs its peer's name"),
    ({"pairing": "triple"}, "pairing: 'triple' is not one of pair, single"),
    ({"pairing": "single"}, "peer_ifname: a single netkit device (pairing: single) has no peer"),
    ({"pairing": "single", "peer_ifname": None}, "peer_netns: a single netkit device (pairing: single) has no peer"),
    ({"pairing": "single", "peer_ifname": None, "peer_netns": None, "peer_policy": "forward"},
     "peer_policy: a single netkit device"),
    ({"pairing": "single", "peer_ifname": None, "peer_netns": None, "peer_addresses": ["10.0.0.1/24"]},
     "peer_addresses: a single netkit device"),
    ({"pairing": "single", "peer_ifname": None, "peer_netns": None, "policy": "blackhole"},
     "policy: a single netkit device (pairing: single) takes only policy forward"),
    ({"pairing": "single", "peer_ifname": None, "peer_netns": None, "scrub": "none"},
     "scrub: a single netkit device (pairing: single) takes no scrub setting"),
])
def test_invalid_specs_name_the_field(overrides, words):
    with pytest.raises(nk.NetkitError) as err:
        want(**overrides)
    assert words in str(err.value)
    assert str(err.value).startswith("netkit pair ")


def test_all_problems_are_reported_at_once():
    with pytest.raises(nk.NetkitError) as err:
        want(mode="x", mtu=1, peer_addresses=["nope"])
    assert all(f in str(err.value) for f in ("mode:", "mtu:", "peer_addresses:"))


def existing(**overrides):
    pair = {
        "host_ifname": "yg1-host", "host_ifindex": 9, "peer_ifindex": 2, "peer_netnsid": 0,
        "peer_netns": "yogurt-1", "peer_ifname": "yg1-cont", "mode": "l3", "policy": "blackhole",
        "peer_policy": "blackhole", "scrub": "default", "peer_scrub": "default", "headroom": None,
        "tailroom": None, "pairing": None, "mtu": 1500, "peer_mtu": 1500, "up": True, "peer_up": True,
        "host_addresses": [], "host_addr_gen_mode": "none", "peer_addresses": ["10.42.0.1/24"],
    }
    pair.update(overrides)
    return pair


@pytest.mark.parametrize("overrides, attribute", [
    ({"mode": "l2"}, "mode"), ({"scrub": "none"}, "scrub"), ({"peer_ifname": "other"}, "peer_ifname"),
    ({"peer_netns": "yogurt-9"}, "peer_netns"),
])
def test_fixed_attributes_are_refused_without_recreate(monkeypatch, overrides, attribute):
    monkeypatch.setattr(nk, "read_pair", lambda *a, **k: existing(**overrides))
    spec = {"host_ifname": "yg1-host", "peer_ifname": "yg1-cont", "peer_netns": "yogurt-1",
            "peer_addresses": ["10.42.0.1/24"]}
    with pytest.raises(nk.NetkitError) as err:
        nk.converge_netkit(spec, check_mode=True)
    assert f"{attribute} is " in str(err.value) and "recreate: true" in str(err.value)


def test_unchanged_pair_plans_nothing(monkeypatch):
    monkeypatch.setattr(nk, "read_pair", lambda *a, **k: existing(peer_addresses=["10.42.0.1/24", "fe80::1/64"]))
    out = nk.converge_netkit({"host_ifname": "yg1-host", "peer_ifname": "yg1-cont", "peer_netns": "yogurt-1",
                              "peer_addresses": ["10.42.0.1/24"]}, check_mode=True)
    assert out["changed"] is False and out["actions"] == [] and out["before"] == out["after"]


def test_in_place_plan_and_host_addresses_warning(monkeypatch):
    monkeypatch.setattr(nk, "read_pair", lambda *a, **k: existing(
        host_addresses=["192.0.2.1/24"], host_addr_gen_mode="eui64", mtu=1500, up=False))
    out = nk.converge_netkit({"host_ifname": "yg1-host", "peer_ifname": "yg1-cont", "peer_netns": "yogurt-1",
                              "policy": "forward", "mtu": 1400, "peer_addresses": ["fd00::1/64"]}, check_mode=True)
    assert out["changed"]
    text = "\n".join(out["actions"])
    for words in ("set policy forward", "addr_gen_mode none", "remove host-side address 192.0.2.1/24",
                  "set mtu 1400 on yg1-host", "set mtu 1400 on yg1-cont", "remove address 10.42.0.1/24",
                  "add address fd00::1/64", "set yg1-host up"):
        assert words in text
    assert out["after"]["host_addresses"] == [] and out["after"]["peer_addresses"] == ["fd00::1/64"]
    assert "192.0.2.1/24" in out["warnings"][0] and "would be removed" in out["warnings"][0]


def test_missing_scrub_support_names_kernel_and_fix(monkeypatch):
    monkeypatch.setattr(nk, "read_pair", lambda *a, **k: existing(scrub=None, peer_scrub=None))
    with pytest.raises(nk.NetkitUnavailable) as err:
        nk.converge_netkit({"host_ifname": "yg1-host", "peer_ifname": "yg1-cont", "peer_netns": "yogurt-1",
                            "scrub": "none"}, check_mode=True)
    assert "scrub: none is not supported by this kernel (Linux " in str(err.value)
    assert "6.13" in str(err.value)


def test_no_netkit_message_is_one_line():
    text = nk.no_netkit_message("6.1.0-9-amd64")
    assert text == ("netkit is not available on this host (Linux 6.1.0-9-amd64, CONFIG_NETKIT missing or "
                    "Linux < 6.7): use backend: veth, or a kernel >= 6.7 with CONFIG_NETKIT=y")
    assert "\n" not in text


# pairing (IFLA_NETKIT_PAIRING, Linux >= 7.1): create-time only, probed, refused early where unknown.

SINGLE = {"host_ifname": "nk-one", "pairing": "single"}
FEATURES_71 = {"kernel": "7.1.0", "netkit": True, "scrub": True, "headroom": True, "tailroom": True,
               "pairing": True, "detail": "probed"}
FEATURES_612 = dict(FEATURES_71, kernel="6.12.57", headroom=False, tailroom=False, pairing=False)


def single_device(**overrides):
    """A single device as read_pair() reads it on 7.1: no peer, no peer attributes."""
    return existing(peer_ifindex=0, peer_netnsid=None, peer_netns=None, peer_ifname=None, policy="forward",
                    peer_policy=None, scrub=None, peer_scrub=None, headroom=0, tailroom=0, pairing="single",
                    peer_mtu=None, peer_up=None, peer_addresses=[], **overrides)


def test_single_on_a_kernel_without_pairing_fails_before_anything(monkeypatch):
    monkeypatch.setattr(nk, "read_pair", lambda *a, **k: None)
    monkeypatch.setattr(nk, "probe_netkit", lambda: dict(FEATURES_612))
    with pytest.raises(nk.NetkitUnavailable) as err:
        nk.converge_netkit(SINGLE, check_mode=False)
    text = str(err.value)
    assert text.startswith("netkit pair nk-one: pairing: single is not supported by this kernel (Linux 6.12.57")
    assert "leave pairing at 'pair', or use Linux >= 7.1" in text


def test_pair_on_a_kernel_without_pairing_sends_no_pairing_attribute(monkeypatch):
    spec = {"host_ifname": "yg1-host", "peer_ifname": "yg1-cont"}
    monkeypatch.setattr(nk, "read_pair", lambda *a, **k: None)
    monkeypatch.setattr(nk, "probe_netkit", lambda: dict(FEATURES_612))
    out = nk.converge_netkit(spec, check_mode=True)
    assert out["after"]["pairing"] is None and out["after"]["peer_ifname"] == "yg1-cont"
    request = nk.create_request(nk.normalize_spec(spec), features=FEATURES_612)
    assert [kind for kind, _value in raw_info_data(compile_link("add", request))] == [1, 5, 3, 4, 6, 7]


def test_single_device_create_is_predicted_in_check_mode(monkeypatch):
    monkeypatch.setattr(nk, "read_pair", lambda *a, **k: None)
    monkeypatch.setattr(nk, "probe_netkit", lambda: dict(FEATURES_71))
    out = nk.converge_netkit(dict(SINGLE, mtu=1400), check_mode=True)
    assert out["changed"]
    assert out["actions"] == ["create single netkit device nk-one (no peer; mode l3, policy forward)",
                              "set IPv6 addr_gen_mode none on nk-one (was (kernel default))",
                              "set nk-one up"]
    after = out["after"]
    assert (after["pairing"], after["peer_ifname"], after["peer_netns"], after["peer_up"], after["peer_mtu"]) == \
        ("single", None, None, None, None)
    assert out["before"]["state"] == "absent" and after["mtu"] == 1400


def test_single_device_is_idempotent(monkeypatch):
    monkeypatch.setattr(nk, "read_pair", lambda *a, **k: single_device())
    out = nk.converge_netkit(SINGLE, check_mode=True)
    assert out["changed"] is False and out["actions"] == [] and out["before"] == out["after"]
    assert out["features"]["pairing"] is True and out["features"]["scrub"] is True


def test_pairing_change_is_refused_without_recreate(monkeypatch):
    monkeypatch.setattr(nk, "read_pair", lambda *a, **k: existing(pairing="pair", headroom=0, tailroom=0))
    with pytest.raises(nk.NetkitError) as err:
        nk.converge_netkit(SINGLE, check_mode=True)
    assert "pairing is 'pair', asked 'single'" in str(err.value) and "recreate: true" in str(err.value)


def test_pairing_change_recreates_with_a_diff(monkeypatch):
    monkeypatch.setattr(nk, "read_pair", lambda *a, **k: single_device())
    spec = {"host_ifname": "nk-one", "peer_ifname": "nk-peer", "peer_netns": "yogurt-1"}
    monkeypatch.setattr(nk, "netns_exists", lambda name: True)
    monkeypatch.setattr(nk, "_check_peer_name_free", lambda want: None)
    out = nk.converge_netkit(spec, check_mode=True, recreate=True)
    assert out["actions"][0].startswith("delete pair nk-one to recreate it (pairing single -> pair, ")
    assert out["actions"][1].startswith("create netkit pair nk-one / nk-peer in netns yogurt-1")
    assert (out["before"]["pairing"], out["after"]["pairing"]) == ("single", "pair")
    assert (out["before"]["peer_ifname"], out["after"]["peer_ifname"]) == (None, "nk-peer")
    assert "host_ifindex" not in out["netkit"]  # recreated: no ifindex yet


def test_pair_read_without_pairing_is_kept_when_pair_is_asked(monkeypatch):
    # A pair made before a kernel upgrade to 7.1 reads back 'pair'; one on 6.12 reads None: both are kept.
    for pairing in (None, "pair"):
        monkeypatch.setattr(nk, "read_pair", lambda *a, _p=pairing, **k: existing(pairing=_p))
        out = nk.converge_netkit({"host_ifname": "yg1-host", "peer_ifname": "yg1-cont", "peer_netns": "yogurt-1",
                                  "peer_addresses": ["10.42.0.1/24"]}, check_mode=True)
        assert out["changed"] is False, (pairing, out["actions"])
