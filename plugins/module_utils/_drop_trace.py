# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The kernel's drops (skb:kfree_skb) for a diagnosis, with bcc: what it needs and whether it is there.

bcc (python3-bpfcc) runs only under the system /usr/bin/python3 and compiles at run time
against the running kernel's headers (/lib/modules/$(uname -r)/build, or BCC_KERNEL_SOURCE).
This file finds out whether both are present and, if not, says exactly what to install.
The tracer itself (a bcc program on skb:kfree_skb filtered in the kernel to the phones'
devices and namespaces, struct offsets from BTF, reason names from the running kernel's
tracepoint format or BTF) is not written yet: start() reports it as unavailable.

PRIVATE to the yogurt.phone collection (like community.crypto's module_utils): no public API,
names may change in any release.
"""

from __future__ import annotations

import os
import platform
import re

SYSTEM_PYTHON = "/usr/bin/python3"
FORMAT_FILES = ("/sys/kernel/tracing/events/skb/kfree_skb/format",
                "/sys/kernel/debug/tracing/events/skb/kfree_skb/format")


def headers_dir(release=None):
    release = release or platform.release()
    source = os.environ.get("BCC_KERNEL_SOURCE")
    for path in ([source] if source else []) + [f"/lib/modules/{release}/build"]:
        if path and os.path.isdir(path):
            return path
    return None


BCC_DIRS = ("/usr/lib/python3/dist-packages/bcc", "/usr/local/lib/python3/dist-packages/bcc")


def bcc_version(python=SYSTEM_PYTHON, dirs=BCC_DIRS):
    """bcc's version where the system Python imports it from (python3-bpfcc), or None.

    Read from the package's files, not by starting that Python: a module runs no subprocess
    but through run_command, and nothing here needs bcc to import yet."""
    if not os.path.exists(python):
        return None
    for path in dirs:
        if not os.path.exists(os.path.join(path, "__init__.py")):
            continue
        try:
            with open(os.path.join(path, "version.py"), encoding="utf-8") as fh:
                match = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", fh.read())
        except OSError:
            match = None
        return match.group(1) if match else "?"
    return None


def availability(release=None):
    """{'available', 'bcc', 'headers', 'reason', 'install'}: what the tracing part needs here."""
    release = release or platform.release()
    bcc, headers = bcc_version(), headers_dir(release)
    missing = []
    if not bcc:
        missing.append("python3-bpfcc (apt-get install python3-bpfcc; it runs under /usr/bin/python3, not a venv)")
    if not headers:
        missing.append(f"the headers of the running kernel (apt-get install linux-headers-{release}; if no package "
                       f"of that name exists, as for a self-built kernel, point BCC_KERNEL_SOURCE at its build tree)")
    info = {"available": False, "bcc": bcc, "headers": headers, "install": missing}
    if missing:
        info["reason"] = "kernel drop tracing needs " + " and ".join(missing)
    else:
        info["reason"] = ("bcc and headers are present, but this release of the collection does not trace "
                          "skb:kfree_skb yet: state, counters and run counts only")
    return info


def start(states, trace):
    """(tracer or None, info). trace: 'auto' (when available), 'yes' (fail if not), 'no'."""
    del states  # the tracer that would filter on their devices is not written yet
    if trace == "no":
        return None, {"available": False, "reason": "not asked (trace: no)", "install": []}
    info = availability()
    if trace == "yes" and not info["available"]:
        raise RuntimeError(f"trace: yes, but {info['reason']}")
    return None, info
