# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Datapath benchmark: a yogurt-phone (veth backend) against what it stands beside.

Scenarios, each in namespaces of its own (nothing is sent anywhere else):
  lo64k   client and server in one namespace over lo (MTU 65536): the baseline
  lo1500  the same with lo at MTU 1500 (what every other scenario has)
  veth    a plain veth pair between two namespaces
  routed  a -- mid -- b over two veth pairs, ip_forward=1 in mid only (a host routing)
  phone   a phone built by the phones module, its host sides in a sandbox namespace

Metrics per scenario and round: iperf3 throughput with 1 and 2 streams, TCP_RR and
TCP_CRR transactions/s (bench/rr.c). A round runs each metric across all scenarios (in an
order rotated per round) before the next metric; every ratio is taken within one round,
against the baseline measured in that same round, seconds apart.

Hard checks (not noise-dependent), once per scenario:
  backlog  netif_rx calls (perf tracepoint net:netif_rx, filtered to the scenario's
           devices) per packet and per transaction; fallback: /proc/net/softnet_stat
  ttl      the TTL a raw socket in the receiving namespace sees on an echo request
  runcnt   phone only: BPF run counts of the wire programs against packets counted by
           the devices and by the wire's own counters
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time

import common

IPERF_PORT = 5201
RR_PORT = 5202
SCENARIOS = ("lo64k", "lo1500", "veth", "routed", "phone")
METRICS = (  # name, unit, higher is better
    ("tput_1", "Gbit/s"),
    ("tput_2", "Gbit/s"),
    ("tcp_rr", "trans/s"),
    ("tcp_crr", "trans/s"),
)

TTL_PROBE = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(float(sys.argv[1]))
print("ready", flush=True)
try:
    while True:
        data = s.recv(2048)
        ihl = (data[0] & 15) * 4
        if data[ihl] == 8:  # echo request: its TTL is what arrived
            print(data[8], flush=True)
            break
except socket.timeout:
    print("timeout", flush=True)
"""


class Scenario:
    def __init__(self, name, client_ns, server_ns, target, devices, edge):
        self.name = name
        self.client_ns = client_ns
        self.server_ns = server_ns
        self.target = target
        self.devices = devices  # tracepoint filter: names of the devices packets are received on
        self.edge = edge        # [(netns, ifname)] whose tx_packets sum to the packets exchanged


def _sysctl(netns, key, value):
    common.run(["sysctl", "-q", "-w", f"{key}={value}"], netns=netns)


def _veth(name_a, ns_a, addr_a, name_b, ns_b, addr_b):
    common.run(["ip", "link", "add", name_a, "netns", ns_a, "type", "veth", "peer", "name", name_b, "netns", ns_b])
    for ns, dev, addr in ((ns_a, name_a, addr_a), (ns_b, name_b, addr_b)):
        common.run(["ip", "-n", ns, "addr", "add", addr, "dev", dev])
        common.run(["ip", "-n", ns, "link", "set", dev, "up"])


def setup(prefix, workdir, objects):
    """Build every scenario; return {name: Scenario} plus the phone's details."""
    add = common.CLEANUP.add_netns
    scen = {}
    ns = add(f"{prefix}-lo")
    scen["lo64k"] = Scenario("lo64k", ns, ns, "127.0.0.1", ["lo"], [(ns, "lo")])
    ns = add(f"{prefix}-l15")
    common.run(["ip", "-n", ns, "link", "set", "lo", "mtu", "1500"])
    scen["lo1500"] = Scenario("lo1500", ns, ns, "127.0.0.1", ["lo"], [(ns, "lo")])

    va, vb = add(f"{prefix}-va"), add(f"{prefix}-vb")
    _veth(f"{prefix}va", va, "10.201.0.1/24", f"{prefix}vb", vb, "10.201.0.2/24")
    scen["veth"] = Scenario("veth", va, vb, "10.201.0.2", [f"{prefix}va", f"{prefix}vb"],
                            [(va, f"{prefix}va"), (vb, f"{prefix}vb")])

    ra, rm, rb = add(f"{prefix}-ra"), add(f"{prefix}-rm"), add(f"{prefix}-rb")
    _veth(f"{prefix}ra", ra, "10.202.1.1/24", f"{prefix}rm1", rm, "10.202.1.2/24")
    _veth(f"{prefix}rm2", rm, "10.202.2.1/24", f"{prefix}rb", rb, "10.202.2.2/24")
    _sysctl(rm, "net.ipv4.ip_forward", 1)
    common.run(["ip", "-n", ra, "route", "add", "default", "via", "10.202.1.2"])
    common.run(["ip", "-n", rb, "route", "add", "default", "via", "10.202.2.1"])
    scen["routed"] = Scenario("routed", ra, rb, "10.202.2.2",
                              [f"{prefix}ra", f"{prefix}rm1", f"{prefix}rm2", f"{prefix}rb"],
                              [(ra, f"{prefix}ra"), (rb, f"{prefix}rb")])

    sandbox = add(f"{prefix}-sbx")
    phone = common.phone_spec(prefix, 0, addr_base=203)
    for end in phone["ends"]:
        common.CLEANUP.netns.append(end["netns"])  # removed at exit even if teardown fails
    common.CLEANUP.pin_dirs.append(f"/sys/fs/bpf/yogurt/{phone['name']}")
    wall, result = common.phones_module(sandbox, {"phones": [phone], "veth_object": objects["wire_veth"]}, workdir)
    ends = phone["ends"]
    scen["phone"] = Scenario("phone", ends[0]["netns"], ends[1]["netns"], ends[1]["addresses"][0].split("/", maxsplit=1)[0],
                             [e["host_ifname"] for e in ends] + [e["cont_ifname"] for e in ends],
                             [(e["netns"], e["cont_ifname"]) for e in ends])

    def teardown():
        common.phones_module(sandbox, {"phones": [], "exclusive": True}, workdir)

    common.CLEANUP.callbacks.append(teardown)
    for sc in scen.values():
        # crr leaves TIME_WAIT sockets on the client side: allow their reuse, widen the port range
        _sysctl(sc.client_ns, "net.ipv4.tcp_tw_reuse", 1)
        _sysctl(sc.client_ns, "net.ipv4.ip_local_port_range", "1024 65000")
    info = {"sandbox": sandbox, "phone": phone, "converge_s": wall, "backend": result["phones"][0]["backend"],
            "backend_reason": result["phones"][0]["backend_reason"]}
    return scen, info


