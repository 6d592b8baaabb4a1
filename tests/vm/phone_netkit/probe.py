# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Packet-level checks of two netkit phones, run inside the test VM as `python3 - STEP[+STEP] PHONES_JSON [ARG]`.

phone_netkit.yml feeds this file on stdin. PHONES_JSON is the inventory-style list of the
two phones (A, B; same addresses). A run prints one JSON line, {step: result} (the last
line of stdout); the playbook asserts on it and tests/vm/test_phone_netkit.py reads it again.

Counters come from the pinned counters map through bpftool (not through the collection),
so the collection's own reading is checked against the kernel, not against itself.

Network safety: every packet goes to an address inside a namespace of these phones, or
to the VM's own 10.0.2.15 from inside a yogurt (which the wire carries to the other
yogurt). Nothing is sent from the host namespace without a route through a host-side
device: the VM's default route points at qemu's NIC.
"""

import contextlib
import ctypes
import errno
import json
import os
import socket
import struct
import subprocess
import sys
import time

CLONE_NEWNET = 0x40000000
SOL_PACKET = 263
PACKET_QDISC_BYPASS = 20
ETH_P_IP = 0x0800
HOST_ADDR = "10.0.2.15"  # the VM's eth0, in the host namespace
# Copies (this file runs alone in the VM, fed on stdin, and checks the collection against the
# kernel, not against itself); tests/unit/plugins/test_one_source.py holds each to its one
# definition: WIRE_MARK and COUNTERS to bpf/wire.h, PIN_ROOT to _wire.PIN_ROOT.
WIRE_MARK = 0x79677274
PIN_ROOT = "/sys/fs/bpf/yogurt"
COUNTERS = ("forwarded_packets_0to1", "forwarded_bytes_0to1", "forwarded_packets_1to0", "forwarded_bytes_1to0",
            "refused", "unknown_ifindex")
LIBC = ctypes.CDLL(None, use_errno=True)


def sh(*argv, check=False):
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and proc.returncode:
        raise RuntimeError(f"{' '.join(argv)}: rc {proc.returncode}: {proc.stderr.strip()}")
    return proc


@contextlib.contextmanager
def netns(name):
    """Run the body in netns `name` (None: stay). Sockets made there keep that namespace."""
    if name is None:
        yield
        return
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if LIBC.setns(target, CLONE_NEWNET):
            raise OSError(ctypes.get_errno(), f"setns {name}")
        yield
    finally:
        LIBC.setns(home, CLONE_NEWNET)
        os.close(home)
        os.close(target)


def addr(end):
    return end["addresses"][0].split("/")[0]


def counters(phone):
    """Counters of `phone`, summed over CPUs, read with bpftool from the pinned map."""
    path = f"{PIN_ROOT}/{phone['name']}/map_counters"
    proc = sh("bpftool", "-j", "map", "dump", "pinned", path)
    if proc.returncode:
        return None
    out = {}
    for entry in json.loads(proc.stdout):
        entry = entry.get("formatted", entry)
        key = entry["key"]
        if isinstance(key, list):
            key = int.from_bytes(bytes(int(b, 16) for b in key), "little")
        total = 0
        for cpu in entry["values"]:
            value = cpu["value"]
            if isinstance(value, list):
                value = int.from_bytes(bytes(int(b, 16) for b in value), "little")
            total += value
        if key < len(COUNTERS):
            out[COUNTERS[key]] = total
    return out


def delta(before, after):
    return {k: after[k] - before[k] for k in after} if before and after else None


def ping(ns, dst, count, interval="0.05", wait="1"):
    """Echo replies received (iputils ping inside `ns`; ns None: the host namespace)."""
    prefix = ["ip", "netns", "exec", ns] if ns else []
    proc = sh(*prefix, "ping", "-n", "-q", "-c", str(count), "-i", interval, "-W", wait, dst)
    for line in proc.stdout.splitlines():
        if "packets transmitted" in line:
            return {"sent": int(line.split()[0]), "received": int(line.split(",")[1].split()[0])}
    return {"sent": 0, "received": 0, "error": (proc.stderr or proc.stdout).strip()[-300:]}


class Listener:
    """A UDP socket bound inside a namespace; counts datagrams that reach it."""

    def __init__(self, ns, ip, port=0):
        with netns(ns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, port))
        self.port = self.sock.getsockname()[1]
        self.sock.setblocking(False)

    def drain(self, wait=0.3):
        time.sleep(wait)
        got = 0
        while True:
            try:
                self.sock.recv(2048)
                got += 1
            except BlockingIOError:
                break
        return got

    def close(self):
        self.sock.close()


def udp_send(ns, dst, port, count):
    """Datagrams from inside `ns` (None: host); returns {sent, errors{errno: n}}."""
    with netns(ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    errors = {}
    sent = 0
    try:
        for _i in range(count):
            try:
                sock.sendto(b"yogurt?", (dst, port))
                sent += 1
            except OSError as exc:
                key = errno.errorcode.get(exc.errno, str(exc.errno))
                errors[key] = errors.get(key, 0) + 1
    finally:
        sock.close()
    return {"attempted": count, "sent": sent, "errors": errors}


def tcp_connect(ns, dst, port, timeout=3.0):
    with netns(ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((dst, port))
        return "connected"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc)) if exc.errno else type(exc).__name__
    finally:
        sock.close()


def tcp_listener(ns, ip):
    with netns(ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((ip, 0))
    sock.listen(4)
    sock.setblocking(False)
    return sock


def accepted(sock):
    got = 0
    while True:
        try:
            conn, _peer = sock.accept()
            conn.close()
            got += 1
        except BlockingIOError:
            return got


def _checksum(data):
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ip_udp(src, dst, port, payload=b"injected by the host"):
    udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0x4000, 64, socket.IPPROTO_UDP, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    return header[:10] + struct.pack("!H", _checksum(header)) + header[12:] + udp


def af_packet(ifname, packet, count, kind, bypass, mark=0):
    """Root's raw injection on a host-side device (L3 netkit: no link-layer header)."""
    if kind == "dgram":
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    else:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    errors, sent = {}, 0
    try:
        sock.bind((ifname, ETH_P_IP))
        sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1 if bypass else 0)
        if mark:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
        for _i in range(count):
            try:
                if kind == "dgram":
                    sock.sendto(packet, (ifname, ETH_P_IP, 0, 0, b"\xff" * 6))
                else:
                    sock.send(packet)
                sent += 1
            except OSError as exc:
                key = errno.errorcode.get(exc.errno, str(exc.errno))
                errors[key] = errors.get(key, 0) + 1
    finally:
        sock.close()
    return {"attempted": count, "sent": sent, "errors": errors}


