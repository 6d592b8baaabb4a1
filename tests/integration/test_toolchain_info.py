"""yogurt.phone.toolchain_info on this host: what the bpf_toolchain role reads in one module run."""

import platform


def test_reads_packages_apt_bpffs_pyroute2_and_probes_the_kernel_in_check_mode_too(sandbox):
    args = {"packages": ["clang", "bpftool", "no-such-package-yogurt"], "kernel_headers": True}
    first = sandbox.module("toolchain_info", args)
    assert not first.failed and not first.changed, first
    assert first["distribution"]["name"] and first["distribution"]["major_version"], first["distribution"]
    assert first["kernel_release"] == platform.release()
    assert first["kernel_headers"] == f"linux-headers-{platform.release()}"
    assert set(first["packages"]) <= {"clang", "bpftool", first["kernel_headers"]}
    assert "clang" in first["packages"] and "no-such-package-yogurt" not in first["packages"], first["packages"]
    assert first["pyroute2"] and first["python"]["executable"], first
    assert first["bpffs"] is True  # the tests run in private mounts with their own bpffs
    assert first["kernel"]["tcx"] is True and first["kernel"]["bpffs"] is True, first["kernel"]
    assert first["auto_backend"] == "veth" and first["kernel_reason"] == "", first
    assert isinstance(first["apt"]["suites"], list) and isinstance(first["apt"]["lists"], list)

    check = sandbox.module("toolchain_info", args, check=True)
    assert not check.failed and not check.changed, check
    assert check["packages"] == first["packages"] and check["kernel"]["tcx"] is True

    again = sandbox.module("toolchain_info", args)
    assert not again.changed and again["packages"] == first["packages"]


def test_without_the_probe(sandbox):
    res = sandbox.module("toolchain_info", {"probe_kernel": False})
    assert not res.failed and res["kernel"] is None and res["auto_backend"] is None, res
    assert res["kernel_reason"] == "not asked (probe_kernel: false)" and res["packages"] == {}
