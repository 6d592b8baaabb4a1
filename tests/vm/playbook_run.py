# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One ansible-playbook run against the test VM, its task results read back by task name.

Module tasks cost 5-18 s each in the TCG guest, so a VM test file does its whole story in
one playbook run and its tests then check the results of the tasks they care about. The
yogurt_test_json callback (tests/kernel/callback_plugins) prints one JSON line per task.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
CALLBACKS = ROOT / "tests" / "kernel" / "callback_plugins"


class PlaybookRun:
    """Task results by task name, the seconds each took (time between results), the output."""

    def __init__(self):
        self.results, self.seconds, self.order = {}, {}, []
        self.rc, self.output = None, []
        self.events = []  # (host, task, status, changed) of every result, in order
        self.by_host = {}  # (host, task) -> result

    def recap(self):
        """{host: {"ok", "changed", "failed", "skipped", "unreachable"}}, counted like the PLAY RECAP."""
        counts = {}
        for host, _task, status, changed in self.events:
            row = counts.setdefault(host, dict.fromkeys(("ok", "changed", "failed", "skipped", "unreachable"), 0))
            row[status] += 1
            if status == "ok" and changed:
                row["changed"] += 1
        return counts

    def changed_tasks(self, host=None):
        """The tasks that reported changed (on `host`, or on any host)."""
        return [task for h, task, status, changed in self.events if changed and status == "ok" and host in (None, h)]

    def __getitem__(self, task):
        assert task in self.results, f"task {task!r} did not report; output:\n" + "".join(self.output[-60:])
        return self.results[task]

    def probe(self, task, step):
        """What a probe script printed (its last stdout line, JSON) for one step of this task."""
        return json.loads(self[task]["stdout"].strip().splitlines()[-1])[step]

    def phone(self, task, name):
        """One phone's entry in the result of a yogurt.phone.phones task."""
        return next(p for p in self[task]["phones"] if p["name"] == name)

    def timing_table(self):
        return "\n".join(f"{self.seconds[t]:6.1f} s  {t}" for t in self.order)


def run_playbook(inventory, playbook, extra_vars=None, title=None, timeout=900, args=()):
    """Run `playbook` against `inventory` (plus ansible-playbook `args`, e.g. ["--check"]);
    print the seconds per task under `title`."""
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="yogurt_test_json",
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_CALLBACK_PLUGINS=str(CALLBACKS),
        ANSIBLE_NOCOLOR="1",
        PYTHONUNBUFFERED="1",
        PATH=f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
    )
    argv = [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", str(inventory), str(playbook)]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    argv += list(args)
    result = PlaybookRun()
    start = last = time.monotonic()
    with subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as proc:
        for line in proc.stdout:
            result.output.append(line)
            if line.startswith("YOGURT_RESULT "):
                now = time.monotonic()
                event = json.loads(line.split(" ", 1)[1])
                name = event["task"]
                result.results[name] = dict(event["result"], _status=event["status"])
                result.events.append((event.get("host"), name, event["status"], bool(event["result"].get("changed"))))
                result.by_host[(event.get("host"), name)] = dict(event["result"], _status=event["status"])
                result.seconds[name] = now - last
                result.order.append(name)
                last = now
        result.rc = proc.wait(timeout=timeout)
    result.seconds["(whole playbook)"] = time.monotonic() - start
    result.order.append("(whole playbook)")
    print(f"\n{title or pathlib.Path(playbook).name}, seconds per task:\n" + result.timing_table())
    return result
