# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark-only aggregate callback: when each task started and each host's result came back."""

from __future__ import annotations

DOCUMENTATION = r"""
name: yogurt_fleet_timing
type: aggregate
short_description: Per-task, per-host seconds of a playbook run (used by bench/fleet.py)
description:
  - Writes one JSON file, named by the environment variable C(YOGURT_FLEET_TIMING), at the end of the run.
  - Per task, in play order, its name, its action, when the strategy started it, and per host
    when the worker started and when its result reached the controller.
requirements:
  - enable it in the configuration (C(ANSIBLE_CALLBACKS_ENABLED=yogurt_fleet_timing))
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "yogurt_fleet_timing"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._tasks = {}
        self._order = []
        self._started = {}
        self._t0 = time.time()

    def _task(self, task):
        uuid = task._uuid
        if uuid not in self._tasks:
            self._tasks[uuid] = {"name": task.get_name(), "action": task.action, "start": time.time() - self._t0,
                                 "hosts": {}}
            self._order.append(uuid)
        return self._tasks[uuid]

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._task(task)

    def v2_runner_on_start(self, host, task):
        self._started[(host.get_name(), task._uuid)] = time.time() - self._t0

    def _done(self, result, status):
        host, task = result._host.get_name(), result._task
        end = time.time() - self._t0
        start = self._started.pop((host, task._uuid), end)
        self._task(task)["hosts"][host] = [start, end, status]

    def v2_runner_on_ok(self, result):
        self._done(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._done(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._done(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._done(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        path = os.environ.get("YOGURT_FLEET_TIMING")
        if path:
            with open(path, "w", encoding="utf-8") as handle:
                json.dump({"end": time.time() - self._t0, "tasks": [self._tasks[u] for u in self._order]}, handle)
