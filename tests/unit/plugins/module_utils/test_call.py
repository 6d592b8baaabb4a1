"""The call's pure parts: markers, judging an injection, the summary line and the failure message."""

import struct

import pytest

from ansible_collections.yogurt.phone.plugins.module_utils import _call as call


def inject_check(end=0, family="IPv4", sock="raw", bypass=False, dest="unicast", sent=4, attempts=4,
                 refused_at_send=None, delta=4, udp=0, packet=0):
    check = {"kind": "inject", "end": end, "device": f"yg{end + 1}-host", "netns": f"yogurt-{end + 1}",
             "cont_ifname": f"yg{end + 1}-cont", "family": family, "socket": sock, "bypass": bypass, "dest": dest,
             "dst_ip": f"10.42.0.{end + 1}", "port": 5000, "attempts": attempts, "sent": sent,
             "refused_at_send": refused_at_send or {}, "refused_delta": delta, "reached_udp": udp,
             "reached_packet": packet}
    return call.judge_inject(check)


def matrix(**override):
    """24 checks: 2 ends x raw/dgram x bypass x 3 destinations, 4 frames each."""
    out = []
    for end in (0, 1):
        for sock in ("raw", "dgram"):
            for bypass in (False, True):
                for dest in call.DESTINATIONS:
                    kwargs = {"end": end, "sock": sock, "bypass": bypass, "dest": dest}
                    if bypass and "bypass_packet" in override:
                        kwargs["packet"] = override["bypass_packet"]
                    out.append(inject_check(**kwargs))
    return out


def a_call(checks=None, **extra):
    base = [
        {"kind": "ping", "end": 0, "check": "ping yogurt-1 -> 10.42.0.2", "ok": True, "replies": 3, "count": 3},
        {"kind": "tcp", "end": 0, "check": "tcp yogurt-1 -> 10.42.0.2", "ok": True},
        {"kind": "ping", "end": 1, "check": "ping yogurt-2 -> 10.42.0.1", "ok": True, "replies": 3, "count": 3},
        {"kind": "tcp", "end": 1, "check": "tcp yogurt-2 -> 10.42.0.1", "ok": True},
    ]
    res = {"name": "phone", "backend": "veth", "attach_mode": "tcx", "reason": "Linux 6.18 has no netkit",
           "checks": base + (checks if checks is not None else matrix())}
    res.update(extra)
    return res


def test_marker_tags_are_found_only_with_this_runs_marker():
    marker, other = call.new_marker(), call.new_marker()
    assert marker != other and len(marker) == 16
    frame = b"\x00" * 42 + call.tagged(marker, 7) + b"tail" + call.tagged(marker, 300)
    assert call.find_tags(frame, marker) == [7, 300]
    assert call.find_tags(frame, other) == []
    assert call.find_tags(marker + b"\x00", marker) == []  # cut short: no index


def test_udp_packets_carry_valid_checksums():
    pkt = call.udp_packet(4, "192.0.2.66", "10.42.0.1", 5000, b"x")
    assert call._checksum(pkt[:20]) == 0
    pkt6 = call.udp_packet(6, "2001:db8::66", "ff02::1", 5000, b"xy")
    udp = pkt6[40:]
    assert call._checksum(call._pseudo6("2001:db8::66", "ff02::1", len(udp), 17) + udp) == 0
    na = call.unsolicited_na_packet("fd77::fe", call.FORGED_MAC)
    assert na[7] == 255 and na[40] == 136  # hop limit 255, type NA
    assert call._checksum(call._pseudo6("fd77::fe", "ff02::1", len(na) - 40, 58) + na[40:]) == 0


def test_gratuitous_arp_reply_names_the_claimant_as_sender_and_target():
    pkt = call.garp_packet("10.77.0.254", call.FORGED_MAC)
    _hrd, _pro, _hl, _pl, op, sha, sip, tha, tip = struct.unpack("!HHBBH6s4s6s4s", pkt)
    assert op == 2 and sha == tha == call.FORGED_MAC and sip == tip


@pytest.mark.parametrize("kwargs, ok, words", [
    ({}, True, "4 frames, 4 sent, 0 refused at send, refusal counters +4; reached UDP 0, packet socket 0"),
    ({"packet": 4}, False, "4 of 4 frames reached a packet socket on yg1-cont"),
    ({"udp": 1}, False, "1 of 4 frames reached the UDP socket"),
    ({"delta": 3}, False, "the refusal counters moved by 3 for 4 frames (4 sent, 0 refused at send)"),
    ({"sent": 0, "refused_at_send": {"ENOBUFS": 4}, "delta": 4}, True, "4 refused at send, refusal counters +4"),
    # ENOBUFS without the counters moving: a device dropped it, not the phone (a veth whose peer is down).
    ({"sent": 0, "refused_at_send": {"ENOBUFS": 4}, "delta": 0}, False, "moved by 0 for 4 frames (0 sent, 4 refused"),
    ({"delta": None}, False, "nothing (unreadable)"),
])
def test_judge_inject(kwargs, ok, words):
    check = inject_check(**kwargs)
    assert check["ok"] is ok
    assert words in check["detail"]


