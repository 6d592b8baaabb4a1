"""site.yml as the README's first command runs it, twice: the converge of the controllers layer.

scripts/test runs this with each controller it proves (YOGURT_VENV=<venv>, see yogurt_test), in
a mount namespace of its own with a fresh /run and bpffs, so the phones of tests running
elsewhere on this machine are invisible to it and everything it makes goes with it.
"""

import os
import re
import subprocess

import pytest

from yogurt_test import VENV_BIN
from yogurt_test.ansible import recap, run_playbook as run
from yogurt_test.phones import phone_spec as phone


@pytest.mark.skipif(not os.environ.get("YOGURT_VENV"), reason="the controllers layer runs it (YOGURT_VENV=); "
                    "test_site.py converges .venv")
def test_site_converges_then_changes_nothing(sandbox, tmp_path):
    version = subprocess.run([str(VENV_BIN / "ansible-playbook"), "--version"], capture_output=True, text=True,
                             check=True).stdout.splitlines()[0]
    core = re.search(r"\[core ([0-9.]+)\]", version).group(1)
    want = os.environ.get("YOGURT_ANSIBLE_CORE")
    assert not want or core.startswith(want + "."), f"{VENV_BIN} has ansible-core {core}, not {want}"
    phones = [phone(sandbox.prefix, 0)]
    first = run(sandbox, tmp_path, phones, args=())  # toolchain and phones, call included
    assert first.returncode == 0, first.stdout[-4000:]
    assert recap(first.stdout)["failed"] == 0
    assert "injection refused 96/96 (0 reached)" in first.stdout, first.stdout[-4000:]
    second = run(sandbox, tmp_path, phones, args=())
    assert second.returncode == 0, second.stdout[-4000:]
    assert recap(second.stdout)["changed"] == 0, second.stdout[-4000:]
    print(f"ansible-core {core}: site.yml rc 0, second run changed=0")
