# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs INSIDE the netkit test VM (fed to python3 over ssh by bench/vm_datapath.py).

    python3 - ROUNDS SECONDS RR_BIN < vm_rounds.py

Makes the two baselines (a plain veth pair and a plain netkit pair, each between two
namespaces of its own), finds the two phones bench/vm_datapath.py converged (phone `bv` on
veth, `bn` on netkit), runs iperf3 (1 stream) and TCP_RR (rr) across the four in rotated
order per round, then the hard checks, and prints one JSON document on its last line.
Nothing leaves the VM: every address lives in a namespace made here or by the phones.
"""

import json
import os
import subprocess
import sys
import time

ROUNDS, SECONDS, RR_BIN = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
# name: (client netns, server netns, server address, devices whose packets the check counts)
SCENARIOS = {
    "veth": ("bvpa", "bvpb", "10.91.0.2"),
    "netkit": ("bnpa", "bnpb", "10.92.0.2"),
    "phone_veth": ("bv-1", "bv-2", "10.93.0.2"),
    "phone_netkit": ("bn-1", "bn-2", "10.94.0.2"),
}


def sh(argv, netns=None, check=True, timeout=300):
    if netns:
        argv = ["ip", "netns", "exec", netns] + argv
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)


def baselines():
    for ns in ("bvpa", "bvpb", "bnpa", "bnpb"):
        sh(["ip", "netns", "add", ns])
        sh(["ip", "-n", ns, "link", "set", "lo", "up"])
    sh(["ip", "-n", "bvpa", "link", "add", "bva", "type", "veth", "peer", "name", "bvb", "netns", "bvpb"])
    # A netkit pair with both policies forward and no program: netkit's own floor.
    sh(["ip", "-n", "bnpa", "link", "add", "bna", "type", "netkit", "mode", "l3", "forward",
        "peer", "forward", "name", "bnb", "netns", "bnpb"])
    for ns, dev, addr in (("bvpa", "bva", "10.91.0.1"), ("bvpb", "bvb", "10.91.0.2"),
                          ("bnpa", "bna", "10.92.0.1"), ("bnpb", "bnb", "10.92.0.2")):
        sh(["ip", "-n", ns, "addr", "add", addr + "/24", "dev", dev])
        sh(["ip", "-n", ns, "link", "set", dev, "up"])


def cleanup():
    for ns in ("bvpa", "bvpb", "bnpa", "bnpb"):
        sh(["ip", "netns", "del", ns], check=False)


def steal_and_busy():
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return fields[7], sum(fields)  # steal, total jiffies


def iperf(client, target):
    for attempt in range(3):
        out = sh(["iperf3", "-c", target, "-t", str(SECONDS), "-O", "1", "-J"], netns=client, check=False,
                 timeout=SECONDS + 60)
        if out.returncode == 0:
            return json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9
        time.sleep(1 + attempt)
    raise RuntimeError(f"iperf3 from {client} to {target}: {out.stdout[-800:]} {out.stderr[-300:]}")


def tcp_rr(client, target):
    return float(sh([RR_BIN, "rr", target, "5202", str(SECONDS)], netns=client, timeout=SECONDS + 60).stdout.split()[2])


def ttl_seen(client, server, target):
    """TTL of an echo request as the receiving namespace sees it (a raw socket there)."""
    probe = subprocess.Popen(["ip", "netns", "exec", server, "python3", "-c",
                              "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_ICMP);"
                              "s.settimeout(10);print('ready',flush=True);d=s.recv(256);print(d[8])"],
                             stdout=subprocess.PIPE, text=True)
    probe.stdout.readline()
    sh(["ping", "-c", "1", "-W", "2", target], netns=client, check=False)
    out = probe.communicate(timeout=20)[0].split()
    return int(out[-1]) if out else None


def prog_runs(pinned):
    info = json.loads(sh(["bpftool", "-j", "prog", "show", "pinned", pinned]).stdout)
    return info.get("run_cnt", 0)


def runcnt_check():
    """Netkit phone: BPF runs of wire_peer and wire_primary against the packets it forwarded."""
    base = "/sys/fs/bpf/yogurt/bn"

    def counters():
        return json.loads(sh(["bpftool", "-j", "map", "dump", "pinned", f"{base}/map_counters"]).stdout)

    sh(["sysctl", "-q", "-w", "kernel.bpf_stats_enabled=1"])
    try:
        before = {p: prog_runs(f"{base}/prog_{p}") for p in ("wire_peer", "wire_primary")}
        dump_before = counters()
        sh(["ping", "-c", "200", "-i", "0.01", "-q", "10.94.0.2"], netns="bn-1")
        after = {p: prog_runs(f"{base}/prog_{p}") for p in ("wire_peer", "wire_primary")}
        dump_after = counters()
    finally:
        sh(["sysctl", "-q", "-w", "kernel.bpf_stats_enabled=0"])

    def number(value):  # bpftool prints ints with BTF, little-endian hex byte lists without
        return value if isinstance(value, int) else int.from_bytes(bytes(int(b, 16) for b in value), "little")

    def forwarded(dump):
        total = 0
        for entry in dump:  # per-CPU array: slot 0 = packets 0->1, slot 2 = packets 1->0
            if number(entry.get("key")) in (0, 2):
                total += sum(number(v["value"]) for v in entry.get("values", []))
        return total

    return {"runs": {p: after[p] - before[p] for p in after}, "forwarded": forwarded(dump_after) - forwarded(dump_before),
            "pings": 200}


def main():
    cleanup()
    baselines()
    servers = []
    try:
        for client, server, target in SCENARIOS.values():
            servers.append(subprocess.Popen(["ip", "netns", "exec", server, "iperf3", "-s", "-B", target],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            servers.append(subprocess.Popen(["ip", "netns", "exec", server, RR_BIN, "server", "5202"],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1)
        names = list(SCENARIOS)
        rounds = []
        for rnd in range(ROUNDS):
            order = names[rnd % len(names):] + names[:rnd % len(names)]
            steal0, total0 = steal_and_busy()
            values = {}
            for metric, func in (("tput_1", iperf), ("tcp_rr", tcp_rr)):
                for name in order:
                    client, _server, target = SCENARIOS[name]
                    values[f"{name}/{metric}"] = func(client, target)
            steal1, total1 = steal_and_busy()
            rounds.append({"order": order, "values": values, "load": os.getloadavg()[0],
                           "steal_pct": 100.0 * (steal1 - steal0) / max(1, total1 - total0)})
        ttl = {name: ttl_seen(*SCENARIOS[name]) for name in names}
        checks = {"ttl": ttl, "runcnt": runcnt_check()}
    finally:
        for proc in servers:
            proc.terminate()
        cleanup()
    print(json.dumps({"kernel": os.uname().release, "rounds": rounds, "checks": checks}))


main()
