# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Boot, reach and stop the test VMs under qemu TCG.

An image has a flavor (see build_image.sh): `netkit` (default: Debian bookworm with the
backports 6.12 kernel), `stock` (bookworm's own 6.1: no netkit, no tcx) or `trixie`
(trixie-backports 7.x), or a fresh-host flavor (`fresh-stock`, `fresh-bpo`, `fresh-trixie`:
python3 and ssh only, apt and pip configured for a proxy at 10.0.2.100:3128). Every command
takes --flavor; YOGURT_VM_FLAVOR sets the default.

Command line (run as root from the checkout, with its venv's python):

    python tests/vm/vm.py build [--flavor F]       # build the image (or print "cached")
    python tests/vm/vm.py up [--name N] [--json]   # boot a VM that outlives this command
    python tests/vm/vm.py ssh [--name N] [cmd...]  # a shell, or one command, in it
    python tests/vm/vm.py down [--name N | --all]  # power it off and remove its run dir
    python tests/vm/vm.py list                     # VMs that are up
    python tests/vm/vm.py run -- <cmd>             # boot a throwaway VM, run cmd, power off

From Python (pytest), a VM that cannot outlive its caller:

    with booted_vm(name="smoke") as vm:
        print(vm.run("uname -r").stdout)
        vm.write_inventory(path)          # an Ansible inventory for that VM

The cached base image is never written: each VM boots from a qcow2 overlay in its own run
dir, ~/.cache/yogurt-phone/run/<name>/ (pid, port, serial.log, qemu.log, overlay, inventory).
Its only NIC is qemu user-mode networking with restrict=on (no route off the machine) and a
single hostfwd from 127.0.0.1:<free port> to the VM's ssh. With proxy_port (up --proxy-port),
a guestfwd also lets the guest reach 10.0.2.100:3128, which is 127.0.0.1:<proxy_port> here
(tests/vm/proxy.py), and nothing else.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build_image.sh"
CACHE = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / "yogurt-phone"
RUN_ROOT = pathlib.Path(os.environ.get("YOGURT_VM_RUN", CACHE / "run"))
DEFAULT_NAME = "yogurt-vm"
FLAVORS = ("netkit", "stock", "trixie", "fresh-stock", "fresh-bpo", "fresh-trixie")
# The guest's side of the guestfwd to a proxy on this machine; the fresh-* images point apt
# and pip at http://10.0.2.100:3128 (build_image.sh, PROXY_URL).
PROXY_GUEST_ADDRESS = ("10.0.2.100", 3128)
HOST_CA_BUNDLE = pathlib.Path("/etc/ssl/certs/ca-certificates.crt")
DEFAULT_FLAVOR = os.environ.get("YOGURT_VM_FLAVOR", "netkit")
# Under TCG on a busy 2-core host a boot took up to ~200 s (37 s when idle).
BOOT_TIMEOUT = float(os.environ.get("YOGURT_VM_BOOT_TIMEOUT", 600))
SSH_OPTIONS = (
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR",
    "-o", "BatchMode=yes",
    "-o", "IdentitiesOnly=yes",
)
PR_SET_PDEATHSIG = 1


# What ssh says when it could not set up the connection, before any command ran.
# (Not "closed by remote host": that is also what a command that reboots the guest gets.)
SSH_CONNECT_FAILURES = ("during banner exchange", "Connection timed out", "Connection refused",
                        "kex_exchange_identification")


class VMError(RuntimeError):
    """The VM could not be built, booted, reached or stopped; the text says why."""


def build(quiet: bool = False, flavor: str = DEFAULT_FLAVOR) -> pathlib.Path:
    """Build the image of `flavor` if it is not cached yet; return its directory.

    Progress goes to stderr (stdout stays clean for `up --json`), or nowhere when quiet.
    """
    if flavor not in FLAVORS:
        raise VMError(f"unknown VM flavor {flavor!r}: use one of {', '.join(FLAVORS)}")
    process = subprocess.Popen([str(BUILD_SCRIPT), flavor], text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if not quiet:
            print(line, end="", file=sys.stderr, flush=True)
    returncode = process.wait()
    if returncode != 0 or not lines:
        raise VMError(f"building the VM image with {BUILD_SCRIPT} failed (exit {returncode}):\n" + "\n".join(lines[-40:]))
    return pathlib.Path(lines[-1])


def image_hash(flavor: str = DEFAULT_FLAVOR) -> str:
    """The cache key build_image.sh uses: sha256 of itself (package lists, kernels) and the flavor.

    The fresh-host lines (between the ">>> fresh-host" and "<<< fresh-host" markers) count only
    for the fresh-* flavors, which also cover this machine's CA bundle (they carry a copy).
    """
    script = BUILD_SCRIPT.read_bytes()
    if flavor.startswith("fresh-"):
        ca_line = f"{hashlib.sha256(HOST_CA_BUNDLE.read_bytes()).hexdigest()}  -\n".encode()
        return hashlib.sha256(script + f"flavor={flavor}\n".encode() + ca_line).hexdigest()[:16]
    kept, skipping = [], False
    for line in script.splitlines(keepends=True):
        if line.startswith(b"# >>> fresh-host"):
            skipping = True
        if not skipping:
            kept.append(line)
        if line.startswith(b"# <<< fresh-host"):
            skipping = False
    return hashlib.sha256(b"".join(kept) + f"flavor={flavor}\n".encode()).hexdigest()[:16]


def image_name(flavor: str = DEFAULT_FLAVOR) -> str:
    """The directory name of the flavor's image in the cache."""
    return f"{flavor}-{image_hash(flavor)}"


def prune() -> list[pathlib.Path]:
    """Delete cached images other than the current one that no running qemu uses; return them."""
    vm_cache = pathlib.Path(os.environ.get("YOGURT_VM_CACHE", CACHE / "vm"))
    in_use = set()
    for cmdline in pathlib.Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            in_use.update(arg for arg in cmdline.read_bytes().decode(errors="replace").split("\0") if str(vm_cache) in arg)
    removed = []
    for image_dir in sorted(vm_cache.iterdir()) if vm_cache.is_dir() else []:
        if not image_dir.is_dir() or image_dir.name.startswith(".") or image_dir.name in map(image_name, FLAVORS):
            continue
        if any(str(image_dir) + "/" in arg for arg in in_use):
            continue
        shutil.rmtree(image_dir)
        removed.append(image_dir)
    return removed


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pid_alive(pid: int, run_dir: pathlib.Path) -> bool:
    """Whether pid is still the qemu of run_dir (and not a recycled pid or a zombie)."""
    try:
        cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
        status = pathlib.Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    if "\nState:\tZ" in status:
        return False
    return str(run_dir).encode() in cmdline


def _die_with_parent(parent: int):
    """Child side of Popen: qemu gets SIGKILL when the Python process that started it dies."""

    def preexec():
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


_OWNED: dict[str, "VM"] = {}


def _kill_owned():
    for vm in list(_OWNED.values()):
        vm.kill()


def _exit_on_signal(signum, _frame):
    # KeyboardInterrupt, not SystemExit: pytest ends the session on it (fixtures torn down, VMs
    # killed), where a SystemExit in a module fixture is an error of one test, and the next test
    # set the fixture up again: a run whose other layer had failed booted 4 VMs once more per
    # test of tests/fresh, for 35 minutes after the suite had ended (CI of stop 20, and again).
    raise KeyboardInterrupt(f"signal {signum}")


def _install_cleanup():
    """Make SIGTERM/SIGHUP unwind (finally blocks, atexit) instead of killing Python outright."""
    atexit.register(_kill_owned)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError):  # not in the main thread
            if signal.getsignal(signum) == signal.SIG_DFL:
                signal.signal(signum, _exit_on_signal)


class VM:
    """One VM: its run dir, its qemu process and how to reach it over ssh."""

    def __init__(self, name: str, run_dir: pathlib.Path, image_dir: pathlib.Path, port: int, pid: int):
        self.name = name
        self.run_dir = run_dir
        self.image_dir = image_dir
        self.port = port
        self.pid = pid
        self.process: subprocess.Popen | None = None

    # --- state on disk -------------------------------------------------------------------
    @classmethod
    def load(cls, name: str) -> "VM":
        run_dir = RUN_ROOT / name
        try:
            state = json.loads((run_dir / "vm.json").read_text())
        except (OSError, ValueError) as exc:
            raise VMError(f"no VM named {name!r} is up (no state in {run_dir}); start one with: vm.py up --name {name}") from exc
        return cls(name, run_dir, pathlib.Path(state["image_dir"]), state["port"], state["pid"])

    def _save(self):
        (self.run_dir / "pid").write_text(f"{self.pid}\n")
        (self.run_dir / "port").write_text(f"{self.port}\n")
        (self.run_dir / "vm.json").write_text(json.dumps(
            {"name": self.name, "pid": self.pid, "port": self.port, "image_dir": str(self.image_dir),
             **self.facts()}, indent=2) + "\n")

    @property
    def key(self) -> pathlib.Path:
        return self.image_dir / "id_ed25519"

    @property
    def serial_log(self) -> pathlib.Path:
        return self.run_dir / "serial.log"

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return _pid_alive(self.pid, self.run_dir)

    # --- reaching it -----------------------------------------------------------------------
    def facts(self) -> dict:
        """Connection facts, as Ansible host variables."""
        return {
            "ansible_host": "127.0.0.1",
            "ansible_port": self.port,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.key),
            "ansible_python_interpreter": "/usr/bin/python3",
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        }

    def inventory(self) -> str:
        """A YAML Ansible inventory with this VM as its only host (named after the VM)."""
        lines = ["all:", "  hosts:", f"    {self.name}:"]
        lines += [f"      {key}: {json.dumps(value)}" for key, value in self.facts().items()]
        return "\n".join(lines) + "\n"

    def write_inventory(self, path: os.PathLike | str | None = None) -> pathlib.Path:
        path = pathlib.Path(path) if path else self.run_dir / "inventory.yml"
        path.write_text(self.inventory())
        return path

    def ssh_argv(self, *command: str, timeout: int = 10) -> list[str]:
        return [
            "ssh", *SSH_OPTIONS,
            "-o", f"ConnectTimeout={timeout}",
            # One TCP+ssh handshake for many commands: each costs ~1 s in the TCG guest.
            "-o", "ControlMaster=auto", "-o", f"ControlPath={self.run_dir}/ssh.sock", "-o", "ControlPersist=120",
            "-i", str(self.key), "-p", str(self.port), "root@127.0.0.1", *command,
        ]

    def run(self, command: str, check: bool = True, timeout: float = 600, input: str | None = None) -> subprocess.CompletedProcess:
        """Run a shell command in the VM; return the completed process (text stdout/stderr).

        ssh's own failures to connect (exit 255 before the command ran: the TCG guest too busy
        to send its banner within ConnectTimeout, seen at host load 37) are tried again, up to
        3 times; any other failure is the command's and is returned or raised at once.
        """
        for attempt in range(4):
            result = subprocess.run(self.ssh_argv(command, timeout=10 + 20 * attempt), check=False, text=True,
                                    capture_output=True, timeout=timeout, input=input,
                                    stdin=None if input is not None else subprocess.DEVNULL)
            if result.returncode != 255 or not any(text in result.stderr for text in SSH_CONNECT_FAILURES):
                break
            time.sleep(2)
        if check and result.returncode != 0:
            raise VMError(f"in VM {self.name!r}: {command!r} exited {result.returncode}\n"
                          f"stdout: {result.stdout.strip()}\nstderr: {result.stderr.strip()}")
        return result

    def serial_tail(self, lines: int = 40) -> str:
        try:
            text = self.serial_log.read_text(errors="replace")
        except OSError:
            return "(no serial log)"
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, timeout: float = BOOT_TIMEOUT):
        """Poll ssh until `true` succeeds in the VM."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise VMError(f"qemu of VM {self.name!r} exited during boot.\nqemu.log:\n"
                              f"{(self.run_dir / 'qemu.log').read_text(errors='replace')[-2000:]}\n"
                              f"serial log tail:\n{self.serial_tail()}")
            try:
                result = subprocess.run(self.ssh_argv("true", timeout=5), check=False, capture_output=True,
                                        stdin=subprocess.DEVNULL, timeout=30)
            except subprocess.TimeoutExpired:
                continue
            if result.returncode == 0:
                return
            time.sleep(1)
        raise VMError(f"VM {self.name!r} did not answer ssh on 127.0.0.1:{self.port} within {timeout:.0f} s.\n"
                      f"serial log tail ({self.serial_log}):\n{self.serial_tail()}")

    # --- stopping it -----------------------------------------------------------------------
    def _wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                return True
            time.sleep(0.2)
        return not self.alive()

    def _signal(self, signum: int):
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signum)
        elif _pid_alive(self.pid, self.run_dir):
            os.kill(self.pid, signum)

    def kill(self):
        """Stop qemu now, without asking the guest (cleanup path)."""
        self._signal(signal.SIGKILL)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        else:
            self._wait_gone(10)
        _OWNED.pop(self.name, None)

    def shutdown(self, timeout: float = 60, keep_run_dir: bool = False):
        """Power the guest off over ssh, wait for qemu to exit; SIGTERM, then SIGKILL, if it does not."""
        try:
            if self.alive():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    subprocess.run(self.ssh_argv("systemctl poweroff --no-block", timeout=5), check=False,
                                   capture_output=True, stdin=subprocess.DEVNULL, timeout=20)
                if not self._wait_gone(timeout):
                    self._signal(signal.SIGTERM)
                    if not self._wait_gone(5):
                        self.kill()
        finally:
            self.kill()  # reaps our child; a no-op when it is gone
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                subprocess.run(["ssh", "-o", f"ControlPath={self.run_dir}/ssh.sock", "-O", "exit", "x"],
                               check=False, capture_output=True, stdin=subprocess.DEVNULL, timeout=5)
            if not keep_run_dir:
                shutil.rmtree(self.run_dir, ignore_errors=True)


def _qemu_argv(run_dir: pathlib.Path, image_dir: pathlib.Path, port: int, memory: int, cpus: int,
               proxy_port: int | None = None) -> list[str]:
    nic = f"user,model=virtio-net-pci,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22"
    if proxy_port is not None:
        # restrict=on still honours a guestfwd: the guest reaches this one service on 127.0.0.1
        # (a new nc per connection) and nothing else. -N passes the guest's end of input on.
        guest_address, guest_port = PROXY_GUEST_ADDRESS
        nic += f",guestfwd=tcp:{guest_address}:{guest_port}-cmd:nc -N 127.0.0.1 {int(proxy_port)}"
    return [
        "qemu-system-x86_64",
        # thread=multi panicked one boot in four (int3 while the kernel patches itself).
        "-accel", "tcg,thread=single", "-cpu", "max", "-smp", str(cpus), "-m", str(memory),
        "-kernel", str(image_dir / "vmlinuz"), "-initrd", str(image_dir / "initrd.img"),
        "-append", "root=/dev/vda rw console=ttyS0 quiet net.ifnames=0",
        "-drive", f"file={run_dir / 'overlay.qcow2'},format=qcow2,if=virtio,cache=unsafe",
        # restrict=on: the guest reaches nothing outside; only the ssh hostfwd comes in (and,
        # with proxy_port, the guestfwd goes out to that one port on 127.0.0.1).
        "-nic", nic,
        "-display", "none", "-monitor", "none", "-serial", f"file:{run_dir / 'serial.log'}",
        "-name", f"yogurt-vm-{run_dir.name}",
    ]


def up(name: str = DEFAULT_NAME, *, detach: bool = False, image_dir: pathlib.Path | None = None,
       memory: int = 2048, cpus: int = 2, boot_timeout: float = BOOT_TIMEOUT, quiet_build: bool = False,
       flavor: str = DEFAULT_FLAVOR, proxy_port: int | None = None, wait: bool = True) -> VM:
    """Boot VM `name` and wait until ssh works (wait=False: return once qemu runs; the caller
    then calls vm.wait_ready(), e.g. from threads to boot several VMs side by side).

    proxy_port: a port on 127.0.0.1 (a proxy the caller runs) that the guest reaches as
    10.0.2.100:3128 through a guestfwd; the NIC keeps restrict=on.

    detach=False: qemu dies with this Python process (pdeathsig, atexit, SIGTERM handler).
    detach=True: qemu outlives it (the `up` command); stop it with down(name).
    """
    if shutil.which("qemu-system-x86_64") is None or shutil.which("qemu-img") is None:
        raise VMError("qemu-system-x86_64/qemu-img not found; install qemu-system-x86 and qemu-utils (./scripts/setup --test)")
    if image_dir is None and os.environ.get("YOGURT_VM_IMAGE"):
        image_dir = pathlib.Path(os.environ["YOGURT_VM_IMAGE"])
        if not (image_dir / "complete").exists():
            raise VMError(f"YOGURT_VM_IMAGE={image_dir} is not a complete image dir; unset it or run: vm.py build")
    if image_dir is None:
        image_dir = build(quiet=quiet_build, flavor=flavor)
    run_dir = RUN_ROOT / name
    RUN_ROOT.mkdir(parents=True, exist_ok=True)
    with open(RUN_ROOT / ".lock", "w") as lock:
        # The lock makes "is the name free, which port is free, start qemu" one step per caller.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if run_dir.exists():
            try:
                old = VM.load(name)
            except VMError:
                old = None  # a run dir without state: a boot that died early
            if old is not None and old.alive():
                raise VMError(f"a VM named {name!r} is already up (pid {old.pid}, port {old.port}); "
                              f"use it, pick another name, or stop it with: vm.py down --name {name}")
            shutil.rmtree(run_dir)  # stale: its qemu is gone
        run_dir.mkdir(parents=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image_dir / "rootfs.img"), "-F", "raw",
                        str(run_dir / "overlay.qcow2")], check=True)
        port = _free_port()
        qemu_log = open(run_dir / "qemu.log", "w")
        if proxy_port is not None and shutil.which("nc") is None:
            raise VMError("the proxy guestfwd needs nc on this machine; install netcat-openbsd (./scripts/setup --test)")
        argv = _qemu_argv(run_dir, image_dir, port, memory, cpus, proxy_port)
        if detach:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                       stdout=qemu_log, stderr=subprocess.STDOUT, start_new_session=True)
        else:
            _install_cleanup()
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                       stdout=qemu_log, stderr=subprocess.STDOUT,
                                       preexec_fn=_die_with_parent(os.getpid()))
        qemu_log.close()
        vm = VM(name, run_dir, image_dir, port, process.pid)
        vm.process = process
        if not detach:
            _OWNED[name] = vm
        vm._save()
    if not wait:
        return vm
    try:
        vm.wait_ready(boot_timeout)
    except BaseException:
        vm.kill()
        if not detach:
            raise
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    vm.write_inventory()
    if detach:
        vm.process = None  # from now on it is found by pid, like from any other process
    return vm


def down(name: str = DEFAULT_NAME, timeout: float = 60) -> bool:
    """Power off VM `name`; return False if it was not up."""
    try:
        vm = VM.load(name)
    except VMError:
        return False
    was_up = vm.alive()
    vm.shutdown(timeout=timeout)
    return was_up


def running() -> list[VM]:
    vms = []
    for state in sorted(RUN_ROOT.glob("*/vm.json")):
        with contextlib.suppress(VMError):
            vm = VM.load(state.parent.name)
            if vm.alive():
                vms.append(vm)
    return vms


@contextlib.contextmanager
def booted_vm(name: str = DEFAULT_NAME, *, keep_run_dir: bool = False, shutdown_timeout: float = 60, **kwargs):
    """A booted VM for the duration of the with-block; qemu is gone afterwards, on every exit path."""
    vm = up(name, detach=False, **kwargs)
    try:
        yield vm
    finally:
        vm.shutdown(timeout=shutdown_timeout, keep_run_dir=keep_run_dir)


@contextlib.contextmanager
def booted_vms(specs: list[dict], shutdown_timeout: float = 60, boot_timeout: float = BOOT_TIMEOUT):
    """Several VMs booted side by side: specs are up() keyword arguments (name=... required).

    Every qemu is started from the calling thread (its PR_SET_PDEATHSIG follows that thread),
    then all boots are awaited in parallel. Yields the VMs in the order of specs; every one is
    powered off afterwards, on every exit path, also when another one failed to boot.
    """
    import concurrent.futures  # pylint: disable=import-outside-toplevel

    vms: list[VM] = []
    pool = concurrent.futures.ThreadPoolExecutor(max(1, len(specs)))
    try:
        for spec in specs:
            spec = dict(spec)
            vms.append(up(spec.pop("name"), detach=False, wait=False, **spec))
        for future in [pool.submit(vm.wait_ready, boot_timeout) for vm in vms]:
            future.result()
        for vm in vms:
            vm.write_inventory()
        yield vms
    finally:
        # Not `with pool`: on an error or a signal its exit would wait for the other boots.
        # Killed VMs end their wait_ready loops (qemu gone) at once.
        pool.shutdown(wait=False, cancel_futures=True)
        with concurrent.futures.ThreadPoolExecutor(max(1, len(vms))) as pool:
            list(pool.map(lambda vm: vm.shutdown(timeout=shutdown_timeout), vms))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vm.py", description="The yogurt.phone test VMs (qemu, TCG).")
    sub = parser.add_subparsers(dest="command", required=True)
    p_build = sub.add_parser("build", help="build the image, or print 'cached'")
    p_build.add_argument("--flavor", choices=FLAVORS, default=DEFAULT_FLAVOR)
    p_up = sub.add_parser("up", help="boot a VM that outlives this command")
    p_up.add_argument("--flavor", choices=FLAVORS, default=DEFAULT_FLAVOR)
    p_up.add_argument("--name", default=DEFAULT_NAME)
    p_up.add_argument("--json", action="store_true", help="print the connection facts as JSON")
    p_up.add_argument("--memory", type=int, default=2048, help="MiB (default 2048)")
    p_up.add_argument("--proxy-port", type=int, help="guestfwd 10.0.2.100:3128 to this port on 127.0.0.1 (a proxy you run)")
    p_ssh = sub.add_parser("ssh", help="a shell, or one command, in a VM that is up")
    p_ssh.add_argument("--name", default=DEFAULT_NAME)
    p_ssh.add_argument("cmd", nargs=argparse.REMAINDER)
    p_down = sub.add_parser("down", help="power a VM off and remove its run dir")
    p_down.add_argument("--name", default=DEFAULT_NAME)
    p_down.add_argument("--all", action="store_true")
    sub.add_parser("list", help="VMs that are up")
    sub.add_parser("prune", help="delete cached images other than the current ones (unless a VM uses them)")
    p_run = sub.add_parser("run", help="boot a throwaway VM, run a command in it, power it off")
    p_run.add_argument("--name", default="run-%d" % os.getpid())
    p_run.add_argument("--flavor", choices=FLAVORS, default=DEFAULT_FLAVOR)
    p_run.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)

    try:
        if args.command == "build":
            build(quiet=False, flavor=args.flavor)  # its last line is the image dir
        elif args.command == "up":
            started = time.monotonic()
            vm = up(args.name, detach=True, memory=args.memory, flavor=args.flavor, proxy_port=args.proxy_port)
            if args.json:
                print(json.dumps({"name": vm.name, "run_dir": str(vm.run_dir), "pid": vm.pid,
                                  "inventory": str(vm.run_dir / "inventory.yml"), **vm.facts()}, indent=2))
            else:
                print(f"VM {vm.name!r} up in {time.monotonic() - started:.0f} s: ssh on 127.0.0.1:{vm.port}, pid {vm.pid}")
                print(f"  inventory: {vm.run_dir / 'inventory.yml'}")
                print(f"  serial log: {vm.serial_log}")
                print(f"  shell: {pathlib.Path(sys.executable).name} {sys.argv[0]} ssh --name {vm.name}")
        elif args.command == "ssh":
            vm = VM.load(args.name)
            if not vm.alive():
                raise VMError(f"VM {args.name!r} is not running (stale state in {vm.run_dir}); run: vm.py down --name {args.name}")
            cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
            argv = vm.ssh_argv(*([" ".join(cmd)] if cmd else []))  # like ssh: args joined by spaces
            if not cmd:
                argv.insert(1, "-t")
            os.execvp(argv[0], argv)
        elif args.command == "down":
            names = [vm.name for vm in running()] + [p.name for p in RUN_ROOT.glob("*") if p.is_dir()] if args.all else [args.name]
            for name in dict.fromkeys(names):
                print(f"VM {name!r}: {'powered off' if down(name) else 'was not up'}")
        elif args.command == "list":
            for vm in running():
                print(f"{vm.name}\tpid {vm.pid}\t127.0.0.1:{vm.port}\t{vm.run_dir}")
        elif args.command == "prune":
            for image_dir in prune():
                print(f"removed {image_dir}")
        elif args.command == "run":
            cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
            if not cmd:
                parser.error("run needs a command: vm.py run -- uname -r")
            with booted_vm(args.name, flavor=args.flavor) as vm:
                return subprocess.run(vm.ssh_argv(" ".join(cmd)), check=False).returncode
    except VMError as exc:
        print(f"vm.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
