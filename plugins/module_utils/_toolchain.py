# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the bpf_toolchain role needs to know about a host, read without changing anything:
installed packages and their versions (dpkg), the suites apt's sources name and the package
lists apt has, whether bpffs is mounted, and the pyroute2 of the Python that runs the modules.

One module run (toolchain_info) reads all of it, so that a host that already has the
toolchain costs the role one module process, not seven. Nothing here needs pyroute2 or
libbpf: it must work on a host that has neither yet.

PRIVATE to the yogurt.phone collection (like community.crypto's module_utils): no public API,
names may change in any release.
"""

from __future__ import annotations

import glob
import importlib.metadata
import os
import re

APT_SOURCES = ("/etc/apt/sources.list", "/etc/apt/sources.list.d")
APT_LISTS = "/var/lib/apt/lists"
BPFFS = "/sys/fs/bpf"
DPKG_FORMAT = "${Package} ${Version} ${db:Status-Abbrev}\n"


def dpkg_installed(lines):
    """{package: version} of the installed ("ii") packages among dpkg-query's
    `Package Version Status-Abbrev` lines (unknown names print nothing there)."""
    installed = {}
    for line in lines:
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "ii":
            installed[fields[0]] = fields[1]
    return installed


def _one_line_suites(text):
    """Suites of the enabled `deb` / `deb-src` lines of a one-line-style sources file."""
    suites = set()
    for line in text.splitlines():
        line = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
        if len(line) >= 3 and line[0] in ("deb", "deb-src"):
            suites.add(line[2])
    return suites


def _deb822_suites(text):
    """Suites of the enabled stanzas of a deb822-style (.sources) file."""
    suites = set()
    for stanza in re.split(r"\n\s*\n", text):
        fields = {}
        for line in stanza.splitlines():
            match = None if line.startswith("#") else re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
            if match:
                fields[match.group(1).lower()] = match.group(2)
        if fields.get("enabled", "yes").strip().lower() != "no":
            suites.update(fields.get("suites", "").split())
    return suites


def apt_suites(sources=APT_SOURCES):
    """Sorted suites that apt's sources name (bookworm, bookworm-backports, ...); [] without apt."""
    suites = set()
    for place in sources:
        files = sorted(glob.glob(os.path.join(place, "*"))) if os.path.isdir(place) else [place]
        for path in files:
            if not (path.endswith(".list") or path.endswith(".sources")) or not os.path.isfile(path):
                continue
            with open(path, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
            suites |= _deb822_suites(text) if path.endswith(".sources") else _one_line_suites(text)
    return sorted(suites)


def apt_lists(lists_dir=APT_LISTS):
    """Sorted names of the package lists apt has (`*_Packages*`); [] when there are none."""
    try:
        return sorted(n for n in os.listdir(lists_dir) if "_Packages" in n)
    except OSError:
        return []


def bpffs_mounted(mountinfo="/proc/self/mountinfo", path=BPFFS):
    """Whether a bpf filesystem is mounted on `path` in this mount namespace."""
    try:
        with open(mountinfo, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        fstype = line.split(" - ", 1)[1].split()[0]
        if fields[4] == path and fstype == "bpf":
            return True
    return False


def pyroute2_version():
    """The version of the pyroute2 this Python imports, or None when it has none (not imported)."""
    try:
        return importlib.metadata.version("pyroute2")
    except importlib.metadata.PackageNotFoundError:
        return None


def version_tuple(text):
    """(0, 9, 7) of '0.9.7' (digits of the leading dotted part only), for a >= check."""
    match = re.match(r"\d+(\.\d+)*", text or "")
    return tuple(int(x) for x in match.group(0).split(".")) if match else ()
