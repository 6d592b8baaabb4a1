# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One home for each fact, and a test for every copy that has to stay.

Copies stay where code cannot import the one definition: the C header is compiled apart,
roles/yogurt_phone/files/phone-metrics.py runs on the host's own python3 without the
collection, and tests/vm/phone_netkit/probe.py runs alone in the netkit VM to check the
collection against the kernel. Each test here fails, naming both places, when a copy
differs. No root, no kernel feature: text, imports and YAML only.
"""

import ast
import importlib.util
import pathlib
import re

import pytest
import yaml

from ansible_collections.yogurt.phone.plugins.doc_fragments import _call as call_doc, _compile as compile_doc
from ansible_collections.yogurt.phone.plugins.module_utils import _bpf as bpf, _wire as wire
from ansible_collections.yogurt.phone.plugins.module_utils._bpf_build import compile_argument_spec
from ansible_collections.yogurt.phone.plugins.module_utils._call import call_argument_spec
from ansible_collections.yogurt.phone.plugins.module_utils._switchboard import DEFAULT_SWITCHBOARD

ROOT = pathlib.Path(__file__).resolve().parents[3]
WIRE_H = ROOT / "bpf" / "wire.h"
METRICS = ROOT / "roles" / "yogurt_phone" / "files" / "phone-metrics.py"
PROBE = ROOT / "tests" / "vm" / "phone_netkit" / "probe.py"
MODULE_UTILS = ROOT / "plugins" / "module_utils"
# enum entry: `C_NAME = N,  /* name[; + 2: other_name] ...` (see the comment above the enum).
SLOT = re.compile(r"^\s*(C_[A-Z_]+) = (\d+),\s*/\* ([a-z0-9_]+)(?:; \+ 2: ([a-z0-9_]+))?", re.M)


def load(path):
    """A stand-alone script as a module, without running its main()."""
    spec = importlib.util.spec_from_file_location(path.stem.replace("-", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wire_h_counters():
    """bpf/wire.h's counter slots as a tuple of names, slot by slot, and C_SLOTS."""
    text = WIRE_H.read_text()
    names = {}
    for _const, slot, name, up_two in SLOT.findall(text):
        names[int(slot)] = name
        if up_two:
            names[int(slot) + 2] = up_two
    assert sorted(names) == list(range(len(names))), f"{WIRE_H}: counter slots with a gap: {names}"
    size = int(re.search(r"\bC_SLOTS = (\d+)", text).group(1))
    return tuple(names[slot] for slot in sorted(names)), size


def test_wire_h_enum_is_what_wire_counters_says():
    counters, size = wire_h_counters()
    assert counters == wire.COUNTERS, f"bpf/wire.h's enum {counters} != _wire.COUNTERS {wire.COUNTERS}"
    assert size == 8 and len(counters) <= size  # pinned maps of older phones are reused: C_SLOTS stays 8


def test_metrics_script_slots_are_the_wire_h_slots():
    slots = load(METRICS).SLOTS
    named = tuple(f"{family}_{direction}" if direction else family for _slot, (family, direction) in sorted(slots.items()))
    assert sorted(slots) == list(range(len(slots))) and named == wire_h_counters()[0], \
        f"phone-metrics.py SLOTS {slots} differs from bpf/wire.h's enum"
    assert {family for family, _help in load(METRICS).FAMILIES} == {family for family, _d in slots.values()}


def test_vm_probe_counters_and_marker_are_the_wire_h_ones():
    probe = load(PROBE)
    assert probe.COUNTERS == wire_h_counters()[0], f"probe.py COUNTERS {probe.COUNTERS} differs from bpf/wire.h"
    mark = int(re.search(r"#define WIRE_MARK (0x[0-9a-f]+)", WIRE_H.read_text()).group(1), 16)
    assert probe.WIRE_MARK == mark


@pytest.mark.parametrize("path", [METRICS, PROBE], ids=["phone-metrics", "probe"])
def test_pin_root_copies_are_wire_pin_root(path):
    assert load(path).PIN_ROOT == wire.PIN_ROOT


def test_metrics_unit_passes_wire_pin_root():
    unit = (ROOT / "roles" / "yogurt_phone" / "templates" / "yogurt-phone-metrics.service.j2").read_text()
    assert f" --pin-root {wire.PIN_ROOT} " in unit


