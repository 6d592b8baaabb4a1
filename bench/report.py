# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Write results.csv, results.json, plot.png and latest.md; judge each target."""

from __future__ import annotations

import csv
import json

from datapath import METRICS, SCENARIOS

METRIC_LABEL = {"tput_1": "iperf3 1 stream", "tput_2": "iperf3 2 streams", "tcp_rr": "TCP_RR", "tcp_crr": "TCP_CRR"}
# Datapath targets: the phone >= 0.98x the plain veth pair it is made of on 1-stream
# throughput, TCP_RR and TCP_CRR (issue 13; issue 8 asked 0.95x); 2 streams keep 0.95x.
TPUT_VS_VETH = 0.98
TPUT2_VS_VETH = 0.95
RR_VS_VETH = 0.98


def _jsonable(obj):
    if isinstance(obj, dict):
        return {"|".join(k) if isinstance(k, tuple) else k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def _fmt_ratio(r):
    return f"{r['median']:.2f}x [{r['min']:.2f}-{r['max']:.2f}]"


def _fmt_value(v, unit):
    return f"{v:.1f}" if unit == "Gbit/s" else f"{v:,.0f}"


def targets(data):
    """[(target, measured, passed)]."""
    out = []
    dp = data.get("datapath")
    if dp:
        summ, checks = dp["summary"], dp["checks"]
        ph, ve = checks["backlog"]["phone"], checks["backlog"]["veth"]
        out.append(("backlog passes per packet: phone = plain veth (1)",
                    f"phone {ph['per_packet']:.2f}, veth {ve['per_packet']:.2f}, routed "
                    f"{checks['backlog']['routed']['per_packet']:.2f}",
                    abs(ph["per_packet"] - ve["per_packet"]) < 0.1 and abs(ph["per_packet"] - 1) < 0.1))
        ttl = checks["ttl"]["phone"]
        out.append(("TTL unchanged across the phone", f"sent {ttl['sent_ttl']}, received {ttl['received_ttl']} "
                    f"(routed: {checks['ttl']['routed']['received_ttl']})", ttl["received_ttl"] == ttl["sent_ttl"]))
        rc = checks["runcnt"]
        out.append(("BPF run count = packets", f"wire_in {rc['run_cnt']['wire_in']} = yogurt tx {rc['cont_tx_packets']}"
                    f" = forwarded {rc['wire_forwarded']} = yogurt rx {rc['cont_rx_packets']}; guard_xdp "
                    f"{rc['run_cnt']['guard_xdp']} (the wire's packets pass no XDP)", rc["ok"]))
        for metric, floor in (("tput_1", TPUT_VS_VETH), ("tput_2", TPUT2_VS_VETH), ("tcp_rr", RR_VS_VETH),
                              ("tcp_crr", RR_VS_VETH)):
            r = summ[("phone", metric)]["ratio_veth"]
            out.append((f"{METRIC_LABEL[metric]}: phone >= {floor} x plain veth (median of rounds)",
                        _fmt_ratio(r), r["median"] >= floor))
    pv = data.get("provision")
    if pv:
        tg = pv["targets"]
        rows = {r["count"]: r for r in pv["rows"]}
        ref = rows.get(50) or pv["rows"][-1]
        n = ref["count"]
        note = "" if n == 50 else f" (measured at {n} phones, target scaled)"

        def mt(row, step):
            return row.get(f"module_time_{step}_s", row[f"module_{step}_s"])

        how = "expedited RCU" if ref.get("rcu_expedited_used") else "normal RCU"
        out.append((f"50 phones converge <= {tg['converge_50_s']:.1f} s of module time{note}",
                    f"{mt(ref, 'converge'):.2f} s ({how})", mt(ref, "converge") <= tg["converge_50_s"] * n / 50))
        if "converge_vs_shell_50" in tg:
            out.append((f"50 phones converge >= {tg['converge_vs_shell_50']:.0f}x faster than the shell baseline "
                        f"under the same RCU setting{note}",
                        f"module {mt(ref, 'converge'):.2f} s, shell {ref['shell_converge_s']:.2f} s ({how}): "
                        f"{ref['shell_converge_s'] / max(mt(ref, 'converge'), 1e-6):.1f}x",
                        ref["shell_converge_s"] >= tg["converge_vs_shell_50"] * mt(ref, "converge")))
        for big, key in ((200, "converge_200_s"), (1000, "converge_1000_s")):
            if key in tg:
                row = rows.get(big)
                out.append((f"{big} phones converge <= {tg[key]:.0f} s of module time",
                            f"{mt(row, 'converge'):.2f} s" if row else "not measured (run with --counts ...," f"{big})",
                            bool(row) and mt(row, "converge") <= tg[key]))
        if "teardown_vs_shell" in tg:
            out.append((f"teardown within {tg['teardown_vs_shell']:.0f}x the shell baseline ({n} phones), nothing left",
                        f"module {mt(ref, 'teardown'):.2f} s, shell {ref['shell_teardown_s']:.2f} s; "
                        f"{ref.get('module_teardown_left', '?')} host sides left",
                        mt(ref, "teardown") <= tg["teardown_vs_shell"] * ref["shell_teardown_s"]
                        and ref.get("module_teardown_left") == 0))
        out.append((f"no-op re-run <= {tg['noop_50_s']} s of module time ({n} phones)", f"{mt(ref, 'noop'):.2f} s",
                    mt(ref, "noop") <= tg["noop_50_s"]))
        if "noop_vs_startup" in tg:
            ratio = ref["module_noop_s"] / ref["module_startup_s"]
            out.append((f"no-op re-run ({n} phones) within {tg['noop_vs_startup']}x the module's own start-up (wall "
                        "time: interpreter and imports, no work)", f"{ref['module_noop_s']:.2f} s against "
                        f"{ref['module_startup_s']:.2f} s: {ratio:.2f}x", ratio <= tg["noop_vs_startup"]))
        if "teardown_wall_vs_shell" in tg:
            ratio = ref["module_teardown_s"] / ref["shell_teardown_s"]
            out.append((f"teardown ({n} phones) within {tg['teardown_wall_vs_shell']}x the shell baseline, wall time "
                        "with the module's start-up", f"module {ref['module_teardown_s']:.2f} s, shell "
                        f"{ref['shell_teardown_s']:.2f} s: {ratio:.2f}x", ratio <= tg["teardown_wall_vs_shell"]))
        slope = pv.get("slope_kb_per_phone", {}).get("module")
        per = slope if slope is not None else ref["module_kb"] / n
        how = "slope between the smallest and largest count" if slope is not None else f"delta / {n}"
        out.append(("kernel memory <= 1 MB per phone", f"{per:.0f} kB ({how})", per <= tg["kb_per_phone"]))
    out += fleet_targets(data)
    return out


def _load(run):
    return f"load {run['load_before'][0]:.1f}"


def fleet_targets(data):
    """The fleet's targets (issue 15), scaled by hosts/50 when 50 hosts were not measured."""
    fl = data.get("fleet")
    if not fl:
        return []
    tg = fl["targets"]
    rows = {r["hosts"]: r for r in fl["rows"]}
    ref = rows.get(50) or fl["rows"][-1]
    n = ref["hosts"]
    note = "" if n == 50 else f" (measured at {n} hosts, target scaled)"
    c, o = ref["converge"], ref["noop"]
    return [(f"50 simulated hosts converge <= {tg['converge_50_s']:.0f} s, one ansible-playbook run{note}",
             f"{c['wall_s']:.1f} s ({c['per_host_s']:.2f} s/host, {_load(c)})",
             c["wall_s"] <= tg["converge_50_s"] * n / 50),
            (f"50 simulated hosts re-run (no-op) <= {tg['noop_50_s']:.0f} s{note}",
             f"{o['wall_s']:.1f} s ({o['per_host_s']:.2f} s/host, {_load(o)})",
             o["wall_s"] <= tg["noop_50_s"] * n / 50)]


def write_csv(path, data):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["section", "scenario", "metric", "round", "value", "unit", "ratio_lo64k", "ratio_veth",
                      "load1", "steal_pct"])
        dp = data.get("datapath")
        if dp:
            for rnd in dp["rounds"]:
                vals = rnd["values"]
                for name in SCENARIOS:
                    for metric, unit in METRICS:
                        v = vals[(name, metric)]
                        out.writerow(["datapath", name, metric, rnd["round"], f"{v:.4f}", unit,
                                      f"{v / vals[('lo64k', metric)]:.4f}", f"{v / vals[('veth', metric)]:.4f}",
                                      rnd["load1"], f"{rnd['steal_pct']:.2f}"])
            for name, chk in dp["checks"]["backlog"].items():
                for key in ("per_packet", "per_transaction", "packets_per_transaction", "netif_rx", "packets"):
                    out.writerow(["check", name, f"backlog_{key}", "", chk[key], "", "", "", "", ""])
            for name, chk in dp["checks"]["ttl"].items():
                out.writerow(["check", name, "ttl_received", "", chk["received_ttl"], "", "", "", "", ""])
            rc = dp["checks"]["runcnt"]
            for prog, n in rc["run_cnt"].items():
                out.writerow(["check", "phone", f"run_cnt_{prog}", "", n, "", "", "", "", ""])
                if rc["ns_per_run"][prog]:
                    out.writerow(["check", "phone", f"ns_per_run_{prog}", "", f"{rc['ns_per_run'][prog]:.1f}",
                                  "ns", "", "", "", ""])
            for key in ("cont_tx_packets", "cont_rx_packets", "wire_forwarded"):
                out.writerow(["check", "phone", key, "", rc[key], "", "", "", "", ""])
        pv = data.get("provision")
        if pv:
            for row in pv["rows"]:
                for how in ("module", "module_time", "module_normal", "ansible", "shell", "shell_normal"):
                    for step in ("converge", "noop", "teardown"):
                        if f"{how}_{step}_s" not in row:
                            continue
                        out.writerow(["provision", how, f"{step}_s", row["count"], f"{row[f'{how}_{step}_s']:.3f}",
                                      "s", "", "", row["load1"], f"{row['steal_pct']:.2f}"])
                for how in ("module", "shell"):
                    out.writerow(["provision", how, "kernel_kb_per_phone", row["count"],
                                  f"{row[f'{how}_kb'] / row['count']:.1f}", "kB", "", "", "", ""])
        fl = data.get("fleet")
        if fl:
            for row in fl["rows"]:
                for step in ("converge", "noop"):
                    r = row[step]
                    for key, unit in (("wall_s", "s"), ("per_host_s", "s"), ("controller_cpu_s", "s"),
                                      ("module_cpu_s", "s"), ("module_wall_per_host_s", "s"),
                                      ("modules_per_host", "")):
                        out.writerow(["fleet", step, key, row["hosts"], f"{r[key]:.3f}", unit, "", "",
                                      f"{r['load_before'][0]:.2f}", ""])