def must_route_via(dst, ifname):
    """The host namespace's route to `dst`; refuses to go on unless it leads into `ifname`."""
    shown = sh("ip", "-j", "route", "get", dst).stdout.strip()
    if json.loads(shown or "[{}]")[0].get("dev") != ifname:
        raise RuntimeError(f"network safety: {dst} would not go to {ifname} ({shown}); nothing sent")
    return shown


def host_addresses(ifname):
    """Every address (any family) on a host-side device, as iproute2 shows it."""
    proc = sh("ip", "-j", "addr", "show", "dev", ifname)
    if proc.returncode:
        return {"error": proc.stderr.strip()}
    return [f"{a['local']}/{a['prefixlen']}" for a in json.loads(proc.stdout)[0].get("addr_info", [])]


def host_routes(ifname):
    """Routes of any table that use a host-side device (`ip route show table all dev X`)."""
    found = []
    for family in ("-4", "-6"):
        proc = sh("ip", family, "-j", "route", "show", "table", "all", "dev", ifname)
        if proc.returncode == 0 and proc.stdout.strip():
            found += [f"{r.get('type', 'unicast')} {r['dst']} table {r.get('table', 'main')}"
                      for r in json.loads(proc.stdout)]
    return found


def netkit_attachments():
    """[ifname, attach point, prog name] of every netkit program `bpftool net show` lists."""
    proc = sh("bpftool", "-j", "net", "show")
    found = []
    for section in json.loads(proc.stdout or "[]"):
        for items in section.values():
            for item in items:
                where = item.get("kind") or item.get("attach_type") or ""
                if "netkit" in str(where):
                    found.append([item.get("devname"), where, item.get("name")])
    return found


def link_facts(ifname):
    proc = sh("ip", "-d", "-j", "link", "show", "dev", ifname)
    if proc.returncode:
        return None
    link = json.loads(proc.stdout)[0]
    data = link.get("linkinfo", {}).get("info_data", {})
    return {"ifindex": link["ifindex"], "policy": data.get("policy"), "peer_policy": data.get("peer_policy"),
            "mode": data.get("mode")}


# ---------------------------------------------------------------- steps

def step_traffic(phones, _arg):
    """Both phones carry ping both ways; counters of A move by what was sent."""
    out = {}
    count = 20
    for phone in phones:
        end0, end1 = phone["ends"]
        before = counters(phone)
        fwd = ping(end0["netns"], addr(end1), count)
        middle = counters(phone)
        back = ping(end1["netns"], addr(end0), count)
        after = counters(phone)
        out[phone["name"]] = {"count": count, "ping_0to1": fwd, "ping_1to0": back,
                              "delta_ping_0to1": delta(before, middle), "delta_ping_1to0": delta(middle, after),
                              "counters": after}
    return out


