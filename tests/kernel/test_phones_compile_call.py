"""The phones module's compile and call options (1.1.0): one module run compiles the wire
(once per distinct source), converges and places the call; check mode compiles and calls nothing."""

import os

from yogurt_test import ROOT
from yogurt_test.phones import phone_spec

SOURCES = ("wire.h", "wire_veth.bpf.c", "wire_netkit.bpf.c")


def spec(prefix, state="present"):
    return phone_spec(prefix, 0, state=state, octet=46)


def test_compile_converge_and_call_in_one_run(sandbox, tmp_path):
    dest = tmp_path / "bpf"
    args = {"phones": [spec(sandbox.prefix)],
            "compile": {"sources": {name: (ROOT / "bpf" / name).read_text() for name in SOURCES}, "dest": str(dest)},
            "call": {"host": "h1"}}

    dry = sandbox.module("phones", args, check=True, diff=True)
    assert not dry.failed, dry
    assert dry.changed and dry["compiled"]["changed"] and dry["call"]["skipped"], dry
    assert "ok" not in dry["call"] and not os.path.exists(dest)  # nothing compiled, no call placed
    assert dry["diff"]["before"]["compiled objects"] == [] and len(dry["diff"]["after"]["compiled objects"]) == 2

    first = sandbox.module("phones", args)
    assert not first.failed and first.changed, first
    objects = first["compiled"]["objects"]
    assert sorted(objects) == ["wire_netkit", "wire_veth"] and all(os.path.exists(p) for p in objects.values())
    assert objects == dry["compiled"]["objects"]  # the same hash as check mode predicted
    stamps = {p: os.stat(p).st_mtime_ns for p in objects.values()}
    call = first["call"]
    assert call["ok"] and call["failures"] == [], call
    assert call["summary"][0].startswith(f"h1 {sandbox.prefix}-p0: veth") and "injection refused 96/96" in call["summary"][0]
    assert first["phones"][0]["backend"] == "veth"

    second = sandbox.module("phones", args)
    assert not second.failed and not second.changed, second
    assert not second["compiled"]["changed"] and second["compiled"]["removed"] == []
    assert {p: os.stat(p).st_mtime_ns for p in objects.values()} == stamps  # compiled once
    assert second["call"]["ok"], second["call"]

    # Another flag is another distinct source: compiled again, the older objects removed.
    flagged = dict(args, compile=dict(args["compile"], cflags=["-DYOGURT_TEST_FLAG"]))
    third = sandbox.module("phones", flagged)
    assert not third.failed and third.changed and third["compiled"]["changed"], third
    assert sorted(third["compiled"]["removed"]) == sorted(objects.values())
    assert not any(os.path.exists(p) for p in objects.values())
    assert all(os.path.exists(p) for p in third["compiled"]["objects"].values())
    assert third["call"]["ok"], third["call"]

    quiet = sandbox.module("phones", {"phones": args["phones"], "compile": flagged["compile"]})
    assert not quiet.failed and not quiet.changed and "call" not in quiet.data, quiet

    down = sandbox.module("phones", {"phones": [spec(sandbox.prefix, state="absent")]})
    assert not down.failed and down.changed, down


def test_a_compile_error_fails_before_any_phone_is_built(sandbox, tmp_path):
    sources = {name: (ROOT / "bpf" / name).read_text() for name in SOURCES}
    sources["wire_veth.bpf.c"] += "\nthis is not C;\n"
    res = sandbox.module("phones", {"phones": [spec(sandbox.prefix)], "call": {},
                                    "compile": {"sources": sources, "dest": str(tmp_path / "bpf")}})
    assert res.failed and "clang failed on wire_veth.bpf.c" in res.get("msg", ""), res
    assert not os.path.exists(f"/run/netns/{sandbox.prefix}0-y1")
