# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""phone-metrics (roles/yogurt_phone/files) read by the real node_exporter, on the real kernel.

The script runs as the timer would run it (the system's /usr/bin/python3, no Ansible),
into a temporary textfile directory; Debian's prometheus-node-exporter binary, unpacked
from its .deb without running its maintainer scripts, serves that directory on
127.0.0.1:<free port> with only the textfile collector; the test scrapes /metrics.
"""

import contextlib
import os
import pathlib
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

from yogurt_test import ROOT
from yogurt_test.phones import PIN_ROOT as PIN_PATH, VethPhone as Phone

SCRIPT = ROOT / "roles" / "yogurt_phone" / "files" / "phone-metrics.py"
PIN_ROOT = str(PIN_PATH)
CACHE = pathlib.Path.home() / ".cache" / "yogurt-phone" / "node-exporter"
EXPORTER = CACHE / "usr" / "bin" / "prometheus-node-exporter"
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def node_exporter_binary():
    """Debian's node_exporter, unpacked once into ~/.cache/yogurt-phone (apt-get download + dpkg-deb -x)."""
    if EXPORTER.exists():
        return EXPORTER
    with tempfile.TemporaryDirectory() as tmp:
        got = subprocess.run(["apt-get", "download", "prometheus-node-exporter"], cwd=tmp,
                             capture_output=True, text=True, check=False)
        debs = list(pathlib.Path(tmp).glob("prometheus-node-exporter_*.deb"))
        if got.returncode != 0 or not debs:
            pytest.fail(f"prometheus-node-exporter cannot be had here (apt-get download: {got.stderr.strip()[-300:]})")
        unpack = CACHE.with_name("node-exporter.tmp")
        shutil.rmtree(unpack, ignore_errors=True)
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(unpack)], check=True)
        shutil.rmtree(CACHE, ignore_errors=True)
        unpack.rename(CACHE)
    return EXPORTER


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Exporter:
    """node_exporter with only the textfile collector, on 127.0.0.1:<port>."""

    def __init__(self, binary, directory):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [str(binary), f"--web.listen-address=127.0.0.1:{self.port}", "--collector.disable-defaults",
             "--collector.textfile", f"--collector.textfile.directory={directory}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120  # slow under CI load: wait for it, not for a fixed time
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"node_exporter exited {self.proc.returncode}: {self.proc.stderr.read()}")
            with contextlib.suppress(OSError):
                self.scrape()
                return
            if time.monotonic() > deadline:
                raise AssertionError("node_exporter did not answer within 120 s")
            time.sleep(0.2)

    def scrape(self):
        """The raw text and {(name, frozenset(labels)): value} of one scrape."""
        with urllib.request.urlopen(self.url, timeout=30) as resp:  # 127.0.0.1 only
            text = resp.read().decode()
        samples = {}
        for line in text.splitlines():
            match = SAMPLE.match(line)
            if match and not line.startswith("#"):
                labels = frozenset(LABEL.findall(match.group(2) or ""))
                samples[(match.group(1), labels)] = float(match.group(3))
        return text, samples

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session")
def node_exporter():
    return node_exporter_binary()


def run_script(directory, *extra):
    """phone-metrics as the timer runs it: the system's python3, no Ansible, no venv."""
    return subprocess.run(["/usr/bin/python3", str(SCRIPT), "--pin-root", PIN_ROOT, str(directory)] + list(extra),
                          capture_output=True, text=True, check=False)


def series(samples, phone):
    """{(name, direction or None): value} of one phone."""
    out = {}
    for (name, labels), value in samples.items():
        labels = dict(labels)
        if name.startswith("yogurt_phone_") and labels.get("phone") == phone:
            out[(name, labels.get("direction"))] = value
    return out


PACKETS = "yogurt_phone_forwarded_packets_total"


