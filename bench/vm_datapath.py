# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The datapath in the netkit VM: the phone on netkit and on veth against plain pairs.

    .venv/bin/python bench/vm_datapath.py [--rounds 5] [--seconds 4]

Boots the project's netkit VM (tests/vm/, qemu TCG), converges two phones in it with
site.yml --tags phones (`bv` on veth, `bn` on netkit), runs bench/vm_rounds.py inside the VM
(one ssh session: rounds of iperf3 1 stream and TCP_RR over a plain veth pair, a plain
netkit pair and the two phones, rotated order), and prints the median of per-round ratios
with min and max, plus the hard checks: TTL unchanged, BPF run count = packets. Under TCG
the absolute numbers mean little; ratios within one round are what counts. Writes
bench/results/vm-<timestamp>/{results.json,vm.md}. Never fails on a target: it prints
pass or falls short.
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "vm"))
import vm as vm_harness  # noqa: E402  pylint: disable=wrong-import-position,import-error

TARGET = 0.95
PHONES = [
    {"name": "bv", "backend": "veth", "ends": [
        {"netns": "bv-1", "host_ifname": "bv1-host", "cont_ifname": "bv1-cont", "addresses": ["10.93.0.1/24"]},
        {"netns": "bv-2", "host_ifname": "bv2-host", "cont_ifname": "bv2-cont", "addresses": ["10.93.0.2/24"]}]},
    {"name": "bn", "backend": "netkit", "ends": [
        {"netns": "bn-1", "host_ifname": "bn1-host", "cont_ifname": "bn1-cont", "addresses": ["10.94.0.1/24"]},
        {"netns": "bn-2", "host_ifname": "bn2-host", "cont_ifname": "bn2-cont", "addresses": ["10.94.0.2/24"]}]},
]
# (scenario, its baseline): each ratio is taken within one round.
RATIOS = (("phone_veth", "veth"), ("phone_netkit", "netkit"), ("phone_netkit", "veth"), ("netkit", "veth"))


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def compile_rr(workdir):
    out = workdir / "rr"
    subprocess.run(["gcc", "-O2", "-static", "-o", str(out), str(ROOT / "bench" / "rr.c")], check=True)
    return out


def converge(vm, workdir):
    inventory = vm.write_inventory(workdir / "inventory.yml")
    extra = json.dumps({"yogurt_phones": PHONES, "yogurt_phone_call": False})
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", str(inventory), "site.yml",
                           "--tags", "phones", "-e", extra], cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError("converging the bench phones in the VM failed:\n" + proc.stdout[-3000:])


def summarize(rounds):
    rows = []
    for metric in ("tput_1", "tcp_rr"):
        for scen, base in RATIOS:
            ratios = [r["values"][f"{scen}/{metric}"] / r["values"][f"{base}/{metric}"] for r in rounds]
            rows.append({"metric": metric, "scenario": scen, "baseline": base, "median": statistics.median(ratios),
                         "min": min(ratios), "max": max(ratios)})
    return rows


