# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Compile BPF C sources with clang, skipping the compile when nothing that matters changed.

The object's name carries a hash of every source, the flags and the compiler version, so
an unchanged input is never compiled twice and a changed one never overwrites an object
in use. No kernel headers: the programs touch only __sk_buff (uapi linux/bpf.h plus
libbpf's bpf_helpers.h).

PRIVATE to the yogurt.phone collection (like community.crypto's module_utils): no public API,
names may change in any release.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import platform
import shutil

BASE_FLAGS = ["-O2", "-g", "-target", "bpf", "-Wall"]
DEST = "/var/lib/yogurt-phone/bpf"
# In the object directory: clang's version and multiarch, and which binary they are of. A re-run
# then starts no clang at all (two runs cost a host ~30 ms of CPU on every converge).
CLANG_FACTS = ".clang-facts.json"


def compile_argument_spec():
    """The compile options, as the bpf_compile module takes them and the phones module's compile
    option. Documented once, in plugins/doc_fragments/_compile.py."""
    return dict(
        sources=dict(type="dict", required=True),
        programs=dict(type="list", elements="str"),
        dest=dict(type="path", default=DEST),
        clang=dict(type="str", default="clang"),
        cflags=dict(type="list", elements="str", default=[]),
    )


class BuildError(Exception):
    """Compiling failed; the message carries clang's output."""


def _clang_identity(clang):
    """The clang binary as found in PATH: resolved path, size, mtime and inode (an upgrade changes
    them). None when it is not found (running it then says how to install it)."""
    path = shutil.which(clang)
    if not path:
        return None
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return None
    return f"{real} {st.st_size} {st.st_mtime_ns} {st.st_ino}"


def _clang_facts(clang, run, dest=None):
    """(version line, multiarch, facts to save or None): from dest's CLANG_FACTS when they are of
    the same binary, else from clang itself."""
    identity = _clang_identity(clang)
    if identity and dest:
        try:
            with open(os.path.join(dest, CLANG_FACTS), encoding="utf-8") as handle:
                saved = json.load(handle)
            if saved.get("identity") == identity:
                return saved["version"], saved["multiarch"], None
        except (OSError, ValueError, KeyError, AttributeError):
            pass
    try:
        rc, version, err = run([clang, "--version"])
    except OSError as exc:
        raise BuildError(f"cannot run {clang} ({exc}): install clang (the yogurt.phone.bpf_toolchain role does)") from None
    if rc != 0:
        raise BuildError(f"{clang} --version failed: {err.strip()}: install clang")
    rc, multiarch, _err = run([clang, "-print-multiarch"])
    multiarch = multiarch.strip() if rc == 0 and multiarch.strip() else f"{platform.machine()}-linux-gnu"
    version = version.splitlines()[0].strip()
    return version, multiarch, ({"identity": identity, "version": version, "multiarch": multiarch} if identity else None)


def _save_clang_facts(dest, facts):
    """Best effort: a directory that cannot be written only means clang runs again next time."""
    tmp = os.path.join(dest, f"{CLANG_FACTS}.tmp.{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(facts, handle)
        os.replace(tmp, os.path.join(dest, CLANG_FACTS))
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def plan_build(sources, programs, dest, clang="clang", cflags=(), run=None):
    """What would be built: {'hash', 'objects': {stem: path}, 'srcdir', 'flags', 'clang', 'sources'}.

    `run(argv)` returns (rc, stdout, stderr): a module's run_command, or the caller's own runner
    outside a module (bpf/build.py). `programs` None: every <stem>.bpf.c among the sources."""
    if programs is None:
        programs = sorted(name for name in sources if name.endswith(".bpf.c"))
        if not programs:
            raise BuildError(f"none of the sources ({', '.join(sorted(sources))}) is a BPF program "
                             "(<stem>.bpf.c): add one, or name the programs to compile")
    for name in programs:
        if name not in sources:
            raise BuildError(f"program {name} is not among the sources ({', '.join(sorted(sources))})")
        if not name.endswith(".bpf.c"):
            raise BuildError(f"program {name}: BPF program sources are named <stem>.bpf.c")
    for name in sources:
        if "/" in name or name in (".", ".."):
            raise BuildError(f"source name {name!r} must be a plain file name")
    version, multiarch, facts = _clang_facts(clang, run, dest)
    # <linux/bpf.h> includes <asm/types.h>, which Debian keeps under the multiarch dir.
    flags = BASE_FLAGS + [f"-I/usr/include/{multiarch}"] + list(cflags)
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + str(sources[name]).encode() + b"\0")
    digest.update(" ".join(flags).encode() + b"\0" + version.encode())
    key = digest.hexdigest()[:16]
    objects = {name[: -len(".bpf.c")]: os.path.join(dest, f"{name[: -len('.bpf.c')]}-{key}.o") for name in programs}
    return {"hash": key, "objects": objects, "srcdir": os.path.join(dest, f"src-{key}"), "flags": flags,
            "clang": clang, "sources": sources, "programs": list(programs), "clang_facts": facts}


def run_build(plan, run_command):
    """Write the sources and compile each missing object atomically."""
    os.makedirs(plan["srcdir"], mode=0o755, exist_ok=True)
    for name, text in plan["sources"].items():
        path = os.path.join(plan["srcdir"], name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(str(text) if str(text).endswith("\n") else str(text) + "\n")
    for name in plan["programs"]:
        obj = plan["objects"][name[: -len(".bpf.c")]]
        if os.path.exists(obj):
            continue
        tmp = f"{obj}.tmp.{os.getpid()}"
        argv = [plan["clang"]] + plan["flags"] + ["-c", os.path.join(plan["srcdir"], name), "-o", tmp]
        rc, _out, err = run_command(argv)
        if rc != 0:
            raise BuildError(f"clang failed on {name} (hash {plan['hash']}): {err.strip()[-2000:]}")
        os.replace(tmp, obj)
    return plan["objects"]


def converge_build(sources, programs, dest, clang="clang", cflags=(), check_mode=False, run=None,
                   run_command=None, diff=False):
    """What the bpf_compile module does, for any module that compiles (the phones module too).

    Compiles the objects that are missing (once per distinct source: the hash names them) and
    removes objects of older hashes of the same programs. Returns {'changed', 'objects',
    'hash', 'removed'} plus 'diff' (object paths before and after) when `diff`. In check mode
    nothing is written; 'changed' says whether a compile or a removal would happen.
    `run` runs clang --version and -print-multiarch; `run_command` the compiles.
    """
    plan = plan_build(sources, programs, dest, clang, cflags, run=run)
    old = sorted(f for stem in plan["objects"] for f in glob.glob(os.path.join(dest, f"{stem}-*.o"))
                 if f not in plan["objects"].values())
    missing = [path for path in plan["objects"].values() if not os.path.exists(path)]
    changed = bool(missing or old)
    if changed and not check_mode:
        run_build(plan, run_command)
        for path in old:
            os.unlink(path)
    if plan["clang_facts"] and not check_mode and os.path.isdir(dest):
        _save_clang_facts(dest, plan["clang_facts"])
    result = {"changed": changed, "objects": plan["objects"], "hash": plan["hash"], "removed": old}
    if diff:
        result["diff"] = {"before": {"objects": sorted(set(plan["objects"].values()) - set(missing)) + old},
                          "after": {"objects": sorted(plan["objects"].values())}}
    return result


def converge_build_for(module, opts):
    """converge_build() for a module: `opts` holds sources, programs, dest, clang and cflags (the
    options of bpf_compile, or the phones module's compile option). A BuildError fails the module."""
    def run(argv):
        # OSError (no clang) reaches plan_build, which says how to install it.
        return module.run_command(argv, handle_exceptions=False)

    try:
        return converge_build(opts["sources"], opts["programs"], opts["dest"], opts["clang"], opts["cflags"],
                              check_mode=module.check_mode, run=run, run_command=module.run_command,
                              diff=module._diff)  # pylint: disable=protected-access
    except BuildError as exc:
        module.fail_json(msg=str(exc))
        raise  # not reached: fail_json exits


def build_files(paths, programs, dest, run, clang="clang", cflags=()):
    """Build from files on disk (bpf/build.py): returns {stem: object path}. `run` as in plan_build."""
    sources = {}
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            sources[os.path.basename(path)] = handle.read()
    plan = plan_build(sources, programs, dest, clang, cflags, run=run)
    return run_build(plan, run)
