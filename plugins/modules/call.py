#!/usr/bin/python
# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: call
short_description: Place a test call through yogurt-phones and try to break in, both ways
version_added: 1.0.0
description:
  - For every present phone, from each yogurt to every address of the other one, sends
    ICMP echo requests and makes a TCP exchange (a listener opened inside the far yogurt
    echoes a payload back).
  - "Where the host sides are: the call runs from the namespace that holds the phone's host
    sides, as its record says (the switchboard, from 2.0.0; the host's own namespace with
    C(switchboard: \"\") of M(yogurt.phone.phones)). With the host sides in a switchboard it also
    checks that the host's own namespace lists no device of the phone and that a packet socket
    bound to no device there (every device, what C(tcpdump -i any) opens) sees none of the
    call's frames; with them in the host's namespace it reports how many frames that socket saw."
  - "Injection, host to yogurt: on each host-side device, from the namespace of the host sides
    (the switchboard: the nearest point root has to a yogurt), writes UDP
    frames through AF_PACKET sockets, SOCK_RAW and SOCK_DGRAM, each with and without
    PACKET_QDISC_BYPASS, to the yogurt's unicast address, to broadcast (IPv4 C(255.255.255.255)
    to C(ff:ff:ff:ff:ff:ff); IPv6 C(ff02::1) in an Ethernet broadcast) and to a multicast group
    (IPv4 C(224.0.0.1) to C(01:00:5e:00:00:01), IPv6 C(ff02::1) to C(33:33:00:00:00:01)), for each
    address family of the end. This forces the device and never relies on routing."
  - "Inside the yogurt, a UDP socket bound to the targeted port on the wildcard address (the
    multicast group joined) and a packet socket (ETH_P_ALL) on the yogurt's device listen.
    Only frames that carry this run's random marker count, so the yogurt's own traffic does not.
    Both must see none, and the phone's refusal counters (the sum of every C(refused*)
    counter of the wire) must move by at least the number of frames that left the socket plus
    the sends refused with ENOBUFS (netkit refuses inside its transmit, after its program counted
    the drop). ENOBUFS alone is no proof: a veth whose peer is down returns it too, with no
    program involved. Any other failed send fails the check."
  - "Reverse, yogurt to host: from inside each yogurt, raw frames with a forged source MAC and
    IP (unicast to an address of the host namespace, when it has one, broadcast and multicast)
    and a gratuitous ARP (IPv4) or unsolicited neighbour advertisement (IPv6) claiming the
    host's default gateway (else its own address). No UDP socket of the host namespace may
    receive one and the host's neighbour entries for those addresses, for the forged MAC and
    on the phone's host-side devices must not change."
  - Fails when any check fails; the message names the host, phone, end, device, check and
    numbers, one line per failed check. Packets only ever go to addresses inside the phones'
    own namespaces or to the host's own addresses, and frames are only written on the phones'
    own devices.
  - Changes nothing on the host, so it always reports C(changed=false). In check mode it
    runs nothing and reports nothing.
extends_documentation_fragment:
  - yogurt.phone._attributes
  - yogurt.phone._phones
  - yogurt.phone._call
author:
  - yogurt.phone developers (@yogurt-phone)
options:
  fail_on_failure:
    description:
      - Whether a failed check fails the module. With V(false) the module returns RV(ok),
        RV(summary) and RV(failures) and a later task decides (what the role and
        C(playbooks/call.yml) do, so that the summary is printed first).
    type: bool
    default: true
attributes:
  check_mode:
    support: partial
    details: In check mode nothing is sent and no call is reported (the phones may not exist yet).
  diff_mode:
    support: N/A
    details: Nothing changes, so there is no diff.
  idempotent:
    support: full
    details: Never changes anything.
"""

EXAMPLES = r"""
- name: Call through every phone of the inventory
  yogurt.phone.call:
    phones: "{{ yogurt_phones }}"
    host: "{{ inventory_hostname }}"
    fail_on_failure: false
  register: call

- name: One line per phone
  ansible.builtin.debug:
    msg: "{{ call.summary }}"

- name: Fail with the checks that failed
  ansible.builtin.fail:
    msg: "{{ call.failures | join('; ') }}"
  when: not call.ok
"""

RETURN = r"""
ok:
  description: Whether every check of every phone passed.
  returned: unless in check mode
  type: bool
  sample: true
