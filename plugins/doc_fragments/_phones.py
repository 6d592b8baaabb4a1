# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This doc fragment is PRIVATE to the yogurt.phone collection: it can change at any time.
# Do not use it from other collections or standalone modules.

from __future__ import annotations


class ModuleDocFragment:
    # The phones of a host, as in the yogurt_phones inventory contract (modules phones and call).
    DOCUMENTATION = r"""
options:
  phones:
    description:
      - The phones of this host, as in the C(yogurt_phones) inventory contract.
      - When omitted, the single default phone C(phone) with namespaces C(yogurt-1) and
        C(yogurt-2), devices C(yg1-host)/C(yg1-cont) and C(yg2-host)/C(yg2-cont), and
        addresses C(10.42.0.1/24) and C(10.42.0.2/24).
      - "Each phone: C(name) (V([a-z0-9_-]), unique per host), C(backend) (V(auto), V(netkit)
        or V(veth), default V(auto)), C(state) (V(present) or V(absent), default V(present)),
        C(ends) (exactly two, each with C(netns), C(host_ifname), C(cont_ifname) and
        C(addresses), a list of CIDRs), optional C(mtu) (68 to 65535) and C(mode) (V(l3) or
        V(l2), netkit only, default V(l3))."
      - The whole list is checked before anything is done; a bad entry fails the task with
        every problem named (host, phone, field and fix).
    type: list
    elements: raw
"""
