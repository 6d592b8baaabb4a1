# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Edge cases of module_utils/_netkit.py, run inside the netkit VM in one python3 process.

Usage: python3 edge_cases.py COLLECTIONS_DIR PREFIX. Everything happens inside two
namespaces named after PREFIX (a stand-in host namespace and a peer namespace), removed at
the end. Prints one JSON object: case name -> {"ok": result} or {"error": message}.
"""

import json
import subprocess
import sys
import time

sys.path.insert(0, sys.argv[1])
PREFIX = sys.argv[2]

from ansible_collections.yogurt.phone.plugins.module_utils import _netkit as nk  # noqa: E402
from ansible_collections.yogurt.phone.plugins.module_utils._netns import (  # noqa: E402
    create_netns, delete_netns, enter_netns, list_netns)

HOST_NS, PEER_NS = f"{PREFIX}-sbx", f"{PREFIX}-y1"
cases = {}


def case(name, spec, check_mode=False, recreate=False, remove=False):
    started = time.monotonic()
    try:
        if remove:
            out = nk.remove_netkit(spec, check_mode)
        else:
            out = nk.converge_netkit(spec, check_mode, recreate=recreate)
        cases[name] = {"ok": {k: out[k] for k in ("changed", "actions", "netkit")}}
    except nk.NetkitError as exc:
        cases[name] = {"error": str(exc)}
    cases[name]["seconds"] = round(time.monotonic() - started, 3)


def ip(args):
    return subprocess.run(["ip"] + args.split(), capture_output=True, text=True, check=False).stdout


same = {"host_ifname": "e1-host", "peer_ifname": "e1-peer", "up": False, "peer_addresses": ["10.1.0.1/24"]}
moved = dict(same, peer_netns=PEER_NS, up=True)
create_netns(HOST_NS)
create_netns(PEER_NS)
try:
    with enter_netns(HOST_NS):
        case("same_netns_down", same)
        case("same_netns_again", same)
        case("peer_named_as_host", {"host_ifname": "e1-peer", "peer_ifname": "zz"}, check_mode=True)
        ip(f"-n {PEER_NS} link add taken type dummy")
        case("peer_name_taken", {"host_ifname": "e2-host", "peer_ifname": "taken", "peer_netns": PEER_NS})
        case("netns_missing", {"host_ifname": "e3-host", "peer_ifname": "e3-peer", "peer_netns": f"{PREFIX}-no"})
        case("netns_missing_check", {"host_ifname": "e3-host", "peer_ifname": "e3-peer",
                                     "peer_netns": f"{PREFIX}-no"}, check_mode=True)
        case("move_refused", moved)
        case("move_recreate", moved, recreate=True)
        ip(f"-n {PEER_NS} addr add 10.9.9.9/32 dev e1-peer")
        case("peer_address_drift", moved)
        case("noop", moved)
        case("noop_check", moved, check_mode=True)
        case("scrub_none", {"host_ifname": "e4-host", "peer_ifname": "e4-peer", "scrub": "none"})
        case("scrub_back_to_default_refused", {"host_ifname": "e4-host", "peer_ifname": "e4-peer"})
        case("remove_e1", "e1-host", remove=True)
        case("remove_e4", "e4-host", remove=True)
        cases["links_left"] = {"host": len(ip("-o link").splitlines()),
                               "peer": len(ip(f"-n {PEER_NS} -o link").splitlines())}
finally:
    delete_netns(HOST_NS)
    delete_netns(PEER_NS)
cases["netns_left"] = [n for n in list_netns() if n.startswith(PREFIX) or n.startswith("ygnk-probe-")]
print(json.dumps(cases))
