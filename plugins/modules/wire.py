#!/usr/bin/python
# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wire
short_description: Attach, update or remove the eBPF wire of one yogurt-phone
version_added: 1.0.0
description:
  - Loads a clang-built BPF object (C(bpf/wire_veth.bpf.c) or C(bpf/wire_netkit.bpf.c)) for one
    phone, pins its maps, programs and links under C(/sys/fs/bpf/yogurt/<phone>/), fills the
    C(wires) map with the host-side ifindexes of both ends and attaches the programs.
  - C(netkit) backend, two links per end on the host-side (primary) device, C(netkit_peer)
    and C(netkit_primary).
  - C(veth) backend, two links per end, C(wire_in) as C(tcx_ingress) on the host-side device
    (a tc clsact ingress filter with O(attach=tc)) and C(guard_xdp), a native XDP link on the
    container-side device inside the yogurt (in both attach modes). The XDP guard drops every
    frame the host side transmits (the host's stack, root's AF_PACKET frames with or without
    C(PACKET_QDISC_BYPASS)) before any packet socket in the yogurt sees it; the wire's own
    packets arrive by C(bpf_redirect_peer) and pass no XDP.
  - Links or filters this wire does not use on veth (a C(tcx_egress) drop on the host side, a
    C(tcx_ingress) guard in the yogurt) are detached once the XDP guard is in.
  - Idempotent on what the kernel reports, program tags, link presence on the right ifindex
    (for XDP, the link's ifindex and the device's C(IFLA_XDP) program) and the map content. A changed object replaces the program of each pinned link
    atomically (C(BPF_LINK_UPDATE)); the maps, and so routes and counters, are kept.
    A recreated device (new ifindex) gets new links and a fixed C(wires) map.
  - Mounts bpffs on C(/sys/fs/bpf) if nothing is mounted there.
  - The pairs and namespaces must exist; this module only wires them.
author:
  - yogurt.phone developers (@yogurt-phone)
extends_documentation_fragment:
  - yogurt.phone._attributes
options:
  phone:
    description:
      - Name of the phone, C([a-z0-9_-]), names the pin directory C(/sys/fs/bpf/yogurt/<phone>).
    type: str
    required: true
  backend:
    description:
      - Which datapath the object implements. V(auto) takes the kind of the host-side devices.
      - The module fails if the devices are of another kind than the one asked for.
    type: str
    choices: [auto, netkit, veth]
    default: auto
  ends:
    description:
      - The two ends of the phone. Packets sent by the yogurt of end 0 go to the yogurt of
        end 1 and back. Required with O(state=present).
      - With O(state=absent) they are optional; given, tc filters (O(attach=tc)) are also
        removed from the yogurt-side devices, not only from the host-side ones.
    type: list
    elements: dict
    suboptions:
      host_ifname:
        description: Host-side device of the pair, in the namespace the module runs in.
        type: str
        required: true
      cont_netns:
        description: Named network namespace (C(/run/netns/<name>)) of the yogurt.
        type: str
        required: true
        aliases: [netns]
      cont_ifname:
        description: Container-side device of the pair, inside O(ends[].cont_netns).
        type: str
        required: true
  attach:
    description:
      - How the veth backend attaches its programs. V(tcx) uses bpf_link (Linux >= 6.6),
        V(tc) direct-action filters on a clsact qdisc (older kernels; the filters hold the
        programs, no link pins), V(auto) asks the kernel whether it has tcx.
      - Ignored for netkit, which always attaches through netkit links.
    type: str
    choices: [auto, tcx, tc]
    default: auto
  object:
    description:
      - Path of the compiled BPF object on the target (see C(bpf/build.py) or
        M(yogurt.phone.bpf_compile)). Required with O(state=present).
    type: path
  state:
    description:
      - V(present) attaches the wire; V(absent) unpins every link (which detaches it),
        program and map of the phone and removes its pin directory.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    details:
      - Reports what would change and changes nothing. The object is loaded into the kernel
        (and closed again) to learn its program tags, so check mode also proves it loads.
  diff_mode:
    support: full
    details: Shows program tags, links and the wires map before and after.
  idempotent:
    support: full
    details: A second run with the same object and devices reports no change.
