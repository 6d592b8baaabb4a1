# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Run yogurt.phone modules and playbooks the way a user would, or a module's main() directly."""

import json
import os
import subprocess

import yaml

from . import COLLECTIONS, ROOT, VENV_BIN

CALLBACKS = ROOT / "tests" / "kernel" / "callback_plugins"


def _in(ns, argv):
    return (["nsenter", f"--net={ns}", "--"] if ns else []) + [str(a) for a in argv]


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


def ansible_module(ns, name, args, check=False, diff=False, timeout=300):
    """yogurt.phone.<name> (or any FQCN) once, as `ansible localhost -m` runs it, in netns path `ns`."""
    fqcn = name if "." in name else f"yogurt.phone.{name}"
    argv = [VENV_BIN / "ansible", "localhost", "-m", fqcn, "-a", json.dumps(args)]
    argv += ["--check"] if check else []
    argv += ["--diff"] if diff else []
    env = ansible_env(ANSIBLE_STDOUT_CALLBACK="yogurt_test_json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
                      ANSIBLE_CALLBACK_PLUGINS=str(CALLBACKS))
    proc = subprocess.run(_in(ns, argv), cwd=ROOT, env=env, timeout=timeout, capture_output=True, text=True,
                          check=False)
    return AnsibleResult(proc)


def module_argv(ns, name, python=None):
    """The command that runs yogurt.phone.<name>'s main() as a plain process (arguments on stdin)."""
    return _in(ns, [python or VENV_BIN / "python", "-m", f"ansible_collections.yogurt.phone.plugins.modules.{name}"])


def module_env(collections=COLLECTIONS):
    return dict(os.environ, PYTHONPATH=str(collections))


def run_module(ns, name, args, timeout=120, collections=COLLECTIONS):
    """A module's main() with `args`, no ansible process around it; its result dict plus "rc".

    `collections`: the directory that holds ansible_collections/ (another tree: another version).
    The phones module keeps the host sides in the sandbox (switchboard ""), unless told."""
    if name == "phones":
        args = dict({"switchboard": ""}, **args)
    proc = subprocess.run(module_argv(ns, name), input=json.dumps({"ANSIBLE_MODULE_ARGS": args}),
                          capture_output=True, text=True, env=module_env(collections), timeout=timeout, check=False)
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"{name} printed no result (rc {proc.returncode}): {proc.stdout} {proc.stderr}") from None
    data["rc"] = proc.returncode
    return data


def ansible_playbook(ns, path, extra_args=(), timeout=900):
    argv = [VENV_BIN / "ansible-playbook", path] + list(extra_args)
    return subprocess.run(_in(ns, argv), cwd=ROOT, env=ansible_env(), timeout=timeout, capture_output=True,
                          text=True, check=False)


def write_inventory(tmp_path, phones, **host_vars):
    """One local host whose yogurt_phones are `phones`, host sides in the sandbox (the seed's
    layout, where the kernel proofs look for them) unless yogurt_phone_switchboard is given."""
    host = {"ansible_connection": "local", "ansible_python_interpreter": str(VENV_BIN / "python"),
            "yogurt_phones": phones, "yogurt_phone_switchboard": ""}
    host.update(host_vars)
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": host}}}))
    return path


def run_playbook(sandbox, tmp_path, phones, playbook="site.yml", args=("--tags", "phones"), **host_vars):
    """A playbook of this checkout over an inventory of `phones`, in the sandbox."""
    inv = write_inventory(tmp_path, phones, **host_vars)
    return sandbox.playbook(ROOT / playbook, ["-i", str(inv)] + list(args))


def recap(stdout, host="localhost"):
    """The PLAY RECAP counters of one host as a dict of ints."""
    for line in stdout.splitlines():
        if line.startswith(host) and "ok=" in line:
            return {k: int(v) for k, v in (f.split("=") for f in line.split(":", 1)[1].split())}
    raise AssertionError(f"no PLAY RECAP line for {host} in:\n{stdout[-3000:]}")
