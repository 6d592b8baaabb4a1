# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A lab of netkit VMs from an inventory file, with one command up and one down.

    ./scripts/lab up   LAB.yml   # boot one VM per host of LAB.yml, then run site.yml on them
    ./scripts/lab call LAB.yml   # run playbooks/call.yml on the lab
    ./scripts/lab down LAB.yml   # run teardown.yml, then power every VM of the lab off

LAB.yml is an ordinary Ansible inventory: its host names name the VMs and its variables
(yogurt_phones, ...) are used as they are. A host variable `lab_vm_flavor` picks the VM's
image (tests/vm/build_image.sh): netkit (default, Debian 12 + 6.12), stock (Debian 12's own
6.1: the veth backend with tc filters) or trixie (Debian 13 + 7.x). The connection of each host (127.0.0.1, its own
ssh port, the image's key) goes into a second inventory, .cache/lab/<LAB>/connection.yml,
so that `ansible-playbook -i LAB.yml -i .cache/lab/<LAB>/connection.yml ...` reaches the lab.
VMs are the project's test VMs (tests/vm/: qemu TCG, NIC restrict=on); each image is built
once and cached.
"""

import json
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "vm"))
import vm as vm_harness  # noqa: E402  pylint: disable=wrong-import-position,import-error

PYTHON = ROOT / ".venv" / "bin" / "python"
PLAYBOOK = ROOT / ".venv" / "bin" / "ansible-playbook"


def inventory_data(inventory):
    out = subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-inventory"), "-i", str(inventory), "--list"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return json.loads(out)


def hosts_of(inventory, data=None):
    data = data or inventory_data(inventory)
    return sorted(data.get("_meta", {}).get("hostvars", {}).keys()
                  | {h for group in data.values() if isinstance(group, dict) for h in group.get("hosts", [])})


def flavors_of(inventory):
    """{host: image flavor}; a bad flavor fails before any VM boots."""
    data = inventory_data(inventory)
    hostvars = data.get("_meta", {}).get("hostvars", {})
    flavors = {host: hostvars.get(host, {}).get("lab_vm_flavor", vm_harness.DEFAULT_FLAVOR) for host in hosts_of(inventory, data)}
    bad = {host: flavor for host, flavor in flavors.items() if flavor not in vm_harness.FLAVORS}
    if bad:
        raise vm_harness.VMError(f"{inventory}: " + "; ".join(
            f"host {host}, lab_vm_flavor: {flavor!r} is not a VM flavor" for host, flavor in bad.items())
            + f" (use one of {', '.join(vm_harness.FLAVORS)})")
    return flavors


def lab_dir(inventory):
    return ROOT / ".cache" / "lab" / pathlib.Path(inventory).stem


def vm_name(inventory, host):
    return f"lab-{pathlib.Path(inventory).stem}-{host}"


def playbook(inventory, name):
    argv = [str(PLAYBOOK), "-i", str(inventory), "-i", str(lab_dir(inventory) / "connection.yml"), str(ROOT / name)]
    print("lab: " + " ".join(argv), flush=True)
    return subprocess.run(argv, cwd=ROOT, check=False).returncode


def up(inventory):
    try:
        flavors = flavors_of(inventory)
    except vm_harness.VMError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 2
    if not flavors:
        print(f"lab: {inventory} lists no hosts", file=sys.stderr)
        return 2
    started = time.monotonic()
    for flavor in sorted(set(flavors.values())):
        vm_harness.build(flavor=flavor)
    conn = {}
    for host, flavor in flavors.items():  # each boot waits for ssh; qemu TCG uses one core per VM
        machine = vm_harness.up(vm_name(inventory, host), detach=True, flavor=flavor)
        conn[host] = machine.facts()
        print(f"lab: {host} is up on 127.0.0.1:{machine.port}", flush=True)
    directory = lab_dir(inventory)
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["---", "all:", "  hosts:"]
    for host, facts in conn.items():
        lines.append(f"    {host}:")
        lines += [f"      {key}: {json.dumps(value)}" for key, value in facts.items()]
    (directory / "connection.yml").write_text("\n".join(lines) + "\n")
    print(f"lab: {len(flavors)} VM(s) up in {time.monotonic() - started:.0f} s", flush=True)
    return playbook(inventory, "site.yml")


def down(inventory):
    rc = 0
    if (lab_dir(inventory) / "connection.yml").exists():
        rc = playbook(inventory, "playbooks/teardown.yml")
    for host in hosts_of(inventory):
        if vm_harness.down(vm_name(inventory, host)):
            print(f"lab: {host} powered off", flush=True)
    subprocess.run(["rm", "-rf", str(lab_dir(inventory))], check=False)
    return rc


def main(argv):
    if len(argv) != 2 or argv[0] not in ("up", "down", "call"):
        print(__doc__, file=sys.stderr)
        return 2
    inventory = pathlib.Path(argv[1]).resolve()
    if argv[0] == "up":
        return up(inventory)
    if argv[0] == "call":
        return playbook(inventory, "playbooks/call.yml")
    return down(inventory)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
