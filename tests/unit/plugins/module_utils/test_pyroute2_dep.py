"""The pyroute2 guard: the same clear error as before when pyroute2 cannot be imported, and
no import of it until a name is used."""

import pathlib
import subprocess

import pytest

from yogurt_test import PYTHON, python_env

ROOT = pathlib.Path(__file__).resolve().parents[4]

PRELUDE = (
    "import sys\n"
    "sys.path.insert(0, %r)\n"
    "class Module:\n"
    "    def fail_json(self, **kw):\n"
    "        print(kw['msg']); print(bool(kw.get('exception'))); raise SystemExit(1)\n"
) % str(ROOT / ".ansible" / "collections")


def _run(code):
    return subprocess.run([PYTHON, "-c", PRELUDE + code], capture_output=True, text=True, timeout=60,
                          env=python_env(), check=False)


def test_missing_pyroute2_fails_the_module_with_the_sentence():
    proc = _run("sys.modules['pyroute2'] = None  # import pyroute2 raises ImportError\n"
                "from ansible_collections.yogurt.phone.plugins.module_utils import _pyroute2_dep as dep\n"
                "assert not dep.has_pyroute2() and dep.HAS_PYROUTE2 is False and dep.NetlinkError is OSError\n"
                "dep.assert_required_pyroute2(Module())\n")
    assert proc.returncode == 1, proc.stderr
    msg, has_traceback = proc.stdout.splitlines()
    assert msg.startswith("pyroute2 is missing on this host (") and "run the yogurt.phone.bpf_toolchain role" in msg
    assert "python3-pyroute2" in msg and "pip install 'pyroute2>=0.9'" in msg
    assert has_traceback == "True"


def test_missing_pyroute2_fails_a_netlink_socket_with_the_sentence():
    proc = _run("sys.modules['pyroute2'] = None\n"
                "from ansible_collections.yogurt.phone.plugins.module_utils import _netlink\n"
                "try:\n"
                "    _netlink.open_ipr()\n"
                "except ImportError as exc:\n"
                "    print(exc)\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("pyroute2 is missing on this host ("), proc.stdout


def test_importing_the_guard_imports_no_pyroute2():
    proc = _run("from ansible_collections.yogurt.phone.plugins.module_utils import _pyroute2_dep, _netkit, _netlink\n"
                "from ansible_collections.yogurt.phone.plugins.module_utils import _phone_converge, _call  # noqa\n"
                "print('pyroute2' in sys.modules)\n"
                "_pyroute2_dep.assert_required_pyroute2(Module())\n"
                "print('pyroute2' in sys.modules)\n"
                "_pyroute2_dep.load()\n"
                "print('pyroute2' in sys.modules)\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False", "True"], proc.stdout


def test_pyroute2_names_load_on_first_use():
    from ansible_collections.yogurt.phone.plugins.module_utils import _netkit as nk, _pyroute2_dep

    pytest.importorskip("pyroute2")
    assert _pyroute2_dep.HAS_PYROUTE2 and _pyroute2_dep.load().IPRoute is not None
    assert _pyroute2_dep.NetlinkError.__module__.startswith("pyroute2")
    assert nk.NetkitData is nk.netkit_kind_classes()["NetkitData"]
