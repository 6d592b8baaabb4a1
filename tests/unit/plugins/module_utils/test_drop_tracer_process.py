# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The drop tracer's process as a module runs it: AnsibleModule.run_command in a thread, a ready
pipe and a window pipe. A stand-in tracer speaks _bcc_tracer.py's protocol (bcc itself needs
kernel headers: tests/fresh runs the real one); everything around it is the module's code."""

import json
import sys
import time

import pytest

from ansible.module_utils import basic
from ansible_collections.yogurt.phone.plugins.module_utils import _drop_trace as drop_trace

# _bcc_tracer.main()'s protocol, without bcc: one drop counted per second of the window.
STAND_IN = """
import json, os, select, sys, time
config = json.loads(sys.argv[1])
if config.get("fail"):
    sys.stderr.write("Exception: bpf: Failed to compile BPF module\\n")
    raise SystemExit(1)
os.write(config["ready_fd"], b"READY\\n")
os.close(config["ready_fd"])
started = time.monotonic()
ended, _w, _x = select.select([config["window_fd"]], [], [], config["max_seconds"])
inum, ifindex = config["watch"][0]
count = max(1, round(time.monotonic() - started))
print(json.dumps({"drops": [{"ifindex": ifindex, "netns": inum, "reason": 73, "location": 1,
                             "symbol": "__netif_receive_skb_core.constprop.0", "count": count}],
                  "bounded": None if ended else config["max_seconds"]}))
"""


@pytest.fixture
def module(monkeypatch):
    """A real AnsibleModule (its run_command is what the diagnose module passes)."""
    args = {"ANSIBLE_MODULE_ARGS": {"_ansible_remote_tmp": "/tmp", "_ansible_keep_remote_files": False}}
    try:
        from ansible.module_utils.testing import patch_module_args  # pylint: disable=import-outside-toplevel
    except ImportError:  # ansible-core before 2.19
        monkeypatch.setattr(basic, "_ANSIBLE_ARGS", json.dumps(args).encode())
        yield basic.AnsibleModule(argument_spec={})
        return
    with patch_module_args(args["ANSIBLE_MODULE_ARGS"]):
        yield basic.AnsibleModule(argument_spec={})


def _state():
    end = {"host": {"ifname": "h0", "exists": True, "up": True, "netns_inode": 4026531840, "ifindex": 7},
           "cont": {"ifname": "c0", "exists": True, "up": True}}
    hooks = [{"end": 0, "hook": "in", "program": "wire_in", "attach": "tcx_ingress", "side": "host", "kind": "bpf_link"}]
    return {"phone": "p", "backend": "veth", "ends": [end, dict(end, host={"exists": False})], "hooks": hooks}


def _tracer(module, monkeypatch, **config):
    monkeypatch.setattr(drop_trace, "SYSTEM_PYTHON", sys.executable)
    monkeypatch.setattr(drop_trace, "_tracer_source", lambda: STAND_IN)
    states = [_state()]
    index = drop_trace.device_index(states)
    config = dict({"cflags": [], "watch": [list(k) for k in index], "max_seconds": 60}, **config)
    return drop_trace.Tracer(module.run_command, config, index, {73: "TC_INGRESS"}, {})


def test_the_window_pipe_ends_the_tracer_and_its_counts_are_labelled(module, monkeypatch):
    tracer = _tracer(module, monkeypatch)
    try:
        assert tracer.wait_ready(timeout=60) is None
        time.sleep(2)
        drops = tracer.collect(timeout=30)
    finally:
        tracer.stop()
    assert tracer.problem is None and not tracer.thread.is_alive()
    assert tracer.result[0] == 0, tracer.result
    [drop] = drops["p"]
    assert drop["count"] == 2 and drop["reason"] == "TC_INGRESS" and drop["hook"] == "in", drop
    assert drop["text"].startswith("p, end 0, host side h0: 2 x TC_INGRESS at __netif_receive_skb_core"), drop


def test_the_tracer_ends_by_itself_at_its_bound(module, monkeypatch):
    tracer = _tracer(module, monkeypatch, max_seconds=1)
    try:
        assert tracer.wait_ready(timeout=60) is None
        tracer.thread.join(30)
        assert not tracer.thread.is_alive(), "the tracer did not end at its own bound"
        drops = tracer.collect(timeout=5)
    finally:
        tracer.stop()
    assert drops["p"][0]["count"] == 1
    assert "stopped counting at its bound of 1 s" in tracer.problem


def test_a_tracer_that_fails_to_attach_says_why(module, monkeypatch):
    tracer = _tracer(module, monkeypatch, fail=True)
    try:
        problem = tracer.wait_ready(timeout=60)
    finally:
        tracer.stop()
    assert problem == "the tracer exited (1) before it was attached: Exception: bpf: Failed to compile BPF module"
