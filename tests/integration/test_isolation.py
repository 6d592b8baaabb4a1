# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Isolation of the veth backend, attacked from the host namespace and from a yogurt.

Every attack is made as root in the sandbox (the stand-in for the host namespace) or inside
a yogurt, and sends packets only to addresses inside namespaces the test made. Each refusal
is counted: the phone's counters (yogurt.phone.phone_info) must move by at least the number
of packets that were handed to a device. That number comes from the sender's own kernel
counters (nstat) or from the injector, never from the counters under test.

The helpers here (object, converge, counters, listeners, injector) are shared with
test_faults.py and test_load.py.
"""

import contextlib
import json
import os
import pathlib
import subprocess
import time


from conftest import ROOT, VENV_BIN
from test_site import phone


RECORDS = pathlib.Path("/run/yogurt/phones")
WIRE_MARK = 0x79677274  # WIRE_MARK in bpf/wire.h: a host process may forge it as SO_MARK
REFUSALS = ("refused", "unknown_ifindex")

# A TCP server: one listening socket per port; answers every connection with its identity.
# Ends when stdin closes and prints how many connections it accepted.
SERVE_TCP = r"""
import select, socket, sys
addr, ports, ident = sys.argv[1], sys.argv[2].split(","), sys.argv[3].encode()
socks = []
for port in ports:
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, int(port)))
    s.listen(16)
    socks.append(s)
print("ready", flush=True)
accepted = 0
while True:
    ready = select.select(socks + [sys.stdin], [], [])[0]
    if sys.stdin in ready:
        break
    for s in ready:
        conn, _peer = s.accept()
        accepted += 1
        conn.sendall(ident)
        conn.close()
print(accepted, flush=True)
"""

# A UDP counter: counts datagrams until stdin closes.
SERVE_UDP = r"""
import select, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
got = 0
while True:
    ready = select.select([s, sys.stdin], [], [])[0]
    if sys.stdin in ready:
        break
    s.recv(2048)
    got += 1
print(got, flush=True)
"""

# Raw Ethernet frames (UDP inside) written as root on an AF_PACKET socket bound to a device.
# Prints {"ok": n, "enobufs": n, "other": n}: ENOBUFS means the device took the frame and
# its egress program dropped it (the frame was handed to the device all the same).
INJECT = r"""
import errno, json, socket, struct, sys
dev, dst_mac, src_ip, dst_ip, port, count, bypass, mark = sys.argv[1:9]
payload = b"injected by the host"
udp = struct.pack("!HHHH", 40000, int(port), 8 + len(payload), 0) + payload
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
csum = sum(struct.unpack("!10H", ip))
csum = (csum >> 16) + (csum & 0xffff)
csum = ~(csum + (csum >> 16)) & 0xffff
ip = ip[:10] + struct.pack("!H", csum) + ip[12:]
frame = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex("020000000001") + b"\x08\x00" + ip + udp
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((dev, 0))
s.setsockopt(263, 20, int(bypass))  # SOL_PACKET, PACKET_QDISC_BYPASS: straight to the driver, past tc egress
if int(mark):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, int(mark))
res = {"ok": 0, "enobufs": 0, "other": 0}
for _i in range(int(count)):
    try:
        s.send(frame)
        res["ok"] += 1
    except OSError as exc:
        res["enobufs" if exc.errno == errno.ENOBUFS else "other"] += 1
print(json.dumps(res))
"""

# TCP connect with a timeout; prints what came back, or the error.
CONNECT = r"""
import socket, sys
s = socket.socket(socket.AF_INET)
s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("reply " + s.recv(100).decode())
except OSError as exc:
    print("error " + ("timeout" if isinstance(exc, socket.timeout) else str(exc.errno)))
"""

SEND_UDP = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _i in range(int(sys.argv[3])):
    s.sendto(b"through the wire", (sys.argv[1], int(sys.argv[2])))
"""


# ---------------------------------------------------------------- shared helpers

def veth_phone(prefix, index, **extra):
    return phone(prefix, index, backend="veth", **extra)


def converge(sandbox, phones, obj, **extra):
    # host sides in the sandbox, where these tests look for them (test_switchboard.py: the switchboard)
    extra.setdefault("switchboard", "")
    res = sandbox.module("phones", dict(phones=phones, veth_object=obj, **extra))
    assert not res.failed, res
    return res


