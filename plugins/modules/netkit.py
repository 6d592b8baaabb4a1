#!/usr/bin/python
# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: netkit
short_description: Manage netkit device pairs
version_added: 1.0.0
description:
  - Creates, changes or removes a netkit pair (Linux >= 6.7 with C(CONFIG_NETKIT=y)) over
    rtnetlink. The primary (host side) device stays in the namespace the module runs in;
    the peer can live in a named network namespace under C(/run/netns).
  - The host side never carries an address. IPv6 address generation is turned off on it
    (C(addr_gen_mode none)) and any address found on it is removed and reported as a
    warning.
  - Attributes the kernel can change on a live pair (policies, MTU, peer addresses, up or
    down) are changed in place. Attributes it fixes at creation (pairing, mode, scrub, headroom,
    tailroom, peer name, peer namespace) are only changed with O(recreate=true), which
    deletes and recreates the pair.
  - On Linux >= 7.1, O(pairing=single) makes one netkit device without a peer instead of a pair.
  - What the kernel supports is found by trying it on a scratch pair in a scratch namespace
    (removed again), so a kernel without netkit, or without scrub, headroom or pairing support,
    fails with a message that names the kernel and what is needed.
author:
  - yogurt.phone developers (@yogurt-phone)
extends_documentation_fragment:
  - yogurt.phone._attributes
requirements:
  - pyroute2 >= 0.9 on the target
  - Linux >= 6.7 with C(CONFIG_NETKIT=y) on the target
