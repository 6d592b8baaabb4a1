"""The inventory contract: normalization and every validation message."""

import copy

import pytest

from ansible_collections.yogurt.phone.plugins.module_utils._phone_model import (
    DEFAULT_PHONE,
    PhoneInputError,
    normalize_phones,
)


def phones(**changes):
    phone = copy.deepcopy(DEFAULT_PHONE)
    phone.update(changes)
    return [phone]


def problems(value):
    with pytest.raises(PhoneInputError) as info:
        normalize_phones(value)
    return info.value.problems


def test_default_is_the_contract_phone():
    (phone,) = normalize_phones(None)
    assert phone["name"] == "phone" and phone["backend"] == "auto" and phone["state"] == "present"
    assert [e["host_ifname"] for e in phone["ends"]] == ["yg1-host", "yg2-host"]
    assert phone["ends"][0]["addresses"] == ["10.42.0.1/24"]


def test_phone_named_phone_without_ends_gets_the_default_ends():
    (phone,) = normalize_phones([{"name": "phone", "state": "absent"}])
    assert phone["ends"][1]["netns"] == "yogurt-2"


def test_addresses_are_canonical_and_may_be_ipv6():
    value = phones()
    value[0]["ends"][0]["addresses"] = ["10.42.0.1/24", "FD42:0::1/64"]
    assert normalize_phones(value)[0]["ends"][0]["addresses"] == ["10.42.0.1/24", "fd42::1/64"]


@pytest.mark.parametrize("mutate, field, words", [
    (lambda p: p[0]["ends"][0].update(host_ifname="x" * 16), "ends[0].host_ifname", "at most 15"),
    (lambda p: p[0]["ends"][1].update(cont_ifname="a b"), "ends[1].cont_ifname", "whitespace"),
    (lambda p: p[0]["ends"][0].update(addresses=["10.42.0.1"]), "ends[0].addresses", "not a CIDR"),
    (lambda p: p[0]["ends"][0].update(addresses=["10.42.0.300/24"]), "ends[0].addresses", "not a CIDR"),
    (lambda p: p[0]["ends"][1].update(netns="yogurt-1"), "ends[1].netns", "already used"),
    (lambda p: p[0]["ends"][1].update(host_ifname="yg1-host"), "ends[1].host_ifname", "already the host-side"),
    (lambda p: p[0]["ends"][0].update(netns="a/b"), "ends[0].netns", "not a valid namespace name"),
    (lambda p: p[0].update(backend="wires"), "'backend'", "one of auto, netkit, veth"),
    (lambda p: p[0].update(state="gone"), "'state'", "present or absent"),
    (lambda p: p[0].update(name="my.phone"), "'name'", "cannot hold dots"),
    (lambda p: p[0].update(name="Phone"), "'name'", "[a-z0-9_-]"),
    (lambda p: p[0].update(mtu=10), "'mtu'", "68 to 65535"),
    (lambda p: p[0].update(mode="l4"), "'mode'", "l3 or l2"),
    (lambda p: p[0].update(colour="blue"), "'colour'", "unknown field"),
    (lambda p: p[0].update(ends=p[0]["ends"][:1]), "'ends'", "exactly two ends"),
])
def test_each_bad_field_is_named_with_a_fix(mutate, field, words):
    value = phones()
    mutate(value)
    found = problems(value)
    assert any(field in text and words in text and "phone '" in text for text in found), found


def test_duplicates_across_phones():
    first = copy.deepcopy(DEFAULT_PHONE)
    second = copy.deepcopy(DEFAULT_PHONE)
    found = problems([first, second])
    assert any("'phone' is used by two phones" in t for t in found)
    assert any("yg1-host' is already the host-side device of phone 'phone' ends[0]" in t for t in found)
    assert any("namespace 'yogurt-2' is already used" in t for t in found)


def test_every_problem_is_reported_at_once():
    value = phones(backend="x", mtu=1)
    value[0]["ends"][0]["host_ifname"] = "y" * 20
    assert len(problems(value)) == 3


@pytest.mark.parametrize("value", ["phone", {"name": "x"}, 3])
def test_not_a_list(value):
    assert "must be a list" in problems(value)[0]
