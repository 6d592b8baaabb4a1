# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The benchmark's driver; start it through bench/run (which sets up the private mounts)."""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import shutil
import sys
import time

import common
import datapath
import fleet
import provision
import report

MODES = {
    # rounds: interleaved datapath rounds; iperf_t/omit: iperf3 -t/-O; rr_t: seconds per RR/CRR run;
    # check_tx: transactions for the hard checks; counts: phones per provisioning step
    "quick": {"rounds": 2, "iperf_t": 1, "omit": 1, "rr_t": 1, "check_tx": 2000, "counts": [1, 10],
              "hosts": [1, 10]},
    "full": {"rounds": 5, "iperf_t": 5, "omit": 2, "rr_t": 3, "check_tx": 10000, "counts": [1, 10, 50, 200, 1000],
             "hosts": [1, 10, 50]},
}


FLEET_BEGIN, FLEET_END = "<!-- fleet: bench/run --only fleet --publish -->", "<!-- fleet end -->"


def publish_fleet(outdir, stamp, data):
    """Replace (or add) the fleet section of bench/RESULTS.md, leaving the other sections as they are."""
    body = "\n".join(report.fleet_markdown(data["fleet"]) + ["| target | measured | result |", "| --- | --- | --- |"]
                     + [f"| {n} | {m} | {'pass' if ok else 'FALLS SHORT'} |" for n, m, ok in report.fleet_targets(data)])
    section = (f"{FLEET_BEGIN}\n## Fleet (run {stamp}, `bench/run --only fleet`, {data['duration_s']:.0f} s)\n\n"
               f"![fleet](plot-fleet.png)\n\n{body}\n{FLEET_END}")
    path = common.BENCH / "RESULTS.md"
    text = path.read_text()
    if FLEET_BEGIN in text:
        head, rest = text.split(FLEET_BEGIN, 1)
        text = head + section + rest.split(FLEET_END, 1)[1]
    else:
        first, rest = text.split("\n## ", 1)
        text = f"{first}\n{section}\n\n## {rest}"
    path.write_text(text)


def main():
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few short rounds and 1/10 phones: checks that it works")
    parser.add_argument("--only", choices=["datapath", "provision", "fleet"], help="run one part only")
    parser.add_argument("--rounds", type=int, help="datapath rounds (default 5, quick 2)")
    parser.add_argument("--counts", help="phones per provisioning step, comma-separated (default 1,10,50,200)")
    parser.add_argument("--hosts", help="simulated hosts per fleet step, comma-separated (default 1,10,50)")
    parser.add_argument("--strategy", help="fleet: run ansible-playbook with this strategy (ANSIBLE_STRATEGY; "
                        "default: the playbook's, linear)")
    parser.add_argument("--out", help="results directory (default bench/results/<timestamp>)")
    parser.add_argument("--publish", action="store_true",
                        help="also write the committed summary bench/RESULTS.md and bench/plot.png")
    args = parser.parse_args()
    if os.environ.get("YOGURT_BENCH_INNER") != "1":
        sys.exit("start the benchmark with bench/run (it gives it private /run and bpffs mounts)")

    mode = "quick" if args.quick else "full"
    cfg = dict(MODES[mode], mode=mode)
    if args.rounds:
        cfg["rounds"] = args.rounds
    if args.counts:
        cfg["counts"] = [int(x) for x in args.counts.split(",")]
    if args.hosts:
        cfg["hosts"] = [int(x) for x in args.hosts.split(",")]
    cfg["strategy"] = args.strategy
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    outdir = pathlib.Path(args.out) if args.out else common.BENCH / "results" / stamp
    outdir.mkdir(parents=True, exist_ok=True)
    workdir = outdir / "work"
    workdir.mkdir(exist_ok=True)
    logfile = open(outdir / "log.txt", "a", encoding="utf-8")  # pylint: disable=consider-using-with
    started = time.monotonic()

    def log(text):
        line = f"[{time.monotonic() - started:7.1f}s] {text}"
        print(line, flush=True)
        logfile.write(line + "\n")
        logfile.flush()

    rr_bin = str(workdir / "rr")
    common.run(["gcc", "-O2", "-Wall", "-o", rr_bin, str(common.BENCH / "rr.c")])
    objects = common.build_objects(workdir / "bpf")
    log(f"mode {mode}: {cfg}; objects {sorted(objects)}; results in {outdir}")
    data = {"mode": mode, "started": stamp, "kernel": platform.release(), "cpus": os.cpu_count()}
    if args.only in (None, "datapath"):
        with common.scope():
            data["datapath"] = datapath.run_datapath(cfg, workdir, objects, rr_bin, log)
    if args.only in (None, "provision"):
        with common.scope():
            data["provision"] = provision.run_provision(cfg, workdir, objects, log)
    if args.only in (None, "fleet"):
        with common.scope():
            data["fleet"] = fleet.run_fleet(cfg, workdir, log)
    data["duration_s"] = time.monotonic() - started
    lines = report.write(outdir, data)
    (common.BENCH / "results").mkdir(exist_ok=True)
    shutil.copy(outdir / "latest.md", common.BENCH / "results" / "latest.md")
    if args.publish and args.only == "fleet":
        publish_fleet(outdir, stamp, data)
    elif args.publish:
        text = (outdir / "latest.md").read_text()
        (common.BENCH / "RESULTS.md").write_text(
            "# Benchmark results\n\nWritten by `bench/run --publish` (see bench/README.md); the plot is "
            "[plot.png](plot.png).\n\n" + text)
        shutil.copy(outdir / "plot.png", common.BENCH / "plot.png")
    if args.publish and "fleet" in data:
        shutil.copy(outdir / "plot-fleet.png", common.BENCH / "plot-fleet.png")
    shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(lines))
    log(f"done in {data['duration_s']:.0f} s: {outdir}")


if __name__ == "__main__":
    main()