def step_isolation(phones, _arg):
    """Issue 7: the host namespace cannot reach a yogurt; phones cannot reach each other;
    a yogurt cannot reach the host namespace. Leaves, on purpose, a route through A's
    end-0 host side for the next converge to find."""
    phone_a, phone_b = phones
    a0, a1 = phone_a["ends"]
    b1 = phone_b["ends"][1]
    dst = addr(a1)
    out = {"host_addresses_before": {e["host_ifname"]: host_addresses(e["host_ifname"])
                                     for p in phones for e in p["ends"]},
           "host_routes_before": {e["host_ifname"]: host_routes(e["host_ifname"])
                                  for p in phones for e in p["ends"]}}
    # The VM's own route to the yogurt subnet leads off the host (default via qemu): never used.
    out["route_get_without_help"] = sh("ip", "-j", "route", "get", dst).stdout.strip()

    listen_a = Listener(a1["netns"], dst)
    listen_b = Listener(b1["netns"], dst, listen_a.port)
    tcp_a = tcp_listener(a1["netns"], dst)
    tcp_port = tcp_a.getsockname()[1]
    try:
        # Positive control, and phone B: A's yogurt 1 sends to 10.42.0.2, which both phones use.
        ca, cb = counters(phone_a), counters(phone_b)
        out["control_udp"] = udp_send(a0["netns"], dst, listen_a.port, 20)
        out["control_received_a"] = listen_a.drain()
        out["control_received_b"] = listen_b.drain(0)
        out["control_tcp"] = tcp_connect(a0["netns"], dst, tcp_port)
        out["control_tcp_accepted"] = accepted(tcp_a)
        out["control_delta_a"] = delta(ca, counters(phone_a))
        out["control_delta_b"] = delta(cb, counters(phone_b))

        attempts = {}

        def attempt(label, action, count_field=None):
            before = counters(phone_a)
            before_b = counters(phone_b)
            result = action()
            received = listen_a.drain()
            result = result if isinstance(result, dict) else {"result": result}
            result.update(received_udp=received, received_tcp=accepted(tcp_a), received_b=listen_b.drain(0),
                          delta=delta(before, counters(phone_a)), delta_b=delta(before_b, counters(phone_b)))
            if count_field:
                result["handed_to_device"] = result[count_field]
            attempts[label] = result

        # (a) a route through the host-side device, no address on it (source: the VM's eth0 address)
        sh("ip", "route", "add", f"{dst}/32", "dev", a1["host_ifname"], check=True)
        out["route_get_with_route"] = must_route_via(dst, a1["host_ifname"])
        attempt("route_ping", lambda: ping(None, dst, 10, wait="1"), "sent")
        attempt("route_udp", lambda: udp_send(None, dst, listen_a.port, 20), "attempted")
        attempt("route_tcp", lambda: {"tcp": tcp_connect(None, dst, tcp_port, timeout=2.0)})
        sh("ip", "route", "del", f"{dst}/32", "dev", a1["host_ifname"], check=True)

        # (b) an address on the host-side device: a connected route to the yogurts' subnet
        sh("ip", "addr", "add", "10.42.0.100/24", "dev", a1["host_ifname"], check=True)
        out["route_get_with_address"] = must_route_via(dst, a1["host_ifname"])
        attempt("address_ping", lambda: ping(None, dst, 10, wait="1"), "sent")
        attempt("address_udp", lambda: udp_send(None, dst, listen_a.port, 20), "attempted")
        attempt("address_tcp", lambda: {"tcp": tcp_connect(None, dst, tcp_port, timeout=2.0)})

        # (c) raw frames on AF_PACKET sockets bound to the host-side device
        packet = ip_udp(addr(a0), dst, listen_a.port)
        for kind in ("dgram", "raw"):
            for bypass in (0, 1):
                attempt(f"packet_{kind}_bypass{bypass}",
                        lambda k=kind, b=bypass: af_packet(a1["host_ifname"], packet, 20, k, b), "attempted")
        attempt("packet_dgram_bypass1_mark",
                lambda: af_packet(a1["host_ifname"], packet, 20, "dgram", 1, WIRE_MARK), "attempted")
        # The same towards yogurt 0 through its own host side.
        listen_a0 = Listener(a0["netns"], addr(a0))
        before = counters(phone_a)
        res = af_packet(a0["host_ifname"], ip_udp(dst, addr(a0), listen_a0.port), 20, "dgram", 1)
        res.update(received_udp=listen_a0.drain(), delta=delta(before, counters(phone_a)), handed_to_device=20)
        attempts["packet_dgram_bypass1_end0"] = res
        listen_a0.close()
        out["attempts"] = attempts

        sh("ip", "addr", "del", "10.42.0.100/24", "dev", a1["host_ifname"], check=True)
        # Leave a route through end 0's host side for the next converge to find.
        sh("ip", "route", "add", f"{addr(a0)}/32", "dev", a0["host_ifname"], check=True)
        out["left_for_converge"] = {"route": {a0["host_ifname"]: host_routes(a0["host_ifname"])}}
    finally:
        listen_a.close()
        listen_b.close()
        tcp_a.close()

    # A yogurt cannot reach the host namespace, even with a default route out of its device.
    host_listener = Listener(None, "0.0.0.0")
    host_tcp = tcp_listener(None, "0.0.0.0")
    sh("ip", "-n", a0["netns"], "route", "add", "default", "dev", a0["cont_ifname"], check=True)
    try:
        before = counters(phone_a)
        out["to_host"] = {
            "udp": udp_send(a0["netns"], HOST_ADDR, host_listener.port, 20),
            "ping": ping(a0["netns"], HOST_ADDR, 5, wait="1"),
            "tcp": tcp_connect(a0["netns"], HOST_ADDR, host_tcp.getsockname()[1], timeout=2.0),
        }
        out["to_host"].update(received_udp=host_listener.drain(), received_tcp=accepted(host_tcp),
                              delta=delta(before, counters(phone_a)))
    finally:
        sh("ip", "-n", a0["netns"], "route", "del", "default", "dev", a0["cont_ifname"])
        host_listener.close()
        host_tcp.close()
    return out


