# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Provisioning benchmark: N phones on one host (a sandbox namespace), three ways.

  module    the phones module run directly (python -m ..., no ansible): converge,
            no-op re-run, teardown (phones: [] with exclusive: true)
  ansible   the same through `ansible localhost -m yogurt.phone.phones` (the total a
            user waits for, controller start-up included)
  shell     bench/baseline_shell.sh: the same phones from plain ip and bpftool commands

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

TARGETS = {"converge_50_s": 5.0, "noop_50_s": 1.0, "kb_per_phone": 1024.0}


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

    # the module, run directly
    mem0, _info0 = _settled_mem()
    with common.RoundMeter() as meter:
        row["module_converge_s"], res = common.phones_module(sandbox, args, workdir)
    mem1, _info1 = _settled_mem()
    row["module_kb"] = mem1 - mem0
    row["load1"], row["steal_pct"] = meter.load1, meter.steal_pct
    made = sum(1 for p in res["phones"] if p["changed"])
    row["module_call_ok"] = _ping(phones[-1]["ends"][0]["netns"], phones[-1]["ends"][1]["addresses"][0].split("/", maxsplit=1)[0])
    row["module_noop_s"], res = common.phones_module(sandbox, args, workdir)
    row["module_noop_changed"] = res["changed"]
    row["module_teardown_s"], _res = common.phones_module(sandbox, {"phones": [], "exclusive": True}, workdir)
    if made != count:
        raise RuntimeError(f"the phones module reported {made} of {count} phones changed on a fresh sandbox")

    # the shell baseline
    sh_prefix = common.new_prefix()
    for i in range(count):
        common.CLEANUP.netns.extend([f"{sh_prefix}-{i}-a", f"{sh_prefix}-{i}-b"])
    common.CLEANUP.callbacks.append(lambda: _shell(sandbox, "teardown", sh_prefix, count))
    mem2, _info2 = _settled_mem()
    row["shell_converge_s"] = _shell(sandbox, "converge", sh_prefix, count, objects["wire_veth"])
    mem3, _info3 = _settled_mem()
    row["shell_kb"] = mem3 - mem2
    last = count - 1
    row["shell_call_ok"] = _ping(f"{sh_prefix}-{last}-a", f"10.{100 + last // 256}.{last % 256}.2")
    row["shell_noop_s"] = _shell(sandbox, "converge", sh_prefix, count, objects["wire_veth"])
    row["shell_teardown_s"] = _shell(sandbox, "teardown", sh_prefix, count)

    # through ansible (the total: controller, module transfer, the module itself)
    common.settle_memory(0.5)
    row["ansible_converge_s"], _changed = common.phones_ansible(sandbox, args)
    row["ansible_noop_s"], row["ansible_noop_changed"] = common.phones_ansible(sandbox, args)
    row["ansible_teardown_s"], _changed = common.phones_ansible(sandbox, {"phones": [], "exclusive": True})
    log(f"provision: {count} phones: module {row['module_converge_s']:.2f} s (noop {row['module_noop_s']:.2f}, "
        f"teardown {row['module_teardown_s']:.2f}); shell {row['shell_converge_s']:.2f} s (noop "
        f"{row['shell_noop_s']:.2f}, teardown {row['shell_teardown_s']:.2f}); ansible {row['ansible_converge_s']:.2f} s; "
        f"kernel memory module {row['module_kb'] / count:.0f} kB/phone, shell {row['shell_kb'] / count:.0f} kB/phone")
    return row


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
    slow = ref["module_converge_s"] > TARGETS["converge_50_s"] * ref["count"] / 50 or \
        ref["module_noop_s"] > TARGETS["noop_50_s"] or ref["module_converge_s"] > ref["shell_converge_s"]
    if slow:
        log(f"provision: a target falls short: profiling {ref['count']} phones with cProfile")
        with common.scope():
            result["profile"] = {"count": ref["count"], "top": profile(ref["count"], workdir, objects,
                                                                       workdir.parent)}
    return result
