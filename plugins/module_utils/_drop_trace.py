# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The kernel's drops (skb:kfree_skb) over a diagnosis window, with bcc, labelled by phone, end and hook.

bcc (python3-bpfcc) runs only under the system /usr/bin/python3 and compiles at run time
against the running kernel's headers (/lib/modules/$(uname -r)/build, or BCC_KERNEL_SOURCE).
availability() says whether both are present and, if not, exactly what to install. start()
reads the struct offsets the tracer needs from BTF (_btf.py), runs _bcc_tracer.py's source
under /usr/bin/python3 with the module's run_command, with the phones' devices (netns inode,
ifindex) to filter on in the kernel, and waits until it is attached; collect() ends the window
and labels each counted drop with its phone, end, side, device and hook. Reason names come from the running kernel
(the tracepoint's print fmt, else BTF's enum skb_drop_reason): their numbers differ by kernel.

How a drop is told apart (the location is a symbol from /proc/kallsyms, matched by prefix):
TC_INGRESS / TC_EGRESS: the tcx (or tc) program on that device's ingress / egress. netkit's
NETKIT_DROP frees with NOT_SPECIFIED at netkit_xmit after setting skb->dev to the peer of the
transmitting device: on a host side it is wire_peer (the yogurt sent), on a yogurt side
wire_primary (the host sent). NOT_SPECIFIED at skb_do_redirect: the wire redirected to an
ifindex that does not exist.

