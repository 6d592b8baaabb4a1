#!/usr/bin/python
# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kernel_info
short_description: Probe what the host's kernel offers yogurt-phones
version_added: 1.0.0
description:
  - Finds out by trying, not by reading version numbers (Cilium style), whether the kernel
    can load BPF programs, attach them with tcx, create netkit devices (and with which
    attributes), and whether bpffs is mounted. Every probe works on throwaway objects in a
    scratch network namespace that is removed afterwards.
  - Says which backend C(backend=auto) of the M(yogurt.phone.phones) module would choose, and why.
author:
  - yogurt.phone developers (@yogurt-phone)
extends_documentation_fragment:
  - yogurt.phone._attributes
  - yogurt.phone._attributes.info_module
options: {}
attributes:
  check_mode:
    details: Probes run in check mode too; they change nothing that outlives them.
requirements:
  - pyroute2 >= 0.9, libbpf (C(libbpf.so.1))
"""

EXAMPLES = r"""
- name: Probe the kernel
  yogurt.phone.kernel_info:
  register: kernel

- name: Show what auto picks
  ansible.builtin.debug:
    msg: "{{ kernel.auto_backend }}: {{ kernel.auto_reason }}"
"""

RETURN = r"""
kernel:
  description: The probe results.
  returned: always
  type: dict
  sample: {"kernel": "6.18.4", "libbpf": "1.4", "bpffs": true, "bpf_load": true, "tcx": true,
           "netkit_attach": false, "netkit": false, "tcx_reason": "tcx attach works",
           "netkit_attach_reason": "netkit attach refused (Invalid argument): needs Linux >= 6.7 built with CONFIG_NETKIT",
           "netkit_reason": "creating a netkit device failed: Unknown device type",
           "netkit_features": {"scrub": false, "headroom": false, "tailroom": false, "pairing": false}}
  contains:
    kernel:
      description: The running kernel's release.
      type: str
      sample: 6.18.4
    libbpf:
      description: Version of C(libbpf.so.1); V(null) when it cannot be loaded (the later probes then do not run).
      type: str
      sample: "1.4"
    bpffs:
      description: Whether bpffs is mounted on C(/sys/fs/bpf).
      type: bool
      sample: true
    bpf_load:
      description: Whether a BPF program could be loaded.
      type: bool
      sample: true
    tcx:
      description: Whether programs attach with tcx links (Linux >= 6.6).
      type: bool
      sample: true
    netkit_attach:
      description: Whether the kernel can attach netkit programs (Linux >= 6.7 with C(CONFIG_NETKIT)).
      type: bool
      sample: false
    netkit_attach_reason:
      description: What the netkit attach probe found, in words.
      type: str
      sample: "netkit attach refused (Invalid argument): needs Linux >= 6.7 built with CONFIG_NETKIT"
    netkit_features:
      description:
        - C(scrub), C(headroom), C(tailroom) and C(pairing), whether the kernel knows each netkit setting.
        - C(pairing) (C(IFLA_NETKIT_PAIRING), Linux >= 7.1) means the kernel can make a single netkit
          device, without a peer (O(yogurt.phone.netkit#module:pairing=single)).
      type: dict
      returned: when the netkit device probe ran
      sample: {"scrub": true, "headroom": false, "tailroom": false, "pairing": false}
    netkit:
      description: Whether netkit devices can be created.
      type: bool
      sample: false
    netkit_reason:
      description: What the netkit device probe found, in words (why it did not run, when libbpf or a
        BPF program load failed).
      type: str
      sample: "creating a netkit device failed: Unknown device type"
    tcx_reason:
      description: What the tcx probe found, in words (why it did not run, when libbpf or a BPF
        program load failed).
      type: str
      sample: tcx attach works
auto_backend:
  description: The backend that C(backend=auto) picks on this host.
  returned: always
  type: str
  sample: veth
auto_reason:
  description: Why.
  returned: always
  type: str
  sample: "auto: Linux 6.18.4 has no netkit (creating a netkit device failed: Unknown device type); veth with tcx"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.yogurt.phone.plugins.module_utils._phone_converge import resolve_backend
from ansible_collections.yogurt.phone.plugins.module_utils._probes import probe_kernel
from ansible_collections.yogurt.phone.plugins.module_utils._pyroute2_dep import assert_required_pyroute2


def main():
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    assert_required_pyroute2(module)
    facts = probe_kernel()
    backend, reason = resolve_backend("auto", facts)
    module.exit_json(changed=False, kernel=facts, auto_backend=backend, auto_reason=reason)


if __name__ == "__main__":
    main()
