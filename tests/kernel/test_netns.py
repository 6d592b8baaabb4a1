"""yogurt.phone.netns against the real kernel: each case in check mode, for real, and again."""

import os
import subprocess

import pytest


def ns_exists(name):
    return os.path.exists(f"/run/netns/{name}") and subprocess.run(
        ["ip", "netns", "exec", name, "true"], capture_output=True, check=False).returncode == 0


def lo_up(name):
    out = subprocess.run(["ip", "-n", name, "-o", "link", "show", "lo"], capture_output=True, text=True, check=False).stdout
    return ",UP" in out


def test_create_check_real_rerun(sandbox):
    name = f"{sandbox.prefix}-a"
    check = sandbox.module("netns", {"name": name}, check=True, diff=True)
    assert not check.failed, check
    assert check.changed
    assert check["diff"] == {"before": {"state": "absent", "loopback": None},
                             "after": {"state": "present", "loopback": "up"}}
    assert not ns_exists(name), "check mode must not create the namespace"

    real = sandbox.module("netns", {"name": name}, diff=True)
    assert real.changed and real["netns"]["path"] == f"/run/netns/{name}"
    assert ns_exists(name) and lo_up(name)
    # `ip netns` sees it: the two are interchangeable.
    assert name in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout.split()

    again = sandbox.module("netns", {"name": name}, diff=True)
    assert not again.failed and not again.changed, again
    assert again["diff"]["before"] == again["diff"]["after"]


def test_loopback_down_then_healed(sandbox):
    name = f"{sandbox.prefix}-lo"
    assert sandbox.module("netns", {"name": name, "loopback": False}).changed
    assert ns_exists(name) and not lo_up(name)
    res = sandbox.module("netns", {"name": name}, diff=True)
    assert res.changed and res["diff"]["before"]["loopback"] == "down" and lo_up(name)


def test_absent_check_real_rerun(sandbox):
    name = f"{sandbox.prefix}-b"
    subprocess.run(["ip", "netns", "add", name], check=True)  # made by iproute2, removed by us
    check = sandbox.module("netns", {"name": name, "state": "absent"}, check=True, diff=True)
    assert check.changed and ns_exists(name)
    assert check["diff"]["after"]["state"] == "absent"
    assert sandbox.module("netns", {"name": name, "state": "absent"}).changed
    assert not ns_exists(name)
    assert not sandbox.module("netns", {"name": name, "state": "absent"}).changed


def test_substring_names_do_not_match(sandbox):
    longer = f"{sandbox.prefix}-10"
    shorter = f"{sandbox.prefix}-1"
    subprocess.run(["ip", "netns", "add", longer], check=True)
    assert not sandbox.module("netns", {"name": shorter, "state": "absent"}).changed
    res = sandbox.module("netns", {"name": shorter}, check=True)
    assert res.changed, "yogurt-10 must not count as yogurt-1"
    assert sandbox.module("netns", {"name": shorter}).changed
    assert ns_exists(shorter) and ns_exists(longer)
    assert sandbox.module("netns", {"name": shorter, "state": "absent"}).changed
    assert ns_exists(longer), "removing the shorter name must leave the longer one alone"


def test_stale_file_is_healed(sandbox):
    """A create killed between creat() and mount() leaves an empty file: the next run heals it."""
    name = f"{sandbox.prefix}-stale"
    os.makedirs("/run/netns", exist_ok=True)
    open(f"/run/netns/{name}", "w").close()
    try:
        res = sandbox.module("netns", {"name": name})
        assert res.changed and ns_exists(name), res
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
        if os.path.exists(f"/run/netns/{name}"):
            os.unlink(f"/run/netns/{name}")


@pytest.mark.parametrize("bad, words", [
    ("", "must not be empty"),
    (".", "not a valid namespace name"),
    ("..", "not a valid namespace name"),
    ("a/b", "contains '/'"),
    ("x" * 256, "256 bytes long; the limit is 255"),
])
def test_bad_names_fail_and_change_nothing(sandbox, bad, words):
    res = sandbox.module("netns", {"name": bad})
    assert res.failed
    assert words in res["msg"] and res["msg"].startswith("name:"), res["msg"]
    # Nothing was made: no entry (or directory, for 'a/b') under /run/netns by that name.
    first = bad.split("/")[0]
    if first not in ("", ".", ".."):
        assert not os.path.lexists(f"/run/netns/{first}")
