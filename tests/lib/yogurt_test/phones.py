# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One phone factory: inventory specs for the phones module and site.yml, and hand-built veth
phones (two yogurts, two pairs, no wire yet) for the wire module; counters and pins."""

import pathlib
import subprocess

from ansible_collections.yogurt.phone.plugins.module_utils import _wire as wire
from ansible_collections.yogurt.phone.plugins.module_utils._call import read_counters

from .netns import mac_of, ping, run

PIN_ROOT = pathlib.Path(wire.PIN_ROOT)


def phone_spec(prefix, index, state="present", octet=42, **extra):
    """An inventory phone named from `prefix` (backend auto unless `extra` says otherwise)."""
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


def veth_phone(prefix, index, **extra):
    return phone_spec(prefix, index, backend="veth", **extra)


def ends_of(spec):
    """[(netns, host_ifname, cont_ifname, ip)] of a phone spec."""
    return [(e["netns"], e["host_ifname"], e["cont_ifname"], e["addresses"][0].split("/")[0]) for e in spec["ends"]]


def converge(sandbox, phones, obj, **extra):
    """yogurt.phone.phones over `phones` (veth object `obj`), through ansible; must not fail.

    The host sides stay in the sandbox (switchboard ""), where the kernel proofs look for them,
    unless `switchboard` is given (tests/kernel/test_switchboard.py)."""
    extra.setdefault("switchboard", "")
    res = sandbox.module("phones", dict(phones=phones, veth_object=obj, **extra))
    assert not res.failed, res
    return res


def counters(sandbox, name=None):
    """{phone: counters} from yogurt.phone.phone_info (one phone, or all)."""
    res = sandbox.run_module("phone_info", {"name": name} if name else {})
    assert res["rc"] == 0 and not res.get("failed"), res
    return {p["phone"]: p["counters"] for p in res["phones"]}


def delta(before, after, key):
    return after.get(key, 0) - before.get(key, 0)


def refusals(phone_name):
    """The phone's counters read straight from its pinned map (milliseconds, no module run)."""
    out = read_counters(phone_name)
    assert out is not None, f"phone {phone_name} has no pinned counters"
    return out


def pins_of(name):
    """The names pinned in a phone's bpffs directory."""
    path = PIN_ROOT / name
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


def report(request, text):
    """Numbers for the final report: printed with -s, and kept on the test's report."""
    print(text)
    request.node.user_properties.append(("measured", text))


class VethPhone:
    """Two yogurts, two veth pairs, host sides in the sandbox; no wire yet (the wire module adds it)."""

    def __init__(self, sandbox, prefix, obj):
        self.sandbox = sandbox
        self.name = prefix
        self.obj = obj
        self.yogurts = [f"{prefix}-y1", f"{prefix}-y2"]
        self.host = [f"{prefix}h1", f"{prefix}h2"]
        self.cont = [f"{prefix}c1", f"{prefix}c2"]
        self.addr = ["10.42.0.1", "10.42.0.2"]
        for ns in self.yogurts:
            subprocess.run(["ip", "netns", "add", ns], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        for i in range(2):
            self.make_pair(i)

    def make_pair(self, i):
        sb = self.sandbox
        sb.ip("link", "add", self.host[i], "type", "veth", "peer", "name", self.cont[i], "netns", self.yogurts[i])
        sb.ip("link", "set", self.host[i], "addrgenmode", "none", "up")
        subprocess.run(["ip", "-n", self.yogurts[i], "addr", "add", f"{self.addr[i]}/24", "dev", self.cont[i]],
                       check=True)
        subprocess.run(["ip", "-n", self.yogurts[i], "link", "set", self.cont[i], "up"], check=True)

    def args(self, obj=None, **extra):
        ends = [{"host_ifname": self.host[i], "cont_netns": self.yogurts[i], "cont_ifname": self.cont[i]}
                for i in range(2)]
        return dict(phone=self.name, backend="veth", object=obj or self.obj, ends=ends, **extra)

    def wire(self, obj=None, check=False, **extra):
        res = self.sandbox.module("wire", self.args(obj, **extra), check=check)
        assert not res.failed, res
        return res

    def info(self):
        res = self.sandbox.module("phone_info", {"name": self.name})
        assert not res.failed, res
        return res["phones"][0] if res["phones"] else None

    def ping(self, src, count=3, interval="0.2"):
        """Echo replies received by yogurt `src` pinging the other one."""
        replies, out = ping(self.yogurts[src], self.addr[1 - src], count=count, interval=interval)
        assert "packets transmitted" in out, out
        return replies

    def cont_mac(self, i):
        return mac_of(self.yogurts[i], self.cont[i])

    def flush_neighbours(self):
        """Failed attempts may leave unresolved neighbour entries in the yogurts."""
        for ns in self.yogurts:
            run(ns, ["ip", "neigh", "flush", "all"], check=True)
