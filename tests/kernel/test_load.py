# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Load through one veth phone: iperf3 (TCP) and a fast ping at the same time.

YOGURT_LOAD_SECONDS (default 60) sets the duration. The counters of the wire must agree
with what the two yogurts' own stacks say they sent: every IPv4 packet a yogurt hands to
its device is forwarded by the wire (plus a little IPv6/ARP chatter of the yogurts), the
bytes forwarded cover at least the payload iperf3 sent, and nothing is refused.
"""

import json
import os
import signal
import subprocess
import time

from yogurt_test.netns import in_netns as _in, nstat, run as netns_cmd
from yogurt_test.phones import converge, counters, ends_of, report, veth_phone

LOAD_SECONDS = int(os.environ.get("YOGURT_LOAD_SECONDS", "60"))
PING_INTERVAL = 0.002
CHATTER = 200  # packets a yogurt may send besides ours during the run (IPv6 RS/MLD, ARP)
IP_STATS = ("IpOutTransmits", "IcmpOutEchos", "IcmpInEchos", "IcmpOutEchoReps")


def _wait_listening(ns, port, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if netns_cmd(ns, ["ss", "-Hltn", f"sport = :{port}"]).stdout.strip():
            return
        time.sleep(0.05)
    raise AssertionError(f"iperf3 server in {ns} is not listening on {port}")


def _drops(ns, ifname):
    """Packets the device itself dropped (rx, tx): where load is lost, if anywhere."""
    stats = json.loads(netns_cmd(ns, ["ip", "-s", "-j", "link", "show", ifname], check=True).stdout)[0]["stats64"]
    return stats["rx"]["dropped"] + stats["tx"]["dropped"]


def test_iperf3_and_a_ping_flood_through_a_phone(sandbox, veth_object, request):
    spec = veth_phone(sandbox.prefix, 0)
    converge(sandbox, [spec], veth_object)
    (y1, h1, c1, _ip1), (y2, h2, c2, ip2) = ends_of(spec)
    devices = ((sandbox.name, h1), (sandbox.name, h2), (y1, c1), (y2, c2))
    port = 5201
    echoes = int(LOAD_SECONDS / PING_INTERVAL) * 2  # more than it can send: stopped when iperf3 is done

    server = subprocess.Popen(_in(y2, ["iperf3", "-s", "-1", "-J", "-B", ip2, "-p", str(port)]),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_listening(y2, port)
        before = counters(sandbox, spec["name"])[spec["name"]]
        sent0 = {ns: nstat(ns, *IP_STATS) for ns in (y1, y2)}
        drops0 = [_drops(ns, dev) for ns, dev in devices]
        started = time.monotonic()
        client = subprocess.Popen(_in(y1, ["iperf3", "-c", ip2, "-p", str(port), "-t", str(LOAD_SECONDS), "-J"]),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        pinger = subprocess.Popen(_in(y1, ["ping", "-n", "-q", "-i", str(PING_INTERVAL), "-c", str(echoes), "-W", "2",
                                           ip2]), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        client_out, client_err = client.communicate(timeout=LOAD_SECONDS + 120)
        pinger.send_signal(signal.SIGINT)  # ping prints its statistics and exits 0
        ping_out, ping_err = pinger.communicate(timeout=30)
        time.sleep(0.2)  # a reply in flight when ping stopped lands in the counters too
        elapsed = time.monotonic() - started
        server_out, _server_err = server.communicate(timeout=30)
    finally:
        for proc in (server,):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    after = counters(sandbox, spec["name"])[spec["name"]]
    sent1 = {ns: nstat(ns, *IP_STATS) for ns in (y1, y2)}
    drops = [_drops(ns, dev) - d for (ns, dev), d in zip(devices, drops0)]

    assert client.returncode == 0, client_err + client_out[-2000:]
    result = json.loads(client_out)
    assert "error" not in result, result["error"]
    assert "error" not in json.loads(server_out), server_out[-2000:]
    sent_bytes = result["end"]["sum_sent"]["bytes"]
    received_bytes = result["end"]["sum_received"]["bytes"]
    retransmits = result["end"]["sum_sent"].get("retransmits", 0)
    assert pinger.returncode == 0, ping_out + ping_err
    stats = next(line for line in ping_out.splitlines() if "packets transmitted" in line)
    transmitted, replies = int(stats.split()[0]), int(stats.split(",")[1].split()[0])
    # An echo request in flight when ping was stopped is counted as lost by ping.
    assert transmitted >= LOAD_SECONDS / PING_INTERVAL / 10 and replies >= transmitted - 1, stats

    def moved(ns, key):
        return sent1[ns][key] - sent0[ns][key]

    fwd = {key: after[key] - before[key] for key in after}
    # Every echo request arrived and was answered by yogurt-2's stack, every reply back in yogurt-1.
    assert moved(y1, "IcmpOutEchos") >= transmitted and moved(y2, "IcmpInEchos") == moved(y1, "IcmpOutEchos")
    assert moved(y2, "IcmpOutEchoReps") == moved(y2, "IcmpInEchos")
    # What each yogurt's stack handed to its device (IPv4, one count per skb as the wire counts),
    # against what the wire forwarded in that direction.
    out1, out2 = moved(y1, "IpOutTransmits"), moved(y2, "IpOutTransmits")
    assert out1 <= fwd["forwarded_packets_0to1"] <= out1 + CHATTER, (out1, fwd)
    assert out2 <= fwd["forwarded_packets_1to0"] <= out2 + CHATTER, (out2, fwd)
    assert fwd["forwarded_bytes_0to1"] >= sent_bytes + 84 * transmitted, (sent_bytes, fwd)
    assert received_bytes > 0 and sent_bytes >= received_bytes
    for key in ("refused", "unknown_ifindex"):
        assert fwd[key] == 0, (key, before, after)
    report(request, (
        f"{LOAD_SECONDS} s load ({elapsed:.0f} s wall): iperf3 {sent_bytes / 1e9:.2f} GB sent "
        f"({sent_bytes * 8 / LOAD_SECONDS / 1e9:.2f} Gbit/s, {retransmits} retransmits), "
        f"ping {transmitted} sent / {replies} replies; yogurt-1 handed {out1} IPv4 packets, wire forwarded "
        f"{fwd['forwarded_packets_0to1']} (bytes {fwd['forwarded_bytes_0to1']}); yogurt-2 handed {out2}, "
        f"forwarded {fwd['forwarded_packets_1to0']}; refused +0, unknown +0; "
        f"device drops (host1, host2, cont1, cont2) {drops}"))