def test_metrics_script_bpf_commands_are_the_bpf_table():
    metrics = load(METRICS)
    assert metrics._SYS_BPF == bpf.SYS_BPF  # pylint: disable=protected-access
    for name, number in metrics._BPF_CMD.items():  # pylint: disable=protected-access
        assert bpf.BPF_CMD.get(name) == number, f"phone-metrics.py {name}={number}, _bpf.BPF_CMD says {bpf.BPF_CMD.get(name)}"


def options(fragment_text):
    return yaml.safe_load(fragment_text)["options"]


@pytest.mark.parametrize("doc, spec, option", [(compile_doc, compile_argument_spec, "compile"),
                                               (call_doc, call_argument_spec, "call")])
def test_option_set_is_documented_once_as_its_argument_spec(doc, spec, option):
    top = options(doc.ModuleDocFragment.DOCUMENTATION)
    nested = options(doc.ModuleDocFragment.SUBOPTIONS)
    assert nested == {option: {"type": "dict", "suboptions": top}}
    for name, arg in spec().items():
        documented = top[name]
        assert (documented["type"], documented.get("elements"), documented.get("default"), documented.get("required", False)) \
            == (arg["type"], arg.get("elements"), arg.get("default"), arg.get("required", False)), name
    assert set(top) == set(spec())


def imports_of(path):
    """The module_utils files one module_utils file imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ansible_collections.yogurt.phone"):
            names.add(node.module.rsplit(".", 1)[-1])
            names.update(alias.name for alias in node.names if alias.name.startswith("_"))
    return names


def test_the_device_layers_do_not_import_the_inventory_model():
    upward = {path.name: sorted(imports_of(path) & {"_phone_model", "_phone_converge", "_call"})
              for path in MODULE_UTILS.glob("*.py")
              if path.stem in ("_names", "_netns", "_netkit", "_veth", "_wire", "_attach", "_netlink", "_bpf", "_probes")}
    assert {name: up for name, up in upward.items() if up} == {}
    assert imports_of(MODULE_UTILS / "_names.py") == set()  # the bottom: the standard library only


def test_phones_and_the_boot_runner_converge_through_converge_host():
    for path in (ROOT / "plugins" / "modules" / "phones.py", ROOT / "roles" / "yogurt_phone" / "templates" / "converge-at-boot.j2"):
        text = path.read_text()
        assert "converge_host(" in text and "HostConverger(" not in text and "host_lock(" not in text, path


def test_compile_programs_default_is_every_bpf_c_source():
    """The programs option's default lives in _bpf_build.plan_build, for bpf_compile and phones alike."""
    from ansible_collections.yogurt.phone.plugins.module_utils._bpf_build import BuildError, plan_build

    def run(argv):
        return 0, "clang version 19\n" if argv[1] == "--version" else "x86_64-linux-gnu\n", ""

    sources = {"wire.h": "", "wire_veth.bpf.c": "", "wire_netkit.bpf.c": ""}
    plan = plan_build(sources, None, "/nonexistent", run=run)
    assert plan["programs"] == ["wire_netkit.bpf.c", "wire_veth.bpf.c"]
    with pytest.raises(BuildError, match="none of the sources"):
        plan_build({"wire.h": ""}, None, "/nonexistent", run=run)


def test_the_switchboard_default_is_one_name():
    """_switchboard.DEFAULT_SWITCHBOARD, and the copies YAML and docs must spell out."""
    role = ROOT / "roles" / "yogurt_phone"
    assert yaml.safe_load((role / "defaults" / "main.yml").read_text())["yogurt_phone_switchboard"] == DEFAULT_SWITCHBOARD
    spec = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())
    assert spec["argument_specs"]["main"]["options"]["yogurt_phone_switchboard"]["default"] == DEFAULT_SWITCHBOARD
    phones_doc = yaml.safe_load(ast.literal_eval(next(
        node.value for node in ast.parse((ROOT / "plugins" / "modules" / "phones.py").read_text()).body
        if isinstance(node, ast.Assign) and node.targets[0].id == "DOCUMENTATION")))
    assert phones_doc["options"]["switchboard"]["default"] == DEFAULT_SWITCHBOARD
    teardown = (ROOT / "playbooks" / "teardown.yml").read_text()
    assert f"yogurt_phone_switchboard | default('{DEFAULT_SWITCHBOARD}')" in teardown


def test_the_test_helpers_wire_mark_is_wire_h_s():
    from yogurt_test.frames import WIRE_MARK  # pylint: disable=import-outside-toplevel

    assert WIRE_MARK == int(re.search(r"#define WIRE_MARK (0x[0-9a-f]+)", WIRE_H.read_text()).group(1), 16)
