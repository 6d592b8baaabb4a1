#!/usr/bin/python
# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: call
short_description: Place a test call through yogurt-phones and try to break in from the host
version_added: 0.1.0
description:
  - For every present phone, from each yogurt to every address of the other one, sends
    ICMP echo requests and makes a TCP exchange (a listener opened inside the far yogurt
    echoes a payload back).
  - Then, from the host namespace, writes UDP frames for each yogurt's IPv4 addresses on
    the host-side device through an AF_PACKET socket, with and without qdisc bypass. This
    forces the device and never relies on routing. A socket inside the yogurt must receive
    none of them.
  - Fails when a ping or TCP exchange does not get through, or when an injected frame
    arrives. Packets only ever go to addresses inside the phones' own namespaces.
  - Changes nothing on the host, so it always reports C(changed=false). In check mode it
    runs nothing and reports nothing.
author:
  - yogurt.phone developers (@yogurt-phone)
options:
  phones:
    description: The phones, as in the C(yogurt_phones) inventory contract (default, the one default phone).
    type: list
    elements: raw
  count:
    description: Echo requests per direction and address.
    type: int
    default: 3
  injection:
    description: Whether to make the injection attempt from the host namespace.
    type: bool
    default: true
attributes:
  check_mode:
    support: partial
    details: In check mode nothing is sent and no call is reported (the phones may not exist yet).
    description: Can run in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
  idempotent:
    support: full
    description: Never changes anything.
"""

EXAMPLES = r"""
- name: Call through every phone of the inventory
  yogurt.phone.call:
    phones: "{{ yogurt_phones }}"
"""

RETURN = r"""
calls:
  description: One entry per present phone.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The phone.
      type: str
    ok:
      description: Whether every check passed.
      type: bool
    checks:
      description: Each check with C(ok) and a C(detail) line.
      type: list
      elements: dict
      sample: [{"check": "ping yogurt-1 -> 10.42.0.2", "ok": true, "detail": "3/3 replies"}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.yogurt.phone.plugins.module_utils.call import call_phone
from ansible_collections.yogurt.phone.plugins.module_utils.links import HAS_PYROUTE2, open_ipr, read_namespace
from ansible_collections.yogurt.phone.plugins.module_utils.phone_model import PhoneInputError, normalize_phones


def read_cont_mac(end):
    ipr = open_ipr(end["netns"])
    try:
        dev = read_namespace(ipr).get(end["cont_ifname"])
        return dev["mac"] if dev else None
    finally:
        ipr.close()


def main():
    module = AnsibleModule(
        argument_spec=dict(
            phones=dict(type="list", elements="raw"),
            count=dict(type="int", default=3),
            injection=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    try:
        phones = [p for p in normalize_phones(module.params["phones"]) if p["state"] == "present"]
    except PhoneInputError as exc:
        module.fail_json(msg="invalid yogurt_phones: " + "; ".join(exc.problems))
    if module.check_mode:
        module.exit_json(changed=False, calls=[], skipped=True, msg="check mode: no call placed")
    calls = []
    for phone in phones:
        try:
            calls.append(call_phone(phone, count=module.params["count"], injection=module.params["injection"],
                                    read_mac=read_cont_mac if HAS_PYROUTE2 else None))
        except OSError as exc:
            calls.append({"name": phone["name"], "ok": False,
                          "checks": [{"check": "call", "ok": False, "detail": f"{exc}"}]})
    failed = [f"phone '{c['name']}': " + ", ".join(f"{x['check']} ({x['detail']})" for x in c["checks"] if not x["ok"])
              for c in calls if not c["ok"]]
    if failed:
        module.fail_json(msg="the call failed: " + "; ".join(failed), calls=calls)
    module.exit_json(changed=False, calls=calls)


if __name__ == "__main__":
    main()