def report(data, rows, seconds):
    rounds = data["rounds"]
    lines = [f"**Datapath in the netkit VM** (Linux {data['kernel']} under qemu TCG, 2 vCPUs; {len(rounds)} rounds, "
             f"rotated order, iperf3 1 stream {seconds} s --omit 1, TCP_RR {seconds} s; absolute values are "
             "TCG's, only the ratios mean something):", "",
             "| metric | scenario / baseline | median ratio | min | max |", "| --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row['metric']} | {row['scenario']} / {row['baseline']} | {row['median']:.2f}x | "
                     f"{row['min']:.2f}x | {row['max']:.2f}x |")
    lines += ["", "Medians of the raw values (Gbit/s for tput_1, transactions/s for tcp_rr):", "",
              "| scenario | tput_1 | tcp_rr |", "| --- | --- | --- |"]
    for scen in ("veth", "netkit", "phone_veth", "phone_netkit"):
        lines.append(f"| {scen} | {statistics.median(r['values'][f'{scen}/tput_1'] for r in rounds):.3f} | "
                     f"{statistics.median(r['values'][f'{scen}/tcp_rr'] for r in rounds):.0f} |")
    lines += ["", "Per round: " + "; ".join(f"load {r['load']:.1f}, steal {r['steal_pct']:.1f}%" for r in rounds), ""]
    checks = data["checks"]
    ttl = checks["ttl"]
    runs = checks["runcnt"]
    expected = 2 * runs["pings"]
    lines += ["**Targets and hard checks (VM)**:", "", "| check | measured | result |", "| --- | --- | --- |"]
    for row in rows:
        if row["scenario"].startswith("phone") and (row["scenario"], row["baseline"]) != ("phone_netkit", "veth"):
            ok = row["median"] >= TARGET
            lines.append(f"| {row['scenario']} >= {TARGET}x {row['baseline']} ({row['metric']}) | {row['median']:.2f}x | "
                         f"{'pass' if ok else 'FALLS SHORT'} |")
    ttl_ok = len(set(ttl.values())) == 1 and None not in ttl.values()
    lines.append(f"| TTL unchanged through the phones (as through a plain pair) | {ttl} | {'pass' if ttl_ok else 'FAIL'} |")
    runs_ok = all(v == expected for v in runs["runs"].values()) and runs["forwarded"] == expected
    lines.append(f"| netkit phone: BPF runs = packets ({runs['pings']} pings = {expected} packets) | runs {runs['runs']}, "
                 f"wire counted {runs['forwarded']} | {'pass' if runs_ok else 'FAIL'} |")
    return "\n".join(lines) + "\n"


def write_outputs(outdir, data, rows):
    """results.csv (one row per round, scenario and metric) and plot.png (median ratios, min-max)."""
    with open(outdir / "results.csv", "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["round", "scenario", "metric", "value", "load", "steal_pct"])
        for number, rnd in enumerate(data["rounds"]):
            for key, value in sorted(rnd["values"].items()):
                scenario, metric = key.split("/")
                out.writerow([number, scenario, metric, value, rnd["load"], rnd["steal_pct"]])
    try:
        import matplotlib  # pylint: disable=import-outside-toplevel
        matplotlib.use("Agg")
        from matplotlib import pyplot  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None
    labels = [f"{r['metric']}\n{r['scenario']}/{r['baseline']}" for r in rows]
    medians = [r["median"] for r in rows]
    errors = [[r["median"] - r["min"] for r in rows], [r["max"] - r["median"] for r in rows]]
    fig, axes = pyplot.subplots(figsize=(10, 4))
    axes.bar(range(len(rows)), medians, yerr=errors, capsize=3, color="#6a9fd8")
    axes.axhline(TARGET, color="#c0392b", linestyle="--", label=f"target {TARGET}x")
    axes.set_xticks(range(len(rows)), labels, fontsize=7)
    axes.set_ylabel("median ratio (min-max over rounds)")
    axes.set_title(f"Datapath in the netkit VM (Linux {data['kernel']}, qemu TCG)")
    axes.legend()
    fig.tight_layout()
    fig.savefig(outdir / "plot.png", dpi=100)
    pyplot.close(fig)
    return outdir / "plot.png"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=4)
    args = parser.parse_args(argv)
    outdir = ROOT / "bench" / "results" / time.strftime("vm-%Y%m%d-%H%M%S")
    outdir.mkdir(parents=True)
    started = time.monotonic()
    rr_bin = compile_rr(outdir)
    log("booting the netkit VM (image cached by tests/vm/build_image.sh)")
    with vm_harness.booted_vm(name="bench-vm") as vm:
        log("VM up; converging phones bv (veth) and bn (netkit) with site.yml --tags phones")
        converge(vm, outdir)
        subprocess.run(vm.ssh_argv("cat > /root/rr && chmod 755 /root/rr"), input=rr_bin.read_bytes(),
                       capture_output=True, check=True, timeout=120)
        log(f"running {args.rounds} rounds in the VM")
        script = (ROOT / "bench" / "vm_rounds.py").read_text()
        proc = vm.run(f"python3 - {args.rounds} {args.seconds} /root/rr", input=script,
                      timeout=args.rounds * args.seconds * 8 * 6 + 600)
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = summarize(data["rounds"])
    text = report(data, rows, args.seconds)
    (outdir / "results.json").write_text(json.dumps({"data": data, "ratios": rows}, indent=1))
    (outdir / "vm.md").write_text(text)
    write_outputs(outdir, data, rows)
    print(text)
    log(f"done in {time.monotonic() - started:.0f} s: {outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