def _link_id(path):
    proc = sh("bpftool", "-j", "link", "show", "pinned", path)
    try:
        shown = json.loads(proc.stdout)
    except ValueError:
        return {"rc": proc.returncode, "stdout": proc.stdout[-200:], "stderr": proc.stderr[-200:]}
    return (shown[0] if isinstance(shown, list) else shown).get("id")


def step_detach(phones, _arg):
    """Take A's wire off by hand: end 0's links detached (pins stay, defunct), end 1's unpinned."""
    phone_a = phones[0]
    pdir = f"{PIN_ROOT}/{phone_a['name']}"
    out = {"pins_before": sorted(os.listdir(pdir)), "detached": {}, "unpinned": []}
    for hook in ("primary", "peer"):
        path = f"{pdir}/link_end0_{hook}"
        out["detached"][f"link_end0_{hook}"] = _link_id(path)
        sh("bpftool", "link", "detach", "pinned", path, check=True)
        os.unlink(f"{pdir}/link_end1_{hook}")
        out["unpinned"].append(f"link_end1_{hook}")
    # An unpinned link is released from a work queue: give it a moment.
    names = {e["host_ifname"] for e in phone_a["ends"]}
    deadline = time.monotonic() + 3
    while True:
        out["attachments_left"] = [a for a in netkit_attachments() if a[0] in names]
        if not out["attachments_left"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    out["devices"] = {e["host_ifname"]: link_facts(e["host_ifname"]) for e in phone_a["ends"]}
    end0, end1 = phone_a["ends"]
    before = counters(phone_a)
    out["ping_0to1"] = ping(end0["netns"], addr(end1), 5)
    out["ping_1to0"] = ping(end1["netns"], addr(end0), 5)
    out["delta"] = delta(before, counters(phone_a))
    out["pins_after"] = sorted(os.listdir(pdir))
    return out


def step_check(phones, _arg):
    """After a converge: addresses and routes on the host sides, attachments, a quick ping."""
    out = {}
    for phone in phones:
        end0, end1 = phone["ends"]
        names = {e["host_ifname"] for e in phone["ends"]}
        out[phone["name"]] = {
            "host_addresses": {e["host_ifname"]: host_addresses(e["host_ifname"]) for e in phone["ends"]},
            "host_routes": {e["host_ifname"]: host_routes(e["host_ifname"]) for e in phone["ends"]},
            "attachments": sorted(a for a in netkit_attachments() if a[0] in names),
            "ping_0to1": ping(end0["netns"], addr(end1), 3),
            "ping_1to0": ping(end1["netns"], addr(end0), 3),
        }
    return out


def step_tamper(phones, _arg):
    """Someone puts an address on A's end-1 host side and a route through its end-0 host side."""
    end0, end1 = phones[0]["ends"]
    sh("ip", "addr", "add", "10.42.0.100/24", "dev", end1["host_ifname"], check=True)
    sh("ip", "route", "add", f"{addr(end0)}/32", "dev", end0["host_ifname"], check=True)
    return {"address": {end1["host_ifname"]: host_addresses(end1["host_ifname"])},
            "routes": {e["host_ifname"]: host_routes(e["host_ifname"]) for e in (end0, end1)}}


def step_start_ping(phones, arg):
    """A continuous ping from A's yogurt 0, in the background, for the program swap."""
    end0, end1 = phones[0]["ends"]
    count = int(arg.split(":")[1])
    log = arg.split(":")[0]
    with open(log, "w", encoding="utf-8") as handle:
        proc = subprocess.Popen(["ip", "netns", "exec", end0["netns"], "ping", "-n", "-c", str(count), "-i", "0.05",
                                 "-W", "1", addr(end1)], stdout=handle, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 10
    replies = 0
    while time.monotonic() < deadline and replies < 5:
        time.sleep(0.1)
        with open(log, encoding="utf-8") as handle:
            replies = sum(1 for line in handle if "bytes from" in line)
    return {"pid": proc.pid, "log": log, "count": count, "replies_at_start": replies, "started": time.time()}


def _alive(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"ping" in handle.read()
    except OSError:
        return False


def step_finish_ping(phones, arg):
    """Was the ping still running after the swap? Wait for it; then delete A's end-1 host side."""
    pid, log = int(arg.split(":")[0]), arg.split(":")[1]
    out = {"alive_after_swap": _alive(pid)}
    with open(log, encoding="utf-8") as handle:
        out["replies_when_swap_done"] = sum(1 for line in handle if "bytes from" in line)
    deadline = time.monotonic() + 90
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    with open(log, encoding="utf-8") as handle:
        text = handle.read()
    os.unlink(log)
    for line in text.splitlines():
        if "packets transmitted" in line:
            out["sent"] = int(line.split()[0])
            out["received"] = int(line.split(",")[1].split()[0])
    out["summary"] = text.strip().splitlines()[-2:]
    seqs = sorted({int(w.split("=")[1]) for line in text.splitlines() if "bytes from" in line
                   for w in line.split() if w.startswith("icmp_seq=")})
    out["missing_seq"] = sorted(set(range(1, (out.get("sent") or 0) + 1)) - set(seqs))[:20]

    # Delete a device behind the collection's back: the host side takes its peer along.
    phone_a = phones[0]
    end0, end1 = phone_a["ends"]
    out["ifindex_before_delete"] = link_facts(end1["host_ifname"])["ifindex"]
    sh("ip", "link", "del", "dev", end1["host_ifname"], check=True)
    out["ping_after_delete"] = ping(end0["netns"], addr(end1), 3)
    return out


def step_gone(phones, _arg):
    """After absent: no pins, no netkit attachment or link, no namespace, device or record."""
    pfx = os.path.commonprefix([p["name"] for p in phones])
    links = json.loads(sh("bpftool", "-j", "link", "show").stdout or "[]")
    return {
        "pin_dirs": {p["name"]: os.path.exists(f"{PIN_ROOT}/{p['name']}") for p in phones},
        "pin_root": sorted(os.listdir(PIN_ROOT)) if os.path.isdir(PIN_ROOT) else None,
        "netkit_attachments": netkit_attachments(),
        "netkit_links": [lk for lk in links if lk.get("type") == "netkit"],
        "netns": [n for n in sh("ip", "netns", "list").stdout.split() if n.startswith(pfx)],
        "devices": [ln.split(":")[1].strip() for ln in sh("ip", "-o", "link").stdout.splitlines()
                    if ln.split(":")[1].strip().startswith(pfx)],
        "records": {p["name"]: os.path.exists(f"/run/yogurt/phones/{p['name']}.json") for p in phones},
    }


STEPS = {"traffic": step_traffic, "isolation": step_isolation, "detach": step_detach, "check": step_check, "tamper": step_tamper,
         "start_ping": step_start_ping, "finish_ping": step_finish_ping, "gone": step_gone}


def main():
    """STEP may chain steps with '+' (one python start in the slow guest); prints {step: result}."""
    steps, phones = sys.argv[1].split("+"), json.loads(sys.argv[2])
    arg = sys.argv[3] if len(sys.argv) > 3 else ""
    results = {}
    for step in steps:
        started = time.monotonic()
        results[step] = STEPS[step](phones, arg)
        results[step]["seconds"] = round(time.monotonic() - started, 2)
    print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    main()
