#!/usr/bin/python
# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: toolchain_info
short_description: Read what a host has of the BPF toolchain yogurt-phones need, in one run
version_added: 2.0.0
description:
  - Reads, without changing anything, what the M(yogurt.phone.phones) module and the C(yogurt.phone.bpf_toolchain)
    role need to know about a host. Its distribution and kernel release, which of the given packages are installed
    and their versions, the suites apt's sources name and the package lists apt has, whether bpffs is mounted, the
    pyroute2 of the Python that runs the modules, and what the kernel offers (the probe of
    M(yogurt.phone.kernel_info)).
  - Works on a host that has none of the toolchain yet (no pyroute2, no libbpf); the kernel probe then does not run
    and RV(kernel_reason) says why.
  - The C(yogurt.phone.bpf_toolchain) role runs it once per host, so that a host that already has everything costs
    one module process.
author:
  - yogurt.phone developers (@yogurt-phone)
extends_documentation_fragment:
  - yogurt.phone._attributes
  - yogurt.phone._attributes.info_module
options:
  packages:
    description:
      - Package names to look up with C(dpkg-query). Names that are not installed (or unknown to dpkg) are left out
        of RV(packages).
    type: list
    elements: str
    default: []
  kernel_headers:
    description:
      - Also look up the headers package of the running kernel, C(linux-headers-<release>) (bcc compiles against it).
    type: bool
    default: false
  probe_kernel:
    description:
      - Probe the kernel as M(yogurt.phone.kernel_info) does (needs pyroute2 >= 0.9; otherwise RV(kernel) is
        V(null) and RV(kernel_reason) says why).
    type: bool
    default: true
attributes:
  check_mode:
    details: The kernel probe runs in check mode too; it changes nothing that outlives it.
requirements:
  - dpkg-query, for RV(packages) (without it, RV(packages) is empty)
  - pyroute2 >= 0.9 and libbpf (C(libbpf.so.1)), for the kernel probe only
seealso:
  - module: yogurt.phone.kernel_info
"""

EXAMPLES = r"""
- name: Read what this host has of the toolchain
  yogurt.phone.toolchain_info:
    packages: [clang, llvm, bpftool, iproute2, libbpf1, libbpf-dev]
  register: toolchain

- name: Say what is missing
  ansible.builtin.debug:
    msg: >-
      {{ toolchain.distribution.name }} {{ toolchain.distribution.major_version }}: missing
      {{ ['clang', 'bpftool'] | reject('in', toolchain.packages) | list }}; pyroute2 {{ toolchain.pyroute2 or 'none' }};
      bpffs {{ toolchain.bpffs }}; backports {{ 'bookworm-backports' in toolchain.apt.suites }}

- name: Show what backend=auto picks
  ansible.builtin.debug:
    msg: "{{ toolchain.auto_backend }}: {{ toolchain.auto_reason }}"
  when: toolchain.kernel is not none
"""

RETURN = r"""
distribution:
  description: The distribution, named as Ansible's facts name it (C(ansible_facts['distribution']) and so on).
  returned: always
  type: dict
  sample: {"name": "Debian", "version": "12.11", "major_version": "12", "release": "bookworm"}
  contains:
    name:
      description: The distribution's name (C(Debian), C(Ubuntu)).
      type: str
    version:
      description: Its version.
      type: str
    major_version:
      description: The part of the version before the first dot.
      type: str
    release:
      description: Its code name, empty when it has none.
      type: str
kernel_release:
  description: The running kernel's release (C(uname -r)).
  returned: always
  type: str
  sample: 6.12.95+deb12-amd64
python:
  description: The Python that runs the modules on this host.
  returned: always
  type: dict
  sample: {"executable": "/usr/bin/python3", "version": "3.11.2"}
  contains:
    executable:
      description: Its path.
      type: str
    version:
      description: Its version.
      type: str
pyroute2:
  description: The version of the pyroute2 that this Python imports, V(null) when it has none.
  returned: always
  type: str
  sample: 0.9.7