notes:
  - Needs root (C(CAP_BPF), C(CAP_NET_ADMIN), C(CAP_SYS_ADMIN) to enter namespaces) and
    libbpf 1.x, pyroute2 on the target. tcx needs Linux >= 6.6, netkit Linux >= 6.7 with
    C(CONFIG_NETKIT).
  - Root on the host can still capture on the host-side devices; it cannot send into a yogurt.
seealso:
  - module: yogurt.phone.phone_info
"""

EXAMPLES = r"""
- name: Wire two veth pairs together
  yogurt.phone.wire:
    phone: phone
    backend: veth
    object: /var/lib/yogurt-phone/bpf/wire_veth-0123456789abcdef.o
    ends:
      - {host_ifname: yg1-host, cont_netns: yogurt-1, cont_ifname: yg1-cont}
      - {host_ifname: yg2-host, cont_netns: yogurt-2, cont_ifname: yg2-cont}

- name: Remove the wire (the pairs stay)
  yogurt.phone.wire:
    phone: phone
    state: absent
"""

RETURN = r"""
backend:
  description: The backend the wire uses (the kind of the host-side devices).
  returned: state is present
  type: str
  sample: veth
attach_mode:
  description: V(netkit), V(tcx) or V(tc), how the programs are attached.
  returned: state is present
  type: str
  sample: tcx
actions:
  description: What was done (or would be done in check mode), one sentence each.
  returned: always
  type: list
  elements: str
  sample: ["attach link_end0_in: wire_in as tcx_ingress on yg1-host (ifindex 7)"]
programs:
  description: Pinned programs after the run.
  returned: state is present and not check mode
  type: list
  elements: dict
  sample: [{"name": "wire_in", "id": 46, "tag": "9ef8c75ba82c9ae1"}]
links:
  description: Pinned links after the run; C(defunct) means the device is gone.
  returned: state is present and not check mode
  type: list
  elements: dict
  sample: [{"pin": "link_end0_in", "id": 6, "type": "tcx", "attach_type": "tcx_ingress",
            "ifindex": 2, "prog_id": 46, "program": "wire_in", "defunct": false}]
maps:
  description: Content of the wires map and the counters (summed over CPUs) after the run.
  returned: state is present and not check mode
  type: dict
  sample: {"wires": [{"ifindex": 2, "target": 3, "direction": 0}],
           "counters": {"forwarded_packets_0to1": 5, "refused": 0}}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.yogurt.phone.plugins.module_utils import _wire as wire
from ansible_collections.yogurt.phone.plugins.module_utils._bpf import BpfError
from ansible_collections.yogurt.phone.plugins.module_utils._pyroute2_dep import assert_required_pyroute2


def main():
    module = AnsibleModule(
        argument_spec=dict(
            phone=dict(type="str", required=True),
            backend=dict(type="str", default="auto", choices=["auto", "netkit", "veth"]),
            ends=dict(type="list", elements="dict", options=dict(
                host_ifname=dict(type="str", required=True),
                cont_netns=dict(type="str", required=True, aliases=["netns"]),
                cont_ifname=dict(type="str", required=True),
            )),
            attach=dict(type="str", default="auto", choices=["auto", "tcx", "tc"]),
            object=dict(type="path"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
        ),
        required_if=[("state", "present", ("ends", "object"))],
        supports_check_mode=True,
    )
    assert_required_pyroute2(module)
    p = module.params
    try:
        if p["state"] == "present":
            result = wire.converge_wire(p["phone"], p["backend"], p["ends"], p["object"], module.check_mode,
                                        attach=p["attach"])
        else:
            result = wire.remove_wire(p["phone"], module.check_mode, ends=p["ends"])
    except (wire.WireError, BpfError) as exc:
        module.fail_json(msg=str(exc) if str(exc).startswith("phone") else f"phone {p['phone']}: {exc}")
    before, after = result.pop("before", {}), result.pop("after", {})
    if module._diff:
        result["diff"] = {"before": before, "after": after}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
