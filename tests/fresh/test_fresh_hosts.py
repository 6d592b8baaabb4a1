# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fresh hosts: python3 and ssh and nothing else, behind a proxy that reaches only the package
archive and the package index this machine uses (tests/vm/proxy.py).

Four VMs boot side by side (qemu TCG, restrict=on, a guestfwd to the proxy):

- README: the README's first command exactly as written, as root, inside a fresh Debian 12
  (fresh-stock) on a clean copy of the tree; then site.yml again (changed=0).
- over ssh: full site.yml from this controller, one inventory of two phones (one dual-stack),
  on fresh-stock (Debian 12's 6.1: veth with tc filters), fresh-bpo (Debian 12, backports
  6.12: netkit) and fresh-trixie (Debian 13, backports 7.x: netkit with headroom/tailroom);
  then kernels.yml: call.yml on each, each host picked the backend and attach mode its kernel
  allows, and a netkit pair with every attribute is taken exactly where the kernel has them
  (a single netkit device, pairing single, only on 7.x);
  the second run changes nothing and opens no apt or pip program or library (inotify in the
  VM, with a control that it sees them); site.yml --check changes nothing; on fresh-bpo only
  (bpf_toolchain_diagnose: true, so the first run installed bcc and the kernel's headers
  through the proxy too), diagnose.yml breaks one phone (a wires map entry deleted) and the
  diagnosis, tracing skb:kfree_skb with bcc, must name the device, hook and the kernel's reason
  of its drops and call the other phone healthy; teardown leaves nothing.
- the proxy refuses what it must (from inside a VM), and a direct connection fails.

The whole story runs once (module fixture); the tests check what it saw. Times and the
proxy's log go to tests/output/fresh/. For a quicker look while developing,
YOGURT_FRESH_FLAVORS=fresh-stock,... picks the over-ssh flavors and YOGURT_FRESH_README=0
leaves the README VM out (its tests are then skipped); CI runs everything.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import pathlib
import re
import subprocess
import time

import pytest

import playbook_run
import proxy as proxy_harness
import vm as vm_harness

pytestmark = pytest.mark.fresh

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "output" / "fresh"
README_COMMAND = "./scripts/setup && .venv/bin/ansible-playbook site.yml"
# What each kernel allows: the backend `auto` must pick (as seen on the host-side device), and
# kernels.yml's expectations (kernels_expect: attach mode, netkit, headroom/tailroom, pairing).
OVER_SSH = {
    "fresh-stock": {"kernel": "6.1.", "backend": "veth", "tc_filters": True,
                    "kernels_expect": {"backend": "veth", "attach_mode": "tc", "netkit": False, "headroom": False,
                                       "pairing": False}},
    "fresh-bpo": {"kernel": "6.12.", "backend": "netkit", "tc_filters": False, "diagnose": True, "metrics": True,
                  "kernels_expect": {"backend": "netkit", "attach_mode": "netkit", "netkit": True, "headroom": False,
                                     "pairing": False}},
    "fresh-trixie": {"kernel": "7.", "backend": "netkit", "tc_filters": False,
                     "kernels_expect": {"backend": "netkit", "attach_mode": "netkit", "netkit": True, "headroom": True,
                                        "pairing": True}},
}
# The inventory of the over-ssh story: two phones, one of them dual-stack.
PHONES = [
    {"name": "phone", "backend": "auto", "ends": [
        {"netns": "yogurt-1", "host_ifname": "yg1-host", "cont_ifname": "yg1-cont", "addresses": ["10.42.0.1/24"]},
        {"netns": "yogurt-2", "host_ifname": "yg2-host", "cont_ifname": "yg2-cont", "addresses": ["10.42.0.2/24"]}]},
    {"name": "phone6", "backend": "auto", "ends": [
        {"netns": "yogurt-61", "host_ifname": "yg61-host", "cont_ifname": "yg61-cont",
         "addresses": ["10.43.0.1/24", "fd00:6::1/64"]},
        {"netns": "yogurt-62", "host_ifname": "yg62-host", "cont_ifname": "yg62-cont",
         "addresses": ["10.43.0.2/24", "fd00:6::2/64"]}]},
]
# CI runs everything. While developing, YOGURT_FRESH_FLAVORS=fresh-stock,... picks the
# over-ssh flavors and YOGURT_FRESH_README=0 leaves the README VM out.
_WANTED = os.environ.get("YOGURT_FRESH_FLAVORS", "all")
OVER_SSH = {flavor: expect for flavor, expect in OVER_SSH.items()
            if _WANTED == "all" or flavor in _WANTED.split(",")}