# Client on one CPU, server on the other, in every scenario alike (1 stream, RR, CRR): left to the scheduler,
# where the pair lands swings a 1-stream ratio between 0.55x and 1.01x from round to round
# (run 20261202-185119), which hides a 2 % difference. On one CPU nothing is pinned.
PIN = (["taskset", "-c", "0"], ["taskset", "-c", "1"]) if (os.cpu_count() or 1) >= 2 else ([], [])


def start_servers(scen, rr_bin):
    for sc in scen.values():
        common.popen(PIN[1] + ["iperf3", "-s", "-p", str(IPERF_PORT)], netns=sc.server_ns)
        proc = common.popen(PIN[1] + [rr_bin, "server", str(RR_PORT)], netns=sc.server_ns)
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"rr server did not start in {sc.server_ns}: {proc.stderr.read()}")
    time.sleep(0.5)  # iperf3 -s has no ready line


def iperf(sc, streams, seconds, omit):
    # 2 streams are left to the scheduler: pinned to one CPU they measure that CPU, not the path.
    pin = PIN[0] if streams == 1 else []
    argv = pin + ["iperf3", "-c", sc.target, "-p", str(IPERF_PORT), "-t", str(seconds), "-O", str(omit),
                  "-P", str(streams), "-J"]
    for attempt in range(3):
        proc = common.run(argv, netns=sc.client_ns, check=False, timeout=seconds + omit + 30)
        if proc.returncode == 0:
            data = json.loads(proc.stdout)
            return data["end"]["sum_received"]["bits_per_second"] / 1e9
        time.sleep(1 + attempt)  # "server is busy": the previous test is still closing
    raise RuntimeError(f"iperf3 in {sc.name} failed: {proc.stdout[-1500:]}{proc.stderr[-500:]}")


def rr(sc, rr_bin, mode, seconds, max_tx=0):
    argv = PIN[0] + [rr_bin, mode, sc.target, str(RR_PORT), str(seconds)] + ([str(max_tx)] if max_tx else [])
    out = common.run(argv, netns=sc.client_ns, timeout=seconds + 60).stdout.split()
    return int(out[0]), float(out[1]), float(out[2])