def module_argv(sandbox, name):
    """The command that runs yogurt.phone.<name> as a plain process in the sandbox (arguments on stdin)."""
    return ["nsenter", f"--net={sandbox.path}", "--", str(VENV_BIN / "python"), "-m",
            f"ansible_collections.yogurt.phone.plugins.modules.{name}"]


def module_env():
    return dict(os.environ, PYTHONPATH=str(ROOT / ".ansible" / "collections"))


def run_module(sandbox, name, args, timeout=120):
    """Run a module's main() directly (no ansible process around it: ~1 s instead of ~3 s).

    The phones module keeps the host sides in the sandbox (switchboard ""), unless told."""
    if name == "phones":
        args = dict({"switchboard": ""}, **args)
    proc = subprocess.run(module_argv(sandbox, name), input=json.dumps({"ANSIBLE_MODULE_ARGS": args}),
                          capture_output=True, text=True, env=module_env(), timeout=timeout, check=False)
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"{name} printed no result (rc {proc.returncode}): {proc.stdout} {proc.stderr}") from None
    data["rc"] = proc.returncode
    return data


def counters(sandbox, name=None):
    """{phone: counters} from yogurt.phone.phone_info (one phone, or all)."""
    res = run_module(sandbox, "phone_info", {"name": name} if name else {})
    assert res["rc"] == 0 and not res.get("failed"), res
    return {p["phone"]: p["counters"] for p in res["phones"]}


def delta(before, after, key):
    return after.get(key, 0) - before.get(key, 0)


def netns_cmd(ns, argv, **kwargs):
    """argv inside network namespace `ns` (None: this process's own namespace)."""
    prefix = ["nsenter", f"--net=/run/netns/{ns}", "--"] if ns else []
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    check = kwargs.pop("check", False)
    return subprocess.run(prefix + list(argv), check=check, **kwargs)


def nstat(ns, *names):
    """Absolute SNMP counters of namespace `ns` (not the history nstat keeps)."""
    out = netns_cmd(ns, ["nstat", "-asz", "-j"] + list(names), check=True).stdout
    values = json.loads(out)["kernel"]
    return {name: values.get(name, 0) for name in names}


def ping(ns, dst, count=3, interval="0.2", extra=()):
    """(replies, output) of ping from inside `ns`."""
    proc = netns_cmd(ns, ["ping", "-n", "-q", "-c", str(count), "-i", interval, "-W", "1"] + list(extra) + [dst],
                     timeout=60)
    out = proc.stdout + proc.stderr
    for line in out.splitlines():
        if "packets transmitted" in line:
            return int(line.split(",")[1].split()[0]), out
    return 0, out


def connect(ns, dst, port, timeout=1.0):
    return netns_cmd(ns, ["python3", "-c", CONNECT, dst, str(port), str(timeout)], timeout=timeout + 30).stdout.strip()


def mac_of(ns, ifname):
    return json.loads(netns_cmd(ns, ["ip", "-j", "link", "show", ifname], check=True).stdout)[0]["address"]