PRIVATE to the yogurt.phone collection (like community.crypto's module_utils): no public API,
names may change in any release.
"""

from __future__ import annotations

import json
import os
import platform
import re
import select
import threading
import time

from ansible_collections.yogurt.phone.plugins.module_utils import _bcc_tracer as bcc_tracer
from ansible_collections.yogurt.phone.plugins.module_utils import _btf as btf_utils

SYSTEM_PYTHON = "/usr/bin/python3"
FORMAT_FILES = ("/sys/kernel/tracing/events/skb/kfree_skb/format",
                "/sys/kernel/debug/tracing/events/skb/kfree_skb/format")
BCC_DIRS = ("/usr/lib/python3/dist-packages/bcc", "/usr/local/lib/python3/dist-packages/bcc")
# bcc compiles with clang at start-up: seconds here, a minute or more under qemu TCG.
START_TIMEOUT = float(os.environ.get("YOGURT_TRACE_START_TIMEOUT", 900))
# The struct offsets the BPF program follows, as its -D flags, and their BTF paths.
OFFSETS = {"SKB_DEV_OFF": "sk_buff.dev", "DEV_IFINDEX_OFF": "net_device.ifindex",
           "DEV_NET_OFF": "net_device.nd_net.net", "NET_INUM_OFF": "net.ns.inum"}
# The tracer's own bound past the window (probes inside the window run longer under TCG): it
# exits by itself then, even if nobody ends its window.
WINDOW_GRACE = 600.0
SIDE_NAMES = {"host": "host side", "cont": "yogurt side"}
_SYMBOLIC = re.compile(r'\{\s*(0x[0-9a-fA-F]+|\d+)\s*,\s*"([A-Za-z0-9_]+)"\s*\}')


def headers_dir(release=None):
    release = release or platform.release()
    source = os.environ.get("BCC_KERNEL_SOURCE")
    for path in ([source] if source else []) + [f"/lib/modules/{release}/build"]:
        if path and os.path.isdir(path):
            return path
    return None


def bcc_version(python=SYSTEM_PYTHON, dirs=BCC_DIRS):
    """bcc's version where the system Python imports it from (python3-bpfcc), or None.

    Read from the package's files: starting that Python to ask costs seconds under TCG."""
    if not os.path.exists(python):
        return None
    for path in dirs:
        if not os.path.exists(os.path.join(path, "__init__.py")):
            continue
        try:
            with open(os.path.join(path, "version.py"), encoding="utf-8") as fh:
                match = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", fh.read())
        except OSError:
            match = None
        return match.group(1) if match else "?"
    return None


def availability(release=None):
    """{'available', 'bcc', 'headers', 'reason', 'install'}: whether the tracer can be started here."""
    release = release or platform.release()
    bcc, headers = bcc_version(), headers_dir(release)
    missing = []
    if not bcc:
        missing.append("python3-bpfcc (apt-get install python3-bpfcc; it runs under /usr/bin/python3, not a venv)")
    if not headers:
        missing.append(f"the headers of the running kernel (apt-get install linux-headers-{release}; if no package "
                       f"of that name exists, as for a self-built kernel, point BCC_KERNEL_SOURCE at its build tree)")
    info = {"available": not missing, "bcc": bcc, "headers": headers, "install": missing, "kernel": release}
    info["reason"] = ("kernel drop tracing needs " + " and ".join(missing) if missing
                      else f"bcc {bcc} and the headers in {headers} are present")
    return info


# ---------------------------------------------------------------- what the kernel says

def parse_print_fmt(text):
    """{number: name} from the __print_symbolic of a tracepoint format's print fmt (empty if none)."""
    fmt = text.split("print fmt:", 1)[-1] if "print fmt:" in text else ""
    return {int(num, 0): name for num, name in _SYMBOLIC.findall(fmt)}


def reason_names(btf, format_files=FORMAT_FILES):
    """({number: name}, where read): the running kernel's drop reasons."""
    for path in format_files:
        try:
            with open(path, encoding="utf-8") as fh:
                names = parse_print_fmt(fh.read())
        except OSError:
            continue
        if names:
            return names, path
    names = btf.enum("skb_drop_reason")
    return {v: n.replace("SKB_DROP_REASON_", "", 1) for v, n in names.items()}, "BTF enum skb_drop_reason"


def subsystem_names(btf):
    try:
        names = btf.enum("skb_drop_reason_subsys")
    except btf_utils.BtfError:
        return {}
    return {v: n.replace("SKB_DROP_REASON_SUBSYS_", "", 1) for v, n in names.items()}


def reason_name(code, names, subsystems):
    """A reason number as the running kernel names it; from 6.12 the high 16 bits carry a subsystem."""
    if code in names:
        return names[code]
    subsystem, low = code >> 16, code & 0xFFFF
    if subsystem:
        return f"{subsystems.get(subsystem, f'subsystem {subsystem}')} reason {low}"
    return f"reason {code}"


def offsets(btf):
    """{flag: byte offset} of the members the BPF program follows."""
    return {flag: btf.offset(path) for flag, path in OFFSETS.items()}


# ---------------------------------------------------------------- which hook a drop belongs to

def device_index(states):
    """{(netns inode, ifindex): (phone state, end, side)} of every device of the phones."""
    index = {}
    for state in states:
        for i, end in enumerate(state["ends"]):
            for side in ("host", "cont"):
                dev = end[side]
                if dev.get("exists") and dev.get("netns_inode"):
                    index[(dev["netns_inode"], dev["ifindex"])] = (state, i, side)
    return index


def _hook(state, i, side, attach):
    found = [h for h in state["hooks"] if h["end"] == i and h["side"] == side and h["attach"] == attach]
    return found[0] if found else None


def label(state, i, side, reason, symbol):
    """(hook name or None, program or None, note): what dropped a packet on end i's side device."""
    end = state["ends"][i]
    if reason in ("TC_INGRESS", "TC_EGRESS"):
        attach = "tcx_ingress" if reason == "TC_INGRESS" else "tcx_egress"
        hook = _hook(state, i, side, attach)
        if hook:
            return hook["hook"], hook["program"], f"{hook['program']} ({hook['kind']} on {attach}) returned a drop"
        return None, None, f"a {attach.replace('tcx_', 'tc ')} program that is not this phone's dropped it"
    if symbol.startswith("netkit_xmit"):
        other = "cont" if side == "host" else "host"
        if not (end[other].get("exists") and end[other].get("up")):
            return None, None, f"netkit drops what is sent towards a {SIDE_NAMES[other]} that is down or missing"
        attach = "netkit_peer" if side == "host" else "netkit_primary"
        hook = _hook(state, i, "host", attach)
        sender = "the yogurt" if side == "host" else "the host"
        program = hook["program"] if hook else attach
        return (hook["hook"] if hook else None), program, \
            f"{program} ({attach}) dropped what {sender} sent (NETKIT_DROP, or the pair's blackhole policy without a program)"
    if symbol.startswith("skb_do_redirect"):
        hook = _hook(state, i, "host", "netkit_peer") or _hook(state, i, "host", "tcx_ingress")
        return "wires", hook["program"] if hook else None, "the wire redirected to an ifindex that does not exist"
    if reason == "XDP" or symbol.startswith("veth_xdp"):
        hook = _hook(state, i, side, "xdp")
        return (hook["hook"] if hook else None), (hook["program"] if hook else None), "an XDP program dropped it"
    return None, None, None


def labelled(raw, index, names, subsystems):
    """{phone: [drop]} from the tracer's counts, most frequent first."""
    out = {}
    for drop in raw:
        state, i, side = index[(drop["netns"], drop["ifindex"])]
        reason = reason_name(drop["reason"], names, subsystems)
        symbol = drop["symbol"] or hex(drop["location"])
        hook, program, note = label(state, i, side, reason, symbol)
        dev = state["ends"][i][side]
        where = f"{state['phone']}, end {i}, {SIDE_NAMES[side]} {dev['ifname']}"
        out.setdefault(state["phone"], []).append({
            "end": i, "side": side, "ifname": dev["ifname"], "ifindex": drop["ifindex"], "netns_inode": drop["netns"],
            "hook": hook, "program": program, "reason": reason, "reason_code": drop["reason"], "location": symbol,
            "count": drop["count"], "text": f"{where}: {drop['count']} x {reason} at {symbol}" + (f" - {note}" if note else "")})
    for drops in out.values():
        drops.sort(key=lambda d: (-d["count"], d["end"], d["side"]))
    return out


# ---------------------------------------------------------------- the bcc process

def _tracer_source():
    """_bcc_tracer.py's text, from a checkout or from inside the module's AnsiballZ zip."""
    return bcc_tracer.__loader__.get_source(bcc_tracer.__name__)


class Tracer:
    """A running _bcc_tracer.py: collect() ends the window and returns {phone: [drop]}.

    module.run_command runs it, in a thread of its own since run_command returns only when its
    command ends. Two pipes passed to the tracer (pass_fds) carry what run_command cannot: the
    tracer writes READY to one once attached, and counts until the other closes (the end of the
    window, or the module's death) or its own bound of `max_seconds` passes; then it prints the
    counts on stdout and exits by itself.
    """

    def __init__(self, run_command, config, index, names, subsystems):
        self.index, self.names, self.subsystems = index, names, subsystems
        self.problem, self.result, self.proc = None, None, None
        self.ready_r, ready_w = os.pipe()
        window_r, self.window_w = os.pipe()
        argv = [SYSTEM_PYTHON, "-c", _tracer_source(), json.dumps(dict(config, ready_fd=ready_w, window_fd=window_r))]
        theirs = [ready_w, window_r]  # the tracer's ends: closed here once it has them

        def close_theirs(proc=None):
            self.proc = proc
            while theirs:
                os.close(theirs.pop())

        def run():
            try:
                self.result = run_command(argv, pass_fds=tuple(theirs), before_communicate_callback=close_theirs,
                                          handle_exceptions=False)
            except OSError as exc:
                self.result = (None, "", f"cannot run {SYSTEM_PYTHON}: {exc}")
            finally:
                close_theirs(self.proc)

        self.thread = threading.Thread(target=run, name="drop-tracer", daemon=True)
        self.thread.start()

    def wait_ready(self, timeout=START_TIMEOUT):
        """None once attached, else what went wrong (bcc's own words)."""
        ready, _w, _x = select.select([self.ready_r], [], [], timeout)
        line = os.read(self.ready_r, 64).decode(errors="replace") if ready else None
        if line is None:
            return f"the tracer was not attached after {timeout:.0f} s"
        if line.strip() == "READY":
            return None
        self.thread.join(30)
        rc = self.result[0] if self.result else None
        return f"the tracer exited ({rc}) before it was attached: {self.stderr_tail()}"

    def stderr_tail(self, lines=12):
        text = [line.rstrip() for line in (self.result[2] if self.result else "").splitlines() if line.strip()]
        errors = [line for line in text if "error" in line.lower() or "Exception" in line]
        return " | ".join((errors or text)[-lines:]) or "(no output)"

    def collect(self, timeout=120):
        """{phone: [drop]}; {} with self.problem set when the tracer gave no counts."""
        self._close_window()
        self.thread.join(timeout)
        try:
            out = json.loads(self.result[1].strip().splitlines()[-1])
            raw = out["drops"]
        except (TypeError, ValueError, KeyError, IndexError):
            self.problem = f"the drop tracer gave no counts at the end of the window: {self.stderr_tail()}"
            return {}
        if out.get("bounded"):
            self.problem = (f"the drop tracer stopped counting at its bound of {out['bounded']:.0f} s, before the "
                            "window ended: the drops after it are missing")
        return labelled(raw, self.index, self.names, self.subsystems)

    def _close_window(self):
        if self.window_w is not None:
            os.close(self.window_w)
            self.window_w = None

    def stop(self):
        self._close_window()
        if self.thread.is_alive() and self.proc is not None:
            self.proc.kill()  # it did not end by itself (collect() was never reached, or timed out)
        self.thread.join(30)
        os.close(self.ready_r)


def _plan(states, seconds):
    """(bcc config, device index, names, subsystems, facts) for the phones' devices."""
    btf = btf_utils.load()
    flags = offsets(btf)
    names, where = reason_names(btf)
    index = device_index(states)
    config = {"cflags": [f"-D{k}={v}" for k, v in flags.items()], "watch": [list(key) for key in index],
              "max_seconds": seconds + WINDOW_GRACE}
    return config, index, names, subsystem_names(btf), {"offsets": flags, "reason_names": where,
                                                        "devices": len(index)}


def start(states, trace, run_command=None, seconds=0.0):
    """(tracer or None, info). trace: 'auto' (when available), 'yes' (fail if not), 'no'.

    run_command is the module's; the tracer counts for at most `seconds` + WINDOW_GRACE."""
    if trace == "no":
        return None, {"available": False, "reason": "not asked (trace: no)", "install": []}
    info = availability()
    tracer = None
    if info["available"]:
        started = time.monotonic()
        try:
            config, index, names, subsystems, facts = _plan(states, seconds)
            info.update(facts)
            tracer = Tracer(run_command, config, index, names, subsystems)
            problem = tracer.wait_ready()
        except (btf_utils.BtfError, OSError) as exc:
            problem = str(exc)
        if problem:
            if tracer:
                tracer.stop()
            tracer = None
            info.update(available=False, reason=f"bcc {info['bcc']} could not trace skb:kfree_skb on Linux "
                                                f"{info['kernel']}: {problem}")
        else:
            info.update(reason=f"skb:kfree_skb with bcc {info['bcc']} on {info['devices']} device(s), "
                               f"filtered in the kernel; reason names from {info['reason_names']}",
                        start_seconds=round(time.monotonic() - started, 1))
    if trace == "yes" and not info["available"]:
        raise RuntimeError(f"trace: yes, but {info['reason']}")
    return tracer, info
