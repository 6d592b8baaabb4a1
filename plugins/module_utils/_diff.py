# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Before/after tracking for `--diff`, one attribute at a time (after docker's DifferenceTracker).

PRIVATE to the yogurt.phone collection (like community.crypto's module_utils): no public API,
names may change in any release.
"""

from __future__ import annotations


class DifferenceTracker:
    def __init__(self):
        self._before = {}
        self._after = {}

    def add(self, name, before, after):
        """Record one attribute; unchanged attributes are kept so the diff shows context."""
        self._before[name] = before
        self._after[name] = after

    @property
    def changed(self):
        return self._before != self._after

    def get_diff(self):
        return {"before": dict(self._before), "after": dict(self._after)}