options:
  host_ifname:
    description:
      - Name of the primary (host side) device, in the namespace the module runs in.
      - At most 15 bytes, no C(/), C(:) or whitespace.
      - A device of this name that is not a netkit primary is never touched; the module fails.
    type: str
    required: true
  pairing:
    description:
      - V(pair) makes a netkit pair (a primary and its peer); V(single) makes one netkit device
        with no peer (C(IFLA_NETKIT_PAIRING), C(NETKIT_DEVICE_SINGLE)).
      - V(single) needs Linux >= 7.1 and fails early on older kernels. There a pair is what every
        netkit device is, so V(pair) works on every kernel with netkit.
      - A single device takes no peer options (O(peer_ifname), O(peer_netns), O(peer_policy),
        O(peer_scrub), O(peer_addresses)), no O(scrub) other than V(default), only O(policy=forward),
        and no BPF links (the kernel refuses netkit program attachment on it). Phones therefore always
        use pairs.
      - Fixed at creation.
    type: str
    choices: [pair, single]
    default: pair
    version_added: 2.0.0
  peer_ifname:
    description:
      - Name of the peer device. Required with O(state=present) for a pair; not allowed with
        O(pairing=single).
      - Changing it on an existing pair needs O(recreate=true).
    type: str
  peer_netns:
    description:
      - Named network namespace (under C(/run/netns)) the peer lives in. It must exist.
      - Omitted, the peer stays next to the host side.
      - Changing it on an existing pair needs O(recreate=true).
    type: str
  mode:
    description:
      - V(l3) carries IP packets without an Ethernet header (no MAC addresses);
        V(l2) gives both devices random MAC addresses.
      - Fixed at creation.
    type: str
    choices: [l2, l3]
    default: l3
  policy:
    description:
      - What the primary device does with a packet when no BPF program is attached, or when
        the attached programs return C(NETKIT_NEXT).
      - V(blackhole) drops it (fail closed, the collection's datapath); V(forward) passes it.
      - Omitted, V(blackhole) on a pair and V(forward) on a single device, the only policy the
        kernel accepts there.
    type: str
    choices: [forward, blackhole]
  peer_policy:
    description:
      - The same as O(policy), for the peer device. Omitted, V(blackhole).
      - Not allowed with O(pairing=single).
    type: str
    choices: [forward, blackhole]
  scrub:
    description:
      - V(default) clears C(skb->mark) and C(skb->priority) before the primary's program
        runs when the peer is in another namespace; V(none) keeps them.
      - Needs Linux >= 6.13 (or a kernel with the backport, such as Debian's 6.12) unless
        V(default). Fixed at creation.
    type: str
    choices: [none, default]
    default: default
  peer_scrub:
    description:
      - The same as O(scrub), for the peer device. Omitted, V(default).
      - Not allowed with O(pairing=single).
    type: str
    choices: [none, default]
  headroom:
    description:
      - Bytes of headroom both devices reserve (C(needed_headroom)). Omitted, the kernel's default.
      - Needs Linux >= 6.14. Fixed at creation.
    type: int
  tailroom:
    description:
      - Bytes of tailroom both devices reserve (C(needed_tailroom)). Omitted, the kernel's default.
      - Needs Linux >= 6.14. Fixed at creation.
    type: int
  mtu:
    description:
      - MTU of both devices. Omitted, left as it is (1500 on a new pair).
    type: int
  peer_addresses:
    description:
      - IPv4 and IPv6 addresses of the peer device, with prefix length (V(10.42.0.1/24),
        V(fd00:42::1/64)). The peer ends up with exactly these; IPv6 link-local addresses
        the kernel gives the peer are left alone.
      - IPv6 addresses are added without duplicate address detection, usable at once.
    type: list
    elements: str
    default: []
  up:
    description:
      - Whether both devices are up.
    type: bool
    default: true
  state:
    description:
      - V(present) creates or changes the pair; V(absent) deletes it (both devices go).
    type: str
    choices: [present, absent]
    default: present
  recreate:
    description:
      - Allow deleting and recreating the pair when an attribute that is fixed at creation
        differs. Addresses and attached BPF programs go with the old pair.
      - Without it, such a difference fails the task and names the attribute.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details: Reports what would change and changes nothing (the feature probe still
      makes and removes its scratch namespace).
  diff_mode:
    support: full
    details: Shows every attribute of the pair before and after.
  idempotent:
    support: full
    details: A second run with the same options reports no change.
notes:
  - Needs root (C(CAP_NET_ADMIN), and C(CAP_SYS_ADMIN) to enter namespaces) on the target.
  - Kernels without netkit can build the same datapath from veth pairs; see the
    C(backend) of a phone in O(yogurt.phone.phones#module:phones).
seealso:
  - module: yogurt.phone.netns
  - module: yogurt.phone.phones
  - name: netkit in the Linux kernel
    description: The driver and its netlink attributes.
    link: https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git/tree/drivers/net/netkit.c
"""

EXAMPLES = r"""
- name: Namespace of the first yogurt
  yogurt.phone.netns:
    name: yogurt-1

- name: A blackholed L3 pair, peer inside yogurt-1 with its addresses
  yogurt.phone.netkit:
    host_ifname: yg1-host
    peer_ifname: yg1-cont
    peer_netns: yogurt-1
    peer_addresses:
      - 10.42.0.1/24
      - fd00:42::1/64

- name: Keep skb->mark across the pair (needs scrub support in the kernel)
  yogurt.phone.netkit:
    host_ifname: yg1-host
    peer_ifname: yg1-cont
    peer_netns: yogurt-1
    scrub: none
    peer_scrub: none
    recreate: true

- name: Let traffic through while no BPF program is attached
  yogurt.phone.netkit:
    host_ifname: yg1-host
    peer_ifname: yg1-cont
    peer_netns: yogurt-1
    policy: forward
    peer_policy: forward

- name: One netkit device without a peer (Linux >= 7.1; takes no BPF links)
  yogurt.phone.netkit:
    host_ifname: nk-single
    pairing: single

- name: Remove the pair
  yogurt.phone.netkit:
    host_ifname: yg1-host
    state: absent
"""

RETURN = r"""
netkit:
  description:
    - The pair after the run (the prediction, in check mode). All attributes are V(null)
      and O(state) is V(absent) when there is no pair.
  returned: always
  type: dict
  contains:
    state:
      description: V(present) or V(absent).
      type: str
      sample: present
    host_ifname:
      description: Name of the host side (primary) device.
      type: str
      sample: yg1-host
    pairing:
      description: V(pair) or V(single); V(null) on kernels that do not report it (before Linux 7.1,
        where every netkit device is a pair).
      type: str
      sample: pair
      version_added: 2.0.0
    host_ifindex:
      description: Interface index of the host side. In check mode, returned only for a pair that exists and is kept.
      type: int
      sample: 7
    peer_ifname:
      description: Name of the peer device; V(null) for a single device.
      type: str
      sample: yg1-cont
    peer_ifindex:
      description: Interface index of the peer, inside its namespace. In check mode, returned only for a pair that exists and is kept.
      type: int
      sample: 2
    peer_netns:
      description: Named namespace of the peer; V(null) when it is next to the host side.
      type: str
      sample: yogurt-1
    mode:
      description: V(l2) or V(l3).
      type: str
      sample: l3
    policy:
      description: Policy of the primary device, V(forward) or V(blackhole).
      type: str
      sample: blackhole
    peer_policy:
      description: Policy of the peer device.
      type: str
      sample: blackhole
    scrub:
      description: Scrub setting of the primary; V(null) on kernels without scrub support and on a single device.
      type: str
      sample: default
    peer_scrub:
      description: Scrub setting of the peer; V(null) on kernels without scrub support and on a single device.
      type: str
      sample: default
    headroom:
      description: Headroom of the pair; V(null) on kernels that do not report it.
      type: int
      sample: 0
    tailroom:
      description: Tailroom of the pair; V(null) on kernels that do not report it.
      type: int
      sample: 0
    mtu:
      description: MTU of the host side.
      type: int
      sample: 1500
    peer_mtu:
      description: MTU of the peer.
      type: int
      sample: 1500
    up:
      description: Whether the host side is up.
      type: bool
      sample: true
    peer_up:
      description: Whether the peer is up.
      type: bool
      sample: true
    peer_addresses:
      description: Addresses of the peer (IPv6 link-local addresses the kernel made are left out).
      type: list
      elements: str
      sample: [10.42.0.1/24, fd00:42::1/64]
    host_addresses:
      description: Addresses of the host side; always empty after a run that did not fail.
      type: list
      elements: str
      sample: []
    host_addr_gen_mode:
      description: IPv6 address generation mode of the host side (V(none) after a run);
        V(null) when IPv6 is off on the host.
      type: str
      sample: none
actions:
  description: What was done (or would be done, in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["set policy forward, peer_policy blackhole (was blackhole, blackhole)"]
features:
  description:
    - What the kernel supports, as probed on a scratch pair before a pair is created, or as
      read off the existing pair.
  returned: with O(state=present)
  type: dict
  contains:
    kernel:
      description: The running kernel's release.
      type: str
      sample: 6.12.95+deb12-amd64
    netkit:
      description: Whether netkit devices can be created.
      type: bool
      sample: true
    scrub:
      description: Whether the kernel knows the scrub setting.
      type: bool
      sample: true
    headroom:
      description: Whether the kernel knows the headroom setting.
      type: bool
      sample: false
    tailroom:
      description: Whether the kernel knows the tailroom setting.
      type: bool
      sample: false
    pairing:
      description: Whether the kernel knows the pairing setting (single devices, Linux >= 7.1).
      type: bool
      sample: false
      version_added: 2.0.0
    detail:
      description: How this was found out.
      type: str
      sample: netkit pair created and read back in a scratch namespace
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.yogurt.phone.plugins.module_utils._diff import DifferenceTracker
from ansible_collections.yogurt.phone.plugins.module_utils._netkit import NetkitError, converge_netkit, remove_netkit
from ansible_collections.yogurt.phone.plugins.module_utils._pyroute2_dep import assert_required_pyroute2

SPEC_KEYS = ("host_ifname", "pairing", "peer_ifname", "peer_netns", "mode", "policy", "peer_policy", "scrub",
             "peer_scrub", "headroom", "tailroom", "mtu", "peer_addresses", "up")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            host_ifname=dict(type="str", required=True),
            pairing=dict(type="str", default="pair", choices=["pair", "single"]),
            peer_ifname=dict(type="str"),
            peer_netns=dict(type="str"),
            mode=dict(type="str", default="l3", choices=["l2", "l3"]),
            policy=dict(type="str", choices=["forward", "blackhole"]),
            peer_policy=dict(type="str", choices=["forward", "blackhole"]),
            scrub=dict(type="str", default="default", choices=["none", "default"]),
            peer_scrub=dict(type="str", choices=["none", "default"]),
            headroom=dict(type="int"),
            tailroom=dict(type="int"),
            mtu=dict(type="int"),
            peer_addresses=dict(type="list", elements="str", default=[]),
            up=dict(type="bool", default=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            recreate=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    assert_required_pyroute2(module)

    params = module.params
    try:
        if params["state"] == "absent":
            outcome = remove_netkit(params["host_ifname"], module.check_mode)
        else:
            spec = {key: params[key] for key in SPEC_KEYS}
            outcome = converge_netkit(spec, module.check_mode, recreate=params["recreate"])
    except NetkitError as exc:
        module.fail_json(msg=str(exc))

    for warning in outcome["warnings"]:
        module.warn(warning)
    result = {"changed": outcome["changed"], "netkit": outcome["netkit"], "actions": outcome["actions"]}
    if "features" in outcome:
        result["features"] = outcome["features"]
    if module._diff:
        tracker = DifferenceTracker()
        for key, before in outcome["before"].items():
            tracker.add(key, before, outcome["after"].get(key))
        result["diff"] = tracker.get_diff()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