WITH_README = os.environ.get("YOGURT_FRESH_README", "1") != "0"
TOOLCHAIN_PACKAGES = ["clang", "llvm", "bpftool", "libbpf-dev", "python3-pyroute2", "python3-pip"]
# libbpf1 comes with the release's own iproute2 (bookworm: 1:1.1.2): present, but not the
# backports one (>= 1:1.3) that the toolchain role installs on Debian 12.
OWN_LIBBPF1_BELOW = {"bookworm": "1:1.3"}
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)

# A fresh host's state, as JSON: what of the toolchain it has, its iproute2 and sources.
STATE_SCRIPT = r"""
import json, shutil, subprocess
def installed(name):
    r = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Version}", name], capture_output=True, text=True)
    return r.stdout.split()[1] if r.returncode == 0 and r.stdout.startswith("ii") else None
pkgs = %s
print(json.dumps({
    "packages": {p: installed(p) for p in pkgs},
    "libbpf1": installed("libbpf1"),
    "commands": {c: shutil.which(c) for c in ("clang", "llc", "bpftool")},
    "pyroute2": subprocess.run(["python3", "-c", "import pyroute2"], capture_output=True).returncode == 0,
    "iproute2": installed("iproute2"),
    "backports": subprocess.run(["grep", "-rqs", "backports", "/etc/apt/sources.list", "/etc/apt/sources.list.d"]).returncode == 0,
    "kernel": open("/proc/sys/kernel/osrelease").read().strip(),
    "bcc": installed("python3-bpfcc"),
    "headers": installed("linux-headers-" + open("/proc/sys/kernel/osrelease").read().strip()),
}))
""" % json.dumps(TOOLCHAIN_PACKAGES)

# From inside a VM: what the proxy lets through and what it refuses; a direct connection.
PROXY_PROBE = r"""
import json, socket, urllib.request, urllib.error
proxy = "http://10.0.2.100:3128"
opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
out = {}
for url in ("http://deb.debian.org/debian/dists/%(suite)s/InRelease", "https://pypi.org/simple/pyroute2/",
            "http://example.com/", "https://example.com/", "https://1.1.1.1/", "http://1.1.1.1/",
            "https://deb.debian.org:8443/"):
    try:
        out[url] = opener.open(url, timeout=60).status
    except urllib.error.HTTPError as exc:
        out[url] = exc.code
    except Exception as exc:
        out[url] = repr(exc)
for name, target in (("direct 1.1.1.1:80", ("1.1.1.1", 80)), ("direct 151.101.0.223:443", ("151.101.0.223", 443)),
                     ("direct host 10.0.2.2:22", ("10.0.2.2", 22))):
    s = socket.socket()
    s.settimeout(10)
    try:
        s.connect(target)
        out[name] = "connected"
    except Exception as exc:
        out[name] = repr(exc)
    finally:
        s.close()
try:
    out["dns example.com"] = str(socket.getaddrinfo("example.com", 80)[0][4])
except Exception as exc:
    out["dns example.com"] = repr(exc)
print(json.dumps(out))
"""

LEFTOVERS = ("echo netns: $(ip netns list | wc -l); ip -o link show | awk -F': ' '{print \"link: \" $2}';"
             " echo pins: $(find /sys/fs/bpf/yogurt -mindepth 1 2>/dev/null | wc -l);"
             " echo records: $(find /run/yogurt -mindepth 1 2>/dev/null | wc -l);"
             " echo units: $(ls /etc/systemd/system/yogurt-phone* /var/lib/prometheus/node-exporter/yogurt_phone.prom"
             " 2>/dev/null | wc -l)")
# The metrics timer's state and what it wrote (yogurt_phone_metrics: true on that host).
METRICS_STATE = ("echo timer: $(systemctl is-active yogurt-phone-metrics.timer);"
                 " echo mtime: $(stat -c %Y /var/lib/prometheus/node-exporter/yogurt_phone.prom 2>/dev/null || echo 0);"
                 " grep -E '^yogurt_phone_(up|forwarded_packets_total)' /var/lib/prometheus/node-exporter/yogurt_phone.prom"
                 " 2>/dev/null")