packages:
  description: The installed packages among O(packages) (and the kernel's headers with O(kernel_headers)) and their
    versions, epoch included.
  returned: always
  type: dict
  sample: {"clang": "1:14.0-55.7~deb12u1", "bpftool": "7.5.0+6.12.95-1~bpo12+1"}
kernel_headers:
  description: The name of the running kernel's headers package (whether or not it is installed).
  returned: always
  type: str
  sample: linux-headers-6.12.95+deb12-amd64
apt:
  description: What apt has.
  returned: always
  type: dict
  sample: {"suites": ["bookworm", "bookworm-backports", "bookworm-updates"],
           "lists": ["deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4"]}
  contains:
    suites:
      description: The suites that apt's enabled sources name (C(/etc/apt/sources.list) and C(sources.list.d), both
        formats); empty without apt.
      type: list
      elements: str
    lists:
      description: The names of the package lists in C(/var/lib/apt/lists); empty on a host whose lists were cleaned.
      type: list
      elements: str
bpffs:
  description: Whether bpffs is mounted on C(/sys/fs/bpf).
  returned: always
  type: bool
  sample: true
kernel:
  description: The kernel probe, as RV(yogurt.phone.kernel_info#module:kernel) returns it; V(null) when it did not
    run (see RV(kernel_reason)).
  returned: always
  type: dict
  sample: {"kernel": "6.18.4", "libbpf": "1.4", "bpffs": true, "bpf_load": true, "tcx": true, "netkit": false}
kernel_reason:
  description: Why the kernel probe did not run; empty when it did.
  returned: always
  type: str
  sample: "pyroute2 is missing on this host"
auto_backend:
  description: The backend that C(backend=auto) picks on this host; V(null) when the kernel was not probed.
  returned: always
  type: str
  sample: veth
auto_reason:
  description: Why; V(null) when the kernel was not probed.
  returned: always
  type: str
  sample: "auto: Linux 6.18.4 has no netkit (creating a netkit device failed: Unknown device type); veth with tcx"
"""

import platform
import sys

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.sys_info import get_distribution, get_distribution_codename, get_distribution_version

from ansible_collections.yogurt.phone.plugins.module_utils import _toolchain as toolchain

PYROUTE2_MIN = (0, 9)


def _packages(module, names):
    dpkg_query = module.get_bin_path("dpkg-query")
    if not names or not dpkg_query:
        return {}
    # rc 1 when some name is unknown to dpkg: the known ones are still printed.
    _rc, out, _err = module.run_command([dpkg_query, "-W", "-f=" + toolchain.DPKG_FORMAT] + list(names))
    return toolchain.dpkg_installed(out.splitlines())


def _probe(pyroute2):
    """(kernel facts, auto backend, auto reason, why not probed)."""
    if pyroute2 is None:
        return None, None, None, "pyroute2 is missing on this host"
    if toolchain.version_tuple(pyroute2) < PYROUTE2_MIN:
        return None, None, None, f"pyroute2 {pyroute2} is older than 0.9"
    # Imported here: they need nothing at import, but a host without the toolchain never probes.
    from ansible_collections.yogurt.phone.plugins.module_utils._phone_converge import resolve_backend  # pylint: disable=import-outside-toplevel
    from ansible_collections.yogurt.phone.plugins.module_utils._probes import probe_kernel  # pylint: disable=import-outside-toplevel
    facts = probe_kernel()
    backend, reason = resolve_backend("auto", facts)
    return facts, backend, reason, ""


def main():
    module = AnsibleModule(
        argument_spec=dict(
            packages=dict(type="list", elements="str", default=[]),
            kernel_headers=dict(type="bool", default=False),
            probe_kernel=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    release = platform.release()
    headers = f"linux-headers-{release}"
    names = list(module.params["packages"]) + ([headers] if module.params["kernel_headers"] else [])
    version = get_distribution_version() or ""
    pyroute2 = toolchain.pyroute2_version()
    result = {
        "changed": False,
        "distribution": {"name": get_distribution() or "", "version": version,
                         "major_version": version.split(".")[0], "release": get_distribution_codename() or ""},
        "kernel_release": release,
        "python": {"executable": sys.executable, "version": platform.python_version()},
        "pyroute2": pyroute2,
        "packages": _packages(module, names),
        "kernel_headers": headers,
        "apt": {"suites": toolchain.apt_suites(), "lists": toolchain.apt_lists()},
        "bpffs": toolchain.bpffs_mounted(),
    }
    kernel, backend, reason, why_not = (None, None, None, "not asked (probe_kernel: false)")
    if module.params["probe_kernel"]:
        kernel, backend, reason, why_not = _probe(pyroute2)
    result.update(kernel=kernel, auto_backend=backend, auto_reason=reason, kernel_reason=why_not)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
