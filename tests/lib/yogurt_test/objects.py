# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Compiled wire objects for tests (bpf/build.py; clang, no kernel needed)."""

import subprocess
import sys

from . import ROOT

BPF = ROOT / "bpf"


def build_object(src, outdir):
    """Compile one wire source with bpf/build.py; the object's path."""
    proc = subprocess.run([sys.executable, str(BPF / "build.py"), str(src), str(outdir)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def veth_object(outdir):
    """The veth wire as the modules compile it (bpf_build names it by content hash)."""
    from ansible_collections.yogurt.phone.plugins.module_utils._bpf_build import build_files

    paths = [str(BPF / "wire.h"), str(BPF / "wire_veth.bpf.c")]
    return build_files(paths, ["wire_veth.bpf.c"], str(outdir), run_clang)["wire_veth"]


def run_clang(argv):
    """clang for build_files outside a module: (rc, stdout, stderr), as run_command gives."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def base_and_variant(out):
    """The veth object, and a variant whose wire_in differs by one instruction."""
    base = build_object(BPF / "wire_veth.bpf.c", out / "base")
    variant_dir = out / "variant"
    variant_dir.mkdir()
    (variant_dir / "wire.h").write_text((BPF / "wire.h").read_text())
    src = (BPF / "wire_veth.bpf.c").read_text()
    assert "skb->priority = 0;" in src
    (variant_dir / "wire_veth.bpf.c").write_text(src.replace("skb->priority = 0;", "skb->priority = 1;"))
    variant = build_object(variant_dir / "wire_veth.bpf.c", out / "variant_out")
    return {"base": base, "variant": variant}
