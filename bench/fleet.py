# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fleet benchmark: N simulated hosts in one `ansible-playbook -f N site.yml --tags phones` run.

A simulated host is a holder process (`unshare --net --mount`, then its own tmpfs on /run and
bpffs on /sys/fs/bpf, then `sleep`) and an inventory host with `ansible_connection: local`
whose `ansible_python_interpreter` is a wrapper: it enters the holder's network and mount
namespaces with nsenter and runs the venv's python there. The controller stays outside; every
module of the real role runs inside its host, which has its own /run/netns, /run/yogurt, pins
and (through yogurt_phone_object_dir under /run) compiled objects. Each host gets the role's
default phone. Killing the holders removes everything: their namespaces hold the phones'
devices, namespaces (bind mounts in the holder's /run) and pins (the holder's bpffs).

Per host count: the converge (every host changed, the call passed on every host), then a no-op
re-run (changed=0 everywhere), each timed, with the load average before and after. Where the
time goes comes from the same runs: a callback (bench/callback_plugins/yogurt_fleet_timing.py)
records each task's start and each host's result, and the wrapper logs each module process's
wall and CPU seconds (bash's EPOCHREALTIME and `times`), so module processes per host, module
CPU and the controller's share (the run's whole process tree, by wait4, less the modules) are
measured, not guessed.
"""

from __future__ import annotations

import io
import json
import os
import pstats
import re
import shutil
import statistics
import subprocess
import time

import common

# Issue 15: 50 simulated hosts converge in <= 15 s and re-run in <= 10 s, one ansible-playbook run.
TARGETS = {"converge_50_s": 15.0, "noop_50_s": 10.0}
# Each run against the floor (a one-task ansible.builtin.ping playbook on the same hosts, same run):
# (key of the run in a row, what it is, the most it may cost in floors).
RATIOS = (("converge", "site.yml --tags phones, first run", 2.0),
          ("noop", "site.yml --tags phones, re-run", 1.5),
          ("site_noop", "site.yml, re-run (toolchain and phones: nothing to change)", 3.0))
HOLDER = ("mount -t tmpfs -o mode=0755 yogurt-fleet-run /run && mount -t bpf yogurt-fleet-bpffs /sys/fs/bpf && "
          "ip link set lo up && echo ready && exec sleep infinity")
WRAPPER = """#!/bin/bash
# Simulated host {name}: run the venv's python inside the holder's network and mount namespaces.
# It stays the parent (no exec) to log the module process's wall and CPU seconds.
start=$EPOCHREALTIME
nsenter -t {pid} --net --mount -- {python} "$@"
rc=$?
{{ printf 'M %s %s %s\\n' "$start" "$EPOCHREALTIME" "$rc"; times; }} >> {log}
exit $rc
"""
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)",
                   re.M)


def _holder(name):
    proc = common.popen(["unshare", "--net", "--mount", "--propagation", "private", "--", "sh", "-ec", HOLDER],
                        stdin=subprocess.DEVNULL)
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        raise RuntimeError(f"simulated host {name}: holder did not start: {line} {proc.stderr.read()[-500:]}")
    return proc


def _in_host(pid, argv):
    return common.run(["nsenter", "-t", str(pid), "--net", "--mount", "--"] + list(argv), check=False)


def make_hosts(count, workdir):
    """Start `count` holders; write their wrappers and the inventory. Returns (inventory, hosts)."""
    hosts = []
    for i in range(count):
        name = f"fleet{i:03d}"
        proc = _holder(name)
        log = workdir / f"{name}.modules"
        wrapper = workdir / f"{name}.python"
        wrapper.write_text(WRAPPER.format(name=name, pid=proc.pid, python=common.VENV_PY, log=log))
        wrapper.chmod(0o755)
        hosts.append({"name": name, "pid": proc.pid, "proc": proc, "log": log, "wrapper": wrapper})
    inventory = {"all": {"hosts": {h["name"]: {"ansible_connection": "local",
                                               "ansible_python_interpreter": str(h["wrapper"]),
                                               # compiled objects in the host's own /run, not this machine's /var/lib
                                               "yogurt_phone_object_dir": "/run/yogurt-phone/bpf"}
                                   for h in hosts}}}
    path = workdir / f"fleet-{count}.json"
    common.write_json(path, inventory)
    return path, hosts


def _module_log(hosts):
    """{host: [(wall s, cpu s, rc)]} from the wrappers' logs since the last call (then emptied)."""
    out = {}
    for host in hosts:
        runs = []
        lines = host["log"].read_text().splitlines() if host["log"].exists() else []
        for i, line in enumerate(lines):
            if line.startswith("M ") and i + 2 < len(lines):
                _m, start, end, rc = line.split()
                user, system = (_seconds(x) for x in lines[i + 2].split())  # children's user and system time
                runs.append((float(end) - float(start), user + system, int(rc)))
        host["log"].write_text("")
        out[host["name"]] = runs
    return out


