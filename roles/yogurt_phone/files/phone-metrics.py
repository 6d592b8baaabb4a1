# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Write the counters of every yogurt-phone on this host as a Prometheus text file.

Installed by the yogurt.phone.yogurt_phone role (yogurt_phone_metrics: true) as
/usr/local/lib/yogurt-phone/phone-metrics and run by the yogurt-phone-metrics timer; the
file is for node_exporter's textfile collector (--collector.textfile.directory=DIR).

    phone-metrics [--pin-root /sys/fs/bpf/yogurt] DIR

Standard library only (no Ansible, no libbpf): it opens each phone's pins under
PIN_ROOT/<phone>/ with raw bpf(2) calls, reads map_counters (a per-CPU array laid out as
in bpf/wire.h, summed over CPUs) and the pinned links, and writes DIR/yogurt_phone.prom
through a temporary file in DIR and a rename, so a scrape never sees half a file.

A phone is up (yogurt_phone_up 1) when its counters map is readable and it has at least
one pinned link and every pinned link is still attached to a device (a link whose device
was deleted reports ifindex 0). A phone directory that holds no pins gives no lines. A
phone that cannot be read gives up 0 (and its counters if they could be read); the others
are still written and the exit status is 0. A missing DIR is an error: exit status 1.
"""

import argparse
import ctypes
import errno
import os
import platform
import struct
import sys
import tempfile
import time

# Copies, for a script that runs on the host's own python3 without the collection; each is held
# to its one definition by tests/unit/plugins/test_one_source.py: PIN_ROOT (_wire.PIN_ROOT),
# SLOTS (bpf/wire.h's enum, _wire.COUNTERS), _SYS_BPF and the commands (_bpf.SYS_BPF, BPF_CMD).
PIN_ROOT = "/sys/fs/bpf/yogurt"
FILENAME = "yogurt_phone.prom"

# Counter slot -> (family, direction or None); the name is family_direction.
SLOTS = {
    0: ("forwarded_packets", "0to1"),
    1: ("forwarded_bytes", "0to1"),
    2: ("forwarded_packets", "1to0"),
    3: ("forwarded_bytes", "1to0"),
    4: ("refused", None),
    5: ("unknown_ifindex", None),
}
FAMILIES = (
    ("forwarded_packets", "Packets the wire forwarded between the two yogurts of the phone, by direction "
                          "(0to1: sent by end 0's yogurt)."),
    ("forwarded_bytes", "Bytes the wire forwarded between the two yogurts of the phone, by direction."),
    ("refused", "Packets sent towards a yogurt by the host rather than by the wire, and dropped."),
    ("unknown_ifindex", "Packets from a device the wire's routing map does not know, dropped."),
)

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351, "armv7l": 386}
_BPF_CMD = {"BPF_MAP_LOOKUP_ELEM": 1, "BPF_OBJ_GET": 7, "BPF_OBJ_GET_INFO_BY_FD": 15}
_BPF_F_RDONLY = 1 << 3
_MAP_TYPE_PERCPU_ARRAY = 6

_libc = ctypes.CDLL(None, use_errno=True)


class ReadError(Exception):
    """One phone could not be read; the message says what failed."""


def _bpf(cmd, attr, what):
    nr = _SYS_BPF.get(platform.machine())
    if nr is None:
        raise ReadError(f"{what}: no bpf(2) syscall number known for {platform.machine()}")
    ret = _libc.syscall(ctypes.c_long(nr), ctypes.c_long(cmd), ctypes.byref(attr), ctypes.c_uint(ctypes.sizeof(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise ReadError(f"{what}: {errno.errorcode.get(err, err)} ({os.strerror(err)})")
    return ret


def obj_get(path, flags=0):
    """An fd for the object pinned at path (BPF_OBJ_GET)."""
    name = ctypes.create_string_buffer(path.encode())
    attr = ctypes.create_string_buffer(16)
    struct.pack_into("=QII", attr, 0, ctypes.addressof(name), 0, flags)
    return _bpf(_BPF_CMD["BPF_OBJ_GET"], attr, f"opening {path}")


def obj_info(fd, size, what):
    info = ctypes.create_string_buffer(size)
    attr = ctypes.create_string_buffer(16)
    struct.pack_into("=IIQ", attr, 0, fd, size, ctypes.addressof(info))
    _bpf(_BPF_CMD["BPF_OBJ_GET_INFO_BY_FD"], attr, what)
    return info.raw


def possible_cpus():
    """How many values a per-CPU map holds per element (/sys/devices/system/cpu/possible)."""
    with open("/sys/devices/system/cpu/possible", encoding="ascii") as handle:
        text = handle.read().strip()
    count = 0
    for part in text.split(","):
        low, _sep, high = part.partition("-")
        count += int(high or low) - int(low) + 1
    return count


def read_counters(path):
    """{slot: value summed over CPUs} of the per-CPU counters array pinned at path."""
    fd = obj_get(path, _BPF_F_RDONLY)
    try:
        mtype, _mid, key_size, value_size, max_entries = struct.unpack_from("=IIIII", obj_info(fd, 96, f"reading {path}"))
        if mtype != _MAP_TYPE_PERCPU_ARRAY or key_size != 4 or value_size != 8:
            raise ReadError(f"{path} is not the wire's counters map (type {mtype}, key {key_size} B, value {value_size} B;"
                            " want a per-CPU array, 4 B keys, 8 B values)")
        ncpu = possible_cpus()
        value = ctypes.create_string_buffer(8 * ncpu)
        key = ctypes.create_string_buffer(4)
        attr = ctypes.create_string_buffer(32)
        counters = {}
        for slot in range(max_entries):
            struct.pack_into("=I", key, 0, slot)
            struct.pack_into("=IIQQQ", attr, 0, fd, 0, ctypes.addressof(key), ctypes.addressof(value), 0)
            _bpf(_BPF_CMD["BPF_MAP_LOOKUP_ELEM"], attr, f"reading slot {slot} of {path}")
            counters[slot] = sum(struct.unpack_from(f"={ncpu}Q", value.raw))
        return counters
    finally:
        os.close(fd)


def link_attached(path):
    """True if the bpf_link pinned at path is still on a device (its ifindex is not 0)."""
    fd = obj_get(path)
    try:
        raw = obj_info(fd, 128, f"reading {path}")
    finally:
        os.close(fd)
    return struct.unpack_from("=I", raw, 16)[0] != 0


def read_phone(pdir):
    """(counters or None, up, problems) of one phone's pin directory."""
    pins = sorted(os.listdir(pdir))
    problems = []
    counters = None
    try:
        counters = read_counters(os.path.join(pdir, "map_counters")) if "map_counters" in pins else None
        if counters is None:
            problems.append("no map_counters pin")
    except (ReadError, OSError, ValueError) as exc:
        problems.append(str(exc))
    links = [pin for pin in pins if pin.startswith("link_")]
    if not links:
        problems.append("no pinned link (the wire is not attached)")
    for pin in links:
        try:
            if not link_attached(os.path.join(pdir, pin)):
                problems.append(f"{pin} is detached (its device is gone)")
        except (ReadError, OSError) as exc:
            problems.append(str(exc))
    return counters, not problems, problems