skipped:
  description: V(true) in check mode, where no call is placed.
  returned: in check mode
  type: bool
  sample: true
msg:
  description: Why nothing was done, in check mode.
  returned: in check mode
  type: str
  sample: "check mode: no call placed"
summary:
  description: One line per phone, readable at a glance (host, phone, backend and why, ping and
    TCP both ways, injection attempts refused, reverse attempts kept out).
  returned: always
  type: list
  elements: str
  sample: ["host1 phone: veth/tcx (Linux 6.18 has no netkit) | ping 3/3 3/3 | tcp ok ok |
    injection refused 96/96 (0 reached) | reverse kept out 32/32, neighbours unchanged"]
failures:
  description: One line per failed check, naming host, phone, end, device, check and numbers.
  returned: always
  type: list
  elements: str
  sample: ["host host1, phone phone: end 0 (host device yg1-host -> yogurt-1 yg1-cont), injection
    IPv4 raw with qdisc bypass to unicast 10.42.0.1: 4 of 4 frames reached a packet socket on
    yg1-cont in the yogurt (4 frames, 4 sent, 0 refused at send, refusal counters +4; reached UDP 0,
    packet socket 4)"]
calls:
  description: One entry per present phone.
  returned: always
  elements: dict
  type: list
  contains:
    name:
      description: The phone.
      type: str
    ok:
      description: Whether every check passed.
      type: bool
    backend:
      description: V(veth) or V(netkit), as read from the phone's wire (null if none is found).
      type: str
    attach_mode:
      description: V(tcx), V(tc) or V(netkit), as read from the phone's wire.
      type: str
    reason:
      description: Why the phone is on that backend, in a few words.
      type: str
      sample: Linux 6.18 has no netkit
    switchboard:
      description: The namespace the call ran from, which holds the phone's host sides; V("") for the host's own.
      type: str
      sample: yogurt-switchboard
      version_added: 2.0.0
    summary:
      description: The phone's line of RV(summary).
      type: str
    checks:
      description:
        - Each check with C(kind) (V(ping), V(tcp), V(inject), V(reverse), V(neighbours), V(hostns), V(error)),
          C(check) (its name), C(ok) and a C(detail) line.
        - Injection checks also carry C(end), C(device) (host side), C(netns), C(cont_ifname),
          C(family), C(socket) (V(raw) or V(dgram)), C(bypass), C(dest) (V(unicast), V(broadcast),
          V(multicast)), C(dst_ip), C(port), C(attempts), C(sent), C(refused_at_send) (errno name
          to count), C(refused_delta) (how much the sum of the phone's C(refused*) counters moved;
          null without counters), C(reached_udp) and C(reached_packet).
        - Reverse checks carry C(end), C(device) (yogurt side), C(netns), C(family), C(dest),
          C(dst_ip), C(src_ip), C(attempts), C(sent), C(refused_at_send), C(reached_udp); the
          V(neighbours) check carries C(changes).
        - V(hostns) checks (from 2.0.0) carry C(devices) (the phone's devices the host's own namespace
          lists) and C(frames) (the call's frames a packet socket on every device there saw).
      type: list
      elements: dict
      sample: [{"kind": "ping", "check": "ping yogurt-1 -> 10.42.0.2", "ok": true, "detail": "3/3 replies"}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.yogurt.phone.plugins.module_utils._call import call_argument_spec, place_calls
from ansible_collections.yogurt.phone.plugins.module_utils._phone_model import PhoneInputError, normalize_phones
from ansible_collections.yogurt.phone.plugins.module_utils._pyroute2_dep import assert_required_pyroute2


def main():
    module = AnsibleModule(
        argument_spec=dict(
            phones=dict(type="list", elements="raw"),
            fail_on_failure=dict(type="bool", default=True),
            **call_argument_spec(),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        phones = [p for p in normalize_phones(params["phones"]) if p["state"] == "present"]
    except PhoneInputError as exc:
        module.fail_json(msg="invalid yogurt_phones: " + "; ".join(exc.problems))
    if module.check_mode:
        module.exit_json(changed=False, calls=[], summary=[], failures=[], skipped=True,
                         msg="check mode: no call placed")
    assert_required_pyroute2(module)
    result = dict(changed=False, **place_calls(phones, **{name: params[name] for name in call_argument_spec()}))
    if result["failures"] and params["fail_on_failure"]:
        module.fail_json(msg="the call failed: " + "; ".join(result["failures"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