def plot(path, data):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dp, pv = data.get("datapath"), data.get("provision")
    panels = [p for p in (dp, pv) if p]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
    axes = list(axes[0])
    if dp:
        ax = axes.pop(0)
        summ = dp["summary"]
        width = 0.8 / len(SCENARIOS)
        for i, name in enumerate(SCENARIOS):
            med = [summ[(name, m)]["ratio_lo64k"]["median"] for m, _u in METRICS]
            lo = [med[j] - summ[(name, m)]["ratio_lo64k"]["min"] for j, (m, _u) in enumerate(METRICS)]
            hi = [summ[(name, m)]["ratio_lo64k"]["max"] - med[j] for j, (m, _u) in enumerate(METRICS)]
            xs = [j + (i - (len(SCENARIOS) - 1) / 2) * width for j in range(len(METRICS))]
            ax.bar(xs, med, width, yerr=[lo, hi], capsize=2, label=name)
        ax.set_xticks(range(len(METRICS)), [METRIC_LABEL[m] for m, _u in METRICS])
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_ylabel("ratio to loopback (MTU 64K), same round")
        ax.set_title(f"datapath: median of {len(dp['rounds'])} rounds, min-max bars")
        ax.legend(fontsize=8)
    if pv:
        ax = axes.pop(0)
        counts = [r["count"] for r in pv["rows"]]
        for how, marker, color in (("module", "o", "C0"), ("module_normal", "o", "C3"), ("ansible", "s", "C1"),
                                   ("shell", "^", "C2"), ("shell_normal", "^", "C4")):
            for step, style in (("converge", "-"), ("noop", ":"), ("teardown", "--")):
                pts = [(r["count"], r[f"{how}_{step}_s"]) for r in pv["rows"] if f"{how}_{step}_s" in r]
                if pts:
                    ax.plot([c for c, _v in pts], [v for _c, v in pts], marker=marker, color=color, linestyle=style,
                            alpha=1.0 if step == "converge" else 0.7,
                            label=f"{how.replace('_normal', ', normal RCU')} {step}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("phones on one host")
        ax.set_ylabel("seconds")
        ax.set_title("provisioning")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_fleet(path, data):
    """Seconds per run and per host against simulated hosts, converge and no-op, with the targets."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fl = data["fleet"]
    counts = [r["hosts"] for r in fl["rows"]]
    fig, (total, per) = plt.subplots(1, 2, figsize=(11, 4.3))
    for step, marker, color, label in (("converge", "o", "C0", "converge"), ("noop", "s", "C1", "no-op re-run")):
        total.plot(counts, [r[step]["wall_s"] for r in fl["rows"]], marker=marker, color=color, label=label)
        per.plot(counts, [r[step]["per_host_s"] for r in fl["rows"]], marker=marker, color=color, label=label)
    total.plot([50], [fl["targets"]["converge_50_s"]], marker="*", color="C0", linestyle="", markersize=12,
               label="target converge (50)")
    total.plot([50], [fl["targets"]["noop_50_s"]], marker="*", color="C1", linestyle="", markersize=12,
               label="target no-op (50)")
    loads = [r[s]["load_before"][0] for r in fl["rows"] for s in ("converge", "noop")]
    total.set_title(f"fleet: one ansible-playbook -f N run (load {min(loads):.1f}-{max(loads):.1f})")
    total.set_xlabel("simulated hosts")
    total.set_ylabel("seconds")
    total.legend(fontsize=8)
    per.set_title("seconds per host")
    per.set_xlabel("simulated hosts")
    per.set_ylabel("seconds / host")
    per.set_ylim(bottom=0)
    per.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fleet_ratios(fl):
    """Each run against the floor measured right before it (bench/fleet.py RATIOS)."""
    targets = fl.get("ratio_targets")
    if not targets or "ratios" not in fl["rows"][0]:
        return []
    names = {"converge": "phones, first run", "noop": "phones, re-run", "site_noop": "site.yml, re-run"}
    lines = ["", "Ratios to the floor (a one-task `ansible.builtin.ping` playbook on the same hosts, run right "
             "before each; load = 1-minute load average before the run):", "",
             "| hosts | run | s | floor s | load before / after | x floor | target | result | module processes/host "
             "| CPU controller / modules s | floor's CPU controller / modules s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in fl["rows"]:
        for key, most in targets.items():
            run, floor, ratio = r[key], r["floors"][key], r["ratios"][key]
            lines.append(f"| {r['hosts']} | {names.get(key, key)} | {run['wall_s']:.1f} | {floor['wall_s']:.1f} | "
                         f"{run['load_before'][0]:.1f} / {run['load_after'][0]:.1f} | {ratio:.2f}x | <= {most:.1f}x | "
                         f"{'pass' if ratio <= most else 'falls short'} | {run['modules_per_host']:.0f} | "
                         f"{run['controller_cpu_s']:.1f} / {run['module_cpu_s']:.1f} | "
                         f"{floor['controller_cpu_s']:.1f} / {floor['module_cpu_s']:.1f} |")
    warnings = sorted({w for r in fl["rows"] for key in ["floor"] + list(targets) for w in r[key].get("warnings", [])})
    lines += ["", "Warnings printed by ansible-playbook in these runs (deprecations included): "
              + ("; ".join(f"`{w}`" for w in warnings) if warnings else "none") + "."]
    return lines


def fleet_markdown(fl):
    lines = ["**Fleet** (simulated hosts: each its own network and mount namespace with its own /run and bpffs, "
             "reached through a local connection whose interpreter enters it; the role's default phone on each; "
             f"`ansible-playbook -f N site.yml --tags phones`, strategy {fl.get('strategy', 'linear')}, the call "
             "included; seconds; load = 1-minute load average before the run):", "",
             "| hosts | harness floor (1 ping task) | load | converge | s/host | load | no-op re-run | s/host | load "
             "| module processes/host | CPU controller / modules (converge) | CPU controller / modules (no-op) |",
             "| --- |" + " --- |" * 11]
    for r in fl["rows"]:
        c, o = r["converge"], r["noop"]
        f = r.get("floor")
        floor = f"{f['wall_s']:.1f} | {f['load_before'][0]:.1f}" if f else "- | -"
        lines.append(f"| {r['hosts']} | {floor} | {c['wall_s']:.1f} | {c['per_host_s']:.2f} | {c['load_before'][0]:.1f} | "
                     f"{o['wall_s']:.1f} | {o['per_host_s']:.2f} | {o['load_before'][0]:.1f} | "
                     f"{c['modules_per_host']:.0f} | {c['controller_cpu_s']:.1f} / {c['module_cpu_s']:.1f} s | "
                     f"{o['controller_cpu_s']:.1f} / {o['module_cpu_s']:.1f} s |")
    lines += _fleet_ratios(fl)
    ref = fl["rows"][-1]
    floor = fl.get("module_floor")
    if floor:
        c = ref["converge"]
        lines += ["", f"One module process that does nothing (`ansible.builtin.ping`, same wrapper, same host "
                  f"kind) costs {floor['cpu_s']:.2f} s CPU ({floor['wall_s']:.2f} s wall): ansible-core's own "
                  f"price per module process. {ref['hosts']} hosts x {c['modules_per_host']:.0f} module processes "
                  f"x {floor['cpu_s']:.2f} s = {ref['hosts'] * c['modules_per_host'] * floor['cpu_s']:.0f} s CPU of "
                  f"the converge's {c['module_cpu_s']:.0f} s module CPU; on {fl['cpus']} CPUs that alone is "
                  f"{ref['hosts'] * c['modules_per_host'] * floor['cpu_s'] / fl['cpus']:.1f} s of wall time."]
    for step in ("floor", "converge", "noop", "site_noop"):
        if step not in ref:
            continue
        run = ref[step]
        lines += ["", f"Where the time goes, {ref['hosts']} hosts, {step} (median seconds per host from the worker's "
                  f"start to its result; span = from the task's start to the next task's; module wall per host "
                  f"{run['module_wall_per_host_s']:.2f} s; module processes in order, median wall / CPU s: "
                  + ", ".join(f"{m['wall_s']:.2f} / {m['cpu_s']:.2f}" for m in run["module_runs"]) + "):", "",
                  "| task | action | hosts run | s/host | span s |", "| --- | --- | --- | --- | --- |"]
        for task in run["tasks"]:
            lines.append(f"| {task['name']} | {task['action']} | {task['ran']}/{task['hosts']} | "
                         f"{task['per_host_s']:.2f} | {task['span_s']:.2f} |")
    lines.append("")
    return lines


def markdown(data):
    lines = [f"Benchmark ({data['mode']} run {data['started']}, Linux {data['kernel']}, {data['cpus']} CPUs, "
             "veth backend; shared machine: compare ratios, not absolute values)", ""]
    dp = data.get("datapath")
    if dp:
        summ = dp["summary"]
        lines += [f"**Datapath**: median of {len(dp['rounds'])} interleaved rounds; ratio to loopback MTU 64K "
                  "(lo64k) measured in the same round, [min-max] over rounds; last column: the phone against the "
                  "plain veth pair.", "",
                  "| scenario | " + " | ".join(f"{METRIC_LABEL[m]} ({u})" for m, u in METRICS) + " |",
                  "| --- |" + " --- |" * len(METRICS)]
        for name in SCENARIOS:
            cells = [f"{_fmt_value(summ[(name, m)]['median'], u)} ({_fmt_ratio(summ[(name, m)]['ratio_lo64k'])})"
                     for m, u in METRICS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        vs_veth = [_fmt_ratio(summ[("phone", m)]["ratio_veth"]) for m, _u in METRICS]
        lines.append("| phone / veth | " + " | ".join(vs_veth) + " |")
        loads = [r["load1"] for r in dp["rounds"]]
        steal = [r["steal_pct"] for r in dp["rounds"]]
        lines += ["", f"Load average per round {min(loads):.2f}-{max(loads):.2f}, steal "
                  f"{min(steal):.1f}-{max(steal):.1f}%.", "",
                  f"**Hard checks** ({dp['checks']['backlog_method']}; a TCP_RR run of "
                  f"{dp['config']['check_tx']} transactions):", "",
                  "| scenario | netif_rx per packet | packets per transaction | netif_rx per transaction | "
                  "TTL received (sent 64) |", "| --- | --- | --- | --- | --- |"]
        for name in SCENARIOS:
            b, t = dp["checks"]["backlog"][name], dp["checks"]["ttl"][name]
            lines.append(f"| {name} | {b['per_packet']:.2f} | {b['packets_per_transaction']:.2f} | "
                         f"{b['per_transaction']:.2f} | {t['received_ttl']} |")
        rc = dp["checks"]["runcnt"]
        lines += ["", f"BPF run counts ({rc['stats_via']}): wire_in {rc['run_cnt']['wire_in']}, guard_xdp "
                  f"{rc['run_cnt']['guard_xdp']}; yogurt devices sent "
                  f"{rc['cont_tx_packets']} and received {rc['cont_rx_packets']} packets; the wire counted "
                  f"{rc['wire_forwarded']}. Cost: " + ", ".join(
                      f"{p} {v:.0f} ns" for p, v in rc["ns_per_run"].items() if v) + " per run.", ""]
    pv = data.get("provision")
    if pv:
        lines += ["**Provisioning** (veth backend, host = a sandbox namespace; module = the phones module run "
                  "directly, with expedite_rcu on (its default) and off; ansible = `ansible localhost -m "
                  "yogurt.phone.phones`; shell = bench/baseline_shell.sh under the module's RCU setting, and with "
                  "normal grace periods; seconds of wall time, start-up included; kernel memory = growth of "
                  "Slab+KernelStack+PageTables+Percpu+VmallocUsed):", "",
                  "| phones | module converge | no-op | teardown | module, normal RCU: converge | teardown | "
                  "ansible converge | no-op | teardown | shell converge | no-op | teardown | "
                  "shell, normal RCU: converge | teardown | kB/phone module | kB/phone shell |",
                  "| --- |" + " --- |" * 15]

        def f(r, k):
            return f"{r[k]:.2f}" if k in r else "-"

        for r in pv["rows"]:
            lines.append(
                f"| {r['count']} | {f(r, 'module_converge_s')} | {f(r, 'module_noop_s')} | "
                f"{f(r, 'module_teardown_s')} | {f(r, 'module_normal_converge_s')} | {f(r, 'module_normal_teardown_s')} | "
                f"{f(r, 'ansible_converge_s')} | {f(r, 'ansible_noop_s')} | "
                f"{f(r, 'ansible_teardown_s')} | {f(r, 'shell_converge_s')} | {f(r, 'shell_noop_s')} | "
                f"{f(r, 'shell_teardown_s')} | {f(r, 'shell_normal_converge_s')} | {f(r, 'shell_normal_teardown_s')} | "
                f"{r['module_kb'] / r['count']:.0f} | {r['shell_kb'] / r['count']:.0f} |")
        lines += ["", "Of the module's wall time, starting Python and importing the module (no work) takes "
                  + ", ".join(f"{r['module_startup_s']:.2f} s" for r in pv["rows"][:1])
                  + "; module time (the targets) is wall time minus that. Load average during the converges: "
                  + ", ".join(f"{r['count']}: {r.get('load1', 0):.1f}" for r in pv["rows"]) + "."]
        if "slope_kb_per_phone" in pv:
            s = pv["slope_kb_per_phone"]
            lines += ["", f"Kernel memory per phone from the slope between {pv['rows'][0]['count']} and "
                      f"{pv['rows'][-1]['count']} phones: module {s['module']:.0f} kB, shell {s['shell']:.0f} kB."]
        if "profile" in pv:
            lines += ["", f"Profile of the {pv['profile']['count']}-phone converge and no-op re-run (cProfile, "
                      "cumulative seconds, the collection's own functions):", ""]
            for step, top in pv["profile"]["top"].items():
                cumulative = "; ".join(f"`{f}` {sec:.2f} s ({c} calls)" for f, sec, c in top["cumulative"][:8])
                own = "; ".join(f"`{f}` {sec:.2f} s ({c} calls)" for f, sec, c in top["own"][:8])
                lines.append(f"- {step}, cumulative: {cumulative}")
                lines.append(f"- {step}, own time: {own}")
        lines.append("")
    if data.get("fleet"):
        lines += fleet_markdown(data["fleet"])
    lines += ["**Targets**:", "", "| target | measured | result |", "| --- | --- | --- |"]
    for name, measured, ok in targets(data):
        lines.append(f"| {name} | {measured} | {'pass' if ok else 'FALLS SHORT'} |")
    return lines


def write(outdir, data):
    (outdir / "results.json").write_text(json.dumps(_jsonable(data), indent=1, sort_keys=True, default=str))
    write_csv(outdir / "results.csv", data)
    plot(outdir / "plot.png", data)
    if data.get("fleet"):
        plot_fleet(outdir / "plot-fleet.png", data)
    lines = markdown(data)
    (outdir / "latest.md").write_text("\n".join(lines) + "\n")
    return lines