class Listener:
    """A TCP (identity) or UDP (counting) server inside a namespace, stopped by closing stdin."""

    def __init__(self, ns, script, *args):
        prefix = ["nsenter", f"--net=/run/netns/{ns}", "--"] if ns else []
        self.proc = subprocess.Popen(prefix + ["python3", "-c", script] + [str(a) for a in args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.proc.kill()
            raise AssertionError(f"listener in {ns} did not start: {line} {self.proc.stderr.read()}")

    def stop(self):
        """How many connections (TCP) or datagrams (UDP) arrived."""
        out, err = self.proc.communicate(input="", timeout=10)
        assert self.proc.returncode == 0, err
        return int(out.strip())

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def listening(ns, script, *args):
    lst = Listener(ns, script, *args)
    try:
        yield lst
    finally:
        lst.kill()


def inject(sandbox, dev, dst_mac, src_ip, dst_ip, port, count, bypass, mark=0):
    out = sandbox.command(["python3", "-c", INJECT, dev, dst_mac, src_ip, dst_ip, str(port), str(count),
                           str(int(bypass)), str(mark)])
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def ends_of(spec):
    """[(netns, host_ifname, cont_ifname, ip)] of a phone spec."""
    return [(e["netns"], e["host_ifname"], e["cont_ifname"], e["addresses"][0].split("/")[0]) for e in spec["ends"]]


def report(request, text):
    """Numbers for the final report: printed with -s, and kept on the test's report."""
    print(text)
    request.node.user_properties.append(("measured", text))


# ---------------------------------------------------------------- tests

def test_host_cannot_reach_a_yogurt_by_ping_tcp_or_a_route(sandbox, veth_object, request):
    spec = veth_phone(sandbox.prefix, 0)
    converge(sandbox, [spec], veth_object)
    for _ns, host, _cont, _ip in ends_of(spec):
        addrs = json.loads(sandbox.ip("-j", "addr", "show", "dev", host).stdout)
        assert addrs[0]["addr_info"] == [], addrs  # no IPv4, no IPv6 (not even link-local)
        for family in ("-4", "-6"):  # not even IPv6's multicast route in the local table
            assert json.loads(sandbox.ip("-j", family, "route", "show", "table", "all", "dev", host).stdout) == []
    (y1, _h1, _c1, ip1), (y2, h2, c2, ip2) = ends_of(spec)
    port = 5201
    with listening(y2, SERVE_TCP, ip2, port, "yogurt-2") as server:
        assert connect(y1, ip2, port) == "reply yogurt-2"  # positive control, through the wire
        assert ping(y1, ip2)[0] == 3

        # (a) ping and (b) TCP with the host's own routing: there is no route to a yogurt.
        start = counters(sandbox, spec["name"])[spec["name"]]
        sent0 = nstat(sandbox.name, "IcmpOutEchos", "TcpActiveOpens")
        replies, out = ping(sandbox.name, ip2)
        assert replies == 0 and "Network is unreachable" in out, out
        assert connect(sandbox.name, ip2, port) == "error 101"  # ENETUNREACH
        sent1 = nstat(sandbox.name, "IcmpOutEchos", "TcpActiveOpens")
        assert sent1 == sent0, "nothing may even leave the host's stack"
        after_ab = counters(sandbox, spec["name"])[spec["name"]]
        assert delta(start, after_ab, "refused") >= 0
        report(request, f"(a,b) no route: ping/TCP handed 0 packets to a device, refused +"
                        f"{delta(start, after_ab, 'refused')}")

        # (c) root adds a route through the host-side device. First without a neighbour: only
        # ARP requests reach the device, and it refuses them.
        sandbox.ip("route", "add", ip2.rsplit(".", 1)[0] + ".0/24", "dev", h2)
        replies, out = ping(sandbox.name, ip2)
        assert replies == 0, out
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            neigh = json.loads(sandbox.ip("-s", "-j", "neigh", "show", "dev", h2).stdout)
            if neigh and "FAILED" in neigh[0]["state"]:
                break
            time.sleep(0.2)
        # The kernel starts an unresolved entry's probe count at ucast_solicit; each ARP request adds one.
        preset = int(netns_cmd(sandbox.name, ["sysctl", "-n", f"net.ipv4.neigh.{h2}.ucast_solicit"], check=True).stdout)
        arp_probes = neigh[0]["probes"] - preset
        after_arp = counters(sandbox, spec["name"])[spec["name"]]
        assert arp_probes >= 1 and delta(after_ab, after_arp, "refused") >= arp_probes, (neigh, after_arp)
        report(request, f"(c) route, no neighbour: {arp_probes} ARP requests handed, refused +"
                        f"{delta(after_ab, after_arp, 'refused')}")

        # Then with the yogurt's MAC as a permanent neighbour: the IP packets themselves are
        # handed to the device (every echo request and every SYN, retransmissions included).
        sandbox.ip("neigh", "replace", ip2, "lladdr", mac_of(y2, c2), "dev", h2, "nud", "permanent")
        names = ("IcmpOutEchos", "TcpActiveOpens", "TcpExtTCPSynRetrans")
        sent0 = nstat(sandbox.name, *names)
        replies, out = ping(sandbox.name, ip2, count=5)
        assert replies == 0, out
        assert connect(sandbox.name, ip2, port, timeout=2.5) == "error timeout"
        sent1 = nstat(sandbox.name, *names)
        after_c = counters(sandbox, spec["name"])[spec["name"]]
        echoes = sent1["IcmpOutEchos"] - sent0["IcmpOutEchos"]
        syns = sum(sent1[n] - sent0[n] for n in ("TcpActiveOpens", "TcpExtTCPSynRetrans"))
        assert echoes >= 5 and syns >= 2, (sent0, sent1)
        assert delta(after_arp, after_c, "refused") >= echoes + syns, (after_arp, after_c, echoes, syns)
        report(request, f"(c) route + static neighbour: {echoes} echo requests + {syns} SYNs handed, refused +"
                        f"{delta(after_arp, after_c, 'refused')}")
        assert server.stop() == 1, "only the positive control may have connected"

    # (e) IPv6 link-local multicast out of the host side, with a global source address on the
    # host: no reply, and whatever reaches the device is refused.
    sandbox.ip("addr", "add", "fd42:99::1/128", "dev", "lo")
    sent0 = nstat(sandbox.name, "Icmp6OutEchos")
    replies, out = ping(sandbox.name, f"ff02::1%{h2}", extra=("-6",))
    sent1 = nstat(sandbox.name, "Icmp6OutEchos")
    after_e = counters(sandbox, spec["name"])[spec["name"]]
    handed6 = sent1["Icmp6OutEchos"] - sent0["Icmp6OutEchos"]
    assert replies == 0, out
    assert delta(after_c, after_e, "refused") >= handed6, (after_c, after_e, handed6)
    report(request, f"(e) IPv6 multicast ff02::1%{h2}: {handed6} echo requests handed, refused +"
                    f"{delta(after_c, after_e, 'refused')}")
    assert delta(start, after_e, "unknown_ifindex") == 0, (start, after_e)


def test_raw_frames_from_the_host_are_refused_and_counted(sandbox, veth_object, request):
    spec = veth_phone(sandbox.prefix, 0)
    converge(sandbox, [spec], veth_object)
    (y1, _h1, _c1, ip1), (y2, h2, c2, ip2) = ends_of(spec)
    mac, port, frames = mac_of(y2, c2), 5300, 20
    with listening(y2, SERVE_UDP, ip2, port) as udp:
        netns_cmd(y1, ["python3", "-c", SEND_UDP, ip2, str(port), "10"], check=True)  # positive control
        # With or without bypass the frames cross the veth (there is no host-side egress
        # program any more) and the XDP guard on the yogurt's device drops them (refused).
        for bypass, counter in ((False, "refused"), (True, "refused")):
            before = counters(sandbox, spec["name"])[spec["name"]]
            handed = 0
            for mark in (0, WIRE_MARK):  # the wire's marker forged as SO_MARK must not help
                res = inject(sandbox, h2, mac, ip1, ip2, port, frames, bypass, mark)
                assert res["other"] == 0, res
                handed += res["ok"] + res["enobufs"]
            after = counters(sandbox, spec["name"])[spec["name"]]
            assert handed == 2 * frames and delta(before, after, counter) == handed, (before, after, handed)
            report(request, f"(d) AF_PACKET bypass={bypass}: {handed} frames handed to {h2} (SO_MARK 0 and "
                            f"{WIRE_MARK:#x}), {counter} +{delta(before, after, counter)}")
        time.sleep(0.3)
        received = udp.stop()
    assert received == 10, f"{received - 10} injected frames reached the yogurt (control: 10 through the wire)"


def test_two_phones_with_the_same_addresses_stay_apart(sandbox, veth_object, request):
    same = [f"10.42.7.{i}/24" for i in (1, 2)]
    specs = [veth_phone(sandbox.prefix, i) for i in (0, 1)]
    for spec in specs:
        for end, addr in zip(spec["ends"], same):
            end["addresses"] = [addr]
    converge(sandbox, specs, veth_object)
    (a1, _ah1, _ac1, _aip1), (a2, _ah2, _ac2, ip2) = ends_of(specs[0])
    (b1, _bh1, _bc1, _bip1), (b2, _bh2, _bc2, _bip2) = ends_of(specs[1])
    shared_port, b_only_port = 5401, 5402
    a_name, b_name = specs[0]["name"], specs[1]["name"]
    echoes = 20
    with listening(a2, SERVE_TCP, ip2, shared_port, "phone-A"), \
            listening(b2, SERVE_TCP, ip2, f"{shared_port},{b_only_port}", "phone-B"):
        for name, src, own, other, reply in ((a_name, a1, a2, b2, "phone-A"), (b_name, b1, b2, a2, "phone-B")):
            before = counters(sandbox)
            in0 = {ns: nstat(ns, "IcmpInEchos")["IcmpInEchos"] for ns in (own, other)}
            replies, out = ping(src, ip2, count=echoes, interval="0.01")
            assert replies == echoes, out
            assert connect(src, ip2, shared_port) == "reply " + reply
            # A port only phone B listens on: from phone A it is refused by A's own yogurt.
            assert connect(src, ip2, b_only_port) == ("reply phone-B" if name == b_name else "error 111")
            after = counters(sandbox)
            in1 = {ns: nstat(ns, "IcmpInEchos")["IcmpInEchos"] for ns in (own, other)}
            assert in1[own] - in0[own] == echoes and in1[other] == in0[other], (in0, in1)
            peer = b_name if name == a_name else a_name
            carried = delta(before[name], after[name], "forwarded_packets_0to1")
            stray = delta(before[peer], after[peer], "forwarded_packets_0to1")  # the other phone's own IPv6 chatter
            assert carried >= echoes + 4 and stray < echoes, (before, after)
            for phone_name in (a_name, b_name):
                for key in REFUSALS:
                    assert delta(before[phone_name], after[phone_name], key) == 0, (before, after)
            report(request, f"same addresses, calls from {name}: {echoes} echo requests reached only its own "
                            f"yogurt, its wire forwarded {carried} packets, the other phone's wire {stray}")


def test_a_yogurt_cannot_reach_the_host_namespace(sandbox, veth_object, request):
    spec = veth_phone(sandbox.prefix, 0)
    converge(sandbox, [spec], veth_object)
    (y1, h1, c1, _ip1), (y2, _h2, _c2, _ip2) = ends_of(spec)
    host_ip, port = "10.42.99.1", 5501
    sandbox.ip("addr", "add", f"{host_ip}/32", "dev", "lo")
    with listening(sandbox.name, SERVE_TCP, host_ip, port, "the-host") as server:
        assert connect(sandbox.name, host_ip, port) == "reply the-host"  # the listener works
        replies, out = ping(y1, host_ip)
        assert replies == 0 and "Network is unreachable" in out, out

        # Root inside the yogurt routes the host's address out of its device, with the
        # host-side MAC as neighbour: the packets leave the yogurt and the wire takes them
        # to the other yogurt, which drops them (not its address, no forwarding).
        for argv in (["route", "add", f"{host_ip}/32", "dev", c1],
                     ["neigh", "replace", host_ip, "lladdr", mac_of(sandbox.name, h1), "dev", c1, "nud", "permanent"]):
            netns_cmd(y1, ["ip"] + argv, check=True)
        names = ("IcmpOutEchos", "TcpActiveOpens", "TcpExtTCPSynRetrans")
        sent0, host0, far0 = nstat(y1, *names), nstat(sandbox.name, "IpInReceives"), nstat(y2, "IpInAddrErrors")
        before = counters(sandbox, spec["name"])[spec["name"]]
        replies, out = ping(y1, host_ip, count=5)
        assert replies == 0, out
        assert connect(y1, host_ip, port, timeout=2.5) == "error timeout"
        sent1, host1, far1 = nstat(y1, *names), nstat(sandbox.name, "IpInReceives"), nstat(y2, "IpInAddrErrors")
        after = counters(sandbox, spec["name"])[spec["name"]]
        assert server.stop() == 1, "only the host's own control connection may have arrived"
    handed = sum(sent1[n] - sent0[n] for n in names)
    arrived_far = far1["IpInAddrErrors"] - far0["IpInAddrErrors"]
    assert host1 == host0, "the host namespace must receive nothing from the yogurt"
    assert delta(before, after, "forwarded_packets_0to1") >= handed >= 5 + 2, (before, after, sent0, sent1)
    assert arrived_far >= handed, (far0, far1, handed)
    report(request, f"yogurt -> host {host_ip}: {handed} packets handed to {c1}, host namespace received 0, "
                    f"wire forwarded +{delta(before, after, 'forwarded_packets_0to1')}, dropped in the other "
                    f"yogurt as not-its-address: {arrived_far}")
