# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Where a phone's host sides are, and how the call judges the host's namespace."""

from ansible_collections.yogurt.phone.plugins.module_utils import _switchboard as switchboard

PHONE = {"name": "p", "ends": [{"host_ifname": "h1", "cont_ifname": "c1"}, {"host_ifname": "h2", "cont_ifname": "c2"}]}


def test_records_before_2_0_mean_the_hosts_namespace():
    assert switchboard.recorded({"name": "p"}) == ""
    assert switchboard.recorded(None) == ""
    assert switchboard.recorded({"switchboard": "sw"}) == "sw"


def test_a_phone_is_looked_for_where_its_record_says(monkeypatch):
    monkeypatch.setattr(switchboard, "netns_exists", lambda name: True)
    assert switchboard.of_phones(["p"], {"p": {"switchboard": ""}}) == ""
    assert switchboard.of_phones(["p"], {"p": {"switchboard": "sw"}}) == "sw"
    assert switchboard.of_phones(["q"], {}) == switchboard.DEFAULT_SWITCHBOARD
    monkeypatch.setattr(switchboard, "netns_exists", lambda name: False)
    assert switchboard.of_phones(["q"], {}) == ""


def test_the_host_namespace_must_see_nothing_with_a_switchboard():
    ok = switchboard.host_checks(PHONE, "sw", 0, {"lo": {}})
    assert [c["ok"] for c in ok] == [True, True]
    seen = switchboard.host_checks(PHONE, "sw", 3, {"lo": {}, "h1": {}})
    assert [c["ok"] for c in seen] == [False, False] and seen[0]["devices"] == ["h1"]


def test_the_seeds_layout_only_reports_what_the_host_namespace_saw():
    checks = switchboard.host_checks(PHONE, "", 22, {"h1": {}, "h2": {}})
    assert len(checks) == 1 and checks[0]["ok"] and checks[0]["frames"] == 22 and checks[0]["devices"] == ["h1", "h2"]


def test_the_capture_counts_frames_that_carry_a_phone_address():
    capture = switchboard.HostCapture.__new__(switchboard.HostCapture)
    capture.needles = {bytes([10, 42, 0, 1])}
    frames = [b"\x00" * 26 + bytes([10, 42, 0, 1]) + b"\x00" * 10, b"\x00" * 40]

    class Sock:
        def recv(self, _size):
            if frames:
                return frames.pop(0)
            raise BlockingIOError

    capture.sock, capture.frames = Sock(), 0
    assert capture.drain() == 1