def test_node_exporter_shows_each_phones_counters_and_they_move_with_a_call(
        sandbox, prefix, objects, tmp_path, node_exporter):
    live = Phone(sandbox, prefix, objects["base"])
    live.wire()
    # A phone whose wire was removed (state absent): no series at all.
    removed = Phone(sandbox, prefix + "r", objects["base"])
    removed.wire()
    res = sandbox.module("wire", {"phone": removed.name, "state": "absent"})
    assert not res.failed, res
    # A phone whose device was deleted under it: its links are defunct, up 0, counters still shown.
    broken = Phone(sandbox, prefix + "d", objects["base"])
    broken.wire()
    sandbox.ip("link", "del", broken.host[0])
    # Pins that are not a wire's (a hash map where the counters should be): unreadable, up 0.
    bogus = f"{prefix}x"
    os.makedirs(f"{PIN_ROOT}/{bogus}")
    subprocess.run(["bpftool", "map", "create", f"{PIN_ROOT}/{bogus}/map_counters", "type", "hash",
                    "key", "4", "value", "8", "entries", "1", "name", "bogus"], check=True)

    textdir = tmp_path / "textfile"
    textdir.mkdir()
    first = run_script(textdir)
    assert first.returncode == 0, first.stderr
    assert f"{broken.name}: link_end0_in is detached" in first.stderr
    assert f"{bogus}: {PIN_ROOT}/{bogus}/map_counters is not the wire's counters map" in first.stderr
    assert sorted(p.name for p in textdir.iterdir()) == ["yogurt_phone.prom"]  # no temporary file left
    assert oct(os.stat(textdir / "yogurt_phone.prom").st_mode & 0o777) == "0o644"

    exporter = Exporter(node_exporter, textdir)
    try:
        text, before = exporter.scrape()
        assert before[("node_textfile_scrape_error", frozenset())] == 0, text
        mine = series(before, live.name)
        assert mine[("yogurt_phone_up", None)] == 1, text
        for name, direction in ((PACKETS, "0to1"), (PACKETS, "1to0"),
                                ("yogurt_phone_forwarded_bytes_total", "0to1"),
                                ("yogurt_phone_forwarded_bytes_total", "1to0"),
                                ("yogurt_phone_refused_total", None), ("yogurt_phone_unknown_ifindex_total", None)):
            assert (name, direction) in mine, (name, direction, text)
        assert series(before, removed.name) == {}, text
        assert series(before, broken.name)[("yogurt_phone_up", None)] == 0, text
        assert (PACKETS, "0to1") in series(before, broken.name), text
        assert series(before, bogus) == {("yogurt_phone_up", None): 0}, text
        stamp = before[("yogurt_phone_scrape_timestamp_seconds", frozenset())]
        assert abs(stamp - time.time()) < 600

        assert live.ping(0, count=5) == 5  # the call: 5 echo requests 0->1, 5 replies 1->0
        again = run_script(textdir)
        assert again.returncode == 0, again.stderr
        text2, after = exporter.scrape()
        now = series(after, live.name)
        moved = {d: now[(PACKETS, d)] - mine[(PACKETS, d)] for d in ("0to1", "1to0")}
        assert moved["0to1"] >= 5 and moved["1to0"] >= 5, (moved, text2)
        assert now[("yogurt_phone_forwarded_bytes_total", "0to1")] - mine[("yogurt_phone_forwarded_bytes_total", "0to1")] >= 5 * 84
        assert after[("yogurt_phone_scrape_timestamp_seconds", frozenset())] > stamp
        print(f"before the call: {mine}\nmoved by the call: {moved}")
        print("".join(line + "\n" for line in text2.splitlines()
                      if "yogurt_phone_" in line or line.startswith("node_textfile_scrape")))
    finally:
        exporter.stop()


def test_a_missing_directory_is_an_error(tmp_path):
    res = run_script(tmp_path / "nowhere")
    assert res.returncode == 1
    assert "is not a directory" in res.stderr
    assert not (tmp_path / "nowhere").exists()


def test_no_phones_gives_only_the_timestamp(tmp_path):
    res = run_script(tmp_path, "--pin-root", str(tmp_path / "no-pins"))  # the later option wins
    assert res.returncode == 0, res.stderr
    text = (tmp_path / "yogurt_phone.prom").read_text()
    assert [line for line in text.splitlines() if not line.startswith("#")][0].startswith(
        "yogurt_phone_scrape_timestamp_seconds ")
    assert "yogurt_phone_up" not in text
