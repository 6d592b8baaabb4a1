#!/usr/bin/python
# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bpf_compile
short_description: Compile BPF C sources into objects on the host, once per distinct source
version_added: 1.0.0
description:
  - Takes BPF C sources as text (so no file has to be copied first), writes them under
    O(dest) and compiles each program with C(clang -O2 -g -target bpf).
  - Objects are named by a hash of every source, the flags and the compiler version. When
    that object exists, nothing is compiled and nothing changes.
  - Objects of older hashes in O(dest) are removed.
  - "No kernel headers are needed: the programs touch only C(__sk_buff), from the uapi
    C(linux/bpf.h) and libbpf's C(bpf_helpers.h) (package libbpf-dev)."
author:
  - yogurt.phone developers (@yogurt-phone)
extends_documentation_fragment:
  - yogurt.phone._attributes
  - yogurt.phone._compile
attributes:
  check_mode:
    support: full
    details: Reports whether a compile would happen; writes nothing.
  diff_mode:
    support: full
    details: Shows the object paths before and after.
  idempotent:
    support: full
    details: The same sources, flags and compiler give the same object, compiled once.
requirements:
  - clang with the BPF target, libbpf-dev (for C(bpf/bpf_helpers.h))
"""

EXAMPLES = r"""
- name: Compile the wire programs
  yogurt.phone.bpf_compile:
    sources:
      wire.h: "{{ lookup('ansible.builtin.file', 'bpf/wire.h') }}"
      wire_veth.bpf.c: "{{ lookup('ansible.builtin.file', 'bpf/wire_veth.bpf.c') }}"
    programs: [wire_veth.bpf.c]
  register: compiled

- name: Use the object
  ansible.builtin.debug:
    msg: "{{ compiled.objects.wire_veth }}"
"""

RETURN = r"""
objects:
  description: Program stem to object path.
  returned: always
  type: dict
  sample: {"wire_veth": "/var/lib/yogurt-phone/bpf/wire_veth-3f2a9c0d1e2b4a5c.o"}
hash:
  description: The hash that names the objects.
  returned: always
  type: str
  sample: 3f2a9c0d1e2b4a5c
removed:
  description: Objects of older hashes that were removed.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.yogurt.phone.plugins.module_utils._bpf_build import compile_argument_spec, converge_build_for


def main():
    module = AnsibleModule(argument_spec=compile_argument_spec(), supports_check_mode=True)
    result = converge_build_for(module, module.params)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
