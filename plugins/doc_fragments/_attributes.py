# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This doc fragment is PRIVATE to the yogurt.phone collection: it can change at any time.
# Do not use it from other collections or standalone modules.

from __future__ import annotations


class ModuleDocFragment:
    # Every module: what each attribute means. A module adds its own support level and details.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check mode and report what would change without changing the target.
  diff_mode:
    description: Returns what changed (or would change, in check mode) as a diff, in diff mode.
  idempotent:
    description:
      - Run twice in a row outside check mode with the same options, the second run reports no change.
      - This assumes that nothing else changed the host in between.
  platform:
    description: Target operating systems the module runs against.
    support: full
    platforms: linux
"""

    # With DOCUMENTATION, for modules that only read.
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This module changes nothing, so it runs the same in check mode.
  diff_mode:
    support: N/A
    details:
      - This module changes nothing, so there is nothing to diff.
  idempotent:
    support: full
    details:
      - This module changes nothing.
"""
