# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Expedited RCU grace periods for the span of a run's bulk link work.

Every tcx and netkit link attach waits a full RCU grace period while holding RTNL
(synchronize_rcu() in tcx_entry_sync() / netkit_entry_sync()), and so do a link's release
and a device's deletion while programs are attached: 50 phones are 300 such waits, most of
a converge. With /sys/kernel/rcu_expedited set, the kernel ends those grace periods with
IPIs to every CPU instead of waiting for each to pass a quiescent state: milliseconds
become microseconds, at the price of interrupting every CPU of the host (which is why this
is a span, and an option: leave it off on real-time hosts). A kernel booted with
rcu_normal=1 (/sys/kernel/rcu_normal) ignores rcu_expedited; then nothing is written.

The span is lazy: nothing is written until the first link attach or release of the run
(ExpeditedSpan.begin(), called by _bpf), so a run that changes nothing changes nothing here
either. The value found is kept in RECORD before it is changed, and restored on every exit
of the span (errors and SIGTERM included); a run killed with SIGKILL leaves the record, and
the next run restores the value from it (heal()) before it does anything. Runs hold the
host lock (_phone_converge.host_lock) around the span and the heal, so two runs never
restore each other's value early. A value of 1 found at the start is left alone: someone
else turned it on, and it stays on after the run.

PRIVATE to the yogurt.phone collection (like community.crypto's module_utils): no public API,
names may change in any release.
"""

from __future__ import annotations

import contextlib
import os
import signal

RCU_EXPEDITED = "/sys/kernel/rcu_expedited"
RCU_NORMAL = "/sys/kernel/rcu_normal"
RECORD = "/run/yogurt/rcu_expedited.saved"

_active = None  # the ExpeditedSpan of this process, if a run opened one


def _read(path):
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return None


def _write(path, value):
    with open(path, "w", encoding="ascii") as handle:
        handle.write(value)


def heal():
    """Restore the value a killed run left in RECORD. Returns what was restored, or None."""
    saved = _read(RECORD)
    if saved is None:
        return None
    if saved in ("0", "1"):
        with contextlib.suppress(OSError):
            _write(RCU_EXPEDITED, saved)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(RECORD)
    return saved


class ExpeditedSpan:
    """report(): {'requested', 'used', 'reason'} for the module's result."""

    def __init__(self, enabled):
        self.enabled = enabled
        self.requested = enabled  # the option, also in check mode
        self.saved = None  # the value found, while ours is in place
        self.used = False
        self.reason = "expedite_rcu is off" if not enabled else "no link was attached or released"
        self.healed = None
        self.settled = not enabled  # decided: on, or not to be used in this run

    def begin(self):
        """Called before each link attach or release: the first one turns expedited on."""
        if self.settled:
            return
        self.settled = True
        found = _read(RCU_EXPEDITED)
        if found is None:
            self.reason = f"not available: {RCU_EXPEDITED} cannot be read on this kernel"
            return
        if _read(RCU_NORMAL) == "1":
            self.reason = "kernel has rcu_normal=1, which overrides rcu_expedited: not used"
            return
        if found != "0":
            self.reason = "already on (rcu_expedited was 1 before this run; left as found)"
            return
        os.makedirs(os.path.dirname(RECORD), mode=0o755, exist_ok=True)
        tmp = RECORD + ".tmp"
        _write(tmp, found)
        os.replace(tmp, RECORD)  # the record exists before the value changes
        try:
            _write(RCU_EXPEDITED, "1")
        except OSError as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(RECORD)
            self.reason = f"not used: writing {RCU_EXPEDITED} failed ({exc.strerror})"
            return
        self.saved = found
        self.used = True
        self.reason = "on for the span of the link work, then restored to 0"

    def end(self):
        if self.saved is None:
            return
        _write(RCU_EXPEDITED, self.saved)
        self.saved = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(RECORD)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(RECORD))  # empty only when a teardown left no phone and no lock

    def report(self):
        out = {"requested": self.requested, "used": self.used, "reason": self.reason}
        if self.healed is not None:
            out["healed"] = self.healed
        return out


def _on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def expedited_span(enabled, check_mode=False):
    """Hold the host lock around this. Yields the ExpeditedSpan; restores on every exit."""
    global _active  # pylint: disable=global-statement
    span = ExpeditedSpan(enabled and not check_mode)
    span.requested = enabled
    if check_mode:
        span.reason = "check mode attaches nothing"
        if os.path.exists(RECORD):
            span.healed = "a killed run left rcu_expedited changed: the next run that is not in check mode restores it"
    else:
        restored = heal()
        if restored is not None:
            span.healed = f"a killed run had left rcu_expedited changed: restored it to {restored}"
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    _active = span
    try:
        yield span
    finally:
        _active = None
        try:
            span.end()
        finally:
            signal.signal(signal.SIGTERM, previous)


def before_grace_period():
    """Link work that waits for a grace period is about to start (called by _bpf and teardown)."""
    if _active is not None:
        _active.begin()