def test_judge_inject_without_counters_judges_only_what_arrived():
    check = {"end": 0, "device": "h", "netns": "n", "cont_ifname": "c", "family": "IPv4", "socket": "raw",
             "bypass": True, "dest": "unicast", "dst_ip": "10.0.0.1", "attempts": 4, "sent": 4,
             "refused_at_send": {}, "refused_delta": None, "reached_udp": 0, "reached_packet": 0}
    assert call.judge_inject(check, counted=False)["ok"]
    assert call.judge_inject(dict(check, reached_packet=4), counted=False)["ok"] is False


def test_summary_line_of_a_passing_call():
    reverse = [{"kind": "reverse", "attempts": 4, "reached_udp": 0, "ok": True}] * 6
    neigh = call.neighbour_check(set(), set())
    line = call.summary_line(a_call(matrix() + reverse + [neigh]))
    assert line == ("phone: veth/tcx (Linux 6.18 has no netkit) | ping 3/3 3/3 | tcp ok ok | "
                    "injection refused 96/96 (0 reached) | reverse kept out 24/24, neighbours unchanged")


def test_summary_line_says_what_reached_the_yogurt():
    line = call.summary_line(a_call(matrix(bypass_packet=4)))
    assert "injection refused 96/96 (48 REACHED: packet socket 48, UDP 0) FAILED 12/24 checks" in line


def test_summary_line_on_netkit_counts_refusals_at_send():
    # netkit's primary program counts its drop, then the send fails with ENOBUFS.
    checks = [inject_check(sent=0, refused_at_send={"ENOBUFS": 4}, delta=4, dest=d) for d in call.DESTINATIONS * 8]
    line = call.summary_line(a_call(checks, backend="netkit", attach_mode="netkit", reason="Linux 6.12 has netkit"))
    assert line.startswith("phone: netkit (Linux 6.12 has netkit) | ping 3/3 3/3 | tcp ok ok | ")
    assert "injection refused 96/96 (0 reached)" in line


def test_summary_line_marks_a_failed_ping_and_tcp():
    res = a_call([])
    res["checks"][0].update(ok=False, replies=0)
    res["checks"][1]["ok"] = False
    assert "ping 0/3 3/3 | tcp FAIL ok" in call.summary_line(res)


def test_failure_lines_name_host_phone_end_device_check_and_numbers():
    lines = call.failure_lines(a_call(matrix(bypass_packet=4)), host="host1")
    assert len(lines) == 2  # one per device and problem
    assert lines[0] == ("host host1, phone phone, end 0, host device yg1-host: injection frames reached a packet "
                        "socket on yg1-cont in yogurt-1: IPv4 raw+bypass unicast 4/4, IPv4 raw+bypass broadcast 4/4, "
                        "IPv4 raw+bypass multicast 4/4, IPv4 dgram+bypass unicast 4/4, IPv4 dgram+bypass broadcast "
                        "4/4, IPv4 dgram+bypass multicast 4/4")
    assert lines[1].startswith("host host1, phone phone, end 1, host device yg2-host:")


def test_failure_lines_for_ping_counters_and_errors():
    res = a_call([inject_check(delta=1), {"kind": "error", "check": "call", "ok": False,
                                          "detail": "NetnsError: network namespace 'yogurt-2' does not exist"}])
    res["checks"][2].update(ok=False, replies=0, detail="0/3 replies")
    lines = call.failure_lines(res, host="h")
    assert lines == [
        "host h, phone phone, end 1: ping yogurt-2 -> 10.42.0.1: 0/3 replies",
        "host h, phone phone, end 0, host device yg1-host: injection the refusal counters moved less than the "
        "frames sent or refused at send: IPv4 raw unicast +1 for 4",
        "host h, phone phone, call: NetnsError: network namespace 'yogurt-2' does not exist",
    ]


def test_failure_lines_are_capped():
    checks = [dict(inject_check(), ok=False, kind="reverse", dest=f"d{i}", detail="x", device="c", netns="n",
                   family="IPv4", dst_ip="1") for i in range(20)]
    lines = call.failure_lines(a_call(checks), limit=5)
    assert len(lines) == 6 and lines[-1].endswith("and 15 more failed checks")


def test_neighbour_check_reports_each_change():
    before = {(4, "10.77.0.254", "02:00:00:00:00:fe")}
    after = {(4, "10.77.0.254", "02:79:67:00:00:66"), (5, "192.0.2.66", "02:79:67:00:00:66")}
    check = call.neighbour_check(before, after)
    assert not check["ok"]
    assert check["detail"] == ("changed by the yogurts' frames: 10.77.0.254 on ifindex 4: 02:00:00:00:00:fe -> "
                               "02:79:67:00:00:66, 192.0.2.66 on ifindex 5: no entry -> 02:79:67:00:00:66")
    assert call.neighbour_check(before, set(before))["ok"]