class Clock:
    """Named durations, printed at the end and written to tests/output/fresh/times.txt."""

    def __init__(self):
        self.times = {}

    def took(self, name, started):
        self.times[name] = time.monotonic() - started
        print(f"fresh: {name}: {self.times[name]:.0f} s", flush=True)


def _parallel(function, items):
    with concurrent.futures.ThreadPoolExecutor(len(items)) as pool:
        return list(pool.map(function, items))


def _state(vm):
    return json.loads(vm.run(f"python3 - <<'EOF'\n{STATE_SCRIPT}\nEOF", timeout=300).stdout.strip().splitlines()[-1])


def _fresh_lists(vm):
    """apt-get update through the proxy, then the stamp apt.systemd.daily leaves after one:
    the lists are fresh (younger than the role's cache_valid_time), as on a host just set up."""
    vm.run("apt-get update -q >/tmp/fresh-apt-update.log 2>&1 || { tail -20 /tmp/fresh-apt-update.log; exit 1; };"
           " mkdir -p /var/lib/apt/periodic && touch /var/lib/apt/periodic/update-success-stamp", timeout=900)


def _ssh_stream(vm, command, timeout, marks=()):
    """Run command in the VM; return (rc, output lines, {mark: seconds when a line with it appeared})."""
    started, seen, lines = time.monotonic(), {}, []
    with subprocess.Popen(vm.ssh_argv(command), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            lines.append(line)
            for mark in marks:
                if mark in line and mark not in seen:
                    seen[mark] = time.monotonic() - started
            if time.monotonic() - started > timeout:
                proc.kill()
                lines.append(f"(killed after {timeout} s)\n")
                break
        rc = proc.wait()
    return rc, lines, seen


def _recap(lines):
    return {m[0]: {"ok": int(m[1]), "changed": int(m[2]), "unreachable": int(m[3]), "failed": int(m[4])}
            for m in RECAP.findall("".join(lines))}


def _readme_story(vm, clock):
    """The README's first command inside the VM on a clean copy of the tree."""
    seen = {}
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    tar = subprocess.run(["tar", "--null", "-T", "-", "-cf", "-"], cwd=ROOT, input=files, check=True,
                         capture_output=True).stdout
    copied = subprocess.run(vm.ssh_argv("rm -rf /root/yogurt-phone && mkdir /root/yogurt-phone && "
                                        "tar -xf - -C /root/yogurt-phone"), input=tar, capture_output=True, timeout=300,
                            check=False)
    assert copied.returncode == 0, f"copying the tree into {vm.name} failed: {copied.stderr.decode(errors='replace')}"
    seen["files"] = len(files.split(b"\0")) - 1
    started = time.monotonic()
    rc, lines, marks = _ssh_stream(vm, f"cd /root/yogurt-phone && {README_COMMAND}", 3600, marks=("setup: ready",))
    clock.took("README command in fresh-stock (setup + site.yml)", started)
    if "setup: ready" in marks:
        clock.times["  of which ./scripts/setup"] = marks["setup: ready"]
    (OUT / "readme-first.log").write_text("".join(lines))
    seen.update(first_rc=rc, first_recap=_recap(lines), first_tail="".join(lines[-60:]), first_output="".join(lines))
    if rc != 0:
        return seen
    started = time.monotonic()
    rc2, lines2, _took2 = _ssh_stream(vm, "cd /root/yogurt-phone && .venv/bin/ansible-playbook site.yml", 1800)
    clock.took("README: second site.yml in fresh-stock", started)
    (OUT / "readme-second.log").write_text("".join(lines2))
    seen.update(second_rc=rc2, second_recap=_recap(lines2), second_tail="".join(lines2[-60:]))
    seen["device"] = vm.run(DEVICE, check=False).stdout
    seen["tc"] = vm.run(TC_FILTERS, check=False).stdout
    seen["host_ns"] = vm.run(HOST_NS_DEVICES, check=False).stdout
    return seen


def _watch(vm, log):
    """Start the apt/pip watcher in the VM; return once it watches."""
    vm.run(f"rm -f {log}; nohup python3 /root/watch_apt_pip.py {log} >/dev/null 2>&1 & echo $! >{log}.pid; "
           f"for i in $(seq 300); do grep -q ^READY {log} 2>/dev/null && exit 0; sleep 0.2; done; cat {log}; exit 1")


def _watched(vm, log):
    return vm.run(f"kill $(cat {log}.pid); cat {log}", check=False).stdout.splitlines()


def _task(run, host, name):
    """The result on host of the task whose name (without its role prefix) is name."""
    found = [result for (h, task), result in run.by_host.items() if h == host and task.split(" : ")[-1] == name]
    assert found, f"task {name!r} did not report on {host}; output:\n" + "".join(run.output[-60:])
    return found[-1]


# The host sides live in the switchboard (the default layout); the host's namespace holds none.
DEVICE = "ip -n yogurt-switchboard -d link show yg1-host"
TC_FILTERS = ("tc -n yogurt-switchboard filter show dev yg1-host ingress;"
              " tc -n yogurt-switchboard filter show dev yg1-host egress")
HOST_NS_DEVICES = "ip -o link show | cut -d: -f2 | cut -d@ -f1"


def phone_devices_in(listing):
    """The devices of PHONES (either side) named in an `ip -o link` listing of a namespace."""
    names = {e[k] for p in PHONES for e in p["ends"] for k in ("host_ifname", "cont_ifname")}
    return sorted(names & {line.strip() for line in listing.splitlines()})


def _over_ssh_story(vms, clock):
    """Full site.yml from this controller on every fresh flavor at once, then again, --check, teardown."""
    seen = {}
    hosts = {vm.flavor: vm for vm in vms}
    inventory = OUT / "inventory.yml"
    lines = ["all:", f"  vars: {{yogurt_phones: {json.dumps(PHONES)}}}", "  hosts:"]
    for flavor, vm in hosts.items():
        lines.append(f"    {flavor}:")
        facts = dict(vm.facts(), kernels_expect=OVER_SSH[flavor]["kernels_expect"])
        if OVER_SSH[flavor].get("diagnose"):  # bcc and the kernel's headers, from nothing, on this host only
            facts["bpf_toolchain_diagnose"] = True
        if OVER_SSH[flavor].get("metrics"):  # the metrics timer, under systemd as PID 1
            facts["yogurt_phone_metrics"] = True
            facts["yogurt_phone_metrics_interval"] = "5s"
        lines += [f"      {key}: {json.dumps(value)}" for key, value in facts.items()]
    inventory.write_text("\n".join(lines) + "\n")
    site = ROOT / "site.yml"

    started = time.monotonic()
    first = playbook_run.run_playbook(inventory, site, title="fresh hosts: first site.yml", timeout=3600)
    clock.took("over ssh: first site.yml (3 flavors side by side)", started)
    (OUT / "ssh-first.log").write_text("".join(first.output))
    seen["first"] = first
    if first.rc != 0:
        return seen
    seen["after_first"] = dict(zip(hosts, _parallel(_state, list(hosts.values()))))
    seen["devices"] = dict(zip(hosts, _parallel(lambda vm: vm.run(DEVICE, check=False).stdout, list(hosts.values()))))
    seen["tc"] = dict(zip(hosts, _parallel(lambda vm: vm.run(TC_FILTERS, check=False).stdout, list(hosts.values()))))
    seen["host_ns"] = dict(zip(hosts, _parallel(lambda vm: vm.run(HOST_NS_DEVICES, check=False).stdout,
                                                list(hosts.values()))))
    metered = {f: vm for f, vm in hosts.items() if OVER_SSH[f].get("metrics")}
    seen["metrics_first"] = {f: vm.run(METRICS_STATE, check=False).stdout for f, vm in metered.items()}

    started = time.monotonic()
    seen["kernels"] = playbook_run.run_playbook(inventory, pathlib.Path(__file__).parent / "kernels.yml",
                                                title="fresh hosts: kernels.yml", timeout=3600)
    clock.took("over ssh: kernels.yml (call.yml, backend and attributes per kernel)", started)
    # kernels.yml took minutes and its call moved the counters: the timer has rewritten the file since
    seen["metrics_later"] = {f: vm.run(METRICS_STATE, check=False).stdout for f, vm in metered.items()}
    (OUT / "ssh-kernels.log").write_text("".join(seen["kernels"].output))

    # The watcher sees apt and pip when they run (control), then watches the second run.
    watcher = (pathlib.Path(__file__).parent / "watch_apt_pip.py").read_text()
    for vm in hosts.values():
        vm.run("cat >/root/watch_apt_pip.py", input=watcher)

    def control(vm):
        _watch(vm, "/run/watch-control.log")
        vm.run("apt-get --version >/dev/null; pip3 --version >/dev/null", check=False)
        time.sleep(1)
        return _watched(vm, "/run/watch-control.log")

    seen["control"] = dict(zip(hosts, _parallel(control, list(hosts.values()))))
    history = "wc -l < /var/log/apt/history.log 2>/dev/null || echo 0"
    seen["history_before"] = {f: vm.run(history).stdout.strip() for f, vm in hosts.items()}
    _parallel(lambda vm: _watch(vm, "/run/watch-second.log"), list(hosts.values()))
    started = time.monotonic()
    second = playbook_run.run_playbook(inventory, site, title="fresh hosts: second site.yml", timeout=3600)
    clock.took("over ssh: second site.yml", started)
    (OUT / "ssh-second.log").write_text("".join(second.output))
    time.sleep(1)
    seen["second"] = second
    seen["watched"] = dict(zip(hosts, _parallel(lambda vm: _watched(vm, "/run/watch-second.log"), list(hosts.values()))))
    seen["history_after"] = {f: vm.run(history).stdout.strip() for f, vm in hosts.items()}

    started = time.monotonic()
    check = playbook_run.run_playbook(inventory, site, title="fresh hosts: site.yml --check", timeout=3600, args=["--check"])
    clock.took("over ssh: site.yml --check", started)
    (OUT / "ssh-check.log").write_text("".join(check.output))
    seen["check"] = check

    diagnosed = [flavor for flavor in hosts if OVER_SSH[flavor].get("diagnose")]
    if diagnosed:  # a phone broken by hand, diagnosed with bcc tracing the kernel's drops; teardown follows
        started = time.monotonic()
        seen["diagnose"] = playbook_run.run_playbook(inventory, pathlib.Path(__file__).parent / "diagnose.yml",
                                                     title="fresh hosts: diagnose.yml", timeout=3600,
                                                     args=["--limit", ",".join(diagnosed)])
        clock.took(f"over ssh: diagnose.yml with the drop tracer ({', '.join(diagnosed)})", started)
        (OUT / "ssh-diagnose.log").write_text("".join(seen["diagnose"].output))

    started = time.monotonic()
    teardown = playbook_run.run_playbook(inventory, ROOT / "playbooks" / "teardown.yml", title="fresh hosts: teardown",
                                         timeout=3600)
    clock.took("over ssh: teardown.yml", started)
    (OUT / "ssh-teardown.log").write_text("".join(teardown.output))
    seen["teardown"] = teardown
    seen["leftovers"] = dict(zip(hosts, _parallel(lambda vm: vm.run(LEFTOVERS).stdout, list(hosts.values()))))
    return seen


@pytest.fixture(scope="module")
def story():
    OUT.mkdir(parents=True, exist_ok=True)
    clock = Clock()
    seen = {"clock": clock}
    log = OUT / "proxy.log"
    log.unlink(missing_ok=True)
    everything = time.monotonic()
    with proxy_harness.running_proxy(log) as proxy:
        seen["proxy"] = proxy
        seen["allowlist"] = str(proxy.allowlist)
        for flavor in OVER_SSH:
            started = time.monotonic()
            vm_harness.build(quiet=True, flavor=flavor)
            clock.took(f"image {flavor} (build, or cached)", started)
        tag = os.getpid()
        specs = [dict(name=f"fresh-readme-{tag}", flavor="fresh-stock", proxy_port=proxy.port)] if WITH_README else []
        specs += [dict(name=f"{flavor}-{tag}", flavor=flavor, proxy_port=proxy.port) for flavor in OVER_SSH]
        started = time.monotonic()
        # Four TCG guests side by side on a busy 2-core machine: none answered ssh within 600 s
        # once (load 10, each qemu at ~27% of a core); the story's own time is what matters.
        with vm_harness.booted_vms(specs, boot_timeout=max(vm_harness.BOOT_TIMEOUT, 1800)) as vms:
            clock.took(f"boot {len(specs)} VMs side by side", started)
            for vm, spec in zip(vms, specs):
                vm.flavor = spec["flavor"]
            readme_vm, ssh_vms = (vms[0], vms[1:]) if WITH_README else (None, vms)
            seen["initial"] = {vm.name: _state(vm) for vm in vms}
            started = time.monotonic()
            _parallel(_fresh_lists, vms)
            clock.took(f"apt-get update through the proxy ({len(vms)} VMs)", started)
            probe = PROXY_PROBE % {"suite": "bookworm"}
            seen["probe"] = json.loads(ssh_vms[-1].run(f"python3 - <<'EOF'\n{probe}\nEOF", timeout=600).stdout.strip().splitlines()[-1])

            # Not `with ThreadPoolExecutor`: its exit joins the stories, so a SIGTERM (another
            # layer failed) waited for them to finish (20+ minutes) before the VMs went down.
            # On the way out the pool is let go instead; the VMs stop, and the stories' ssh
            # commands fail at once.
            pool = concurrent.futures.ThreadPoolExecutor(2)
            try:
                futures = {"over_ssh": pool.submit(_over_ssh_story, ssh_vms, clock)}
                if WITH_README:
                    futures["readme"] = pool.submit(_readme_story, readme_vm, clock)
                for key, future in futures.items():
                    try:
                        seen[key] = future.result()
                    except Exception as exc:  # pylint: disable=broad-except  # judged by its own tests
                        seen[key] = exc
            finally:
                pool.shutdown(wait=False, cancel_futures=True)
        started = time.monotonic()
    clock.took("shutdown", started)
    clock.took("fresh layer, whole story", everything)
    refused = seen["proxy"].refused
    summary = [f"{name}: {seconds:.0f} s" for name, seconds in clock.times.items()]
    summary.append(f"proxy allowed {len(seen['proxy'].allowed)} requests; refused {len(refused)}: "
                   + ", ".join(f"{m} {t}" for m, t in refused))
    (OUT / "times.txt").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))
    return seen


