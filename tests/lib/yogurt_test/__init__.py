# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Helpers shared by the pytest layers (tests/unit, tests/kernel): the one place for them.

- netns: run a command in a network namespace, the sandbox that stands in for the host.
- ansible: run a module (through `ansible -m`, or its main() directly), a playbook, read a recap.
- frames: the frame builders of plugins/module_utils/_call.py, plus ARP requests.
- traffic: the listener, the injector, the UDP sender and the TCP client (scripts/*.py, run
  with the system python3 inside a namespace), each written once.
- phones: one phone factory (inventory specs, and hand-built veth phones for the wire module),
  counters and pins.

Test files import from here, never from each other.
"""

import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[3]
# The controller that runs the playbooks and modules: .venv, or another venv (YOGURT_VENV=),
# as the controllers layer of scripts/test does to converge on each ansible-core line.
VENV_BIN = pathlib.Path(os.environ.get("YOGURT_VENV") or ROOT / ".venv") / "bin"
COLLECTIONS = ROOT / ".ansible" / "collections"
SCRIPTS = pathlib.Path(__file__).resolve().parent / "scripts"

# The interpreter for child Pythons: this one, unless this user may not run it (a venv that root
# made from a Python under /root, run as nobody); then the system's, given this one's packages.
if os.access(sys.executable, os.X_OK):
    PYTHON, _SITE = sys.executable, []
else:
    PYTHON, _SITE = "/usr/bin/python3", [p for p in sys.path if p.endswith("site-packages")]


def python_env(*paths):
    """os.environ with `paths` (and, with the system's Python, this one's packages) on PYTHONPATH."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(p) for p in paths] + _SITE))
