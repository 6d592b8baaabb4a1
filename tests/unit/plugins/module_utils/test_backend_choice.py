"""Which backend a phone gets on which kernel, and what the result says about it."""

import pytest

from ansible_collections.yogurt.phone.plugins.module_utils._phone_converge import PhoneError, resolve_backend

STOCK_6_1 = {"kernel": "6.1.0-50-amd64", "netkit": False, "netkit_reason": "Unknown device type",
             "tcx": False, "tcx_reason": "tcx attach failed: Invalid argument"}
HOST_6_18 = {"kernel": "6.18.4", "netkit": False, "netkit_reason": "Unknown device type", "tcx": True}
NETKIT_6_12 = {"kernel": "6.12.95+deb12-amd64", "netkit": True, "tcx": True}


@pytest.mark.parametrize("facts, backend, hooks", [
    (STOCK_6_1, "veth", "veth with tc clsact filters (no tcx: tcx attach failed: Invalid argument)"),
    (HOST_6_18, "veth", "veth with tcx"),
    (NETKIT_6_12, "netkit", "can create netkit devices"),
])
def test_auto_picks_by_what_the_kernel_offers(facts, backend, hooks):
    got, reason = resolve_backend("auto", facts)
    assert got == backend
    assert reason.startswith("auto: Linux " + facts["kernel"]) and hooks in reason


def test_veth_on_a_kernel_without_tcx_uses_tc_filters():
    assert resolve_backend("veth", STOCK_6_1) == (
        "veth", "veth was asked for; tc clsact filters (no tcx: tcx attach failed: Invalid argument)")
    assert resolve_backend("veth", NETKIT_6_12) == ("veth", "veth was asked for; tcx")


@pytest.mark.parametrize("facts", [STOCK_6_1, HOST_6_18])
def test_netkit_where_there_is_none_says_what_to_do(facts):
    with pytest.raises(PhoneError) as info:
        resolve_backend("netkit", facts)
    text = str(info.value)
    assert f"Linux {facts['kernel']}: Unknown device type" in text
    assert "use backend: veth (or auto)" in text and "CONFIG_NETKIT=y" in text