def _part(story, key):
    part = story[key]
    if isinstance(part, BaseException):
        raise part
    return part


def test_images_have_nothing_of_the_toolchain(story):
    for name, state in story["initial"].items():
        assert all(v is None for v in state["packages"].values()), f"{name} has {state['packages']}"
        assert all(v is None for v in state["commands"].values()), f"{name} has {state['commands']}"
        assert not state["pyroute2"], f"{name}: pyroute2 is importable in the system python"
        assert not state["backports"], f"{name}: a backports source is configured"
        if "trixie" not in name:
            assert state["iproute2"].startswith("6.1."), f"{name}: iproute2 {state['iproute2']} is not bookworm's 6.1"
            libbpf1 = state["libbpf1"]
            assert libbpf1 is None or subprocess.run(
                ["dpkg", "--compare-versions", libbpf1, "lt", OWN_LIBBPF1_BELOW["bookworm"]], check=False).returncode == 0, \
                f"{name}: libbpf1 {libbpf1} is the backports one, not bookworm's own"


def test_proxy_refuses_everything_but_the_archive_and_the_index(story):
    probe = story["probe"]
    assert probe["http://deb.debian.org/debian/dists/bookworm/InRelease"] == 200, probe
    assert probe["https://pypi.org/simple/pyroute2/"] == 200, probe
    assert probe["http://example.com/"] == 403, probe
    assert probe["http://1.1.1.1/"] == 403, probe
    for url in ("https://example.com/", "https://1.1.1.1/", "https://deb.debian.org:8443/"):
        assert "403" in str(probe[url]), (url, probe)
    for direct in ("direct 1.1.1.1:80", "direct 151.101.0.223:443", "direct host 10.0.2.2:22"):
        assert probe[direct] != "connected", (direct, probe)
    assert "gaierror" in probe["dns example.com"], probe
    refused = {target for _method, target in story["proxy"].refused}
    assert {"http://example.com/", "example.com:443", "1.1.1.1:443", "http://1.1.1.1/", "deb.debian.org:8443"} <= refused
    assert "example.com" not in story["allowlist"] and "deb.debian.org:80" in story["allowlist"]


