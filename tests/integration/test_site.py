"""site.yml, call.yml and teardown.yml as a user runs them, inside a sandbox namespace."""

import json
import os
import shutil
import subprocess

import pytest
import yaml

from conftest import ROOT, VENV_BIN, recap

PINS = "/sys/fs/bpf/yogurt"


def phone(prefix, index, state="present", octet=42, **extra):
    tag = f"{prefix}{index}"
    spec = {
        "name": f"{prefix}-p{index}",
        "backend": "auto",
        "state": state,
        "ends": [
            {"netns": f"{tag}-y1", "host_ifname": f"{tag}ah", "cont_ifname": f"{tag}ac",
             "addresses": [f"10.{octet}.{index}.1/24"]},
            {"netns": f"{tag}-y2", "host_ifname": f"{tag}bh", "cont_ifname": f"{tag}bc",
             "addresses": [f"10.{octet}.{index}.2/24"]},
        ],
    }
    spec.update(extra)
    return spec


def write_inventory(tmp_path, phones, **host_vars):
    host = {"ansible_connection": "local", "ansible_python_interpreter": str(VENV_BIN / "python"),
            "yogurt_phones": phones}
    # These tests look at the host sides in the sandbox: the seed's layout (the switchboard's
    # own tests are test_switchboard.py)
    host["yogurt_phone_switchboard"] = ""
    host.update(host_vars)
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": host}}}))
    return path


def run(sandbox, tmp_path, phones, playbook="site.yml", args=("--tags", "phones"), **host_vars):
    inv = write_inventory(tmp_path, phones, **host_vars)
    proc = sandbox.playbook(ROOT / playbook, ["-i", str(inv)] + list(args))
    return proc


def our_netns(prefix):
    return sorted(n for n in os.listdir("/run/netns") if n.startswith(prefix) and not n.endswith("-sbx"))


def our_pins(prefix):
    return sorted(p for p in os.listdir(PINS) if p.startswith(prefix)) if os.path.isdir(PINS) else []


def host_links(sandbox):
    out = sandbox.ip("-j", "link", "show").stdout
    return {link["ifname"]: link for link in json.loads(out)}


def test_site_converges_calls_is_idempotent_and_tears_down(sandbox, tmp_path):
    phones = [phone(sandbox.prefix, 0)]
    first = run(sandbox, tmp_path, phones, args=())  # the whole site, toolchain included
    assert first.returncode == 0, first.stdout[-4000:]
    assert recap(first.stdout)["failed"] == 0
    assert "backend auto picks veth" in first.stdout
    assert "ping 3/3 3/3 | tcp ok ok | injection refused 96/96 (0 reached)" in first.stdout, first.stdout[-4000:]
    assert our_netns(sandbox.prefix) == [f"{sandbox.prefix}0-y1", f"{sandbox.prefix}0-y2"]

    second = run(sandbox, tmp_path, phones, args=())
    assert second.returncode == 0, second.stdout[-4000:]
    assert recap(second.stdout)["changed"] == 0, second.stdout[-4000:]

    call = run(sandbox, tmp_path, phones, playbook="playbooks/call.yml", args=())
    assert call.returncode == 0, call.stdout[-4000:]
    assert "ping 3/3 3/3 | tcp ok ok | injection refused 96/96 (0 reached)" in call.stdout, call.stdout[-4000:]

    # Host side: no address of any family (addr_gen_mode none: not even IPv6 link-local).
    addrs = json.loads(sandbox.ip("-j", "addr", "show", "dev", f"{sandbox.prefix}0ah").stdout)
    assert addrs[0]["addr_info"] == []

    down = run(sandbox, tmp_path, phones, playbook="playbooks/teardown.yml", args=())
    assert down.returncode == 0, down.stdout[-4000:]
    assert our_netns(sandbox.prefix) == []
    assert our_pins(sandbox.prefix) == []
    assert [name for name in host_links(sandbox) if name != "lo"] == []
    assert not os.path.exists("/var/lib/yogurt-phone")


def test_check_diff_after_editing_an_address_changes_nothing(sandbox, tmp_path):
    phones = [phone(sandbox.prefix, 0)]
    assert run(sandbox, tmp_path, phones).returncode == 0
    phones[0]["ends"][1]["addresses"] = ["10.42.0.9/24"]
    check = run(sandbox, tmp_path, phones, args=("--tags", "phones", "--check", "--diff"))
    assert check.returncode == 0, check.stdout[-4000:]
    assert '-                    "10.42.0.2/24"' in check.stdout and '+                    "10.42.0.9/24"' in check.stdout
    assert recap(check.stdout)["changed"] == 1
    out = subprocess.run(["ip", "-n", f"{sandbox.prefix}0-y2", "-br", "addr"], capture_output=True, text=True,
                         check=True).stdout
    assert "10.42.0.2/24" in out and "10.42.0.9" not in out
    real = run(sandbox, tmp_path, phones)
    assert real.returncode == 0 and recap(real.stdout)["changed"] == 1, real.stdout[-4000:]
    assert recap(run(sandbox, tmp_path, phones).stdout)["changed"] == 0


