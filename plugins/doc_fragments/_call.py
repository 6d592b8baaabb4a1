# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This doc fragment is PRIVATE to the yogurt.phone collection: it can change at any time.
# Do not use it from other collections or standalone modules.

from __future__ import annotations

from ansible_collections.yogurt.phone.plugins.doc_fragments._compile import as_suboptions


class ModuleDocFragment:
    # The call options: top level in call, the call option's suboptions in phones (SUBOPTIONS,
    # below). Argument spec and defaults: _call.call_argument_spec().
    DOCUMENTATION = r"""
options:
  host:
    description: Name of the host, put in front of every summary line and failure (for example
      C(inventory_hostname)).
    type: str
  count:
    description: Echo requests per direction and address.
    type: int
    default: 3
  injection:
    description: Whether to make the injection attempts from the host namespace.
    type: bool
    default: true
  reverse:
    description: Whether to make the attempts from the yogurts towards the host namespace.
    type: bool
    default: true
  frames:
    description: Frames per injection or reverse check (one check is one device, family,
      socket type, bypass setting and destination).
    type: int
    default: 4
  wait:
    description:
      - The most seconds to wait, after the last frame of an end (or of the reverse attempts), for frames
        that no counter of the phone has accounted for yet.
      - The listeners are read as soon as the phone's counters show every frame refused (injections) or
        handled by the wire (reverse attempts), so a working phone never waits this long; a frame that
        slips past the wire is then given this long to reach a listener.
    type: float
    default: 0.25
"""


ModuleDocFragment.SUBOPTIONS = as_suboptions("call", ModuleDocFragment.DOCUMENTATION)
