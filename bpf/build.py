# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Compile one wire program by hand: python3 bpf/build.py SOURCE.bpf.c OUTDIR [extra clang flags]

Prints the object's path, OUTDIR/<stem>-<hash>.o. The same code as the bpf_compile module
(plugins/module_utils/_bpf_build.py): an unchanged input is not compiled again.
"""

import pathlib
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / ".ansible" / "collections"))

# pylint: disable=wrong-import-position
from ansible_collections.yogurt.phone.plugins.module_utils._bpf_build import build_files  # noqa: E402


def run(argv):
    """clang's (rc, stdout, stderr): what a module's run_command gives _bpf_build inside a module."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def main(argv):
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    src = pathlib.Path(argv[0])
    headers = sorted(str(p) for p in src.parent.glob("*.h"))
    objects = build_files([str(src)] + headers, [src.name], argv[1], run, cflags=argv[2:])
    print(next(iter(objects.values())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
