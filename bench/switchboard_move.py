# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Seconds a converge takes to move N veth phones into the switchboard and back (one host).

Run in private mounts, as bench/run does (own /run and bpffs), as root:
    unshare --mount --propagation private -- sh -ec \
      'mount -t tmpfs tmpfs /run; mount -t bpf bpf /sys/fs/bpf; exec "$@"' sh \
      .venv/bin/python bench/switchboard_move.py [N]
The "host" is a sandbox namespace with only lo; each converge is one `python -m` run of the
phones module (its main(), arguments on stdin), timed from start to exit.
"""

import json
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
HOST = "swbench-host"


def phones(count):
    return [{"name": f"swb{i}", "backend": "veth", "ends": [
        {"netns": f"swb{i}-1", "host_ifname": f"swb{i}h1", "cont_ifname": f"swb{i}c1", "addresses": ["10.42.0.1/24"]},
        {"netns": f"swb{i}-2", "host_ifname": f"swb{i}h2", "cont_ifname": f"swb{i}c2", "addresses": ["10.42.0.2/24"]},
    ]} for i in range(count)]


def converge(args):
    started = time.monotonic()
    proc = subprocess.run(["nsenter", f"--net=/run/netns/{HOST}", "--", sys.executable, "-m",
                           "ansible_collections.yogurt.phone.plugins.modules.phones"],
                          input=json.dumps({"ANSIBLE_MODULE_ARGS": args}), capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT / ".ansible" / "collections")), check=False)
    took = time.monotonic() - started
    res = json.loads(proc.stdout)
    assert proc.returncode == 0 and not res.get("failed"), (proc.stdout[-2000:], proc.stderr[-2000:])
    return took, res


def main(count):
    out = subprocess.run([sys.executable, str(ROOT / "bpf" / "build.py"), str(ROOT / "bpf" / "wire_veth.bpf.c"),
                          "/tmp/swbench-obj"], capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["ip", "netns", "add", HOST], check=True)
    subprocess.run(["ip", "-n", HOST, "link", "set", "lo", "up"], check=True)
    specs = phones(count)
    base = {"phones": specs, "veth_object": out}
    try:
        rows = []
        for label, board in (("build in the host's namespace", ""), ("move into the switchboard", "yogurt-switchboard"),
                             ("re-run (no change)", "yogurt-switchboard"), ("move back to the host's namespace", ""),
                             ("move into the switchboard again", "yogurt-switchboard")):
            took, res = converge(dict(base, switchboard=board))
            rows.append(f"{count} phones, {label}: {took:.2f} s (changed={res['changed']})")
            print(rows[-1], flush=True)
        took, _res = converge({"phones": [], "exclusive": True, "switchboard": "yogurt-switchboard"})
        print(f"{count} phones, teardown: {took:.2f} s", flush=True)
    finally:
        subprocess.run(["ip", "netns", "del", HOST], check=False)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