def measure_round(scen, order, rr_bin, cfg):
    """One metric at a time across all scenarios, so that the values a ratio divides were
    measured seconds apart, not minutes (the load on a shared machine drifts)."""
    tests = {
        "tput_1": lambda sc: iperf(sc, 1, cfg["iperf_t"], cfg["omit"]),
        "tput_2": lambda sc: iperf(sc, 2, cfg["iperf_t"], cfg["omit"]),
        "tcp_rr": lambda sc: rr(sc, rr_bin, "rr", cfg["rr_t"])[2],
        "tcp_crr": lambda sc: rr(sc, rr_bin, "crr", cfg["rr_t"])[2],
    }
    values = {}
    for metric, _unit in METRICS:
        for name in order:
            values[(name, metric)] = tests[metric](scen[name])
    return values


# ---------------------------------------------------------------- hard checks

def link_stats(netns, ifname):
    data = json.loads(common.run(["ip", "-s", "-j", "link", "show", "dev", ifname], netns=netns).stdout)[0]
    return data["stats64"]["tx"]["packets"], data["stats64"]["rx"]["packets"]


def edge_packets(sc):
    return sum(link_stats(ns, dev)[0] for ns, dev in sc.edge)


def softnet_processed():
    total = 0
    with open("/proc/net/softnet_stat", encoding="ascii") as handle:
        for line in handle:
            total += int(line.split()[0], 16)
    return total


def perf_works():
    if not shutil.which("perf"):
        return False, "perf is not installed (apt install linux-perf)"
    proc = common.run(["perf", "stat", "-e", "net:netif_rx", "-a", "-x,", "--", "true"], check=False)
    if proc.returncode != 0:
        return False, f"perf stat -e net:netif_rx failed: {proc.stderr.strip()[-300:]}"
    return True, "perf stat -e net:netif_rx (tracepoint, filtered to the scenario's devices)"


def backlog_check(sc, rr_bin, transactions, use_perf):
    """netif_rx calls per packet and per transaction of a TCP_RR run of `transactions`."""
    pkts0 = edge_packets(sc)
    if use_perf:
        flt = " || ".join(f'name == "{d}"' for d in sc.devices)
        argv = ["perf", "stat", "-e", "net:netif_rx", "--filter", flt, "-a", "-x,", "--",
                "nsenter", f"--net=/run/netns/{sc.client_ns}", "--",
                rr_bin, "rr", sc.target, str(RR_PORT), "60", str(transactions)]
        proc = common.run(argv, timeout=120)
        count = next(int(line.split(",")[0]) for line in proc.stderr.splitlines() if "net:netif_rx" in line)
    else:
        before = softnet_processed()
        rr(sc, rr_bin, "rr", 60, transactions)
        count = softnet_processed() - before
    pkts = edge_packets(sc) - pkts0
    return {"netif_rx": count, "packets": pkts, "transactions": transactions,
            "per_packet": count / pkts if pkts else float("nan"), "per_transaction": count / transactions,
            "packets_per_transaction": pkts / transactions}


def ttl_check(sc):
    probe = common.popen([str(common.VENV_PY), "-c", TTL_PROBE, "10"], netns=sc.server_ns)
    if probe.stdout.readline().strip() != "ready":
        raise RuntimeError(f"TTL probe did not start in {sc.server_ns}: {probe.stderr.read()}")
    common.run(["ping", "-c", "1", "-W", "2", "-t", "64", sc.target], netns=sc.client_ns, check=False)
    line = probe.stdout.readline().strip()
    probe.wait(timeout=15)
    return {"sent_ttl": 64, "received_ttl": int(line) if line.isdigit() else None}