@pytest.mark.skipif(not WITH_README, reason="YOGURT_FRESH_README=0")
def test_readme_first_command_inside_a_fresh_debian_12(story):
    readme = _part(story, "readme")
    assert readme["first_rc"] == 0, f"`{README_COMMAND}` exited {readme['first_rc']}:\n{readme['first_tail']}"
    assert readme["first_recap"]["localhost"]["failed"] == 0
    assert re.search(r"TASK \[[^\]]*Report the call[^\]]*\][^\n]*\n(ok|changed): \[localhost\]",
                     readme["first_output"]), "the call did not pass"
    assert "\n    veth " in readme["device"], f"not veth:\n{readme['device']}"
    assert "bpf" in readme["tc"], f"no tc filters on yg1-host (6.1 has no tcx):\n{readme['tc']}"
    assert phone_devices_in(readme["host_ns"]) == [], f"phone devices in the host's namespace:\n{readme['host_ns']}"
    assert readme["second_rc"] == 0, readme["second_tail"]
    assert readme["second_recap"]["localhost"]["changed"] == 0, readme["second_tail"]


def test_site_over_ssh_installs_the_toolchain_and_builds_the_phones(story):
    seen = _part(story, "over_ssh")
    first = seen["first"]
    assert first.rc == 0, "first site.yml failed:\n" + "".join(first.output[-80:])
    for flavor, expect in OVER_SSH.items():
        state = seen["after_first"][flavor]
        assert state["kernel"].startswith(expect["kernel"]), (flavor, state["kernel"])
        assert all(state["commands"].values()) and state["pyroute2"], (flavor, state)
        device = seen["devices"][flavor]
        assert f"\n    {expect['backend']} " in device, (flavor, device)
        assert ("bpf" in seen["tc"][flavor]) == expect["tc_filters"], (flavor, seen["tc"][flavor])
        assert phone_devices_in(seen["host_ns"][flavor]) == [], (flavor, "host namespace", seen["host_ns"][flavor])
        assert _task(first, flavor, "Converge the phones")["call"]["ok"], flavor  # the role calls in that task
        phones = _task(first, flavor, "Converge the phones")["phones"]
        assert [p["backend"] for p in phones] == [expect["backend"]] * len(PHONES), (flavor, phones)


