# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: phone_problems
short_description: List what is wrong with a yogurt_phones value
version_added: 1.0.0
description:
  - Checks a C(yogurt_phones) list against the inventory contract on the controller, before
    any task reaches a host, and returns one sentence per problem (an empty list when the
    input is valid). Each sentence names the phone, the field and the fix.
author:
  - yogurt.phone developers (@yogurt-phone)
positional: _input
options:
  _input:
    description: The C(yogurt_phones) list.
    type: list
    elements: raw
    required: true
"""

EXAMPLES = r"""
- name: Fail early on a bad inventory
  ansible.builtin.assert:
    that: (yogurt_phones | yogurt.phone.phone_problems) | length == 0
    fail_msg: "{{ yogurt_phones | yogurt.phone.phone_problems | join('; ') }}"
"""

RETURN = r"""
_value:
  description: One sentence per problem; empty when valid.
  type: list
  elements: str
"""

from ansible_collections.yogurt.phone.plugins.module_utils._phone_model import PhoneInputError, normalize_phones


def phone_problems(phones):
    try:
        normalize_phones(phones)
    except PhoneInputError as exc:
        return exc.problems
    return []


class FilterModule:
    def filters(self):
        return {"phone_problems": phone_problems}