def test_three_phones_one_absent(sandbox, tmp_path):
    phones = [phone(sandbox.prefix, i) for i in range(3)]
    assert run(sandbox, tmp_path, phones).returncode == 0
    assert len(our_netns(sandbox.prefix)) == 6 and len(our_pins(sandbox.prefix)) == 3
    phones[1]["state"] = "absent"
    res = run(sandbox, tmp_path, phones)
    assert res.returncode == 0, res.stdout[-4000:]
    assert our_netns(sandbox.prefix) == sorted(f"{sandbox.prefix}{i}-y{j}" for i in (0, 2) for j in (1, 2))
    assert our_pins(sandbox.prefix) == [f"{sandbox.prefix}-p0", f"{sandbox.prefix}-p2"]
    assert f"{sandbox.prefix}1ah" not in host_links(sandbox)
    again = run(sandbox, tmp_path, phones)
    assert recap(again.stdout)["changed"] == 0, again.stdout[-4000:]


def _bad_cases(prefix):
    def with_end(field, value, end=0):
        p = phone(prefix, 0)
        p["ends"][end][field] = value
        return [p]

    two = [phone(prefix, 0), phone(prefix, 1)]
    dup_name = [phone(prefix, 0), dict(phone(prefix, 1), name=f"{prefix}-p0")]
    dup_ifname = [phone(prefix, 0), phone(prefix, 1)]
    dup_ifname[1]["ends"][0]["host_ifname"] = two[0]["ends"][1]["host_ifname"]
    same_netns = with_end("netns", f"{prefix}0-y1", end=1)
    return {
        "long ifname": (with_end("host_ifname", "x" * 16), "ends[0].host_ifname", "at most 15"),
        "duplicate phone": (dup_name, "field 'name'", "unique name"),
        "duplicate ifname": (dup_ifname, "ends[0].host_ifname", "already the host-side device"),
        "not a CIDR": (with_end("addresses", ["10.42.0.1"]), "ends[0].addresses", "not a CIDR"),
        "same netns twice": (same_netns, "ends[1].netns", "already used"),
        "unknown backend": ([dict(phone(prefix, 0), backend="wires")], "field 'backend'", "one of auto, netkit, veth"),
        "bpffs name": ([dict(phone(prefix, 0), name=f"{prefix}.p0")], "field 'name'", "cannot hold dots"),
    }


@pytest.mark.parametrize("case", ["long ifname", "duplicate phone", "duplicate ifname", "not a CIDR",
                                  "same netns twice", "unknown backend", "bpffs name"])
def test_bad_input_fails_before_any_change(sandbox, tmp_path, case):
    phones, field, words = _bad_cases(sandbox.prefix)[case]
    res = run(sandbox, tmp_path, phones)
    assert res.returncode != 0
    text = res.stdout + res.stderr
    assert "host localhost" in text and field in text and words in text, text[-3000:]
    assert "phone '" in text or "phone #" in text
    assert "Compile the wire" not in text, "validation must come before any task that changes the host"
    assert our_netns(sandbox.prefix) == [] and our_pins(sandbox.prefix) == []


def test_netkit_on_a_kernel_without_it_fails_before_any_change(sandbox, tmp_path):
    res = run(sandbox, tmp_path, [phone(sandbox.prefix, 0, backend="netkit")])
    assert res.returncode != 0
    assert "backend netkit was asked for" in res.stdout and "use backend: veth" in res.stdout, res.stdout[-3000:]
    assert our_netns(sandbox.prefix) == [] and our_pins(sandbox.prefix) == []


def test_host_side_address_is_reported_and_removed(sandbox, tmp_path):
    phones = [phone(sandbox.prefix, 0)]
    assert run(sandbox, tmp_path, phones).returncode == 0
    dev = f"{sandbox.prefix}0bh"
    sandbox.ip("addr", "add", "10.42.0.77/24", "dev", dev)
    report = run(sandbox, tmp_path, phones, yogurt_phone_host_addresses="report")
    assert report.returncode == 0 and "must carry no address" in report.stdout + report.stderr
    assert "10.42.0.77" in sandbox.ip("-br", "addr", "show", "dev", dev).stdout
    fix = run(sandbox, tmp_path, phones)
    assert fix.returncode == 0 and recap(fix.stdout)["changed"] == 1, fix.stdout[-2500:]
    assert "10.42.0.77" not in sandbox.ip("-br", "addr", "show", "dev", dev).stdout