def test_each_kernel_gets_its_backend_and_every_attribute_it_has(story):
    kernels = _part(story, "over_ssh")["kernels"]
    assert kernels.rc == 0, "kernels.yml failed:\n" + "".join(kernels.output[-80:])
    for flavor in OVER_SSH:  # (the netkit pair with every attribute fails, ignored, where the kernel lacks one)
        for task in ("Each phone is on the expected backend and attach mode, and carried the call",
                     "The attributes were taken exactly where the kernel has them",
                     "A single device was made exactly where the kernel has pairing"):
            assert _task(kernels, flavor, task)["_status"] == "ok", (flavor, task)


def test_second_run_changes_nothing_and_runs_no_apt_or_pip(story):
    seen = _part(story, "over_ssh")
    second = seen["second"]
    assert second.rc == 0, "".join(second.output[-80:])
    for flavor in OVER_SSH:
        assert second.recap()[flavor]["changed"] == 0, (flavor, second.changed_tasks(flavor))
        control = seen["control"][flavor]
        assert any("apt-get" in line for line in control) and any("pip" in line for line in control[1:]), \
            f"{flavor}: the watcher did not see the control apt-get and pip3: {control}"
        watched = seen["watched"][flavor]
        assert watched[0].startswith("READY") and watched[1:] == [], f"{flavor}: apt or pip ran: {watched[1:]}"
        assert seen["history_before"][flavor] == seen["history_after"][flavor], flavor