def runcnt_check(sc, info, rr_bin, transactions):
    from ansible_collections.yogurt.phone.plugins.module_utils._wire import read_wire

    pdir = f"/sys/fs/bpf/yogurt/{info['phone']['name']}"
    progs = ("wire_in", "guard_xdp")  # guard_xdp: native XDP in the yogurts, which the wire's packets skip

    def snapshot():
        stats = {p: common.prog_stats(f"{pdir}/prog_{p}") for p in progs}
        tx = rx = 0
        for ns, dev in sc.edge:
            t, r = link_stats(ns, dev)
            tx, rx = tx + t, rx + r
        counters = read_wire(info["phone"]["name"])["counters"]
        fwd = counters.get("forwarded_packets_0to1", 0) + counters.get("forwarded_packets_1to0", 0)
        return stats, tx, rx, fwd

    with common.bpf_stats() as how:
        s0, tx0, rx0, fwd0 = snapshot()
        rr(sc, rr_bin, "rr", 60, transactions)
        common.run(["ping", "-c", "20", "-i", "0.01", "-q", sc.target], netns=sc.client_ns, check=False)
        s1, tx1, rx1, fwd1 = snapshot()
    d = {p: s1[p]["run_cnt"] - s0[p]["run_cnt"] for p in progs}
    ns_per_run = {p: ((s1[p]["run_time_ns"] - s0[p]["run_time_ns"]) / d[p]) if d[p] else None for p in progs}
    return {"stats_via": how, "run_cnt": d, "ns_per_run": ns_per_run, "cont_tx_packets": tx1 - tx0,
            "cont_rx_packets": rx1 - rx0, "wire_forwarded": fwd1 - fwd0,
            "ok": d["wire_in"] == tx1 - tx0 == fwd1 - fwd0 == rx1 - rx0 and d["guard_xdp"] == 0}


# ---------------------------------------------------------------- summary

def summarize(rounds):
    """{(scenario, metric): {median, min, max, ratio_lo:{median,min,max}, ratio_veth:{...}}}."""
    out = {}
    for name in SCENARIOS:
        for metric, unit in METRICS:
            vals = [r["values"][(name, metric)] for r in rounds]
            entry = {"unit": unit, "median": statistics.median(vals), "min": min(vals), "max": max(vals)}
            for base in ("lo64k", "veth"):
                ratios = [r["values"][(name, metric)] / r["values"][(base, metric)] for r in rounds]
                entry[f"ratio_{base}"] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
            out[(name, metric)] = entry
    return out


def run_datapath(cfg, workdir, objects, rr_bin, log):
    prefix = common.new_prefix()
    scen, info = setup(prefix, workdir, objects)
    log(f"datapath: scenarios built (prefix {prefix}); phone backend {info['backend']}: {info['backend_reason']}")
    start_servers(scen, rr_bin)
    # warm up every path once (ARP, first connection) before anything is measured
    for sc in scen.values():
        rr(sc, rr_bin, "rr", 1, 100)
    rounds = []
    for index in range(cfg["rounds"]):
        shift = index % len(SCENARIOS)
        order = SCENARIOS[shift:] + SCENARIOS[:shift]
        with common.RoundMeter() as meter:
            values = measure_round(scen, order, rr_bin, cfg)
        rounds.append({"round": index + 1, "order": list(order), "values": values,
                       "load1": meter.load1, "steal_pct": meter.steal_pct})
        ph, lo = values[("phone", "tput_1")], values[("lo64k", "tput_1")]
        log(f"datapath: round {index + 1}/{cfg['rounds']} ({' '.join(order)}): phone {ph:.1f} Gbit/s, "
            f"lo64k {lo:.1f}; load {meter.load1:.2f}, steal {meter.steal_pct:.1f}%")

    use_perf, perf_note = perf_works()
    checks = {"backlog_method": perf_note if use_perf else f"{perf_note}; fallback /proc/net/softnet_stat (all "
              "CPUs, all namespaces: noisy)", "backlog": {}, "ttl": {}}
    for name in SCENARIOS:
        checks["backlog"][name] = backlog_check(scen[name], rr_bin, cfg["check_tx"], use_perf)
        checks["ttl"][name] = ttl_check(scen[name])
    checks["runcnt"] = runcnt_check(scen["phone"], info, rr_bin, cfg["check_tx"])
    log(f"datapath: checks done: backlog/packet phone {checks['backlog']['phone']['per_packet']:.2f}, "
        f"ttl phone {checks['ttl']['phone']['received_ttl']}, runcnt ok {checks['runcnt']['ok']}")
    return {"prefix": prefix, "phone": info, "rounds": rounds, "summary": summarize(rounds), "checks": checks,
            "config": cfg}
