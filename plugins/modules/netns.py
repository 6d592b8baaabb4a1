#!/usr/bin/python
# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: netns
short_description: Manage named Linux network namespaces
version_added: 1.0.0
description:
  - Creates or removes a named network namespace, kept as a bind mount under C(/run/netns)
    exactly as C(ip netns add) does, so namespaces made here and by C(ip netns) are the same
    thing.
  - Names match exactly; a namespace C(yogurt-10) never counts as C(yogurt-1).
  - Brings the loopback device of the namespace up (or down) as asked.
  - Removing a namespace removes every device still inside it once nothing else holds it.
author:
  - yogurt.phone developers (@yogurt-phone)
extends_documentation_fragment:
  - yogurt.phone._attributes
options:
  name:
    description:
      - Name of the namespace, one path component under C(/run/netns).
      - Must not be empty, C(.) or C(..), contain C(/), or be longer than 255 bytes.
    type: str
    required: true
  state:
    description:
      - V(present) creates the namespace if it is missing; V(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
  loopback:
    description:
      - Whether the C(lo) device inside the namespace is up. Ignored with O(state=absent).
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details: Reports what would change and changes nothing.
  diff_mode:
    support: full
    details: Shows the namespace's state and loopback before and after.
  idempotent:
    support: full
    details: A second run with the same options reports no change.
notes:
  - Needs root (C(CAP_SYS_ADMIN)) on the target.
seealso:
  - module: yogurt.phone.phones
"""

EXAMPLES = r"""
- name: Create the namespace of the first yogurt
  yogurt.phone.netns:
    name: yogurt-1

- name: Create a namespace whose loopback stays down
  yogurt.phone.netns:
    name: quiet-ns
    loopback: false

- name: Remove it again
  yogurt.phone.netns:
    name: yogurt-1
    state: absent
"""

RETURN = r"""
netns:
  description: The namespace after the run (what it would be, in check mode).
  returned: always
  type: dict
  contains:
    name:
      description: Name of the namespace.
      type: str
      sample: yogurt-1
    path:
      description: The bind mount that holds it.
      type: str
      sample: /run/netns/yogurt-1
    state:
      description: V(present) or V(absent).
      type: str
      sample: present
    loopback:
      description: V(up) or V(down) when present, V(null) when absent.
      type: str
      sample: up
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.yogurt.phone.plugins.module_utils._diff import DifferenceTracker
from ansible_collections.yogurt.phone.plugins.module_utils._netns import (
    NetnsError,
    create_netns,
    delete_netns,
    loopback_is_up,
    netns_exists,
    netns_path,
    set_loopback,
)
from ansible_collections.yogurt.phone.plugins.module_utils._names import netns_problem


class NetnsModule:
    def __init__(self, module):
        self.module = module
        self.name = module.params["name"]
        self.state = module.params["state"]
        self.loopback = module.params["loopback"]

    def current(self):
        if not netns_exists(self.name):
            return {"state": "absent", "loopback": None}
        return {"state": "present", "loopback": "up" if loopback_is_up(self.name) else "down"}

    def execute(self):
        reason = netns_problem(self.name)
        if reason:
            self.module.fail_json(msg=f"name: {reason}")
        before = self.current()
        if self.state == "absent":
            after = {"state": "absent", "loopback": None}
        else:
            after = {"state": "present", "loopback": "up" if self.loopback else "down"}

        tracker = DifferenceTracker()
        for key in ("state", "loopback"):
            tracker.add(key, before[key], after[key])

        if tracker.changed and not self.module.check_mode:
            if self.state == "absent":
                delete_netns(self.name)
            else:
                if before["state"] == "absent":
                    create_netns(self.name)
                set_loopback(self.name, self.loopback)

        result = {
            "changed": tracker.changed,
            "netns": dict(name=self.name, path=netns_path(self.name), **after),
        }
        if self.module._diff:
            result["diff"] = tracker.get_diff()
        self.module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            loopback=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    try:
        NetnsModule(module).execute()
    except NetnsError as exc:
        module.fail_json(msg=f"netns '{module.params['name']}': {exc}")


if __name__ == "__main__":
    main()
