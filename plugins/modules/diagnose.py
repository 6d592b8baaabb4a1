#!/usr/bin/python
# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: diagnose
short_description: Diagnose the calls of yogurt-phones, hop by hop, with a verdict per phone
version_added: 2.0.0
description:
  - "State, per phone and end, in inventory terms: the host-side and yogurt-side devices (ifindex,
    namespace, up, carrier, peer), each hook's program and whether its link is live on the right
    device, the wires map against the devices' ifindexes, and the addresses and routes of the host
    side (there must be none)."
  - "Then a window of O(window) seconds: the wire's counter deltas per direction, each program's run
    count (BPF_ENABLE_STATS is held for the window), the devices' packet and drop counters; with
    O(probe), the ping and TCP of M(yogurt.phone.call) both ways (and with O(inject) its injection
    attempts from the host) inside the window."
  - "A verdict per phone: V(healthy), V(lossy) (k of n), V(exposed) (the call works but a host side
    carries an address or route, or a guard is missing) or V(dead), with the first failed hop named,
    for example C(phone, end 1, yogurt side yg2-cont: down)."
  - "With O(trace), the kernel's drops over the window: a bcc program on the skb:kfree_skb tracepoint,
    filtered in the kernel to the phones' devices (ifindex and namespace inode), counted by device,
    reason and location, each labelled with its phone, end, device and hook (for example
    C(wire_peer dropped what the yogurt sent)) and the reason as the running kernel
    names it (C(TC_INGRESS), C(NOT_SPECIFIED); the numbers differ by kernel). The program includes no
    kernel header: the struct offsets it follows come from the kernel's BTF at run time."
  - "Tracing needs bcc (python3-bpfcc, run under /usr/bin/python3 whatever Python runs the module) and
    the running kernel's headers (the C(yogurt.phone.bpf_toolchain) role installs both with
    C(bpf_toolchain_diagnose: true)); where either is missing, or bcc cannot compile on this kernel,
    state and counters are still reported and RV(trace) says why and exactly what to install."
  - Reads only (the probe's packets stay inside the phones' namespaces), so C(changed) is always false.
author:
  - yogurt.phone developers (@yogurt-phone)
extends_documentation_fragment:
  - yogurt.phone._attributes
  - yogurt.phone._attributes.info_module
  - yogurt.phone._phones
options:
  name:
    description: Diagnose only this phone of O(phones). All present phones when omitted.
    type: str
  window:
    description: Seconds between the two samples of the counters.
    type: float
    default: 3.0
  probe:
    description: Place the call's ping and TCP both ways inside the window.
    type: bool
    default: false
  inject:
    description: Make the call's injection attempts from the host inside the window (they must be refused).
    type: bool
    default: false
  trace:
    description:
      - Trace the kernel's drops with bcc. V(auto) when bcc and headers are present, V(yes) fails
        without them (or when bcc cannot trace on this kernel), V(no) never.
      - Starting the tracer compiles a BPF program with bcc before the window opens (about a second on
        a host, a minute under qemu TCG).
    type: str
    choices: [auto, "yes", "no"]
    default: auto
  fail_on:
    description: Fail the task when a phone is V(dead) (or, with V(lossy), dead or lossy). V(never) only reports.
    type: str
    choices: [never, dead, lossy]
    default: never
  host:
    description: The inventory name of the host, put in front of each line of RV(msg).
    type: str
notes:
  - Needs root (pinned BPF objects, other namespaces, BPF_ENABLE_STATS).
seealso:
  - module: yogurt.phone.phone_info
  - module: yogurt.phone.call
"""

EXAMPLES = r"""
- name: Diagnose every phone of the inventory
  yogurt.phone.diagnose:
    phones: "{{ yogurt_phones }}"
    probe: true
    fail_on: dead
  register: diagnosis

- name: Trace the kernel's drops too (needs bpf_toolchain_diagnose, or python3-bpfcc and the kernel's headers)
  yogurt.phone.diagnose:
    phones: "{{ yogurt_phones }}"
    probe: true
    trace: "yes"

- name: One phone, five seconds of counters, no probe
  yogurt.phone.diagnose:
    phones: "{{ yogurt_phones }}"
    name: phone
    window: 5
"""

RETURN = r"""
msg:
  description: The readable diagnosis, one verdict line per phone followed by its details.
  returned: always
  type: str
verdicts:
  description: "V(healthy), V(lossy), V(exposed) or V(dead), by phone name."
  returned: always
  type: dict
  sample: {"phone": "dead"}
