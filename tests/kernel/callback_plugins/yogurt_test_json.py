# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Test-only stdout callback: one JSON line per task result, diff included."""

from __future__ import annotations

DOCUMENTATION = r"""
name: yogurt_test_json
type: stdout
short_description: One JSON line per task result (used by the yogurt.phone tests)
description:
  - Prints C(YOGURT_RESULT {json}) for every task result, with the diff.
"""

import json

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "yogurt_test_json"

    def _emit(self, result, status):
        data = dict(getattr(result, "result", None) or result._result)
        line = {"status": status, "host": result._host.get_name(), "task": result._task.get_name(), "result": data}
        self._display.display("YOGURT_RESULT " + json.dumps(line, default=str))

    def v2_runner_on_ok(self, result):
        self._emit(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._emit(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._emit(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._emit(result, "unreachable")