@pytest.mark.parametrize("damage", ["device", "netns", "pin"])
def test_hand_made_damage_is_repaired(sandbox, tmp_path, damage):
    phones = [phone(sandbox.prefix, 0)]
    assert run(sandbox, tmp_path, phones).returncode == 0
    if damage == "device":
        sandbox.ip("link", "del", f"{sandbox.prefix}0ah")
    elif damage == "netns":
        subprocess.run(["ip", "netns", "del", f"{sandbox.prefix}0-y2"], check=True)
    else:
        os.unlink(os.path.join(PINS, f"{sandbox.prefix}-p0", "link_end0_in"))
    res = run(sandbox, tmp_path, phones)  # converges and places the call, which must pass
    assert res.returncode == 0, res.stdout[-4000:]
    assert recap(res.stdout)["changed"] >= 1
    assert recap(run(sandbox, tmp_path, phones).stdout)["changed"] == 0


def test_a_device_we_did_not_make_is_left_alone(sandbox, tmp_path):
    phones = [phone(sandbox.prefix, 0)]
    # Somebody's own veth pair, using the name the inventory asks for.
    sandbox.ip("link", "add", f"{sandbox.prefix}0ah", "type", "veth", "peer", "name", f"{sandbox.prefix}mine")
    res = run(sandbox, tmp_path, phones)
    assert res.returncode != 0
    assert "this collection did not make it" in res.stdout, res.stdout[-3000:]
    links = host_links(sandbox)
    assert f"{sandbox.prefix}0ah" in links and f"{sandbox.prefix}mine" in links
    assert our_pins(sandbox.prefix) == []


def test_boot_unit_rebuilds_the_phones_after_a_reboot(sandbox, tmp_path):
    phones = [phone(sandbox.prefix, 0)]
    res = run(sandbox, tmp_path, phones, yogurt_phone_boot_unit=True)
    assert res.returncode == 0, res.stdout[-4000:]
    for path in ("/etc/systemd/system/yogurt-phone.service", "/etc/yogurt-phone/phones.json",
                 "/usr/local/lib/yogurt-phone/converge-at-boot"):
        assert os.path.exists(path), path
    assert recap(run(sandbox, tmp_path, phones, yogurt_phone_boot_unit=True).stdout)["changed"] == 0
    # A reboot: devices, namespaces, pins and /run are gone.
    for ns in our_netns(sandbox.prefix):
        subprocess.run(["ip", "netns", "del", ns], check=True)
    subprocess.run(["rm", "-rf", os.path.join(PINS, f"{sandbox.prefix}-p0"), "/run/yogurt"], check=True)
    with open("/etc/systemd/system/yogurt-phone.service", encoding="utf-8") as unit:
        exec_start = next(line for line in unit if line.startswith("ExecStart=")).split("=", 1)[1].split()
    boot = sandbox.command(exec_start)  # what systemd would run at boot
    assert boot.returncode == 0, boot.stderr
    assert "created namespace" in boot.stdout
    call = run(sandbox, tmp_path, phones, playbook="playbooks/call.yml", args=())
    assert call.returncode == 0, call.stdout[-3000:]
    down = run(sandbox, tmp_path, phones, playbook="playbooks/teardown.yml", args=())
    assert down.returncode == 0, down.stdout[-3000:]
    for path in ("/etc/systemd/system/yogurt-phone.service", "/etc/yogurt-phone", "/usr/local/lib/yogurt-phone"):
        assert not os.path.exists(path), path
    assert our_netns(sandbox.prefix) == [] and our_pins(sandbox.prefix) == []


def test_host_side_route_is_reported_and_removed(sandbox, tmp_path):
    phones = [phone(sandbox.prefix, 0)]
    assert run(sandbox, tmp_path, phones).returncode == 0
    dev = f"{sandbox.prefix}0ah"
    sandbox.ip("route", "add", "10.42.0.0/24", "dev", dev)
    sandbox.ip("route", "add", "10.42.7.0/24", "dev", dev, "table", "100")
    sandbox.ip("addr", "add", "10.42.9.9/24", "dev", dev)  # its kernel routes go with the address
    report = run(sandbox, tmp_path, phones, yogurt_phone_host_addresses="report")
    assert report.returncode == 0 and "must carry no route" in report.stdout + report.stderr
    assert dev in sandbox.ip("route", "show", "table", "all").stdout
    fix = run(sandbox, tmp_path, phones)
    assert fix.returncode == 0 and recap(fix.stdout)["changed"] == 1, fix.stdout[-3000:]
    assert dev not in sandbox.ip("route", "show", "table", "all").stdout
    assert recap(run(sandbox, tmp_path, phones).stdout)["changed"] == 0