phones:
  description: One diagnosis per phone.
  returned: always
  type: list
  elements: dict
  contains:
    phone:
      description: The phone's name.
      type: str
    verdict:
      description: V(healthy), V(lossy), V(exposed) or V(dead).
      type: str
    verdict_text:
      description: The verdict as read, C(lossy (2 of 3)) for a lossy phone.
      type: str
    first_failure:
      description: The first failed hop in inventory terms, null when there is none.
      type: str
      sample: "phone, end 1, yogurt side yg2-cont: down"
    problems:
      description: Every problem found, each with C(end), C(side) (V(host) or V(cont)), C(ifname), C(hook), C(problem) and C(text).
      type: list
      elements: dict
    observations:
      description: What the window saw that is not a fault (frames the host sent towards a yogurt, refused).
      type: list
      elements: str
    traffic:
      description: Per direction (C(0to1), C(1to0)), C(sent) by the yogurt and C(forwarded) by the wire in the window.
      type: dict
    probe:
      description: C(replies) of C(pings) when O(probe) was asked, else null.
      type: dict
    state:
      description: Ends (C(host) and C(cont) devices), C(hooks), C(wires), C(backend), C(attach_mode).
      type: dict
    window:
      description: Deltas over the window, C(counters), C(runs) (program run counts), C(devices) (their stats).
      type: dict
    checks:
      description: The probe's checks, as M(yogurt.phone.call) returns them.
      type: list
      elements: dict
    drops:
      description:
        - "The kernel's drops on the phone's devices in the window (empty without tracing), most frequent first,
          each with C(end), C(side), C(ifname), C(ifindex), C(netns_inode), C(hook) (V(in), V(peer), V(primary),
          V(xdp), V(wires) or null), C(program), C(reason) (the running kernel's name), C(reason_code),
          C(location) (the kernel symbol that freed the packet), C(count) and C(text)."
      type: list
      elements: dict
      sample: [{"end": 0, "side": "host", "ifname": "yg1-host", "hook": "peer", "program": "wire_peer",
                "reason": "NOT_SPECIFIED", "location": "netkit_xmit", "count": 6}]
    traced:
      description: Whether the kernel's drops were traced for this phone.
      type: bool
trace:
  description:
    - "Whether the kernel's drops were traced (C(available)), C(reason) (what was traced, or why not),
      C(install) (what is missing), C(bcc) (its version), C(headers), C(kernel); when traced also C(offsets)
      (the struct offsets read from BTF), C(reason_names) (where the names were read) and C(start_seconds)."
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.yogurt.phone.plugins.module_utils import _switchboard as switchboard
from ansible_collections.yogurt.phone.plugins.module_utils._diagnose import diagnose, text_of
from ansible_collections.yogurt.phone.plugins.module_utils._netns import in_netns
from ansible_collections.yogurt.phone.plugins.module_utils._phone_converge import read_records
from ansible_collections.yogurt.phone.plugins.module_utils._phone_model import PhoneInputError, normalize_phones
from ansible_collections.yogurt.phone.plugins.module_utils._pyroute2_dep import assert_required_pyroute2


def main():
    module = AnsibleModule(
        argument_spec=dict(
            phones=dict(type="list", elements="raw"),
            name=dict(type="str"),
            window=dict(type="float", default=3.0),
            probe=dict(type="bool", default=False),
            inject=dict(type="bool", default=False),
            trace=dict(type="str", choices=["auto", "yes", "no"], default="auto"),
            fail_on=dict(type="str", choices=["never", "dead", "lossy"], default="never"),
            host=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    assert_required_pyroute2(module)
    params = module.params
    try:
        phones = [p for p in normalize_phones(params["phones"]) if p["state"] == "present"]
    except PhoneInputError as exc:
        module.fail_json(msg="invalid yogurt_phones: " + "; ".join(exc.problems))
    if params["name"]:
        phones = [p for p in phones if p["name"] == params["name"]]
        if not phones:
            module.fail_json(msg=f"phone {params['name']!r} is not among the present phones of yogurt_phones")
    try:
        board = switchboard.of_phones([p["name"] for p in phones], read_records())
        # In the namespace of the host sides: devices, links and the tracer's filter are theirs.
        with in_netns(board or None):
            results, trace = diagnose(phones, params["window"], params["probe"], params["inject"], params["trace"],
                                      run_command=module.run_command, switchboard_name=board)
    except RuntimeError as exc:
        module.fail_json(msg=str(exc))
    prefix = f"{params['host']} " if params["host"] else ""
    lines = [prefix + line for r in results for line in text_of(r)]
    lines.append(f"{prefix}kernel drops {'traced' if trace['available'] else 'not traced'}: {trace['reason']}")
    out = dict(changed=False, msg="\n".join(lines), verdicts={r["phone"]: r["verdict"] for r in results},
               phones=results, trace=trace)
    bad = {"dead": ("dead",), "lossy": ("dead", "lossy")}.get(params["fail_on"], ())
    failed = [r for r in results if r["verdict"] in bad]
    if failed:
        out["msg"] = "; ".join(f"{prefix}{r['phone']}: {r['verdict_text']} ({r['first_failure']})" for r in failed)
        module.fail_json(diagnosis="\n".join(lines), **out)
    module.exit_json(**out)


if __name__ == "__main__":
    main()
