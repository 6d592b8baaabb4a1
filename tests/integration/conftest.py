"""Fixtures for integration tests that run real modules against the real kernel.

Every test that plays "the host" runs Ansible inside a throwaway network namespace (the
sandbox) that has only a loopback device, so nothing it does can route off this machine
(DESIGN.md section 3). Names carry a random prefix so that runs never collide with each
other or with a phone that a user built on this machine, and everything is removed in a
finalizer, whether the test passed or not.
"""

import json
import os
import pathlib
import subprocess
import sys
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
# The controller that runs the playbooks and modules: .venv, or another venv (YOGURT_VENV=),
# as the controllers layer of scripts/test does to converge on each ansible-core line.
VENV_BIN = pathlib.Path(os.environ.get("YOGURT_VENV") or ROOT / ".venv") / "bin"
BPFFS_ROOT = "/sys/fs/bpf/yogurt"


def _netns_names():
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


class AnsibleResult:
    """What one ad-hoc module call returned, read from the yogurt_test_json callback."""

    def __init__(self, proc):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.data = {}
        for line in proc.stdout.splitlines():
            if line.startswith("YOGURT_RESULT "):
                self.data = json.loads(line.split(" ", 1)[1])["result"]
                break

    def __getitem__(self, key):
        return self.data[key]

    def get(self, key, default=None):
        return self.data.get(key, default)

    @property
    def changed(self):
        return bool(self.data.get("changed"))

    @property
    def failed(self):
        return self.rc != 0 or bool(self.data.get("failed"))

    def __repr__(self):
        return f"AnsibleResult(rc={self.rc}, data={self.data!r}, stderr={self.stderr[-2000:]!r})"


class Sandbox:
    """A network namespace standing in for the host's own namespace."""

    def __init__(self, name, prefix):
        self.name = name
        self.prefix = prefix
        self.path = f"/run/netns/{name}"

    def command(self, argv, **kwargs):
        """Run argv with the sandbox as its network namespace."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        check = kwargs.pop("check", False)
        return subprocess.run(["nsenter", f"--net={self.path}", "--"] + list(argv), check=check, **kwargs)

    def ip(self, *args, check=True):
        proc = self.command(["ip"] + list(args))
        if check and proc.returncode != 0:
            raise AssertionError(f"ip {' '.join(args)} failed: {proc.stderr}")
        return proc

    def module(self, name, args, check=False, diff=False, timeout=300):
        """Run yogurt.phone.<name> (or a full FQCN) once, as `ansible -m` would."""
        fqcn = name if "." in name else f"yogurt.phone.{name}"
        argv = [str(VENV_BIN / "ansible"), "localhost", "-m", fqcn, "-a", json.dumps(args)]
        if check:
            argv.append("--check")
        if diff:
            argv.append("--diff")
        env = ansible_env(
            ANSIBLE_STDOUT_CALLBACK="yogurt_test_json",
            ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
            ANSIBLE_CALLBACK_PLUGINS=str(ROOT / "tests" / "integration" / "callback_plugins"),
        )
        return AnsibleResult(self.command(argv, cwd=ROOT, env=env, timeout=timeout))

    def playbook(self, playbook, extra_args=(), timeout=900):
        argv = [str(VENV_BIN / "ansible-playbook"), str(playbook)] + list(extra_args)
        return self.command(argv, cwd=ROOT, env=ansible_env(), timeout=timeout)


def ansible_env(**extra):
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_DEPRECATION_WARNINGS="0",
        PATH=f"{VENV_BIN}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
    )
    env.update(extra)
    return env


def recap(stdout, host="localhost"):
    """The PLAY RECAP counters of one host as a dict of ints."""
    for line in stdout.splitlines():
        if line.startswith(host) and "ok=" in line:
            return {k: int(v) for k, v in (f.split("=") for f in line.split(":", 1)[1].split())}
    raise AssertionError(f"no PLAY RECAP line for {host} in:\n{stdout[-3000:]}")


@pytest.fixture
def prefix():
    """A short random prefix: 'yt' + 5 hex digits leaves room for ifname suffixes."""
    return "yt" + uuid.uuid4().hex[:5]


@pytest.fixture
def sandbox(prefix):
    if os.geteuid() != 0:
        pytest.fail("integration tests need root (they create network namespaces)")
    name = f"{prefix}-sbx"
    before = _netns_names()
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    box = Sandbox(name, prefix)
    try:
        yield box
    finally:
        # Everything this test made carries the prefix: namespaces, then bpffs pins.
        for ns in sorted(_netns_names() - before):
            if ns.startswith(prefix) and ns != name:
                subprocess.run(["ip", "netns", "del", ns], check=False)
        subprocess.run(["ip", "netns", "del", name], check=False)
        # The switchboard this test's phones used, once nothing of any phone is left in it.
        board = subprocess.run(["ip", "-n", "yogurt-switchboard", "-j", "link", "show"], capture_output=True,
                               text=True, check=False)
        if board.returncode == 0 and [d["ifname"] for d in json.loads(board.stdout or "[]")] == ["lo"]:
            subprocess.run(["ip", "netns", "del", "yogurt-switchboard"], check=False)
        for entry in pathlib.Path(BPFFS_ROOT).glob(f"{prefix}*"):
            subprocess.run(["rm", "-rf", str(entry)], check=False)
        for record in pathlib.Path("/run/yogurt/phones").glob(f"{prefix}*"):  # .json and .tmp
            record.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def veth_object(tmp_path_factory):
    """The compiled veth wire, once per session (bpf_build names it by content hash)."""
    from ansible_collections.yogurt.phone.plugins.module_utils._bpf_build import build_files

    paths = [str(ROOT / "bpf" / "wire.h"), str(ROOT / "bpf" / "wire_veth.bpf.c")]
    return build_files(paths, ["wire_veth.bpf.c"], str(tmp_path_factory.mktemp("bpf")))["wire_veth"]


def build_object(src, outdir):
    """Compile one wire source with bpf/build.py; the object's path."""
    proc = subprocess.run([sys.executable, str((ROOT / "bpf") / "build.py"), str(src), str(outdir)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.fixture(scope="session")
def objects(tmp_path_factory):
    """The veth object, and a variant whose wire_in differs by one instruction."""
    out = tmp_path_factory.mktemp("bpf")
    base = build_object((ROOT / "bpf") / "wire_veth.bpf.c", out / "base")
    variant_dir = out / "variant"
    variant_dir.mkdir()
    (variant_dir / "wire.h").write_text(((ROOT / "bpf") / "wire.h").read_text())
    src = ((ROOT / "bpf") / "wire_veth.bpf.c").read_text()
    assert "skb->priority = 0;" in src
    (variant_dir / "wire_veth.bpf.c").write_text(src.replace("skb->priority = 0;", "skb->priority = 1;"))
    variant = build_object(variant_dir / "wire_veth.bpf.c", out / "variant_out")
    return {"base": base, "variant": variant}