def test_metrics_timer_and_script_are_installed_idempotent_and_torn_down(sandbox, tmp_path):
    """yogurt_phone_metrics: true renders the units (systemd is not PID 1 here: not started)."""
    phones = [phone(sandbox.prefix, 0)]
    textdir = tmp_path / "textfile"
    opts = {"yogurt_phone_metrics": True, "yogurt_phone_metrics_dir": str(textdir),
            "yogurt_phone_metrics_interval": "30s"}
    units = ["/etc/systemd/system/yogurt-phone-metrics.service", "/etc/systemd/system/yogurt-phone-metrics.timer"]
    script = "/usr/local/lib/yogurt-phone/phone-metrics"
    dry = run(sandbox, tmp_path, phones, args=("--tags", "phones", "--check"), **opts)
    assert dry.returncode == 0, dry.stdout[-4000:]
    assert not any(os.path.exists(p) for p in units + [script, str(textdir)])  # check mode writes nothing

    res = run(sandbox, tmp_path, phones, **opts)
    assert res.returncode == 0, res.stdout[-4000:]
    assert os.stat(script).st_mode & 0o777 == 0o755
    with open(units[0], encoding="utf-8") as unit:
        exec_start = next(line for line in unit if line.startswith("ExecStart=")).split("=", 1)[1].split()
    assert exec_start[1:] == [script, "--pin-root", PINS, str(textdir)]
    with open(units[1], encoding="utf-8") as unit:
        timer = unit.read()
    assert "OnUnitActiveSec=30s" in timer and "WantedBy=timers.target" in timer
    if shutil.which("systemd-analyze"):  # systemd's own parser: the units load (no PID 1 needed)
        verify = subprocess.run(["systemd-analyze", "verify", "--man=no"] + units, capture_output=True, text=True,
                                check=False)
        assert verify.returncode == 0 and verify.stderr == "", verify.stderr
    assert recap(run(sandbox, tmp_path, phones, **opts).stdout)["changed"] == 0
    dry = run(sandbox, tmp_path, phones, args=("--tags", "phones", "--check"), **opts)
    assert recap(dry.stdout)["changed"] == 0, dry.stdout[-4000:]

    ran = sandbox.command(exec_start)  # what the timer would run
    assert ran.returncode == 0, ran.stderr
    prom = (textdir / "yogurt_phone.prom").read_text()
    assert f'yogurt_phone_up{{phone="{sandbox.prefix}-p0"}} 1' in prom, prom
    assert f'yogurt_phone_forwarded_packets_total{{phone="{sandbox.prefix}-p0",direction="0to1"}}' in prom, prom

    down = run(sandbox, tmp_path, phones, playbook="playbooks/teardown.yml", args=(), **opts)
    assert down.returncode == 0, down.stdout[-3000:]
    assert not any(os.path.exists(p) for p in units + [script, str(textdir / "yogurt_phone.prom")])
    assert our_netns(sandbox.prefix) == [] and our_pins(sandbox.prefix) == []


def test_the_role_runs_one_module_process_per_host(sandbox, tmp_path):
    """Compile, converge and call in one module run (not bpf_compile, phones and call): the
    interpreter of the host is a wrapper that logs every module process it starts."""
    log = tmp_path / "modules.log"
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\necho "$$ $*" >> {log}\nexec {VENV_BIN / "python"} "$@"\n')
    wrapper.chmod(0o755)
    phones = [phone(sandbox.prefix, 0)]

    def modules_of(args=("--tags", "phones"), **host_vars):
        res = run(sandbox, tmp_path, phones, args=args, ansible_python_interpreter=str(wrapper), **host_vars)
        assert res.returncode == 0, res.stdout[-4000:]
        started = log.read_text().splitlines() if log.exists() else []
        log.unlink(missing_ok=True)
        return res, started

    dry, started = modules_of(args=("--tags", "phones", "--check"))
    assert len(started) == 1, started
    assert "injection refused" not in dry.stdout and our_netns(sandbox.prefix) == []  # check mode: no call, nothing built
    first, started = modules_of()
    assert len(started) == 1, started
    assert recap(first.stdout)["changed"] == 1
    assert "ping 3/3 3/3 | tcp ok ok | injection refused 96/96 (0 reached)" in first.stdout, first.stdout[-4000:]
    again, started = modules_of()
    assert len(started) == 1, started
    assert recap(again.stdout)["changed"] == 0, again.stdout[-4000:]
    assert "injection refused 96/96" in again.stdout
    quiet, started = modules_of(yogurt_phone_call=False)
    assert len(started) == 1 and recap(quiet.stdout)["changed"] == 0, (started, quiet.stdout[-4000:])
    assert "injection refused" not in quiet.stdout and "ping 3/3" not in quiet.stdout, quiet.stdout[-4000:]
    assert f"localhost {sandbox.prefix}-p0: auto" in quiet.stdout, quiet.stdout[-4000:]  # the backend line, no call