def _seconds(text):
    minutes, secs = text.rstrip("s").split("m")
    return int(minutes) * 60 + float(secs)


FLOOR_PLAY = """---
- name: The harness's floor, one trivial module task per host
  hosts: all
  gather_facts: false
  tasks:
    - name: Ping
      ansible.builtin.ping:
"""


def playbook(inventory, forks, timing_path, strategy=None, play=None, tags="phones"):
    """One `ansible-playbook site.yml --tags phones -f forks` (or `play`, a playbook path, with no
    tags; tags None: the whole site.yml): (wall s, tree CPU s, stdout, recap)."""
    # Deprecation warnings stay on: a strategy measured beside linear (mitogen) must show them.
    env = dict(os.environ, ANSIBLE_CONFIG=str(common.ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_CALLBACK_PLUGINS=str(common.BENCH / "callback_plugins"),
               ANSIBLE_CALLBACKS_ENABLED="yogurt_fleet_timing", YOGURT_FLEET_TIMING=str(timing_path),
               PATH=f"{common.ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}")
    if strategy:
        env["ANSIBLE_STRATEGY"] = strategy
    argv = [str(common.ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", str(inventory), "-f", str(forks)]
    argv += [str(play)] if play else ["site.yml"] + (["--tags", tags] if tags else [])
    out_path = timing_path.with_suffix(".out")
    with open(out_path, "w", encoding="utf-8") as out:
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,  # pylint: disable=consider-using-with
                                env=env, cwd=str(common.ROOT))
        common.CLEANUP.processes.append(proc)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = out_path.read_text()
    recap = {m.group(1): {"ok": int(m.group(2)), "changed": int(m.group(3)), "unreachable": int(m.group(4)),
                          "failed": int(m.group(5)), "skipped": int(m.group(6))} for m in RECAP.finditer(text)}
    if proc.returncode != 0:
        raise RuntimeError(f"ansible-playbook failed (rc {proc.returncode}): {text[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, text, recap


def _tasks(timing_path):
    """Per task: name, action, hosts run, median seconds per host (worker start to result), and
    the task's span (its start to the next task's start) in seconds."""
    data = json.loads(timing_path.read_text())
    tasks = data["tasks"]
    rows = []
    for i, task in enumerate(tasks):
        end = tasks[i + 1]["start"] if i + 1 < len(tasks) else data["end"]
        ran = [h for h in task["hosts"].values() if h[2] != "skipped"]
        rows.append({"name": task["name"], "action": task["action"], "hosts": len(task["hosts"]), "ran": len(ran),
                     "per_host_s": statistics.median([h[1] - h[0] for h in ran]) if ran else 0.0,
                     "span_s": end - task["start"]})
    return rows


def one_run(step, count, inventory, hosts, workdir, strategy=None, play=None, tags="phones"):
    load_before = os.getloadavg()
    timing = workdir / f"timing-{step}-{count}.json"
    wall, cpu, text, recap = playbook(inventory, count, timing, strategy, play, tags)
    modules = _module_log(hosts)
    missing = sorted(set(h["name"] for h in hosts) - set(recap))
    if missing or any(r["failed"] or r["unreachable"] for r in recap.values()):
        raise RuntimeError(f"fleet {step}: hosts failed or missing {missing}: {text[-3000:]}")
    module_cpu = sum(c for runs in modules.values() for _w, c, _rc in runs)
    per_host_modules = [len(runs) for runs in modules.values()]
    return {"wall_s": wall, "per_host_s": wall / count, "tree_cpu_s": cpu, "module_cpu_s": module_cpu,
            "controller_cpu_s": cpu - module_cpu,
            "module_wall_per_host_s": statistics.median(sum(w for w, _c, _rc in runs) for runs in modules.values()),
            "modules_per_host": statistics.median(per_host_modules),
            # per module process, in the order the host ran them: median wall and CPU seconds over hosts
            "module_runs": [{"wall_s": statistics.median(runs[i][0] for runs in modules.values() if len(runs) > i),
                             "cpu_s": statistics.median(runs[i][1] for runs in modules.values() if len(runs) > i)}
                            for i in range(max(per_host_modules, default=0))],
            "changed_hosts": sum(1 for r in recap.values() if r["changed"]),
            "changed_total": sum(r["changed"] for r in recap.values()),
            "calls_passed": text.count("injection refused"),
            "load_before": load_before, "load_after": os.getloadavg(), "tasks": _tasks(timing),
            "warnings": sorted(set(re.findall(r"^\[(?:DEPRECATION )?WARNING\]: (.*)$", text, re.M)))}


def _phone_netns(pid):
    out = _in_host(pid, ["ip", "netns", "list"]).stdout
    return sorted(line.split()[0] for line in out.splitlines() if line.strip())


def one_count(count, workdir, log, strategy=None):
    hosts_dir = workdir / f"fleet-{count}"
    hosts_dir.mkdir(exist_ok=True)
    inventory, hosts = make_hosts(count, hosts_dir)
    row = {"hosts": count}
    # The harness's own floor at this host count: one ansible.builtin.ping task per host, the
    # same hosts, forks and callback. What is left of the targets for the role is above it.
    play = hosts_dir / "floor.yml"
    play.write_text(FLOOR_PLAY)
    # The machine is shared: each run is set against a floor measured right before it.
    row["floors"] = {}
    row["floor"] = row["floors"]["converge"] = one_run("floor", count, inventory, hosts, hosts_dir, strategy, play=play)
    row["converge"] = one_run("converge", count, inventory, hosts, hosts_dir, strategy)
    if row["converge"]["changed_hosts"] != count or row["converge"]["calls_passed"] < count:
        raise RuntimeError(f"fleet converge: {row['converge']['changed_hosts']} of {count} hosts changed, "
                           f"{row['converge']['calls_passed']} calls passed")
    row["floors"]["noop"] = one_run("floor", count, inventory, hosts, hosts_dir, strategy, play=play)
    row["noop"] = one_run("noop", count, inventory, hosts, hosts_dir, strategy)
    if row["noop"]["changed_total"] != 0:
        raise RuntimeError(f"fleet re-run changed {row['noop']['changed_total']} tasks (want 0)")
    # The daily run on a converged fleet: the whole site.yml (toolchain and phones), nothing to change.
    row["floors"]["site_noop"] = one_run("floor", count, inventory, hosts, hosts_dir, strategy, play=play)
    row["site_noop"] = one_run("site_noop", count, inventory, hosts, hosts_dir, strategy, tags=None)
    if row["site_noop"]["changed_total"] != 0 or row["site_noop"]["calls_passed"] < count:
        raise RuntimeError(f"fleet site.yml re-run changed {row['site_noop']['changed_total']} tasks (want 0), "
                           f"{row['site_noop']['calls_passed']} of {count} calls passed")
    row["ratios"] = {key: row[key]["wall_s"] / row["floors"][key]["wall_s"] for key, _what, _most in RATIOS}
    # Every host has its own phone, and this machine's own namespace list shows none of them.
    row["netns_per_host"] = sorted({tuple(_phone_netns(h["pid"])) for h in hosts})
    row["own_netns_touched"] = any(n.startswith("yogurt-") for n in os.listdir("/run/netns")) \
        if os.path.isdir("/run/netns") else False
    row["teardown_s"] = teardown(hosts)
    c, n = row["converge"], row["noop"]
    f = row["floor"]
    log(f"fleet: {count} hosts: harness floor (one ansible.builtin.ping task) {f['wall_s']:.1f} s (load "
        f"{f['load_before'][0]:.1f}; CPU controller {f['controller_cpu_s']:.1f} s, modules {f['module_cpu_s']:.1f} s)")
    log(f"fleet: {count} hosts: converge {c['wall_s']:.1f} s ({c['per_host_s']:.2f} s/host, load "
        f"{c['load_before'][0]:.1f}), no-op {n['wall_s']:.1f} s ({n['per_host_s']:.2f} s/host); "
        f"{c['modules_per_host']:.0f} module processes per host; CPU controller {c['controller_cpu_s']:.1f} s, "
        f"modules {c['module_cpu_s']:.1f} s; phones per host {row['netns_per_host']}")
    for key, what, most in RATIOS:
        run = row[key]
        log(f"fleet: {count} hosts: {what}: {run['wall_s']:.1f} s = {row['ratios'][key]:.2f}x the floor "
            f"({row['floors'][key]['wall_s']:.1f} s, load {row['floors'][key]['load_before'][0]:.1f}, just before) "
            f"(target <= {most:.1f}x: {'pass' if row['ratios'][key] <= most else 'falls short'}; load "
            f"{run['load_before'][0]:.1f}; {run['modules_per_host']:.0f} module processes per host, module wall "
            f"{run['module_wall_per_host_s']:.2f} s per host)")
    shutil.rmtree(hosts_dir, ignore_errors=True)
    return row


def teardown(hosts):
    """Kill the holders: their namespaces, and with them every phone, go away. Seconds taken."""
    start = time.monotonic()
    for host in hosts:
        host["proc"].kill()
    for host in hosts:
        host["proc"].wait(timeout=60)
    for host in hosts:
        if os.path.exists(f"/proc/{host['pid']}"):
            raise RuntimeError(f"holder {host['pid']} of {host['name']} still runs")
    return time.monotonic() - start


def module_floor(workdir, runs=3):
    """CPU and wall seconds of one module process that does nothing (ansible.builtin.ping) in a
    simulated host, through the same wrapper: ansible-core's own cost per module process
    (AnsiballZ: interpreter start, its payload's module_utils compiled from the zip, JSON),
    which every module of the role pays before any of its own work. Medians of `runs`."""
    floor_dir = workdir / "fleet-floor"
    floor_dir.mkdir(exist_ok=True)
    inventory, hosts = make_hosts(1, floor_dir)
    env = dict(os.environ, ANSIBLE_CONFIG=str(common.ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_DEPRECATION_WARNINGS="0")
    for _attempt in range(runs):
        common.run([str(common.ROOT / ".venv" / "bin" / "ansible"), "-i", str(inventory), hosts[0]["name"], "-m",
                    "ansible.builtin.ping"], env=env, cwd=str(common.ROOT))
    measured = _module_log(hosts)[hosts[0]["name"]]
    teardown(hosts)
    shutil.rmtree(floor_dir, ignore_errors=True)
    return {"cpu_s": statistics.median(c for _w, c, _rc in measured),
            "wall_s": statistics.median(w for w, _c, _rc in measured), "runs": len(measured)}


def profile_host(workdir, outdir):
    """One host's module run as the role makes it (compile, converge, call of the default-shaped
    phone), converge and no-op re-run, under cProfile: profile-fleet-<step>.pstats/.txt in
    `outdir`. Returns {step: top functions} (provision._top_own)."""
    import provision  # pylint: disable=import-outside-toplevel

    prefix = common.new_prefix()
    sandbox = common.CLEANUP.add_netns(f"{prefix}-sbx")
    phone = common.phone_spec(prefix, 0)
    common.CLEANUP.netns.extend(e["netns"] for e in phone["ends"])
    common.CLEANUP.callbacks.append(lambda: common.phones_module(sandbox, {"phones": [], "exclusive": True}, workdir))
    sources = {n: (common.ROOT / "bpf" / n).read_text() for n in ("wire.h", "wire_veth.bpf.c", "wire_netkit.bpf.c")}
    args = {"phones": [phone], "compile": {"sources": sources, "dest": str(workdir / "fleet-profile-bpf")},
            "call": {"host": "profile"}}
    tops = {}
    for step in ("converge", "noop"):
        path = outdir / f"profile-fleet-{step}.pstats"
        _wall, result = common.phones_module(sandbox, args, workdir, profile=path)
        if not result.get("call", {}).get("ok"):
            raise RuntimeError(f"fleet profile: the call failed: {result.get('call')}")
        text = io.StringIO()
        stats = pstats.Stats(str(path), stream=text)
        stats.sort_stats("cumulative").print_stats(30)
        stats.sort_stats("tottime").print_stats(15)
        (outdir / f"profile-fleet-{step}.txt").write_text(text.getvalue())
        tops[step] = provision._top_own(stats)  # pylint: disable=protected-access
    common.phones_module(sandbox, {"phones": [], "exclusive": True}, workdir)
    return tops


def _falls_short(rows):
    ref = rows[-1]
    scale = ref["hosts"] / 50
    return (ref["converge"]["wall_s"] > TARGETS["converge_50_s"] * scale
            or ref["noop"]["wall_s"] > TARGETS["noop_50_s"] * scale)


def run_fleet(cfg, workdir, log):
    with common.scope():
        floor = module_floor(workdir)
    log(f"fleet: one module process that does nothing (ansible.builtin.ping) in a simulated host: "
        f"{floor['cpu_s']:.2f} s CPU, {floor['wall_s']:.2f} s wall (median of {floor['runs']})")
    rows = []
    for count in cfg["hosts"]:
        with common.scope():
            rows.append(one_count(count, workdir, log, cfg.get("strategy")))
    out = {"rows": rows, "targets": TARGETS, "ratio_targets": {k: most for k, _w, most in RATIOS},
           "cpus": os.cpu_count(), "strategy": cfg.get("strategy") or "linear", "module_floor": floor}
    if rows and _falls_short(rows):  # where one host's module time goes, before optimising more
        with common.scope():
            out["profile"] = profile_host(workdir, workdir.parent)
        log("fleet: a target falls short: one host's module run profiled into "
            f"{workdir.parent}/profile-fleet-{{converge,noop}}.txt")
    return out
