# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This doc fragment is PRIVATE to the yogurt.phone collection: it can change at any time.
# Do not use it from other collections or standalone modules.

from __future__ import annotations

import textwrap


def as_suboptions(option, fragment):
    """The options of `fragment` as the suboptions of a dict option named `option`.

    A module's option replaces a fragment's option of the same name key by key, so a module
    that declares `option` (its description, version_added) keeps these suboptions. Derived
    text: ansible-test's yamllint reads only the literal texts in the class, and this is the
    literal DOCUMENTATION re-indented; ansible-doc and validate-modules read the result.
    """
    header, body = fragment.split("\noptions:\n", 1)
    if header.strip():
        raise ValueError(f"the fragment must hold only options, not {header.strip()!r}")
    return f"\noptions:\n  {option}:\n    type: dict\n    suboptions:\n" + textwrap.indent(body, "    ")


class ModuleDocFragment:
    # The compile options: top level in bpf_compile, the compile option's suboptions in phones
    # (SUBOPTIONS, below). Argument spec: _bpf_build.compile_argument_spec().
    DOCUMENTATION = r"""
options:
  sources:
    description:
      - File name to file content, for every file the programs need (C(.c) and C(.h)).
    type: dict
    required: true
  programs:
    description:
      - Which of the sources to compile; each gives C(<dest>/<stem>-<hash>.o), where
        C(<stem>) is the file name without C(.bpf.c).
      - When omitted, every source named C(<stem>.bpf.c).
    type: list
    elements: str
  dest:
    description: Directory for the sources and objects.
    type: path
    default: /var/lib/yogurt-phone/bpf
  clang:
    description: The compiler to run.
    type: str
    default: clang
  cflags:
    description: Extra flags for every compile (for example C(-DWIRE_DEBUG)).
    type: list
    elements: str
    default: []
"""


ModuleDocFragment.SUBOPTIONS = as_suboptions("compile", ModuleDocFragment.DOCUMENTATION)