@pytest.mark.parametrize("requested, backend, mode, kernel, want", [
    ("auto", "veth", "tcx", "6.18", "Linux 6.18 has no netkit"),
    ("auto", "veth", "tc", "6.1", "Linux 6.1 has no netkit, no tcx"),
    ("auto", "veth", "tc", "6.18", "Linux 6.18 has no netkit, tc asked for"),
    ("auto", "netkit", "netkit", "6.12", "Linux 6.12 has netkit"),
    ("veth", "veth", "tcx", "6.12", "veth asked for"),
    ("auto", None, None, "6.18", "no wire found"),
])
def test_backend_reason(requested, backend, mode, kernel, want):
    assert call.backend_reason(requested, backend, kernel, mode) == want


def test_short_kernel():
    assert call.short_kernel("6.18.44-fc-v1045") == "6.18"
    assert call.short_kernel("6.12.95+deb12-amd64") == "6.12"
    assert call.short_kernel("weird") == "weird"


def test_refusals_are_every_refused_counter_summed_by_name(monkeypatch):
    """A datapath that renames or adds refusal counters keeps being read right."""
    from ansible_collections.yogurt.phone.plugins.module_utils import _bpf as bpf, _wire as wire

    layout = wire.COUNTERS + ("refused_xdp",)  # the wire's slots plus one more refusal counter
    monkeypatch.setattr(wire, "COUNTERS", layout)
    values = {0: [5, 5], layout.index("refused"): [2, 1], layout.index("unknown_ifindex"): [7, 0],
              layout.index("refused_xdp"): [10, 4]}
    monkeypatch.setattr(bpf, "try_obj_get", lambda path: 99 if path.endswith("/p1/map_counters") else None)
    monkeypatch.setattr(bpf, "map_items", lambda fd: [(struct.pack("=I", k), struct.pack("=2Q", *v))
                                                      for k, v in values.items()])
    monkeypatch.setattr(call.os, "close", lambda fd: None)
    assert call.read_refusals("p1") == 2 + 1 + 10 + 4
    assert call.read_refusals("p2") is None
    assert call.read_refusals(None) is None
    # Every frame the programs handled, forwarded or refused: packet counters, never bytes.
    assert call.read_frames_counted("p1") == 10 + 3 + 7 + 14
    assert call.read_frames_counted("p2") is None


class FakeListeners:
    """drain() hands out what `arrivals` holds for each successive call, then nothing."""

    def __init__(self, arrivals):
        self.arrivals = list(arrivals)
        self.drains = 0

    def drain(self, _marker):
        self.drains += 1
        return self.arrivals.pop(0) if self.arrivals else ({}, {})


def test_settle_reads_once_when_the_counters_account_for_every_frame():
    listeners = FakeListeners([])
    assert call._settle(listeners, b"m", lambda u, p: True, bound=5.0) == ({}, {})  # pylint: disable=protected-access
    assert listeners.drains == 1


def test_settle_sums_what_arrives_until_every_frame_is_seen():
    listeners = FakeListeners([({0: 1}, {0: 2}), ({}, {}), ({0: 3, 1: 4}, {0: 2, 1: 4})])
    udp, packet = call._settle(listeners, b"m", lambda u, p: u.get(0) == 4 and p.get(1) == 4,  # pylint: disable=protected-access
                               bound=5.0)
    assert (udp, packet) == ({0: 4, 1: 4}, {0: 4, 1: 4}) and listeners.drains == 3


def test_settle_gives_up_after_the_bound_for_a_frame_that_never_shows_up():
    listeners = FakeListeners([])
    started = call.time.monotonic()
    assert call._settle(listeners, b"m", lambda u, p: False, bound=0.05) == ({}, {})  # pylint: disable=protected-access
    assert 0.05 <= call.time.monotonic() - started < 1.0 and listeners.drains >= 2


@pytest.mark.parametrize("delta, udp, packet, accounted", [
    (4, 0, 0, True),      # refused, all of them: nothing can arrive any more
    (3, 0, 0, False),     # one frame unaccounted: it may still reach a listener
    (3, 4, 4, True),      # both listeners saw every frame (a leak, judged later)
    (None, 4, 4, True),   # no counters (a control on a plain pair): seen by both
    (None, 4, 3, False),
])
def test_an_injection_is_accounted_for_by_the_counters_or_by_both_listeners(delta, udp, packet, accounted):
    check = inject_check(delta=delta, udp=udp, packet=packet)
    assert call._inject_accounted(check, udp, packet) is accounted  # pylint: disable=protected-access


def test_a_send_failing_for_another_reason_than_a_refusal_fails_the_check():
    check = inject_check(sent=0, refused_at_send={"ENETDOWN": 4}, delta=0)
    assert not check["ok"] and "sends failed with ENETDOWN 4/4" in check["detail"]
    line = call.failure_lines(a_call([check]))[0]
    assert line.endswith("injection sends failed (not a refusal by the phone): IPv4 raw unicast ENETDOWN 4/4"), line
    assert "injection refused 0/4" in call.summary_line(a_call([check]))
