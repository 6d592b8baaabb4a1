# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The pyroute2 dependency: the one import guard, and the check every module runs.

Like community.crypto's _cryptography_dep.py: the rest of the collection imports the
pyroute2 names it needs from here, and a module calls assert_required_pyroute2(module)
before touching netlink. Nothing of Ansible is imported, so the module_utils stay
importable where no Ansible runs (unit tests, the boot-time runner).

PRIVATE to the yogurt.phone collection (like community.crypto's module_utils): no public API,
names may change in any release.
"""

from __future__ import annotations

import traceback

try:  # re-exported: the rest of the collection imports these names from here
    from pyroute2 import IPRoute  # pylint: disable=unused-import
    from pyroute2.netlink import nla  # pylint: disable=unused-import
    from pyroute2.netlink.exceptions import NetlinkError  # pylint: disable=unused-import
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfbase  # pylint: disable=unused-import
except ImportError as _exc:
    IPRoute = nla = ifinfbase = None
    NetlinkError = OSError  # `except NetlinkError` stays valid; nothing raises it without pyroute2
    HAS_PYROUTE2 = False
    PYROUTE2_IMPORT_ERROR = str(_exc)
    PYROUTE2_TRACEBACK = traceback.format_exc()
else:
    HAS_PYROUTE2 = True
    PYROUTE2_IMPORT_ERROR = None
    PYROUTE2_TRACEBACK = None

MISSING = ("pyroute2 is missing on this host ({error}): run the yogurt.phone.bpf_toolchain role, "
           "or install it (Debian: python3-pyroute2, or pip install 'pyroute2>=0.9')")


def missing_pyroute2_message():
    """The sentence a user sees when pyroute2 cannot be imported (None when it can)."""
    return None if HAS_PYROUTE2 else MISSING.format(error=PYROUTE2_IMPORT_ERROR)


def assert_required_pyroute2(module):
    """Fail the module (fail_json) when pyroute2 cannot be imported on the target."""
    if not HAS_PYROUTE2:
        module.fail_json(msg=missing_pyroute2_message(), exception=PYROUTE2_TRACEBACK)
