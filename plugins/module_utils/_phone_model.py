# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The phone model: the `yogurt_phones` inventory contract, normalized and validated.

Everything here is pure data checking, with no kernel access, so that bad input fails
before anything on the host is changed. Every message names the phone, the field and a
fix; the caller adds the host. The name checks (device, namespace and phone names) and
the backend names live in _names, below this file and the device layers alike.

PRIVATE to the yogurt.phone collection (like community.crypto's module_utils): no public API,
names may change in any release.
"""

from __future__ import annotations

import ipaddress

from ansible_collections.yogurt.phone.plugins.module_utils._names import (
    BACKEND_CHOICES,
    ifname_problem,
    netns_problem,
    phone_name_problem,
)

STATES = ("present", "absent")

DEFAULT_PHONE = {
    "name": "phone",
    "backend": "auto",
    "state": "present",
    "ends": [
        {"netns": "yogurt-1", "host_ifname": "yg1-host", "cont_ifname": "yg1-cont", "addresses": ["10.42.0.1/24"]},
        {"netns": "yogurt-2", "host_ifname": "yg2-host", "cont_ifname": "yg2-cont", "addresses": ["10.42.0.2/24"]},
    ],
}

END_KEYS = ("netns", "host_ifname", "cont_ifname", "addresses")
PHONE_KEYS = ("name", "backend", "state", "ends", "mtu", "mode")


class PhoneInputError(Exception):
    """Invalid inventory. `problems` holds one sentence per problem."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def address_problem(value):
    if not isinstance(value, str) or "/" not in value:
        return f"{value!r} is not a CIDR address: write it with its prefix length, e.g. '10.42.0.1/24' or 'fd42::1/64'"
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError as exc:
        return f"{value!r} is not a CIDR address ({exc}): write it like '10.42.0.1/24' or 'fd42::1/64'"
    if iface.ip.is_multicast or iface.ip.is_unspecified:
        return f"{value!r} is a multicast or unspecified address: give a unicast address"
    return None


def _label(phone, index):
    name = phone.get("name") if isinstance(phone, dict) else None
    return f"phone '{name}'" if isinstance(name, str) and name else f"phone #{index + 1}"


def normalize_phones(phones):
    """Check the whole list; return normalized copies or raise PhoneInputError with every problem.

    A phone: name, backend (auto), state (present), ends (exactly two), optional mtu and
    mode (netkit l3|l2). An end: netns, host_ifname, cont_ifname, addresses (list of CIDR).
    """
    if phones is None:
        phones = [DEFAULT_PHONE]
    if not isinstance(phones, list):
        raise PhoneInputError(["yogurt_phones must be a list of phones (see the inventory contract: docs/docsite/rst/guide_getting_started.rst)"])
    checker = _Checker()
    result = []
    for index, phone in enumerate(phones):
        normalized = checker.phone(index, phone)
        if normalized is not None:
            result.append(normalized)
    if checker.problems:
        raise PhoneInputError(checker.problems)
    return result


class _Checker:
    """Collects every problem of one list of phones, and what must be unique across it."""

    def __init__(self):
        self.problems = []
        self.seen_names = set()
        # Host-side device names share the host namespace; each yogurt namespace serves one end.
        self.seen = {"host_ifname": {}, "netns": {}}

    def bad(self, where, field, text):
        self.problems.append(f"{where}, field '{field}': {text}")

    def phone(self, index, phone):
        where = _label(phone, index)
        if not isinstance(phone, dict):
            self.problems.append(f"{where}: each phone must be a mapping with name, backend, state and ends")
            return None
        for key in sorted(set(phone) - set(PHONE_KEYS)):
            self.bad(where, key, f"unknown field; the fields of a phone are {', '.join(PHONE_KEYS)}")
        normalized = self._fields(where, phone)
        ends = phone.get("ends")
        if ends is None and normalized["name"] == DEFAULT_PHONE["name"]:
            ends = DEFAULT_PHONE["ends"]
        if not isinstance(ends, list) or len(ends) != 2:
            self.bad(where, "ends", "a phone has exactly two ends, each with netns, host_ifname, cont_ifname and "
                     "addresses")
            ends = []
        normalized["ends"] = [e for e in (self._end(where, i, end) for i, end in enumerate(ends)) if e is not None]
        for end_index, end in enumerate(normalized["ends"]):
            self._unique(where, end_index, end)
        return normalized

    def _fields(self, where, phone):
        """name, backend, state, mode and mtu of one phone, each checked."""
        name = phone.get("name")
        text = phone_name_problem(name)
        if text:
            self.bad(where, "name", text)
        elif name in self.seen_names:
            self.bad(where, "name", f"'{name}' is used by two phones on this host: give each phone a unique name")
        else:
            self.seen_names.add(name)
        backend = phone.get("backend", "auto")
        if backend not in BACKEND_CHOICES:
            self.bad(where, "backend", f"{backend!r} is not a backend: use one of {', '.join(BACKEND_CHOICES)}")
        state = phone.get("state", "present")
        if state not in STATES:
            self.bad(where, "state", f"{state!r} is not a state: use present or absent")
        mode = phone.get("mode", "l3")
        if mode not in ("l3", "l2"):
            self.bad(where, "mode", f"{mode!r} is not a netkit mode: use l3 or l2")
        mtu = phone.get("mtu")
        if mtu is not None and (isinstance(mtu, bool) or not isinstance(mtu, int) or not 68 <= mtu <= 65535):
            self.bad(where, "mtu", f"{mtu!r} is not an MTU: give an integer from 68 to 65535, or leave it out")
        return {"name": name, "backend": backend, "state": state, "mode": mode, "mtu": mtu}

    def _end(self, where, end_index, end):
        """One end, checked and normalized (None if it is not a mapping)."""
        field = f"ends[{end_index}]"
        if not isinstance(end, dict):
            self.bad(where, field, "must be a mapping with netns, host_ifname, cont_ifname and addresses")
            return None
        for key in sorted(set(end) - set(END_KEYS)):
            self.bad(where, f"{field}.{key}", f"unknown field; the fields of an end are {', '.join(END_KEYS)}")
        for key, check in (("host_ifname", ifname_problem), ("cont_ifname", ifname_problem), ("netns", netns_problem)):
            text = check(end.get(key))
            if text:
                self.bad(where, f"{field}.{key}", text)
        addresses = end.get("addresses", [])
        if isinstance(addresses, str):
            addresses = [addresses]
        if not isinstance(addresses, list):
            self.bad(where, f"{field}.addresses", "must be a list of CIDR addresses such as ['10.42.0.1/24']")
            addresses = []
        for addr in addresses:
            text = address_problem(addr)
            if text:
                self.bad(where, f"{field}.addresses", text)
        return {
            "netns": end.get("netns"),
            "host_ifname": end.get("host_ifname"),
            "cont_ifname": end.get("cont_ifname"),
            "addresses": [str(ipaddress.ip_interface(a)) if not address_problem(a) else a for a in addresses],
        }

    def _unique(self, where, end_index, end):
        owner = f"{where} ends[{end_index}]"
        for field, clash in (
                ("host_ifname", "'{value}' is already the host-side device of {other}: give each end its own "
                                "device name"),
                ("netns", "namespace '{value}' is already used by {other}: each end needs its own namespace")):
            value, seen = end[field], self.seen[field]
            if not isinstance(value, str) or not value:
                continue
            if value in seen:
                self.bad(where, f"ends[{end_index}].{field}", clash.format(value=value, other=seen[value]))
            else:
                seen[value] = owner
