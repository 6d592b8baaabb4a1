# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Run commands in network namespaces; the sandbox namespace that plays the host."""

import contextlib
import json
import os
import pathlib
import subprocess

from ansible_collections.yogurt.phone.plugins.module_utils._switchboard import DEFAULT_SWITCHBOARD
from ansible_collections.yogurt.phone.plugins.module_utils._wire import PIN_ROOT

from . import ansible as _ansible

RECORDS = pathlib.Path("/run/yogurt/phones")


def netns_path(ns):
    """A namespace name (under /run/netns) or a path, as nsenter --net= takes it."""
    return ns if ns.startswith("/") else f"/run/netns/{ns}"


def in_netns(ns, argv):
    """argv run inside network namespace `ns` (None: this process's own namespace)."""
    return (["nsenter", f"--net={netns_path(ns)}", "--"] if ns else []) + [str(a) for a in argv]


def run(ns, argv, check=False, **kwargs):
    """The one namespace runner: argv inside `ns`, output captured as text."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run(in_netns(ns, argv), check=check, **kwargs)


def popen(ns, argv, **kwargs):
    return subprocess.Popen(in_netns(ns, argv), **kwargs)


def netns_names():
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


def nstat(ns, *names):
    """Absolute SNMP counters of namespace `ns` (not the history nstat keeps)."""
    values = json.loads(run(ns, ["nstat", "-asz", "-j"] + list(names), check=True).stdout)["kernel"]
    return {name: values.get(name, 0) for name in names}


def ping(ns, dst, count=3, interval="0.2", extra=()):
    """(replies, output) of ping from inside `ns`."""
    proc = run(ns, ["ping", "-n", "-q", "-c", str(count), "-i", interval, "-W", "1"] + list(extra) + [dst], timeout=60)
    out = proc.stdout + proc.stderr
    for line in out.splitlines():
        if "packets transmitted" in line:
            return int(line.split(",")[1].split()[0]), out
    return 0, out


def mac_of(ns, ifname):
    return json.loads(run(ns, ["ip", "-j", "link", "show", ifname], check=True).stdout)[0]["address"]


class Sandbox:
    """A network namespace standing in for the host's own namespace."""

    def __init__(self, name, prefix):
        self.name = name
        self.prefix = prefix
        self.path = f"/run/netns/{name}"

    def command(self, argv, **kwargs):
        """Run argv with the sandbox as its network namespace."""
        return run(self.path, argv, **kwargs)

    def ip(self, *args, check=True):
        proc = self.command(["ip"] + list(args))
        if check and proc.returncode != 0:
            raise AssertionError(f"ip {' '.join(args)} failed: {proc.stderr}")
        return proc

    def module(self, name, args, check=False, diff=False, timeout=300):
        """yogurt.phone.<name> once through `ansible -m`, in the sandbox."""
        return _ansible.ansible_module(self.path, name, args, check=check, diff=diff, timeout=timeout)

    def run_module(self, name, args, timeout=120):
        """A module's main() as a plain process in the sandbox (~1 s instead of ~3 s)."""
        return _ansible.run_module(self.path, name, args, timeout=timeout)

    def playbook(self, playbook, extra_args=(), timeout=900):
        return _ansible.ansible_playbook(self.path, playbook, extra_args, timeout=timeout)


@contextlib.contextmanager
def sandbox(prefix):
    """A fresh sandbox; on exit everything named with `prefix` goes: namespaces, pins, records."""
    name = f"{prefix}-sbx"
    before = netns_names()
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    try:
        yield Sandbox(name, prefix)
    finally:
        for ns in sorted(netns_names() - before):
            if ns.startswith(prefix) and ns != name:
                subprocess.run(["ip", "netns", "del", ns], check=False)
        subprocess.run(["ip", "netns", "del", name], check=False)
        # The switchboard this test's phones used, once nothing of any phone is left in it.
        board = subprocess.run(["ip", "-n", DEFAULT_SWITCHBOARD, "-j", "link", "show"], capture_output=True,
                               text=True, check=False)
        if board.returncode == 0 and [d["ifname"] for d in json.loads(board.stdout or "[]")] == ["lo"]:
            subprocess.run(["ip", "netns", "del", DEFAULT_SWITCHBOARD], check=False)
        for entry in pathlib.Path(PIN_ROOT).glob(f"{prefix}*"):
            subprocess.run(["rm", "-rf", str(entry)], check=False)
        for record in RECORDS.glob(f"{prefix}*"):  # .json and .tmp
            record.unlink(missing_ok=True)
