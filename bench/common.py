# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the datapath and provisioning benchmarks share: namespaces, commands, the phones
module run directly, load and steal time, and cleanup on every exit path.

bench/run starts everything inside a private mount namespace with its own /run/netns,
/run/yogurt and bpffs (see there), so nothing here can see or remove another run's
phones, and whatever a killed run leaves behind goes away with that mount namespace.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
VENV_PY = ROOT / ".venv" / "bin" / "python"
COLLECTIONS = ROOT / ".ansible" / "collections"
PHONES_MODULE = "ansible_collections.yogurt.phone.plugins.modules.phones"

sys.path.insert(0, str(COLLECTIONS))


def new_prefix():
    """'yb' + 4 hex digits: short enough for ifname suffixes, random enough not to collide."""
    return "yb" + uuid.uuid4().hex[:4]


def run(argv, check=True, netns=None, timeout=600, **kwargs):
    """Run argv (inside /run/netns/<netns> if given) and return the CompletedProcess."""
    if netns:
        argv = ["nsenter", f"--net=/run/netns/{netns}", "--"] + list(argv)
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    proc = subprocess.run(argv, check=False, timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed (rc {proc.returncode}): "
                           f"{(proc.stderr or '')[-2000:]}{(proc.stdout or '')[-1000:]}")
    return proc


def popen(argv, netns=None, **kwargs):
    if netns:
        argv = ["nsenter", f"--net=/run/netns/{netns}", "--"] + list(argv)
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    kwargs.setdefault("text", True)
    proc = subprocess.Popen(argv, **kwargs)  # pylint: disable=consider-using-with
    CLEANUP.processes.append(proc)
    return proc


class Cleanup:
    """Everything made by this process, removed at exit, on SIGTERM/SIGINT, and on errors."""

    def __init__(self):
        self.netns = []
        self.processes = []
        self.pin_dirs = []
        self.callbacks = []
        self.done = False

    def add_netns(self, name):
        run(["ip", "netns", "add", name])
        self.netns.append(name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def del_netns(self, name):
        run(["ip", "netns", "del", name], check=False)
        with contextlib.suppress(ValueError):
            self.netns.remove(name)

    def __call__(self, *_unused):
        if self.done:
            return
        self.done = True
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(Exception):
                    proc.wait(timeout=5)
        for callback in reversed(self.callbacks):
            with contextlib.suppress(Exception):
                callback()
        for name in reversed(self.netns):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        for path in self.pin_dirs:
            subprocess.run(["rm", "-rf", path], check=False)


CLEANUP = Cleanup()
_SCOPES = [CLEANUP]


@contextlib.contextmanager
def scope():
    """A cleanup scope: what is made inside is removed when the block ends (or at exit)."""
    global CLEANUP  # pylint: disable=global-statement
    outer = CLEANUP
    CLEANUP = Cleanup()
    _SCOPES.append(CLEANUP)
    try:
        yield CLEANUP
    finally:
        CLEANUP()
        _SCOPES.remove(CLEANUP)
        CLEANUP = outer


def cleanup_all(*_unused):
    for item in reversed(_SCOPES):
        item()


atexit.register(cleanup_all)


def _on_signal(signum, _frame):
    cleanup_all()
    sys.exit(128 + signum)


for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_sig, _on_signal)


# ---------------------------------------------------------------- machine state

def loadavg():
    with open("/proc/loadavg", encoding="ascii") as handle:
        return float(handle.read().split()[0])


