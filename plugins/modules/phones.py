#!/usr/bin/python
# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: phones
short_description: Converge every yogurt-phone of a host in one task
version_added: 1.0.0
description:
  - Builds, repairs and removes yogurt-phones. A phone is two network namespaces
    (yogurts), each holding the container side of a netkit or veth pair, joined by an eBPF
    wire between the host-side devices, which live in the switchboard namespace (O(switchboard)).
    The host's namespace cannot reach either yogurt, and holds no device of any phone.
  - Takes the whole O(phones) list of a host (the C(yogurt_phones) inventory variable),
    checks all of it before changing anything, reads the host's devices once, and
    converges each phone.
  - C(backend=auto) picks netkit when the kernel can create netkit devices and
    veth otherwise; each phone's result says which backend it got and why.
  - On veth the wire's program attaches as tcx links (Linux >= 6.6), or as tc clsact
    filters on older kernels (Debian 12's stock 6.1), and a native XDP guard links to each
    yogurt-side device (Linux >= 5.9); the phone works the same either way.
  - Whatever a killed or half-finished run left behind is healed by the next run. A host
    lock serializes concurrent runs.
  - With O(compile) and O(call) it also compiles the wire programs first and places a test call
    after, so that one module run per host does what M(yogurt.phone.bpf_compile),
    this module and M(yogurt.phone.call) do in three.
author:
  - yogurt.phone developers (@yogurt-phone)
extends_documentation_fragment:
  - yogurt.phone._attributes
  - yogurt.phone._phones
  - yogurt.phone._compile.suboptions
  - yogurt.phone._call.suboptions
options:
  veth_object:
    description:
      - Path on the host of the compiled C(bpf/wire_veth.bpf.c) object.
      - Required when any phone ends up on the veth backend.
    type: path
  netkit_object:
    description:
      - Path on the host of the compiled C(bpf/wire_netkit.bpf.c) object.
      - Required when any phone ends up on the netkit backend.
    type: path
  host_addresses:
    description:
      - What to do when a host-side device carries an address (someone added one by hand).
      - V(remove) removes it and reports it; V(report) leaves it and warns.
    type: str
    choices: [remove, report]
    default: remove
  switchboard:
    description:
      - The network namespace that holds the host-side devices of every phone of the host, with
        their programs and links (made when missing, removed when its last phone goes). The
        host's own namespace then holds no device of any phone, so nothing there, not even
        C(tcpdump -i any), sees a phone's devices or the frames of a call.
      - An empty string keeps the host sides in the host's own namespace (the layout before 2.0.0).
      - A phone built in the other layout is moved by the next run (its pairs are rebuilt in the
        right namespace and its wire attached again; its yogurts stay), and its result says so.
      - Root can still enter the switchboard, as it can enter a yogurt.
    type: str
    default: yogurt-switchboard
    version_added: 2.0.0
  exclusive:
    description:
      - Also remove every phone this collection built on the host that O(phones) does not
        list (found from its records under C(/run/yogurt/phones) and its pins under
        C(/sys/fs/bpf/yogurt)). Teardown uses this with an empty list.
    type: bool
    default: false
  expedite_rcu:
    description:
      - Turn C(/sys/kernel/rcu_expedited) on for the span of the run's link attaches and
        releases, and restore the value found when the span ends, on every exit path.
      - Each tcx or netkit link attach, and each release or deletion of a device with
        programs attached, waits for a full RCU grace period while holding RTNL; expedited
        grace periods end in microseconds, which makes a converge or teardown of many
        phones several times faster (50 phones on veth in about 0.9 s instead of about 3 s).
      - The price is system-wide, for the span only, as the kernel interrupts every CPU (IPIs)
        to end each grace period. Set V(false) on real-time or latency-critical hosts.
      - Nothing is written when no link is attached or released (a run that changes
        nothing), when the value is already 1 (left as found), or when the kernel was booted
        with C(rcu_normal=1), which overrides it.
      - A run killed meanwhile leaves a record in C(/run/yogurt); the next run restores the
        value from it first. The host lock keeps two runs from restoring each other's value.
    type: bool
    default: true
    version_added: 2.0.0
  compile:
    description:
      - Compile the wire programs on the host first, in this same module run, exactly as the
        M(yogurt.phone.bpf_compile) module does with the same options (objects named by a
        hash of every source, the flags and the compiler version, so compiled once per
        distinct source; objects of older hashes removed; in check mode nothing is written).
      - The object of C(wire_veth.bpf.c) is the O(veth_object) and that of
        C(wire_netkit.bpf.c) the O(netkit_object), unless those are given.
      - A compile, or a removal of an older object, makes the task V(changed). The result
        is RV(compiled).
      - Saves a module run per host (the C(yogurt.phone.yogurt_phone) role uses it).
    type: dict
    version_added: 2.0.0
  call:
    description:
      - After converging, place a test call through every present phone in this same module
        run, exactly as the M(yogurt.phone.call) module does with
        O(yogurt.phone.call#module:fail_on_failure=false). A failed check does not fail this
        module; RV(call) reports it, and a later task decides (what the
        C(yogurt.phone.yogurt_phone) role does, so that the summary is printed first).
      - Never in check mode (the phones may not exist yet); RV(call.skipped) says so.
      - The call changes nothing, so it never makes the task V(changed).
    type: dict
    version_added: 2.0.0
attributes:
  check_mode:
    support: full
    details: Reports per phone what would change; nothing is created, attached, compiled or removed, and no call is placed.
  diff_mode:
    support: full
    details: Shows each phone (backend, ends, addresses, wire) before and after, and with O(compile) the object paths.
  idempotent:
    support: full
    details: A second run with the same input reports no change.
notes:
  - Needs root, bpffs, libbpf (C(libbpf.so.1)) and pyroute2 on the host; the
    C(yogurt.phone.bpf_toolchain) role installs them.
  - Devices, namespaces and pins do not survive a reboot; re-run the converge (the
    C(yogurt.phone.yogurt_phone) role can install a boot-time unit for that).
requirements:
  - pyroute2 >= 0.9
  - libbpf >= 1.1 (C(libbpf.so.1))
seealso:
  - module: yogurt.phone.netns
  - module: yogurt.phone.wire
  - module: yogurt.phone.phone_info
"""

EXAMPLES = r"""
- name: Build the default phone
  yogurt.phone.phones:
    veth_object: /var/lib/yogurt-phone/bpf/wire_veth.o
    netkit_object: /var/lib/yogurt-phone/bpf/wire_netkit.o

- name: Build the phones of the inventory, removing any other phone
  yogurt.phone.phones:
    phones: "{{ yogurt_phones }}"
    veth_object: /var/lib/yogurt-phone/bpf/wire_veth.o
    netkit_object: /var/lib/yogurt-phone/bpf/wire_netkit.o
    exclusive: true

- name: Compile the wire, build the phones of the inventory and place a test call, in one module run
  yogurt.phone.phones:
    phones: "{{ yogurt_phones }}"
    compile:
      sources:
        wire.h: "{{ lookup('ansible.builtin.file', 'bpf/wire.h') }}"
        wire_veth.bpf.c: "{{ lookup('ansible.builtin.file', 'bpf/wire_veth.bpf.c') }}"
        wire_netkit.bpf.c: "{{ lookup('ansible.builtin.file', 'bpf/wire_netkit.bpf.c') }}"
    call:
      host: "{{ inventory_hostname }}"
  register: built

- name: Fail with the checks of the call that failed
  ansible.builtin.fail:
    msg: "{{ built.call.failures | join('; ') }}"
  when: not (built.call.skipped | default(false)) and not built.call.ok

- name: Remove every phone this collection built
  yogurt.phone.phones:
    phones: []
    exclusive: true
"""

RETURN = r"""
phones:
  description: One entry per phone handled, in input order (then removed unlisted phones).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The phone.
      type: str
      sample: phone
    state:
      description: V(present) or V(absent).
      type: str
      sample: present
    backend:
      description: The backend the phone is built on.
      type: str
      returned: when state is present
      sample: veth
    backend_reason:
      description: Why that backend was chosen.
      type: str
      returned: when state is present
      sample: "auto: Linux 6.18.4 has no netkit (Unknown device type); veth with tcx"
    changed:
      description: Whether this phone changed.
      type: bool
    actions:
      description: What was done (or would be done, in check mode), in order.
      type: list
      elements: str
      sample: ["created namespace yogurt-1", "created veth pair yg1-host <-> yogurt-1/yg1-cont"]
    ends:
      description:
        - The two ends as converged (as they would be, in check mode), in input order.
        - On the netkit backend an entry also carries the pair's other attributes, as
          RV(yogurt.phone.netkit#module:netkit) of the M(yogurt.phone.netkit) module names them.
      type: list
      elements: dict
      returned: when state is present
      contains:
        netns:
          description: The yogurt's named network namespace.
          type: str
          sample: yogurt-1
        host_ifname:
          description: The host-side device.
          type: str
          sample: yg1-host
        cont_ifname:
          description: The device inside the yogurt.
          type: str
          sample: yg1-cont
        host_ifindex:
          description: Interface index of the host-side device; V(null) in check mode before the pair exists.
          type: int
          sample: 7
        kind:
          description: The kind of the pair, V(veth) or V(netkit).
          type: str
          sample: veth
        host_addresses:
          description: Addresses of the host-side device; empty unless O(host_addresses=report) left some.
          type: list
          elements: str
          sample: []
        peer_addresses:
          description: Addresses of the yogurt-side device (IPv6 link-local addresses the kernel made are left out).
          type: list
          elements: str
          sample: [10.42.0.1/24]
        mtu:
          description: MTU of the pair.
          type: int
          sample: 1500
        up:
          description: Whether both devices are up (on the netkit backend, the host side).
          type: bool
          sample: true
        state:
          description: V(present) (netkit phones only).
          type: str
          returned: on the netkit backend
          sample: present
        peer_ifname:
          description: The device inside the yogurt, as the netkit pair names it (netkit phones only).
          type: str
          returned: on the netkit backend
          sample: yg1-cont
        peer_netns:
          description: Namespace of the peer (netkit phones only).
          type: str
          returned: on the netkit backend
          sample: yogurt-1
        mode:
          description: V(l3) or V(l2) (netkit phones only).
          type: str
          returned: on the netkit backend
          sample: l3
        policy:
          description: Policy of the primary device (netkit phones only).
          type: str
          returned: on the netkit backend
          sample: blackhole
        peer_policy:
          description: Policy of the peer device (netkit phones only).
          type: str
          returned: on the netkit backend
          sample: blackhole
        scrub:
          description: Scrub setting of the primary; V(null) on kernels without scrub support (netkit phones only).
          type: str
          returned: on the netkit backend
          sample: default
        peer_scrub:
          description: Scrub setting of the peer (netkit phones only).
          type: str
          returned: on the netkit backend
          sample: default
        headroom:
          description: Headroom of the pair; V(null) on kernels that do not report it (netkit phones only).
          type: int
          returned: on the netkit backend
          sample: 0
        tailroom:
          description: Tailroom of the pair; V(null) on kernels that do not report it (netkit phones only).
          type: int
          returned: on the netkit backend
          sample: 0
        peer_mtu:
          description: MTU of the peer (netkit phones only).
          type: int
          returned: on the netkit backend
          sample: 1500
        peer_up:
          description: Whether the peer is up (netkit phones only).
          type: bool
          returned: on the netkit backend
          sample: true
        host_addr_gen_mode:
          description: IPv6 address generation mode of the host side (netkit phones only).
          type: str
          returned: on the netkit backend
          sample: none
    wire:
      description:
        - The phone's wire after the run, as RV(yogurt.phone.wire#module:programs),
          RV(yogurt.phone.wire#module:links) and RV(yogurt.phone.wire#module:maps) of the
          M(yogurt.phone.wire) module report it.
        - Empty in check mode when the pairs do not exist yet.
      type: dict
      returned: when state is present
      contains:
        backend:
          description: The backend the wire uses.
          type: str
          sample: veth
        attach_mode:
          description: V(netkit), V(tcx) or V(tc), how the programs are attached.
          type: str
          sample: tcx
        programs:
          description: Pinned programs, C(name), C(id), C(tag).
          type: list
          elements: dict
          returned: not in check mode
          sample: [{"name": "wire_in", "id": 46, "tag": "9ef8c75ba82c9ae1"}]
        links:
          description:
            - Pinned links, C(pin), C(id), C(type), C(attach_type), C(ifindex), C(prog_id),
              C(program), C(defunct) (its device is gone).
          type: list
          elements: dict
          returned: not in check mode
          sample: [{"pin": "link_end0_in", "id": 6, "type": "tcx", "attach_type": "tcx_ingress",
                    "ifindex": 7, "prog_id": 46, "program": "wire_in", "defunct": false}]
        maps:
          description: The C(wires) map and the counters (summed over CPUs).
          type: dict
          returned: not in check mode
          sample: {"wires": [{"ifindex": 7, "target": 9, "direction": 0}],
                   "counters": {"forwarded_packets_0to1": 5, "refused": 0}}
switchboard:
  description:
    - The namespace holding the host sides (C(name), V("") for the host's own namespace), its
      C(state) after the run, and what was done to it (C(actions)).
  returned: always
  type: dict
  version_added: 2.0.0
  sample: {"name": "yogurt-switchboard", "state": "present", "actions": ["created the switchboard namespace yogurt-switchboard"]}
rcu_expedited:
  description:
    - Whether expedited RCU grace periods were used for this run (see O(expedite_rcu)), and why.
    - C(healed) appears when a killed run had left the value changed and this run restored it.
  returned: always
  type: dict
  version_added: 2.0.0
  sample: {"requested": true, "used": true, "reason": "on for the span of the link work, then restored to 0"}
compiled:
  description:
    - With O(compile), what the compile found or did, as the M(yogurt.phone.bpf_compile) module returns it.
  returned: when O(compile) is given
  type: dict
  version_added: 2.0.0
  contains:
    changed:
      description: Whether an object was compiled or an older one removed (would be, in check mode).
      type: bool
    objects:
      description: Program stem to object path.
      type: dict
      sample: {"wire_veth": "/var/lib/yogurt-phone/bpf/wire_veth-3f2a9c0d1e2b4a5c.o"}
    hash:
      description: The hash that names the objects.
      type: str
      sample: 3f2a9c0d1e2b4a5c
    removed:
      description: Objects of older hashes that were removed.
      type: list
      elements: str
call:
  description:
    - With O(call), the test call, as the M(yogurt.phone.call) module returns it
      (RV(yogurt.phone.call#module:ok), RV(yogurt.phone.call#module:summary),
      RV(yogurt.phone.call#module:failures) and RV(yogurt.phone.call#module:calls)).
    - In check mode only C(skipped=true) and C(msg), and no call is placed.
  returned: when O(call) is given
  type: dict
  version_added: 2.0.0
  contains:
    ok:
      description: Whether every check of every phone passed.
      type: bool
      returned: unless in check mode
      sample: true
    summary:
      description: One line per phone, led by O(call.host).
      type: list
      elements: str
      sample: ["web1 phone: veth/tcx (Linux 6.18 has no netkit) | ping 3/3 3/3 | tcp ok ok | injection refused 96/96 (0 reached)"]
    failures:
      description: One line per failed check, naming host, phone, end, device, check and numbers.
      type: list
      elements: str
    calls:
      description: One entry per present phone, as RV(yogurt.phone.call#module:calls).
      type: list
      elements: dict
    skipped:
      description: V(true) in check mode, where no call is placed.
      type: bool
      returned: in check mode
kernel:
  description:
    - What the kernel probes found, by trying each on throwaway objects; the same facts as
      RV(yogurt.phone.kernel_info#module:kernel) of the M(yogurt.phone.kernel_info) module.
  returned: always
  type: dict
  sample: {"kernel": "6.18.4", "libbpf": "1.4", "bpffs": true, "bpf_load": true, "tcx": true,
           "netkit_attach": false, "netkit": false, "tcx_reason": "tcx attach works",
           "netkit_reason": "creating a netkit device failed: Unknown device type"}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.yogurt.phone.plugins.module_utils._bpf_build import compile_argument_spec, converge_build_for
from ansible_collections.yogurt.phone.plugins.module_utils._call import call_argument_spec, place_calls
from ansible_collections.yogurt.phone.plugins.module_utils._names import netns_problem
from ansible_collections.yogurt.phone.plugins.module_utils._phone_converge import PhoneError, converge_host
from ansible_collections.yogurt.phone.plugins.module_utils._phone_model import PhoneInputError, normalize_phones
from ansible_collections.yogurt.phone.plugins.module_utils._pyroute2_dep import assert_required_pyroute2
from ansible_collections.yogurt.phone.plugins.module_utils._switchboard import DEFAULT_SWITCHBOARD


def compile_wire(module, objects):
    """O(compile): bpf_compile's work, in this run; fills the objects not given. The result, or None."""
    opts = module.params["compile"]
    if opts is None:
        return None

    compiled = converge_build_for(module, opts)
    for backend in objects:
        if not objects[backend]:
            objects[backend] = compiled["objects"].get(f"wire_{backend}")
    return compiled


def main():
    module = AnsibleModule(
        argument_spec=dict(
            phones=dict(type="list", elements="raw"),
            veth_object=dict(type="path"),
            netkit_object=dict(type="path"),
            host_addresses=dict(type="str", default="remove", choices=["remove", "report"]),
            exclusive=dict(type="bool", default=False),
            switchboard=dict(type="str", default=DEFAULT_SWITCHBOARD),
            expedite_rcu=dict(type="bool", default=True),
            compile=dict(type="dict", options=compile_argument_spec()),
            call=dict(type="dict", options=call_argument_spec()),
        ),
        supports_check_mode=True,
    )
    assert_required_pyroute2(module)
    try:
        phones = normalize_phones(module.params["phones"])
    except PhoneInputError as exc:
        module.fail_json(msg="invalid yogurt_phones, nothing was changed: " + "; ".join(exc.problems),
                         problems=exc.problems)
    board_problem = module.params["switchboard"] and netns_problem(module.params["switchboard"])
    if module.params["switchboard"] in {e["netns"] for p in phones for e in p["ends"]}:
        board_problem = (f"'{module.params['switchboard']}' is also a yogurt of a phone: a yogurt holds one "
                         "container side; choose another switchboard or netns")
    if board_problem:
        module.fail_json(msg=f"invalid switchboard, nothing was changed: {board_problem}")
    objects = {"veth": module.params["veth_object"], "netkit": module.params["netkit_object"]}
    compiled = compile_wire(module, objects)
    try:
        result = converge_host(phones, objects, check_mode=module.check_mode,
                               host_addresses=module.params["host_addresses"], exclusive=module.params["exclusive"],
                               expedite_rcu=module.params["expedite_rcu"], switchboard_name=module.params["switchboard"])
    except PhoneError as exc:
        module.fail_json(msg=str(exc))
    for text in result.pop("warnings"):
        module.warn(text)
    diff = result.pop("diff")
    if compiled is not None:
        result["changed"] = result["changed"] or compiled["changed"]
        if "diff" in compiled:  # a key no phone can have (phone names have no spaces)
            diff["before"]["compiled objects"] = compiled["diff"]["before"]["objects"]
            diff["after"]["compiled objects"] = compiled.pop("diff")["after"]["objects"]
        result["compiled"] = compiled
    if module._diff:
        result["diff"] = diff
    if module.params["call"] is not None:
        # After the host lock is released, as when the call module ran as its own task.
        result["call"] = (dict(skipped=True, msg="check mode: no call placed") if module.check_mode else
                          place_calls([p for p in phones if p["state"] == "present"], **module.params["call"]))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
