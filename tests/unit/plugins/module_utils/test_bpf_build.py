# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""clang's facts (version, multiarch) are read from the object directory on a re-run, as long as
they are of the same clang binary; no clang, no compiler: a fake clang script and a fake run."""

import json
import os

from ansible_collections.yogurt.phone.plugins.module_utils import _bpf_build as build

SOURCES = {"wire.h": "", "wire_veth.bpf.c": "int x;\n"}


def _fake_clang(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    clang = bindir / "clang"
    clang.write_text("#!/bin/sh\nexit 0\n")
    clang.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ.get('PATH', '')}")
    return clang


def _runner(calls):
    def run(argv):
        calls.append(argv[1:])
        if argv[1] == "--version":
            return 0, "clang version 19.1.7\nTarget: x86_64\n", ""
        if argv[1] == "-print-multiarch":
            return 0, "x86_64-linux-gnu\n", ""
        with open(argv[-1], "w", encoding="utf-8") as handle:  # the compile: an object
            handle.write("obj")
        return 0, "", ""
    return run


def test_rerun_reads_clang_facts_instead_of_running_clang(tmp_path, monkeypatch):
    _fake_clang(tmp_path, monkeypatch)
    dest, calls = str(tmp_path / "objects"), []
    first = build.converge_build(SOURCES, None, dest, run=_runner(calls), run_command=_runner(calls))
    assert first["changed"] and ["--version"] in calls and ["-print-multiarch"] in calls
    saved = json.loads((tmp_path / "objects" / build.CLANG_FACTS).read_text())
    assert saved["version"] == "clang version 19.1.7" and saved["multiarch"] == "x86_64-linux-gnu"
    calls.clear()
    again = build.converge_build(SOURCES, None, dest, run=_runner(calls), run_command=_runner(calls))
    assert not again["changed"] and again["hash"] == first["hash"] and calls == []


def test_another_clang_binary_is_asked_again(tmp_path, monkeypatch):
    clang = _fake_clang(tmp_path, monkeypatch)
    dest, calls = str(tmp_path / "objects"), []
    build.converge_build(SOURCES, None, dest, run=_runner(calls), run_command=_runner(calls))
    clang.write_text("#!/bin/sh\n# upgraded\nexit 0\n")  # what a package upgrade does to size and mtime
    calls.clear()
    build.converge_build(SOURCES, None, dest, run=_runner(calls), run_command=_runner(calls))
    assert ["--version"] in calls


def test_check_mode_writes_no_facts(tmp_path, monkeypatch):
    _fake_clang(tmp_path, monkeypatch)
    dest = tmp_path / "objects"
    dest.mkdir()
    result = build.converge_build(SOURCES, None, str(dest), check_mode=True, run=_runner([]), run_command=_runner([]))
    assert result["changed"] and not (dest / build.CLANG_FACTS).exists()
