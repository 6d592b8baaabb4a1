# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Names a phone is made of: device, namespace and phone names, and the backend names.

The bottom of the module_utils: the standard library only, no kernel access, nothing of the
collection imported. The device layers (_netns, _netkit, _wire) and the inventory model
(_phone_model) all check names here, so no device layer depends on the inventory model.
Each check returns None or a sentence that says what is wrong and how to fix it; the caller
adds where (phone, end, field).

PRIVATE to the yogurt.phone collection (like community.crypto's module_utils): no public API,
names may change in any release.
"""

from __future__ import annotations

import re

BACKENDS = ("netkit", "veth")               # the kinds of pair a phone is built from
BACKEND_CHOICES = ("auto",) + BACKENDS       # what a phone (or the wire module) may ask for
IFNAME_MAX = 15  # IFNAMSIZ - 1
PHONE_NAME_RE = re.compile(r"^[a-z0-9_-]{1,64}$")
NETNS_NAME_MAX = 255


def ifname_problem(value):
    """None if `value` can name a Linux network device, else why not (dev_valid_name rules).

    The limit is in bytes (IFNAMSIZ), not characters: 'ü' takes two of the 15.
    """
    if not isinstance(value, str) or value == "":
        return "an interface name must not be empty: give a device name such as 'yg1-host'"
    size = len(value.encode("utf-8"))
    if size > IFNAME_MAX:
        return f"'{value}' is {size} bytes long; Linux device names hold at most {IFNAME_MAX}: shorten it"
    if value in (".", ".."):
        return f"'{value}' is not a valid device name: choose a name such as 'yg1-host'"
    if any(c in value for c in "/:") or any(c.isspace() for c in value):
        return f"'{value}' contains '/', ':' or whitespace, which device names cannot hold: remove them"
    return None


def netns_problem(value):
    """None if `value` can name a network namespace (/run/netns/<value>), else why not."""
    if not isinstance(value, str) or value == "":
        return "a namespace name must not be empty: give a name such as 'yogurt-1'"
    if value in (".", ".."):
        return (f"'{value}' is not a valid namespace name (it names a directory, not a namespace): "
                "choose a name such as 'yogurt-1'")
    if "/" in value:
        return (f"namespace name '{value}' contains '/' and is not a valid namespace name: a name is one "
                f"path component under /run/netns: choose a name such as 'yogurt-1'")
    if "\0" in value:
        return "a namespace name must not contain a NUL byte: it is not a valid namespace name; choose a name such as 'yogurt-1'"
    size = len(value.encode("utf-8"))
    if size > NETNS_NAME_MAX:
        return f"namespace name is {size} bytes long; the limit is {NETNS_NAME_MAX} bytes: shorten it"
    return None


def phone_name_problem(value):
    """None if `value` can name a phone (it names its bpffs pin directory), else why not."""
    if not isinstance(value, str) or not PHONE_NAME_RE.match(value):
        return (f"{value!r} is not a valid phone name: use 1-64 characters of [a-z0-9_-] "
                "(it names the bpffs pin directory, which cannot hold dots)")
    return None