def _label(value):
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(phones, now):
    """The text file: {phone: (counters or None, up)} -> Prometheus text exposition format."""
    lines = []
    for family, text in FAMILIES:
        samples = []
        for phone, (counters, _up) in sorted(phones.items()):
            for slot, (fam, direction) in sorted(SLOTS.items()):
                if fam == family and counters is not None and slot in counters:
                    labels = f'phone="{_label(phone)}"' + (f',direction="{direction}"' if direction else "")
                    samples.append(f"yogurt_phone_{family}_total{{{labels}}} {counters[slot]}")
        if samples:
            lines += [f"# HELP yogurt_phone_{family}_total {text}", f"# TYPE yogurt_phone_{family}_total counter"]
            lines += samples
    if phones:
        lines += ["# HELP yogurt_phone_up 1 if the phone's counters are readable and its wire is attached, else 0.",
                  "# TYPE yogurt_phone_up gauge"]
        lines += [f'yogurt_phone_up{{phone="{_label(phone)}"}} {int(up)}' for phone, (_c, up) in sorted(phones.items())]
    lines += ["# HELP yogurt_phone_scrape_timestamp_seconds When phone-metrics read the pins (Unix time).",
              "# TYPE yogurt_phone_scrape_timestamp_seconds gauge",
              f"yogurt_phone_scrape_timestamp_seconds {now:.3f}"]
    return "\n".join(lines) + "\n"


def collect(pin_root):
    """{phone: (counters, up)} of every phone directory under pin_root that holds pins."""
    phones = {}
    try:
        names = sorted(os.listdir(pin_root))
    except FileNotFoundError:
        return phones  # no phone was ever built here (or bpffs is not mounted)
    for name in names:
        pdir = os.path.join(pin_root, name)
        if not os.path.isdir(pdir):
            continue
        try:
            if not os.listdir(pdir):
                continue  # no pins: no lines
            counters, up, problems = read_phone(pdir)
        except OSError as exc:
            counters, up, problems = None, False, [str(exc)]
        for problem in problems:
            print(f"phone-metrics: {name}: {problem}", file=sys.stderr)
        phones[name] = (counters, up)
    return phones


def write_atomically(directory, text):
    fd, tmp = tempfile.mkstemp(prefix=f".{FILENAME}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), 0o644)  # node_exporter runs as its own user
        os.replace(tmp, os.path.join(directory, FILENAME))
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def main(argv=None):
    parser = argparse.ArgumentParser(prog="phone-metrics", description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("directory", help="node_exporter's textfile directory; writes DIRECTORY/" + FILENAME)
    parser.add_argument("--pin-root", default=PIN_ROOT, help=f"bpffs directory of the phones (default {PIN_ROOT})")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.directory):
        print(f"phone-metrics: {args.directory} is not a directory: create it, or point node_exporter's"
              " --collector.textfile.directory and this script at the same existing directory", file=sys.stderr)
        return 1
    text = render(collect(args.pin_root), time.time())
    try:
        write_atomically(args.directory, text)
    except OSError as exc:
        print(f"phone-metrics: writing {os.path.join(args.directory, FILENAME)}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