def test_check_mode_after_that_changes_nothing(story):
    check = _part(story, "over_ssh")["check"]
    assert check.rc == 0, "".join(check.output[-80:])
    for flavor in OVER_SSH:
        changed = {task: {key: check.by_host[(flavor, task)].get(key) for key in ("actions", "diff", "msg", "phones")}
                   for task in check.changed_tasks(flavor)}
        assert not changed, (flavor, changed)


@pytest.mark.skipif(not any(expect.get("diagnose") for expect in OVER_SSH.values()),
                    reason="no flavor with the drop tracer among YOGURT_FRESH_FLAVORS")
def test_diagnose_traces_the_kernel_drops_of_a_broken_phone(story):
    """bpf_toolchain_diagnose installed bcc and the kernel's headers from nothing (on that host only);
    with end 0's wires entry deleted, the diagnosis traces the drops and names device, hook and reason."""
    seen = _part(story, "over_ssh")
    diagnosed = [flavor for flavor, expect in OVER_SSH.items() if expect.get("diagnose")]
    for flavor in OVER_SSH:
        state = seen["after_first"][flavor]
        wanted = flavor in diagnosed
        assert (state["bcc"] is not None, state["headers"] is not None) == (wanted, wanted), (flavor, state)
    run = seen["diagnose"]
    assert run.rc == 0, "diagnose.yml failed:\n" + "".join(run.output[-80:])
    for flavor in diagnosed:
        res = _task(run, flavor, "Diagnose both phones, tracing the kernel's drops, with the call's ping, TCP and injections in the window")
        trace = res["trace"]
        assert trace["available"] and trace["bcc"], (flavor, trace)
        phones = {p["phone"]: p for p in res["phones"]}
        intact, broken = phones["phone6"], phones["phone"]
        assert intact["verdict"] == "healthy" and intact["probe"]["replies"] == intact["probe"]["pings"] > 0, \
            (flavor, intact["verdict_text"], res["msg"])
        assert broken["verdict"] == "dead" and "end 0, host side yg1-host: no wires map entry" in broken["first_failure"], \
            (flavor, broken["first_failure"], res["msg"])
        # The yogurt's packets on end 0 are refused by wire_peer, which netkit frees at netkit_xmit with the
        # running kernel's NOT_SPECIFIED (skb->dev is then the host side).
        refused = [d for d in broken["drops"] if d["end"] == 0 and d["side"] == "host" and d["ifname"] == "yg1-host"
                   and d["hook"] == "peer" and d["program"] == "wire_peer" and d["location"].startswith("netkit_xmit")]
        assert refused and refused[0]["reason"] == "NOT_SPECIFIED" and refused[0]["count"] >= broken["probe"]["pings"] // 2, \
            (flavor, broken["drops"], res["msg"])
        assert not [d for d in intact["drops"] if d["hook"] in ("peer", "wires")], (flavor, intact["drops"])
        # The host's injections towards each yogurt are refused by wire_primary, freed at netkit_xmit with
        # skb->dev already the yogurt side: on both ends of both phones.
        for name, phone in phones.items():
            ends = {(d["end"], d["ifname"]) for d in phone["drops"] if d["hook"] == "primary" and d["side"] == "cont"
                    and d["reason"] == "NOT_SPECIFIED" and d["location"].startswith("netkit_xmit") and d["count"] > 0}
            assert ends == {(i, e["cont_ifname"]) for i, e in enumerate(next(p for p in PHONES if p["name"] == name)["ends"])}, \
                (flavor, name, phone["drops"])
        assert trace["reason_names"].startswith(("/sys/kernel", "BTF")), trace
        assert "kernel drop: phone, end 0, host side yg1-host" in res["msg"], res["msg"]


