# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Provisioning benchmark: N phones on one host (a sandbox namespace), three ways.

  module    the phones module run directly (python -m ..., no ansible): converge,
            no-op re-run, teardown (phones: [] with exclusive: true); with its default
            expedite_rcu: true, and again with expedite_rcu: false (counts <= 200)
  ansible   the same through `ansible localhost -m yogurt.phone.phones` (the total a
            user waits for, controller start-up included; counts <= 200)
  shell     bench/baseline_shell.sh: the same phones from plain ip and bpftool commands,
            under the same RCU setting as the module (rcu_expedited set to 1 by the bench
            for its converge and teardown when the module used it), and with normal grace
            periods (counts <= 200)

"Module time" is the module's wall time minus the start-up of its interpreter and imports
(measured on its own, median of 3): what the run itself costs, which is what the targets
name. Both are recorded.

Kernel memory per phone: the growth of Slab + KernelStack + PageTables + Percpu +
VmallocUsed (/proc/meminfo) over a converge, divided by N; and the slope between the
smallest and the largest N, which cancels what does not grow with N. The machine is
shared, so single readings are noisy; the slope over 200 phones is the figure to trust.

Should the 50-phone converge or the no-op re-run miss its target, both are run again
under cProfile and the top functions are written to profile-*.txt in the results.
"""

from __future__ import annotations

import io
import os
import pstats
import statistics
import time

import common

TARGETS = {"converge_50_s": 1.0, "converge_vs_shell_50": 2.0, "converge_200_s": 4.0, "converge_1000_s": 20.0,
           "teardown_vs_shell": 2.0, "noop_50_s": 0.3, "kb_per_phone": 1024.0,
           # wall time, start-up included: the no-op against the module's own start-up (interpreter
           # and imports, no work), the teardown against the shell script's
           "noop_vs_startup": 1.5, "teardown_wall_vs_shell": 1.5}
KNOB = "/sys/kernel/rcu_expedited"
SECOND_WAY_MAX = 200  # counts above this run only the expedited module and shell


def _knob(value=None):
    if value is not None:
        with open(KNOB, "w", encoding="ascii") as handle:
            handle.write(value)
    with open(KNOB, encoding="ascii") as handle:
        return handle.read().strip()


def _shell_expedited(sandbox, action, prefix, count, obj=None):
    """The shell baseline under expedited grace periods, as the module runs by default."""
    found = _knob()
    _knob("1")
    try:
        return _shell(sandbox, action, prefix, count, obj)
    finally:
        _knob(found)


def _settled_mem():
    common.settle_memory(1.0)
    return common.kernel_mem_kb(), common.meminfo()


def _ping(netns, address):
    return common.run(["ping", "-c", "1", "-W", "2", address], netns=netns, check=False).returncode == 0


def _shell(sandbox, action, prefix, count, obj=None):
    argv = ["bash", str(common.BENCH / "baseline_shell.sh"), action, prefix, str(count)] + ([obj] if obj else [])
    start = time.monotonic()
    common.run(argv, netns=sandbox, timeout=1800)
    return time.monotonic() - start


def one_count(count, workdir, objects, log):
    prefix = common.new_prefix()
    sandbox = common.CLEANUP.add_netns(f"{prefix}-sbx")
    phones = [common.phone_spec(prefix, i) for i in range(count)]
    for phone in phones:
        common.CLEANUP.netns.extend(e["netns"] for e in phone["ends"])
        common.CLEANUP.pin_dirs.append(f"/sys/fs/bpf/yogurt/{phone['name']}")
    common.CLEANUP.callbacks.append(
        lambda: common.phones_module(sandbox, {"phones": [], "exclusive": True}, workdir))
    args = {"phones": phones, "veth_object": objects["wire_veth"]}
    row = {"count": count, "module_startup_s": startup_seconds(sandbox)}

    # the module, run directly (expedite_rcu: true, its default)
    mem0, _info0 = _settled_mem()
    with common.RoundMeter() as meter:
        row["module_converge_s"], res = common.phones_module(sandbox, args, workdir)
    mem1, _info1 = _settled_mem()
    row["module_kb"] = mem1 - mem0
    row["load1"], row["steal_pct"] = meter.load1, meter.steal_pct
    row["rcu_expedited_used"] = res.get("rcu_expedited", {}).get("used")
    made = sum(1 for p in res["phones"] if p["changed"])
    row["module_call_ok"] = _ping(phones[-1]["ends"][0]["netns"], phones[-1]["ends"][1]["addresses"][0].split("/", maxsplit=1)[0])
    row["module_noop_s"], res = common.phones_module(sandbox, args, workdir)
    row["module_noop_changed"] = res["changed"]
    row["module_teardown_s"], res = common.phones_module(sandbox, {"phones": [], "exclusive": True}, workdir)
    row["module_teardown_left"] = _left(sandbox, phones)
    if made != count:
        raise RuntimeError(f"the phones module reported {made} of {count} phones changed on a fresh sandbox")
    second = count <= SECOND_WAY_MAX
    if second:  # the same with normal grace periods
        slow = dict(args, expedite_rcu=False)
        row["module_normal_converge_s"], _res = common.phones_module(sandbox, slow, workdir)
        row["module_normal_teardown_s"], _res = common.phones_module(
            sandbox, {"phones": [], "exclusive": True, "expedite_rcu": False}, workdir)
    for key in [k for k in row if k.startswith("module_") and k.endswith("_s") and k != "module_startup_s"]:
        row[key.replace("module_", "module_time_", 1)] = max(row[key] - row["module_startup_s"], 0.0)

    # the shell baseline, under the module's RCU setting
    shell = _shell_expedited if row["rcu_expedited_used"] else _shell
    sh_prefix = common.new_prefix()
    for i in range(count):
        common.CLEANUP.netns.extend([f"{sh_prefix}-{i}-a", f"{sh_prefix}-{i}-b"])
    common.CLEANUP.callbacks.append(lambda: _shell(sandbox, "teardown", sh_prefix, count))
    mem2, _info2 = _settled_mem()
    row["shell_converge_s"] = shell(sandbox, "converge", sh_prefix, count, objects["wire_veth"])
    mem3, _info3 = _settled_mem()
    row["shell_kb"] = mem3 - mem2
    last = count - 1
    row["shell_call_ok"] = _ping(f"{sh_prefix}-{last}-a", f"10.{100 + last // 256}.{last % 256}.2")
    row["shell_noop_s"] = _shell(sandbox, "converge", sh_prefix, count, objects["wire_veth"])
    row["shell_teardown_s"] = shell(sandbox, "teardown", sh_prefix, count)
    if second:
        # as before every step: the namespaces the teardown deleted are freed by the kernel later,
        # and until then their host-side veth names are taken ("File exists")
        common.settle_memory(1.0)
        row["shell_normal_converge_s"] = _shell(sandbox, "converge", sh_prefix, count, objects["wire_veth"])
        row["shell_normal_teardown_s"] = _shell(sandbox, "teardown", sh_prefix, count)

    # through ansible (the total: controller, module transfer, the module itself)
    if second:
        common.settle_memory(0.5)
        row["ansible_converge_s"], _changed = common.phones_ansible(sandbox, args)
        row["ansible_noop_s"], row["ansible_noop_changed"] = common.phones_ansible(sandbox, args)
        row["ansible_teardown_s"], _changed = common.phones_ansible(sandbox, {"phones": [], "exclusive": True})
    log(f"provision: {count} phones: module {row['module_converge_s']:.2f} s (noop {row['module_noop_s']:.2f}, "
        f"teardown {row['module_teardown_s']:.2f}); shell {row['shell_converge_s']:.2f} s (noop "
        f"{row['shell_noop_s']:.2f}, teardown {row['shell_teardown_s']:.2f}); module time {row['module_time_converge_s']:.2f} s "
        f"(noop {row['module_time_noop_s']:.2f}); "
        f"kernel memory module {row['module_kb'] / count:.0f} kB/phone, shell {row['shell_kb'] / count:.0f} kB/phone")
    return row


def _left(sandbox, phones):
    """Host sides of `phones` still in the sandbox right after the teardown returned (must be 0)."""
    out = common.run(["ip", "-o", "link", "show"], netns=sandbox).stdout
    names = {e["host_ifname"] for p in phones for e in p["ends"]}
    return sum(1 for line in out.splitlines() if line.split(":")[1].strip().split("@")[0] in names)


def profile(count, workdir, objects, outdir):
    """Converge and no-op re-run of `count` phones under cProfile; returns {step: top functions}."""
    prefix = common.new_prefix()
    sandbox = common.CLEANUP.add_netns(f"{prefix}-sbx")
    phones = [common.phone_spec(prefix, i) for i in range(count)]
    for phone in phones:
        common.CLEANUP.netns.extend(e["netns"] for e in phone["ends"])
    common.CLEANUP.callbacks.append(
        lambda: common.phones_module(sandbox, {"phones": [], "exclusive": True}, workdir))
    args = {"phones": phones, "veth_object": objects["wire_veth"]}
    tops = {}
    for step in ("converge", "noop"):
        path = outdir / f"profile-{step}-{count}.pstats"
        common.phones_module(sandbox, args, workdir, profile=path)
        text = io.StringIO()
        stats = pstats.Stats(str(path), stream=text)
        stats.sort_stats("cumulative").print_stats(r"ansible_collections|pyroute2", 30)
        stats.sort_stats("tottime").print_stats(15)
        (outdir / f"profile-{step}-{count}.txt").write_text(text.getvalue())
        tops[step] = _top_own(stats)
    common.phones_module(sandbox, {"phones": [], "exclusive": True}, workdir)
    return tops


WRAPPERS = {"<module>", "main", "run", "_present", "_absent", "_step"}


def _short(path, line, func):
    for marker in ("ansible_collections/yogurt/phone/", "site-packages/"):
        if marker in path:
            path = path.split(marker)[-1]
    return f"{path}:{line}:{func}" if path != "~" else func


def _top_own(stats, limit=10):
    """Where the time goes: the collection's functions by cumulative time (the call chain's
    wrappers left out), and every function by own time. {'cumulative': [...], 'own': [...]}."""
    cumulative, own = [], []
    for (path, line, func), (_cc, calls, tottime, cum, _callers) in stats.stats.items():
        if "ansible_collections/yogurt" in path and func not in WRAPPERS:
            cumulative.append((_short(path, line, func), cum, calls))
        own.append((_short(path, line, func), tottime, calls))
    return {"cumulative": sorted(cumulative, key=lambda r: -r[1])[:limit],
            "own": sorted(own, key=lambda r: -r[1])[:limit]}


def startup_seconds(sandbox):
    """Interpreter start and imports of the phones module, without running it (median of 3)."""
    argv = [str(common.VENV_PY), "-c", f"import {common.PHONES_MODULE}"]
    env = dict(os.environ, PYTHONPATH=str(common.COLLECTIONS))
    times = []
    for _attempt in range(3):
        start = time.monotonic()
        common.run(argv, netns=sandbox, env=env)
        times.append(time.monotonic() - start)
    return statistics.median(times)


def run_provision(cfg, workdir, objects, log):
    rows = []
    for count in cfg["counts"]:
        with common.scope():
            rows.append(one_count(count, workdir, objects, log))
    result = {"rows": rows, "targets": TARGETS}
    if len(rows) > 1:
        lo, hi = rows[0], rows[-1]
        span = hi["count"] - lo["count"]
        result["slope_kb_per_phone"] = {"module": (hi["module_kb"] - lo["module_kb"]) / span,
                                        "shell": (hi["shell_kb"] - lo["shell_kb"]) / span}
    ref = next((r for r in rows if r["count"] == 50), rows[-1])
    slow = ref["module_time_converge_s"] > TARGETS["converge_50_s"] * ref["count"] / 50 or \
        ref["module_time_noop_s"] > TARGETS["noop_50_s"]
    if slow:
        log(f"provision: a target falls short: profiling {ref['count']} phones with cProfile")
        with common.scope():
            result["profile"] = {"count": ref["count"], "top": profile(ref["count"], workdir, objects,
                                                                       workdir.parent)}
    return result
