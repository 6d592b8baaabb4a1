# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The pyroute2 dependency: the one import guard, and the check every module runs.

Like community.crypto's _cryptography_dep.py: the rest of the collection takes the pyroute2
names it needs from here, and a module calls assert_required_pyroute2(module) before
touching netlink. Nothing of Ansible is imported, so the module_utils stay importable where
no Ansible runs (unit tests, the boot-time runner).

pyroute2 is imported on first use, not when this file is: its import is 0.16-0.23 s of CPU
(a third of a module process's floor), and a run that only reads (a no-op converge, which
reads with the raw rtnetlink reader of _netlink.py) never needs it. Take the names as
attributes at the point of use (`_pyroute2_dep.NetlinkError` in an `except` clause is
looked up only when an exception reaches it; `load().IPRoute`); `from ... import IPRoute`
still works and imports pyroute2 there and then. has_pyroute2() and
assert_required_pyroute2() only look for the package (importlib's finder), which costs
nothing; when it is not there, the import is tried for its real error and traceback.

PRIVATE to the yogurt.phone collection (like community.crypto's module_utils): no public API,
names may change in any release.
"""

from __future__ import annotations

import importlib.util
import threading
import traceback

MISSING = ("pyroute2 is missing on this host ({error}): run the yogurt.phone.bpf_toolchain role, "
           "or install it (Debian: python3-pyroute2, or pip install 'pyroute2>=0.9')")

# The names this file lends out (PEP 562 module __getattr__ below), loaded on first access.
NAMES = ("IPRoute", "nla", "ifinfbase", "NetlinkError", "HAS_PYROUTE2", "PYROUTE2_IMPORT_ERROR", "PYROUTE2_TRACEBACK")

_loaded = {}
_lock = threading.Lock()


class _Names:
    """The loaded names as attributes (load().IPRoute)."""

    def __init__(self, names):
        self.__dict__.update(names)


def load():
    """Import pyroute2 once and return its names (IPRoute, nla, ifinfbase, NetlinkError and the
    HAS_PYROUTE2 / PYROUTE2_IMPORT_ERROR / PYROUTE2_TRACEBACK facts) as attributes.

    Without pyroute2: IPRoute, nla and ifinfbase are None and NetlinkError is OSError, so an
    `except NetlinkError` stays valid (nothing raises it without pyroute2).
    """
    with _lock:
        if not _loaded:
            try:
                from pyroute2 import IPRoute  # pylint: disable=import-outside-toplevel
                from pyroute2.netlink import nla  # pylint: disable=import-outside-toplevel
                from pyroute2.netlink.exceptions import NetlinkError  # pylint: disable=import-outside-toplevel
                from pyroute2.netlink.rtnl.ifinfmsg import ifinfbase  # pylint: disable=import-outside-toplevel
            except ImportError as exc:
                _loaded.update(IPRoute=None, nla=None, ifinfbase=None, NetlinkError=OSError, HAS_PYROUTE2=False,
                               PYROUTE2_IMPORT_ERROR=str(exc), PYROUTE2_TRACEBACK=traceback.format_exc())
            else:
                _loaded.update(IPRoute=IPRoute, nla=nla, ifinfbase=ifinfbase, NetlinkError=NetlinkError,
                               HAS_PYROUTE2=True, PYROUTE2_IMPORT_ERROR=None, PYROUTE2_TRACEBACK=None)
        return _Names(_loaded)


def __getattr__(name):
    if name in NAMES:
        return getattr(load(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def has_pyroute2():
    """Can pyroute2 be imported? Without importing it when the package is there (and has not failed to load)."""
    if _loaded:
        return _loaded["HAS_PYROUTE2"]
    if importlib.util.find_spec("pyroute2") is not None:
        return True
    return load().HAS_PYROUTE2


def missing_pyroute2_message():
    """The sentence a user sees when pyroute2 cannot be imported (None when it can)."""
    return None if has_pyroute2() else MISSING.format(error=load().PYROUTE2_IMPORT_ERROR)


def require():
    """load(), or ImportError with missing_pyroute2_message() when pyroute2 cannot be imported."""
    names = load()
    if not names.HAS_PYROUTE2:
        raise ImportError(missing_pyroute2_message())
    return names


def assert_required_pyroute2(module):
    """Fail the module (fail_json) when pyroute2 cannot be imported on the target."""
    if not has_pyroute2():
        module.fail_json(msg=missing_pyroute2_message(), exception=load().PYROUTE2_TRACEBACK)
