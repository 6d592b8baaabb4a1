# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Expedited RCU for the span of the phones module's link work (option expedite_rcu).

/sys/kernel/rcu_expedited is a host-wide knob, read here while the module runs: on during
the link work of a converge or a teardown, back to the value found afterwards, never touched
by a run that changes nothing, left alone when it was already on, and restored by the next
run when a run is killed with SIGKILL in the middle. The phones module runs directly (as
Ansible runs it on the host) so that the test can kill the very process that changed it.
"""

import json
import pathlib
import signal
import subprocess
import threading
import time

import pytest

from yogurt_test import ROOT
from yogurt_test.ansible import module_argv, module_env
from yogurt_test.netns import popen
from yogurt_test.phones import veth_phone

KNOB = pathlib.Path("/sys/kernel/rcu_expedited")
RECORD = pathlib.Path("/run/yogurt/rcu_expedited.saved")

pytestmark = pytest.mark.skipif(not KNOB.exists(), reason="this kernel has no /sys/kernel/rcu_expedited")


def knob():
    return KNOB.read_text().strip()


def phones(prefix, count):
    return [veth_phone(prefix, i, octet=77) for i in range(count)]


class Runner:
    def __init__(self, sandbox, obj, tmp_path):
        self.sandbox = sandbox
        self.obj = obj
        self.tmp_path = tmp_path
        self.n = 0

    def start(self, args):
        self.n += 1
        path = self.tmp_path / f"args-{self.n}.json"
        path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(args, veth_object=self.obj)}))
        return subprocess.Popen(module_argv(self.sandbox.path, "phones") + [str(path)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=module_env(), cwd=ROOT)

    def run(self, args):
        """(result, set of values rcu_expedited took while the module ran)."""
        seen = set()
        proc = self.start(args)
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                seen.add(knob())
                time.sleep(0.002)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            out, err = proc.communicate(timeout=600)
        finally:
            stop.set()
            watcher.join()
        res = json.loads(out[out.index("{"):])
        assert not res.get("failed"), (res, err[-2000:])
        return res, seen


@pytest.fixture
def runner(sandbox, objects, tmp_path):
    assert knob() == "0", "rcu_expedited is on before the test: someone else turned it on"
    run = Runner(sandbox, objects["base"], tmp_path)
    yield run
    run.run({"phones": [], "exclusive": True})
    KNOB.write_text("0")


def test_on_for_the_link_work_only_and_restored(runner, prefix):
    spec = phones(prefix, 3)
    res, seen = runner.run({"phones": spec})
    assert res["changed"] and res["rcu_expedited"]["used"], res["rcu_expedited"]
    assert seen == {"0", "1"} and knob() == "0", seen
    assert not RECORD.exists()

    res, seen = runner.run({"phones": spec})  # a no-op run attaches nothing: never on
    assert not res["changed"] and not res["rcu_expedited"]["used"], res["rcu_expedited"]
    assert seen == {"0"}, seen

    res, seen = runner.run({"phones": [dict(p, state="absent") for p in spec], "exclusive": True})
    assert res["changed"] and res["rcu_expedited"]["used"] and seen == {"0", "1"}, (res["rcu_expedited"], seen)
    assert knob() == "0" and not RECORD.exists()
    assert not pathlib.Path("/run/yogurt").exists(), "teardown left /run/yogurt behind"


def test_option_off_and_value_found_on(runner, prefix):
    spec = phones(prefix, 2)
    res, seen = runner.run({"phones": spec, "expedite_rcu": False})
    assert res["changed"] and not res["rcu_expedited"]["used"] and seen == {"0"}, (res["rcu_expedited"], seen)

    KNOB.write_text("1")  # someone else turned it on: the run leaves it on
    res, seen = runner.run({"phones": [dict(p, state="absent") for p in spec]})
    assert res["changed"] and not res["rcu_expedited"]["used"], res["rcu_expedited"]
    assert "already on" in res["rcu_expedited"]["reason"] and seen == {"1"} and knob() == "1"


def start_and_wait_for_the_knob(runner, spec):
    """Start a converge of `spec` and return its process once rcu_expedited reads 1."""
    proc = runner.start({"phones": spec})
    deadline = time.monotonic() + 300
    while knob() != "1":
        assert proc.poll() is None, "the converge ended before rcu_expedited was seen on"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    return proc


def test_killed_mid_converge_then_the_next_run_restores(runner, prefix):
    spec = phones(prefix, 40)
    proc = start_and_wait_for_the_knob(runner, spec)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert knob() == "1" and RECORD.read_text().strip() == "0"  # what a SIGKILL leaves

    res, seen = runner.run({"phones": spec})  # heals the value first, then converges
    assert res["rcu_expedited"].get("healed", "").endswith("restored it to 0"), res["rcu_expedited"]
    assert knob() == "0" and not RECORD.exists()
    assert "0" in seen


def test_sigterm_mid_converge_restores(runner, prefix):
    spec = phones(prefix, 40)
    proc = start_and_wait_for_the_knob(runner, spec)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert knob() == "0" and not RECORD.exists()


def test_teardown_with_a_process_inside_a_yogurt(runner, prefix, sandbox):
    """A shell inside a yogurt keeps its namespace alive after the mount goes: the teardown
    deletes that phone's host side by hand instead of waiting for the kernel, and leaves nothing."""
    spec = phones(prefix, 3)
    runner.run({"phones": spec})
    holder = popen(spec[1]["ends"][0]["netns"], ["sleep", "600"])
    try:
        time.sleep(0.2)
        started = time.monotonic()
        res, _seen = runner.run({"phones": [], "exclusive": True})
        took = time.monotonic() - started
        assert res["changed"] and took < 30, (took, res)
        links = sandbox.command(["ip", "-o", "link", "show"]).stdout
        assert prefix not in links, links
        assert not pathlib.Path("/run/yogurt").exists()
    finally:
        holder.kill()
        holder.wait()
