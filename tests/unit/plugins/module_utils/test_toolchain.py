"""What toolchain_info reads: dpkg-query's lines, apt's sources (both formats), apt's lists, bpffs."""

from ansible_collections.yogurt.phone.plugins.module_utils import _toolchain as toolchain


def test_only_installed_packages_count():
    lines = ["clang 1:14.0-55.7~deb12u1 ii ", "bpftool 7.1.0+6.1.115-1 rc ", "llvm  un ", "iproute2 6.15.0-1~bpo12+1 ii"]
    assert toolchain.dpkg_installed(lines) == {"clang": "1:14.0-55.7~deb12u1", "iproute2": "6.15.0-1~bpo12+1"}


def test_suites_of_both_source_formats_enabled_only(tmp_path):
    (tmp_path / "sources.list").write_text(
        "deb http://deb.debian.org/debian bookworm main\n"
        "# deb http://deb.debian.org/debian bookworm-proposed-updates main\n"
        "deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://deb.debian.org/debian bookworm-updates main\n"
        "deb-src http://deb.debian.org/debian bookworm main\n")
    lists_d = tmp_path / "sources.list.d"
    lists_d.mkdir()
    (lists_d / "bookworm-backports.sources").write_text(
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\n\n"
        "# a disabled stanza\nTypes: deb\nURIs: http://example.invalid/debian\nSuites: sid experimental\n"
        "Components: main\nEnabled: no\n")
    (lists_d / "debian.sources").write_text("Types: deb\nURIs: http://deb.debian.org/debian\n"
                                            "Suites: trixie trixie-updates\nComponents: main\n")
    (lists_d / "notes.txt").write_text("deb http://example.invalid/debian ignored main\n")
    sources = (str(tmp_path / "sources.list"), str(lists_d))
    assert toolchain.apt_suites(sources) == ["bookworm", "bookworm-backports", "bookworm-updates", "trixie",
                                             "trixie-updates"]
    assert toolchain.apt_suites((str(tmp_path / "missing.list"), str(tmp_path / "missing.d"))) == []


def test_package_lists(tmp_path):
    for name in ("deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4",
                 "deb.debian.org_debian_dists_bookworm_InRelease", "lock"):
        (tmp_path / name).write_text("")
    (tmp_path / "partial").mkdir()
    assert toolchain.apt_lists(str(tmp_path)) == ["deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4"]
    assert toolchain.apt_lists(str(tmp_path / "nowhere")) == []


def test_bpffs_is_read_from_mountinfo(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text("22 1 0:21 / /sys rw,nosuid shared:7 - sysfs sysfs rw\n"
                    "40 22 0:33 / /sys/fs/bpf rw,nosuid shared:15 - bpf bpf rw,mode=700\n")
    assert toolchain.bpffs_mounted(str(info))
    info.write_text("22 1 0:21 / /sys rw,nosuid shared:7 - sysfs sysfs rw\n"
                    "40 22 0:33 / /sys/fs/bpf rw shared:15 - tmpfs none rw\n")
    assert not toolchain.bpffs_mounted(str(info))
    assert not toolchain.bpffs_mounted(str(tmp_path / "none"))


def test_version_tuple():
    assert toolchain.version_tuple("0.9.7") == (0, 9, 7)
    assert toolchain.version_tuple("0.7.12.post1") == (0, 7, 12)
    assert toolchain.version_tuple("") == ()
    assert toolchain.version_tuple("0.9.7") >= (0, 9) > toolchain.version_tuple("0.8.1")