@pytest.mark.skipif(not any(expect.get("metrics") for expect in OVER_SSH.values()),
                    reason="no flavor with the metrics timer among YOGURT_FRESH_FLAVORS")
def test_metrics_timer_refreshes_the_counters_under_systemd(story):
    """yogurt_phone_metrics: true on fresh-bpo: the role enabled the timer under systemd (PID 1), and
    the timer, not the role, rewrote the file while kernels.yml's call moved the counters."""
    seen = _part(story, "over_ssh")
    assert seen.get("metrics_first"), "the over-ssh story did not get as far as the metrics check"
    for flavor, first in seen["metrics_first"].items():
        later = seen["metrics_later"][flavor]
        assert "timer: active" in first, (flavor, first)

        def values(text):
            mtime = int(text.split("mtime: ", 1)[1].split()[0])
            samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
                       for line in text.splitlines() if line.startswith("yogurt_phone_")}
            return mtime, samples

        mtime1, before = values(first)
        mtime2, after = values(later)
        assert mtime1 > 0 and mtime2 > mtime1, (flavor, first, later)
        for phone in ("phone", "phone6"):
            assert after.get(f'yogurt_phone_up{{phone="{phone}"}}') == 1, (flavor, phone, later)
        moved = [k for k in after if "forwarded_packets" in k and after[k] > before.get(k, 0)]
        assert moved, ("the call moved no counter in the file", flavor, first, later)


def test_teardown_leaves_nothing(story):
    seen = _part(story, "over_ssh")
    assert seen["teardown"].rc == 0, "".join(seen["teardown"].output[-80:])
    for flavor, text in seen["leftovers"].items():
        links = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("link: ")]
        assert sorted(link.split("@")[0] for link in links) == ["eth0", "lo"], (flavor, text)
        assert "netns: 0" in text and "pins: 0" in text and "records: 0" in text, (flavor, text)
        assert "units: 0" in text, (flavor, text)  # the metrics units and file (fresh-bpo) are gone too
