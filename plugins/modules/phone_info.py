#!/usr/bin/python
# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: phone_info
short_description: Report the wires of yogurt-phones, their programs, links and counters
version_added: 1.0.0
description:
  - Reads what is pinned under C(/sys/fs/bpf/yogurt/) for one phone or for all of them,
    the programs (id, tag), the links (where they are attached, or that their device is gone),
    the C(wires) map and the counters summed over all CPUs.
  - The counters show forwarded packets and bytes per direction and how many packets were
    refused, so an operator can see that an injection attempt from the host was stopped.
  - Optionally probes the kernel (tcx, netkit) by trying the real operation in a scratch
    network namespace.
author:
  - yogurt.phone developers (@yogurt-phone)
extends_documentation_fragment:
  - yogurt.phone._attributes
  - yogurt.phone._attributes.info_module
options:
  name:
    description:
      - Name of one phone. All phones when omitted.
    type: str
  probe:
    description:
      - Also report what the kernel supports (RV(kernel)).
    type: bool
    default: false
notes:
  - Needs root to open pinned BPF objects.
seealso:
  - module: yogurt.phone.wire
"""

EXAMPLES = r"""
- name: Read the counters of the default phone
  yogurt.phone.phone_info:
    name: phone
  register: info

- name: Show how many injection attempts were refused
  ansible.builtin.debug:
    msg: "{{ info.phones[0].counters.refused }}"

- name: Everything, plus kernel features
  yogurt.phone.phone_info:
    probe: true
"""

RETURN = r"""
phones:
  description: One entry per phone found (an empty list if none).
  returned: always
  type: list
  elements: dict
  contains:
    phone:
      description: Name of the phone (its pin directory).
      type: str
      sample: phone
    switchboard:
      description: The namespace that holds the phone's host sides; V("") for the host's own namespace.
      type: str
      sample: yogurt-switchboard
      version_added: 2.0.0
    exists:
      description: Whether anything is pinned for the phone; always V(true), phones with nothing pinned are left out.
      type: bool
      sample: true
    backend:
      description: V(netkit) or V(veth), from the kind of its links or filters; null if none are found.
      type: str
      sample: veth
    attach_mode:
      description: V(netkit), V(tcx) (bpf_link) or V(tc) (clsact filters, kernels < 6.6).
      type: str
      sample: tcx
    filters:
      description: In tc mode, our filters on the host-side devices, C(ifindex), C(direction),
        C(name), C(prog_id), C(tag).
      type: list
      elements: dict
    programs:
      description: Pinned programs, C(name), C(id), C(tag).
      type: list
      elements: dict
    links:
      description:
        - Pinned links, C(pin), C(id), C(type) (V(tcx), V(netkit) or V(xdp)), C(attach_type), C(ifindex),
          C(prog_id), C(program), C(defunct) (its device is gone, or it was detached).
        - On veth, C(link_end<i>_xdp) is the XDP guard (C(guard_xdp), native XDP) on the container-side
          device of end i, inside its yogurt; its C(ifindex) is that device's in the yogurt's namespace.
          It is a bpf_link in both attach modes, so a tc-mode phone has these two links too.
      type: list
      elements: dict
    wires:
      description: The wires map, C(ifindex) -> C(target) with C(direction).
      type: list
      elements: dict
    counters:
      description:
        - Summed over CPUs. C(forwarded_packets_0to1), C(forwarded_bytes_0to1),
          C(forwarded_packets_1to0), C(forwarded_bytes_1to0), C(refused), C(unknown_ifindex).
        - C(refused) counts what the host transmitted towards a yogurt, every frame of it (its own
          stack, AF_PACKET with or without C(PACKET_QDISC_BYPASS)); netkit drops it in the primary
          program, veth in the XDP guard on the yogurt-side device.
        - C(unknown_ifindex) counts packets from a device missing from the wires map.
      type: dict
      sample: {"forwarded_packets_0to1": 5, "refused": 20, "unknown_ifindex": 0}
kernel:
  description:
    - What the kernel probes found, by trying each on throwaway objects in a scratch network namespace;
      the same facts, in the same shape, as RV(yogurt.phone.kernel_info#module:kernel) of the
      M(yogurt.phone.kernel_info) module.
  returned: when O(probe=true)
  type: dict
  sample: {"kernel": "6.18.4", "tcx": true, "netkit": false, "tcx_reason": "tcx attach works"}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.yogurt.phone.plugins.module_utils import _switchboard as switchboard, _wire as wire
from ansible_collections.yogurt.phone.plugins.module_utils._netns import in_netns
from ansible_collections.yogurt.phone.plugins.module_utils._phone_converge import read_records
from ansible_collections.yogurt.phone.plugins.module_utils._bpf import BpfError
from ansible_collections.yogurt.phone.plugins.module_utils._probes import probe_kernel
from ansible_collections.yogurt.phone.plugins.module_utils._pyroute2_dep import assert_required_pyroute2


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str"),
            probe=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    assert_required_pyroute2(module)
    name = module.params["name"]
    result = {"changed": False}
    try:
        names = [name] if name else wire.list_phones()
        records = read_records()
        result["phones"] = []
        for phone in names:
            board = switchboard.of_phones([phone], records)
            with in_netns(board or None):  # tc filters are read on the host sides, where they are
                info = wire.read_wire(phone)
            if info["exists"]:
                result["phones"].append(dict(info, switchboard=board))
        if module.params["probe"]:
            result["kernel"] = probe_kernel()
    except BpfError as exc:
        module.fail_json(msg=f"reading phone {name or '(all)'}: {exc}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
