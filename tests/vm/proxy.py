# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A forwarding proxy on 127.0.0.1 that lets the fresh-host VMs reach the package archive and
the Python package index this machine uses, and nothing else (standard library only).

- HTTP: absolute-URI GET and HEAD (apt's http:// archive), persistent connections and
  pipelined requests as apt sends them.
- HTTPS: CONNECT host:443 (pip). The TLS passes through untouched; this machine inspects
  TLS, so the VM trusts this machine's CA bundle (build_image.sh copies it in).

The allowed destinations are read from this machine's own configuration, never from the tree:
the hosts of the apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/*.list and
*.sources) for GET/HEAD on their scheme's port, and the hosts of pip's index-url and
extra-index-url (`pip config list`; pip's defaults, pypi.org and files.pythonhosted.org, when
no index-url is set) for CONNECT to 443. Everything else gets 403 and a line in the log.

    python tests/vm/proxy.py [--port N] [--log FILE]   # serve until interrupted

From Python: `with running_proxy(log_path) as proxy: proxy.port, proxy.refused, proxy.allowed`.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import http.client
import http.server
import os
import pathlib
import re
import select
import shlex
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

APT_SOURCES = ("/etc/apt/sources.list", "/etc/apt/sources.list.d/*.list", "/etc/apt/sources.list.d/*.sources")
# pip's own defaults: the index, and the host its files are served from.
PIP_DEFAULT_HOSTS = ("pypi.org", "files.pythonhosted.org")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
              "te", "trailers", "transfer-encoding", "upgrade"}
DEFAULT_PORTS = {"http": 80, "https": 443}


def _uris_of_sources(path: str) -> list[str]:
    """The archive URIs of one apt sources file (one-line or deb822 format); comments ignored."""
    uris = []
    try:
        text = pathlib.Path(path).read_text(errors="replace")
    except OSError:
        return uris
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if path.endswith(".sources"):
            if line.lower().startswith("uris:"):
                uris += line.split(":", 1)[1].split()
        elif line.startswith(("deb ", "deb-src ")):
            words = re.sub(r"\[[^]]*\]", " ", line).split()  # drop [options]
            if len(words) >= 2:
                uris.append(words[1])
    return uris


def apt_destinations(patterns=APT_SOURCES) -> set[tuple[str, str, int]]:
    """{(scheme, host, port)} of this machine's apt sources."""
    found = set()
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            for uri in _uris_of_sources(path):
                parsed = urllib.parse.urlsplit(uri)
                if parsed.scheme in DEFAULT_PORTS and parsed.hostname:
                    found.add((parsed.scheme, parsed.hostname.lower(), parsed.port or DEFAULT_PORTS[parsed.scheme]))
    return found


def pip_destinations(python: str = sys.executable) -> set[tuple[str, str, int]]:
    """{(scheme, host, port)} of pip's index-url and extra-index-url on this machine.

    file:// indexes need no proxy. Without an index-url, pip uses pypi.org (and its files on
    files.pythonhosted.org).
    """
    try:
        listed = subprocess.run([python, "-m", "pip", "config", "list"], check=False, capture_output=True,
                                text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        listed = ""
    found, index_set = set(), False
    for line in listed.splitlines():
        key, _sep, value = line.partition("=")
        option = key.rsplit(".", 1)[-1]
        if option not in ("index-url", "extra-index-url"):
            continue
        with contextlib.suppress(ValueError):
            value = " ".join(shlex.split(value))
        for url in value.split():
            parsed = urllib.parse.urlsplit(url)
            if option == "index-url":
                index_set = True
            if parsed.scheme in DEFAULT_PORTS and parsed.hostname:
                found.add((parsed.scheme, parsed.hostname.lower(), parsed.port or DEFAULT_PORTS[parsed.scheme]))
    if not index_set:
        found |= {("https", host, 443) for host in PIP_DEFAULT_HOSTS}
    return found


class Allowlist:
    """What the proxy lets through: GET/HEAD to http destinations, CONNECT to https ones."""

    def __init__(self, destinations: set[tuple[str, str, int]]):
        self.destinations = set(destinations)

    @classmethod
    def from_this_machine(cls) -> "Allowlist":
        return cls(apt_destinations() | pip_destinations())

    def allows(self, scheme: str, host: str, port: int) -> bool:
        return (scheme, host.lower().rstrip("."), port) in self.destinations

    def __str__(self):
        return ", ".join(f"{s}://{h}:{p}" for s, h, p in sorted(self.destinations))


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120  # an idle client connection is closed (its nc in qemu then exits)
    server: "ProxyServer"

    def log_message(self, format, *args):  # noqa: A002  pylint: disable=redefined-builtin
        pass  # the server keeps its own log

    def _refuse(self, target: str, why: str):
        self.server.record("REFUSED", self.command, target, why)
        body = f"yogurt test proxy: {self.command} {target} refused: {why}\n".encode()
        self.send_response(403, "Forbidden")
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_CONNECT(self):  # noqa: N802
        host, _sep, port = self.path.rpartition(":")
        host = host.strip("[]")
        if not port.isdigit() or not self.server.allowlist.allows("https", host, int(port)):
            self._refuse(self.path, "not an allowed https destination (apt or pip configuration of this machine)")
            self.close_connection = True
            return
        try:
            upstream = socket.create_connection((host, int(port)), timeout=30)
        except OSError as exc:
            self.server.record("FAILED", "CONNECT", self.path, str(exc))
            self.send_error(502, f"cannot reach {self.path}: {exc}")
            self.close_connection = True
            return
        self.server.record("ALLOWED", "CONNECT", self.path, "")
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        self._relay(self.connection, upstream)

    @staticmethod
    def _relay(client: socket.socket, upstream: socket.socket):
        sockets = [client, upstream]
        peer = {client: upstream, upstream: client}
        open_reading = set(sockets)
        try:
            while open_reading:
                readable, _w, _x = select.select(list(open_reading), [], [], 300)
                if not readable:
                    return  # idle for 5 minutes
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        open_reading.discard(sock)
                        with contextlib.suppress(OSError):
                            peer[sock].shutdown(socket.SHUT_WR)
                        continue
                    peer[sock].sendall(data)
        except OSError:
            return
        finally:
            upstream.close()

    def _forward(self):
        parsed = urllib.parse.urlsplit(self.path)
        if parsed.scheme != "http" or not parsed.hostname:
            self._refuse(self.path, "only absolute http:// URIs are proxied (use CONNECT for https)")
            return
        port = parsed.port or 80
        if not self.server.allowlist.allows("http", parsed.hostname, port):
            self._refuse(self.path, "not an allowed http destination (apt sources of this machine)")
            return
        path = urllib.parse.urlunsplit(("", "", parsed.path or "/", parsed.query, ""))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            upstream = http.client.HTTPConnection(parsed.hostname, port, timeout=60)
            upstream.request(self.command, path, headers=headers)
            response = upstream.getresponse()
        except OSError as exc:
            self.server.record("FAILED", self.command, self.path, str(exc))
            self.send_error(502, f"cannot reach {parsed.hostname}:{port}: {exc}")
            self.close_connection = True
            return
        self.server.record("ALLOWED", self.command, self.path, str(response.status))
        try:
            self.send_response_only(response.status, response.reason)  # upstream's Date and Server follow
            length = response.getheader("Content-Length")
            no_body = self.command == "HEAD" or response.status in (204, 304) or 100 <= response.status < 200
            for key, value in response.getheaders():
                if key.lower() not in HOP_BY_HOP:
                    self.send_header(key, value)
            chunked = not no_body and length is None
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if not no_body:
                while True:
                    data = response.read(65536)
                    if not data:
                        break
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
                if chunked:
                    self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        finally:
            upstream.close()

    do_GET = _forward  # noqa: N815
    do_HEAD = _forward  # noqa: N815

    def _not_allowed_method(self):
        self._refuse(self.path, f"method {self.command} is not proxied (GET, HEAD, CONNECT only)")
        self.close_connection = True

    do_POST = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = _not_allowed_method  # noqa: N815


class ProxyServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, allowlist: Allowlist, log_path: os.PathLike | str | None = None, port: int = 0):
        super().__init__(("127.0.0.1", port), _Handler)
        self.allowlist = allowlist
        self.log_path = pathlib.Path(log_path) if log_path else None
        self.events: list[tuple[str, str, str, str]] = []
        self._lock = threading.Lock()
        self.record("START", "-", f"127.0.0.1:{self.port}", f"allowed: {allowlist}")

    @property
    def port(self) -> int:
        return self.server_address[1]

    def record(self, verdict: str, method: str, target: str, detail: str):
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {verdict} {method} {target} {detail}".rstrip()
        with self._lock:
            self.events.append((verdict, method, target, detail))
            if self.log_path:
                with open(self.log_path, "a", encoding="utf-8") as log:
                    log.write(line + "\n")

    def _of(self, verdict):
        with self._lock:
            return [(method, target) for v, method, target, _when in self.events if v == verdict]

    @property
    def refused(self) -> list[tuple[str, str]]:
        return self._of("REFUSED")

    @property
    def allowed(self) -> list[tuple[str, str]]:
        return self._of("ALLOWED")


@contextlib.contextmanager
def running_proxy(log_path: os.PathLike | str | None = None, allowlist: Allowlist | None = None):
    """A proxy serving on 127.0.0.1:<free port> for the duration of the with-block."""
    server = ProxyServer(allowlist or Allowlist.from_this_machine(), log_path)
    thread = threading.Thread(target=server.serve_forever, name="yogurt-proxy", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="proxy.py", description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--log", help="append one line per request to this file")
    args = parser.parse_args(argv)
    server = ProxyServer(Allowlist.from_this_machine(), args.log, args.port)
    print(f"proxy on 127.0.0.1:{server.port}; allowed: {server.allowlist}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        refused = server.refused
        print(f"proxy: {len(server.allowed)} allowed, {len(refused)} refused", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
