#!/usr/bin/python
# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: phones
short_description: Converge every yogurt-phone of a host in one task
version_added: 0.1.0
description:
  - Builds, repairs and removes yogurt-phones. A phone is two network namespaces
    (yogurts), each holding the container side of a netkit or veth pair, joined by an eBPF
    wire between the host-side devices. The host namespace cannot reach either yogurt.
  - Takes the whole O(phones) list of a host (the C(yogurt_phones) inventory variable),
    checks all of it before changing anything, reads the host's devices once, and
    converges each phone.
  - C(backend=auto) picks netkit when the kernel can create netkit devices and
    veth otherwise; each phone's result says which backend it got and why.
  - On veth the wire's program attaches as tcx links (Linux >= 6.6), or as tc clsact
    filters on older kernels (Debian 12's stock 6.1), and a native XDP guard links to each
    yogurt-side device (Linux >= 5.9); the phone works the same either way.
  - Whatever a killed or half-finished run left behind is healed by the next run. A host
    lock serializes concurrent runs.
author:
  - yogurt.phone developers (@yogurt-phone)
options:
  phones:
    description:
      - The phones of this host, as in the C(yogurt_phones) inventory contract.
      - When omitted, the single default phone C(phone) with namespaces C(yogurt-1) and
        C(yogurt-2), devices C(yg1-host)/C(yg1-cont) and C(yg2-host)/C(yg2-cont), and
        addresses C(10.42.0.1/24) and C(10.42.0.2/24).
      - "Each phone: C(name) (V([a-z0-9_-]), unique per host), C(backend) (V(auto), V(netkit)
        or V(veth)), C(state) (V(present) or V(absent)), C(ends) (exactly two, each with
        C(netns), C(host_ifname), C(cont_ifname) and C(addresses), a list of CIDRs),
        optional C(mtu) and C(mode) (V(l3) or V(l2), netkit only)."
    type: list
    elements: raw
  veth_object:
    description:
      - Path on the host of the compiled C(bpf/wire_veth.bpf.c) object.
      - Required when any phone ends up on the veth backend.
    type: path
  netkit_object:
    description:
      - Path on the host of the compiled C(bpf/wire_netkit.bpf.c) object.
      - Required when any phone ends up on the netkit backend.
    type: path
  host_addresses:
    description:
      - What to do when a host-side device carries an address (someone added one by hand).
      - V(remove) removes it and reports it; V(report) leaves it and warns.
    type: str
    choices: [remove, report]
    default: remove
  exclusive:
    description:
      - Also remove every phone this collection built on the host that O(phones) does not
        list (found from its records under C(/run/yogurt/phones) and its pins under
        C(/sys/fs/bpf/yogurt)). Teardown uses this with an empty list.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reports per phone what would change; nothing is created, attached or removed.
  diff_mode:
    support: full
    description: Shows each phone (backend, ends, addresses, wire) before and after.
  idempotent:
    support: full
    description: A second run with the same input reports no change.
notes:
  - Needs root, bpffs, libbpf (C(libbpf.so.1)) and pyroute2 on the host; the
    C(yogurt.phone.bpf_toolchain) role installs them.
  - Devices, namespaces and pins do not survive a reboot; re-run the converge (the
    C(yogurt.phone.yogurt_phone) role can install a boot-time unit for that).
requirements:
  - pyroute2 >= 0.9
  - libbpf >= 1.1 (C(libbpf.so.1))
seealso:
  - module: yogurt.phone.netns
  - module: yogurt.phone.wire
  - module: yogurt.phone.phone_info
"""

EXAMPLES = r"""
- name: Build the default phone
  yogurt.phone.phones:
    veth_object: /var/lib/yogurt-phone/bpf/wire_veth.o
    netkit_object: /var/lib/yogurt-phone/bpf/wire_netkit.o

- name: Build the phones of the inventory, removing any other phone
  yogurt.phone.phones:
    phones: "{{ yogurt_phones }}"
    veth_object: /var/lib/yogurt-phone/bpf/wire_veth.o
    netkit_object: /var/lib/yogurt-phone/bpf/wire_netkit.o
    exclusive: true

- name: Remove every phone this collection built
  yogurt.phone.phones:
    phones: []
    exclusive: true
"""

RETURN = r"""
phones:
  description: One entry per phone handled, in input order (then removed unlisted phones).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The phone.
      type: str
      sample: phone
    state:
      description: V(present) or V(absent).
      type: str
      sample: present
    backend:
      description: The backend the phone is built on.
      type: str
      returned: when state is present
      sample: veth
    backend_reason:
      description: Why that backend was chosen.
      type: str
      returned: when state is present
      sample: "auto: Linux 6.18.4 has no netkit (Unknown device type); veth with tcx"
    changed:
      description: Whether this phone changed.
      type: bool
    actions:
      description: What was done (or would be done, in check mode), in order.
      type: list
      elements: str
      sample: ["created namespace yogurt-1", "created veth pair yg1-host <-> yogurt-1/yg1-cont"]
    ends:
      description: The two ends as converged, with the host-side ifindex.
      type: list
      elements: dict
      returned: when state is present
    wire:
      description: The wire's programs, links and maps (ids and tags).
      type: dict
      returned: when state is present
kernel:
  description: What the kernel probes found (release, netkit, tcx).
  returned: always
  type: dict
  sample: {"kernel": "6.18.4", "netkit": false, "tcx": true}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.yogurt.phone.plugins.module_utils.links import HAS_PYROUTE2, PYROUTE2_IMPORT_ERROR
from ansible_collections.yogurt.phone.plugins.module_utils.phone_converge import (
    HostConverger,
    PhoneError,
    host_lock,
    probe_host,
)
from ansible_collections.yogurt.phone.plugins.module_utils.phone_model import PhoneInputError, normalize_phones


def main():
    module = AnsibleModule(
        argument_spec=dict(
            phones=dict(type="list", elements="raw"),
            veth_object=dict(type="path"),
            netkit_object=dict(type="path"),
            host_addresses=dict(type="str", default="remove", choices=["remove", "report"]),
            exclusive=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    if not HAS_PYROUTE2:
        module.fail_json(msg=f"pyroute2 is missing on this host ({PYROUTE2_IMPORT_ERROR}): "
                             "run the yogurt.phone.bpf_toolchain role, or pip install 'pyroute2>=0.9'")
    try:
        phones = normalize_phones(module.params["phones"])
    except PhoneInputError as exc:
        module.fail_json(msg="invalid yogurt_phones, nothing was changed: " + "; ".join(exc.problems),
                         problems=exc.problems)
    objects = {"veth": module.params["veth_object"], "netkit": module.params["netkit_object"]}
    try:
        with host_lock():
            facts = probe_host()
            converger = HostConverger(phones, facts, objects, check_mode=module.check_mode,
                                      host_addresses=module.params["host_addresses"],
                                      exclusive=module.params["exclusive"])
            result = converger.run()
    except PhoneError as exc:
        module.fail_json(msg=str(exc))
    for text in result.pop("warnings"):
        module.warn(text)
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    module.exit_json(kernel=facts, **result)


if __name__ == "__main__":
    main()