def cpu_times():
    """(total jiffies, steal jiffies) of all CPUs, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user)
    return sum(fields[:8]), fields[7]


class RoundMeter:
    """Load average at the end and steal share over one round."""

    def __enter__(self):
        self.start = cpu_times()
        return self

    def __exit__(self, *exc):
        end = cpu_times()
        total = end[0] - self.start[0]
        self.steal_pct = 100.0 * (end[1] - self.start[1]) / total if total else 0.0
        self.load1 = loadavg()
        return False


def meminfo():
    """/proc/meminfo in kB."""
    values = {}
    with open("/proc/meminfo", encoding="ascii") as handle:
        for line in handle:
            key, rest = line.split(":", 1)
            values[key] = int(rest.split()[0])
    return values


KERNEL_MEM_KEYS = ("Slab", "KernelStack", "PageTables", "Percpu", "VmallocUsed")


def kernel_mem_kb(info=None):
    """Kernel memory that phones can grow: slab, stacks, page tables, per-cpu, vmalloc (kB)."""
    info = info or meminfo()
    return sum(info.get(k, 0) for k in KERNEL_MEM_KEYS)


def netns_objects():
    """Live network namespaces in the kernel (net_namespace slab objects), or None."""
    try:
        with open("/proc/slabinfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("net_namespace "):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def settle_memory(seconds=2.0, limit=30.0):
    """Wait for deleted namespaces to be freed (the kernel does it later, in a workqueue that
    takes the rtnl lock and would slow the next step down), then give RCU a moment.
    Returns the seconds waited."""
    start = time.monotonic()
    last = netns_objects()
    while last is not None and time.monotonic() - start < limit:
        time.sleep(0.5)
        now = netns_objects()
        if now >= last:
            break
        last = now
    time.sleep(seconds)
    return time.monotonic() - start


# ---------------------------------------------------------------- BPF

@contextlib.contextmanager
def bpf_stats():
    """BPF run counters on while inside. BPF_ENABLE_STATS holds them on for as long as its fd
    is open, so a killed run cannot leave them on; the sysctl is the fallback (restored after)."""
    from ansible_collections.yogurt.phone.plugins.module_utils import _bpf as bpf

    try:
        fd = bpf.enable_stats()
    except bpf.BpfError:
        fd = -1
    if fd >= 0:
        try:
            yield "BPF_ENABLE_STATS"
        finally:
            os.close(fd)
        return
    path = "/proc/sys/kernel/bpf_stats_enabled"
    with open(path, encoding="ascii") as handle:
        old = handle.read().strip()
    with open(path, "w", encoding="ascii") as handle:
        handle.write("1")
    try:
        yield "sysctl kernel.bpf_stats_enabled"
    finally:
        with open(path, "w", encoding="ascii") as handle:
            handle.write(old)


def prog_stats(pinned):
    """{run_cnt, run_time_ns, id, name} of a pinned program (bpftool prog show -j)."""
    data = json.loads(run(["bpftool", "prog", "show", "pinned", pinned, "-j"]).stdout)
    return {"id": data["id"], "name": data.get("name"), "run_cnt": data.get("run_cnt", 0),
            "run_time_ns": data.get("run_time_ns", 0)}


# ---------------------------------------------------------------- the collection

def _run_clang(argv):
    proc = run(argv, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def build_objects(dest):
    """Compile the wire objects with the collection's own bpf_build (cached by hash)."""
    from ansible_collections.yogurt.phone.plugins.module_utils._bpf_build import build_files

    bpf_dir = ROOT / "bpf"
    paths = [str(bpf_dir / n) for n in ("wire.h", "wire_veth.bpf.c", "wire_netkit.bpf.c")]
    return build_files(paths, ["wire_veth.bpf.c", "wire_netkit.bpf.c"], str(dest), _run_clang)


def phones_module(sandbox, args, workdir, profile=None):
    """Run the phones module directly (no ansible) with the sandbox as host namespace.

    Returns (wall seconds, result dict). With `profile`, runs it under cProfile into that file.
    """
    args_path = pathlib.Path(workdir) / f"args-{uuid.uuid4().hex[:8]}.json"
    args_path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    argv = [str(VENV_PY)]
    if profile:
        argv += ["-m", "cProfile", "-o", str(profile)]
    argv += ["-m", PHONES_MODULE, str(args_path)]
    env = dict(os.environ, PYTHONPATH=str(COLLECTIONS))
    start = time.monotonic()
    proc = run(argv, check=False, netns=sandbox, env=env, timeout=1800)
    wall = time.monotonic() - start
    args_path.unlink()
    try:
        result = json.loads(proc.stdout[proc.stdout.index("{"):])
    except ValueError:
        raise RuntimeError(f"phones module printed no JSON (rc {proc.returncode}): "
                           f"{proc.stderr[-2000:]}{proc.stdout[-2000:]}") from None
    if result.get("failed"):
        raise RuntimeError(f"phones module failed: {result.get('msg')}")
    return wall, result


def phones_ansible(sandbox, args):
    """The same through `ansible localhost -m yogurt.phone.phones` (controller overhead included)."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_DEPRECATION_WARNINGS="0", ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
               PATH=f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}")
    argv = [str(ROOT / ".venv" / "bin" / "ansible"), "localhost", "-m", "yogurt.phone.phones",
            "-a", json.dumps(args)]
    start = time.monotonic()
    proc = run(argv, check=False, netns=sandbox, env=env, cwd=str(ROOT), timeout=1800)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(f"ansible -m yogurt.phone.phones failed: {proc.stdout[-2000:]}{proc.stderr[-1000:]}")
    return wall, "CHANGED" in proc.stdout.split("\n", 1)[0]


def phone_spec(prefix, index, addr_base=100):
    """Phone number `index` of a benchmark: names under `prefix`, addresses 10.<x>.<y>.1|2/24."""
    x, y = addr_base + index // 256, index % 256
    name = f"{prefix}-{index}"
    return {
        "name": name, "backend": "veth", "state": "present",
        "ends": [
            {"netns": f"{prefix}-{index}-a", "host_ifname": f"{prefix}h{index}a", "cont_ifname": f"{prefix}c{index}a",
             "addresses": [f"10.{x}.{y}.1/24"]},
            {"netns": f"{prefix}-{index}-b", "host_ifname": f"{prefix}h{index}b", "cont_ifname": f"{prefix}c{index}b",
             "addresses": [f"10.{x}.{y}.2/24"]},
        ],
    }


def write_json(path, data):
    pathlib.Path(path).write_text(json.dumps(data, indent=1, sort_keys=True))
