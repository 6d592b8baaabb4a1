# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The bpf(2) and libbpf layer: load an object, pin, attach through bpf_link, query.

A thin ctypes layer over libbpf.so.1 (the loader: ELF, relocations, pinned-map reuse)
plus raw bpf(2) calls where libbpf 1.1 (Debian 12) lacks an API (object info, query).
File descriptors are plain ints; callers close them with os.close(). Every failure is a
BpfError carrying the errno and a sentence that says what failed and how to fix it.
Nothing here is imported at module load except the standard library, so a module can
report a missing libbpf through fail_json.

PRIVATE to the yogurt.phone collection (like community.crypto's module_utils): no public API,
names may change in any release.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno as errno_mod
import os
import platform
import struct

from ansible_collections.yogurt.phone.plugins.module_utils import _rcu as rcu

BPFFS = "/sys/fs/bpf"

# enum bpf_attach_type values, stable kernel ABI.
ATTACH_TYPES = {
    "tcx_ingress": 46,
    "tcx_egress": 47,
    "netkit_primary": 54,
    "netkit_peer": 55,
    "xdp": 37,          # BPF_XDP: a native XDP bpf_link (Linux >= 5.9), see link_create
}
ATTACH_NAMES = {v: k for k, v in ATTACH_TYPES.items()}
LINK_TYPES = {6: "xdp", 11: "tcx", 13: "netkit"}
PROG_TYPE_SCHED_CLS = 3
XDP_FLAGS_DRV_MODE = 4  # native (driver) XDP, never the generic (skb) fallback

# enum bpf_cmd values (stable kernel ABI) of the commands called through the raw syscall, here
# or in roles/yogurt_phone/files/phone-metrics.py, which is stdlib-only and keeps a copy of the
# ones it calls (tests/unit/plugins/test_one_source.py holds that copy to this table).
BPF_CMD = {
    "BPF_MAP_LOOKUP_ELEM": 1,
    "BPF_PROG_LOAD": 5,
    "BPF_OBJ_GET": 7,
    "BPF_PROG_GET_FD_BY_ID": 13,
    "BPF_OBJ_GET_INFO_BY_FD": 15,
    "BPF_PROG_QUERY": 16,
    "BPF_ENABLE_STATS": 32,
    "BPF_LINK_DETACH": 34,
}
# The bpf(2) syscall number per machine (uname -m); phone-metrics keeps a copy, tied by the same test.
SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351, "armv7l": 386}
_BPF_STATS_RUN_TIME = 0


class BpfError(Exception):
    """A bpf operation failed. `errno` is the kernel's or libbpf's error number."""

    def __init__(self, err, message):
        super().__init__(message)
        self.errno = err
        self.message = message


_lib = None
_libc = None
_log = []          # recent libbpf messages, for error reports
_print_cb = None   # keep the ctypes callback alive


def _fail(err, what, hint=None):
    text = f"{what}: {os.strerror(err)} (errno {err})"
    if hint:
        text += f". {hint}"
    raise BpfError(err, text)


def _libbpf_print(level, fmt, ap):
    buf = ctypes.create_string_buffer(1024)
    _libc.vsnprintf(buf, len(buf), fmt, ap)
    line = buf.value.decode("utf-8", "replace").rstrip()
    if line:
        _log.append(line)
        del _log[:-40]
    return 0


def lib():
    """libbpf.so.1 with the prototypes this file uses; raises BpfError if missing."""
    global _lib, _libc, _print_cb
    if _lib is not None:
        return _lib
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        so = ctypes.CDLL("libbpf.so.1", use_errno=True)
    except OSError:
        try:
            so = ctypes.CDLL(name, use_errno=True)
        except OSError as exc:
            raise BpfError(errno_mod.ENOENT, f"cannot load libbpf ({exc}); install libbpf1 "
                           "(Debian 12: from bookworm-backports, >= 1.3 knows netkit sections)") from None
    vp, cp, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    protos = {
        "bpf_object__open_file": (vp, [cp, vp]),
        "bpf_object__load": (i, [vp]),
        "bpf_object__close": (None, [vp]),
        "bpf_object__next_program": (vp, [vp, vp]),
        "bpf_object__next_map": (vp, [vp, vp]),
        "bpf_program__name": (cp, [vp]),
        "bpf_program__section_name": (cp, [vp]),
        "bpf_program__type": (i, [vp]),
        "bpf_program__set_type": (i, [vp, i]),
        "bpf_program__fd": (i, [vp]),
        "bpf_map__name": (cp, [vp]),
        "bpf_map__fd": (i, [vp]),
        "bpf_map__set_pin_path": (i, [vp, cp]),
        "bpf_link_create": (i, [i, i, i, vp]),
        "bpf_link_update": (i, [i, i, vp]),
        "bpf_obj_pin": (i, [i, cp]),
        "bpf_obj_get": (i, [cp]),
        "bpf_map_lookup_elem": (i, [i, vp, vp]),
        "bpf_map_update_elem": (i, [i, vp, vp, ctypes.c_uint64]),
        "bpf_map_delete_elem": (i, [i, vp]),
        "bpf_map_get_next_key": (i, [i, vp, vp]),
        "libbpf_num_possible_cpus": (i, []),
        "libbpf_version_string": (cp, []),
    }
    for fn, (res, args) in protos.items():
        f = getattr(so, fn)
        f.restype, f.argtypes = res, args
    _libc = ctypes.CDLL(None, use_errno=True)
    _libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
    _libc.syscall.restype = ctypes.c_long
    _libc.mount.argtypes = [cp, cp, cp, ctypes.c_ulong, cp]
    # va_list reaches the callback as a pointer on x86_64 and aarch64 alike.
    _print_cb = ctypes.CFUNCTYPE(i, i, cp, vp)(_libbpf_print)
    so.libbpf_set_print.restype = vp
    so.libbpf_set_print.argtypes = [vp]
    so.libbpf_set_print(ctypes.cast(_print_cb, vp))
    _lib = so
    return so


def libbpf_version():
    return lib().libbpf_version_string().decode()


def _errno_of(ret):
    """The error number of a failed libbpf call (libbpf >= 1.0 returns -errno, older paths -1)."""
    return -ret if ret != -1 else ctypes.get_errno()


def _enoent(ret, what):
    """False if the call succeeded, True if it failed with ENOENT (nothing there); else raise."""
    if ret >= 0:
        return False
    err = _errno_of(ret)
    if err != errno_mod.ENOENT:
        _fail(err, what)
    return True


def _ret(ret, what, hint=None):
    """libbpf >= 1.0 returns -errno; older code paths return -1 and set errno."""
    if ret < 0:
        err = -ret if ret != -1 else (ctypes.get_errno() or errno_mod.EPERM)
        _fail(err, what, hint)
    return ret


# ---------------------------------------------------------------- bpffs

_mounted = set()  # bpffs mounts seen by this process: a module run does not unmount them


def bpffs_mounted(path=BPFFS):
    """Is a bpffs mounted at `path`? (/proc/self/mountinfo; with 2000 namespaces of 1000
    phones that file has 2000 lines more, so a yes is remembered for the process.)"""
    if path in _mounted:
        return True
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as fh:
            for line in fh:
                fields = line.split()
                sep = fields.index("-")
                if fields[4] == path and fields[sep + 1] == "bpf":
                    _mounted.add(path)
                    return True
    except OSError:
        pass
    return False


def ensure_bpffs(path=BPFFS):
    """Mount bpffs at `path` if nothing is mounted there; True if it mounted it."""
    if bpffs_mounted(path):
        return False
    lib()
    os.makedirs(path, exist_ok=True)
    if _libc.mount(b"bpf", path.encode(), b"bpf", 0, b"mode=0700") != 0:
        err = ctypes.get_errno()
        _fail(err, f"mounting bpffs on {path}", "run as root, or mount it: mount -t bpf bpf /sys/fs/bpf")
    return True


def obj_pin(fd, path):
    _ret(lib().bpf_obj_pin(fd, path.encode()), f"pinning at {path}",
         "bpffs names may not contain a dot; the directory must exist on a mounted bpffs")


def pin_replace(fd, path):
    """Pin `fd` at `path`, replacing what is pinned there (rename over it: no gap)."""
    tmp = path + "_new"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    obj_pin(fd, tmp)
    os.replace(tmp, path)


def obj_get(path):
    """An fd for the object pinned at `path`; BpfError(ENOENT) if nothing is."""
    return _ret(lib().bpf_obj_get(path.encode()), f"opening pinned object {path}")


def try_obj_get(path):
    try:
        return obj_get(path)
    except BpfError as exc:
        if exc.errno == errno_mod.ENOENT:
            return None
        raise


# ---------------------------------------------------------------- raw bpf(2)

def _sys_bpf(cmd, attr, what, hint=None):
    nr = SYS_BPF.get(platform.machine())
    if nr is None:
        raise BpfError(errno_mod.ENOSYS, f"{what}: no bpf(2) syscall number known for {platform.machine()}")
    lib()
    ret = _libc.syscall(ctypes.c_long(nr), ctypes.c_long(cmd), ctypes.byref(attr), ctypes.c_uint(ctypes.sizeof(attr)))
    if ret < 0:
        _fail(ctypes.get_errno(), what, hint)
    return ret


def _obj_info(fd, size, what):
    info = ctypes.create_string_buffer(size)
    attr = ctypes.create_string_buffer(16)
    struct.pack_into("=IIQ", attr, 0, fd, size, ctypes.addressof(info))
    _sys_bpf(BPF_CMD["BPF_OBJ_GET_INFO_BY_FD"], attr, what)
    return info.raw


def prog_info(fd):
    """{'id', 'type', 'tag' (hex, as bpftool shows it), 'name'} of a program fd."""
    raw = _obj_info(fd, 256, "reading program info")
    ptype, pid = struct.unpack_from("=II", raw, 0)
    tag = raw[8:16].hex()
    name = raw[64:80].split(b"\0", 1)[0].decode()
    return {"id": pid, "type": ptype, "tag": tag, "name": name}


def link_info(fd):
    """{'id', 'type', 'prog_id', 'ifindex', 'attach_type'} of a tcx/netkit/xdp link fd.

    ifindex 0 means the device is gone or the link was detached (it is defunct). For a
    netkit peer link the kernel reports the container-side ifindex; use prog_query to
    locate links. An XDP link reports only its ifindex (bpf_link_info.xdp): which
    namespace it is in is not said, so check the device's IFLA_XDP too (xdp_query).
    """
    raw = _obj_info(fd, 128, "reading link info")
    ltype, lid, prog_id = struct.unpack_from("=III", raw, 0)
    ifindex, attach = struct.unpack_from("=II", raw, 16)
    kind = LINK_TYPES.get(ltype, str(ltype))
    return {"id": lid, "type": kind, "prog_id": prog_id, "ifindex": ifindex,
            "attach_type": "xdp" if kind == "xdp" else ATTACH_NAMES.get(attach, str(attach))}


def prog_run_stats(prog_id):
    """{'run_cnt', 'run_time_ns'} of a program by id (they move only while stats are enabled)."""
    fd = prog_fd_by_id(prog_id)
    try:
        raw = _obj_info(fd, 256, f"reading run stats of program id {prog_id}")
    finally:
        os.close(fd)
    run_time_ns, run_cnt = struct.unpack_from("=QQ", raw, 192)
    return {"run_cnt": run_cnt, "run_time_ns": run_time_ns}


def enable_stats():
    """BPF_ENABLE_STATS (run time and count of every program) while the returned fd is open."""
    attr = ctypes.create_string_buffer(8)
    struct.pack_into("=I", attr, 0, _BPF_STATS_RUN_TIME)
    return _sys_bpf(BPF_CMD["BPF_ENABLE_STATS"], attr, "enabling BPF run statistics",
                    "needs root (CAP_SYS_ADMIN) and Linux >= 5.8")


def map_info(fd):
    raw = _obj_info(fd, 96, "reading map info")
    mtype, mid, key_size, value_size, max_entries, flags = struct.unpack_from("=IIIIII", raw, 0)
    name = raw[24:40].split(b"\0", 1)[0].decode()
    return {"id": mid, "type": mtype, "key_size": key_size, "value_size": value_size,
            "max_entries": max_entries, "flags": flags, "name": name}


def prog_query(ifindex, attach_type, max_count=64):
    """Programs and links attached at (ifindex, attach_type) in the calling thread's netns.

    Returns {'prog_ids': [...], 'link_ids': [...], 'revision': n}; an ifindex with nothing
    attached gives empty lists. A device that does not exist raises BpfError(ENODEV).
    """
    at = ATTACH_TYPES.get(attach_type, attach_type)
    progs = (ctypes.c_uint32 * max_count)()
    links = (ctypes.c_uint32 * max_count)()
    attr = ctypes.create_string_buffer(64)
    struct.pack_into("=IIIIQII", attr, 0, ifindex, at, 0, 0, ctypes.addressof(progs), max_count, 0)
    struct.pack_into("=Q", attr, 40, ctypes.addressof(links))
    try:
        _sys_bpf(BPF_CMD["BPF_PROG_QUERY"], attr, f"querying {attach_type} programs on ifindex {ifindex}")
    except BpfError as exc:
        hint = _attach_hint(attach_type, exc.errno)
        raise BpfError(exc.errno, f"{exc.message}. {hint}" if hint else exc.message) from None
    count = struct.unpack_from("=I", attr, 24)[0]
    revision = struct.unpack_from("=Q", attr, 56)[0]
    return {"prog_ids": list(progs[:count]), "link_ids": [x for x in links[:count] if x], "revision": revision}


def prog_fd_by_id(prog_id):
    attr = ctypes.create_string_buffer(16)
    struct.pack_into("=I", attr, 0, prog_id)
    return _sys_bpf(BPF_CMD["BPF_PROG_GET_FD_BY_ID"], attr, f"opening program id {prog_id}")


def prog_load_trivial(name="yg_probe"):
    """Load `r0 = -1 (TCX_NEXT); exit` as SCHED_CLS, for probes. Returns its fd."""
    insns = bytes.fromhex("b7000000ffffffff9500000000000000")
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(b"GPL")
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("=IIQQ", attr, 0, PROG_TYPE_SCHED_CLS, len(insns) // 8, ctypes.addressof(code),
                     ctypes.addressof(lic))
    attr[48:48 + len(name)] = name.encode()[:15]
    return _sys_bpf(BPF_CMD["BPF_PROG_LOAD"], attr, "loading a trivial SCHED_CLS program",
                    "loading BPF programs needs root (CAP_BPF and CAP_NET_ADMIN)")


# ---------------------------------------------------------------- links

def _attach_hint(attach_type, err=None):
    kind = str(attach_type)
    if kind.startswith("netkit"):
        if err == errno_mod.EACCES:
            return "that is the peer of a netkit pair: attach through its host-side (primary) device"
        if err == errno_mod.ENXIO:
            return "that device is not netkit: use the veth backend on it, or create a netkit pair"
        if err == errno_mod.EINVAL:
            return "this kernel may lack netkit (Linux >= 6.7 with CONFIG_NETKIT)"
    if kind.startswith("tcx") and err == errno_mod.EINVAL:
        return "tcx needs Linux >= 6.6; on older kernels attach as tc clsact filters (wire attach: tc)"
    if kind == "xdp":
        if err in (errno_mod.EBUSY, errno_mod.EEXIST):
            return ("another XDP program is attached to that device (ip link show shows it): remove it "
                    "(ip link set dev DEVICE xdp off, in its namespace) and run again")
        if err == errno_mod.ERANGE:
            return "the peer's MTU is too large for XDP on this device: lower the phone's mtu"
        if err == errno_mod.ENOSPC:
            return ("the host-side device has more tx queues than this device has rx queues: "
                    "recreate the pair with equal queue counts (or ethtool -L)")
        if err in (errno_mod.EOPNOTSUPP, errno_mod.EINVAL):
            return "native XDP bpf_links need Linux >= 5.9 and a driver with XDP (veth has it)"
    if err == errno_mod.ENODEV:
        return "no device has that ifindex in this network namespace (was it deleted or recreated?)"
    return None


def link_create(prog_fd, ifindex, attach_type):
    """Attach prog_fd at ifindex (resolved in the calling thread's netns); returns the link fd.

    attach_type 'xdp' creates a native XDP link (flags XDP_FLAGS_DRV_MODE: it fails rather
    than fall back to generic XDP, which would also see packets redirected to the device).
    """
    opts = None
    if attach_type == "xdp":
        # struct bpf_link_create_opts {size_t sz; __u32 flags; ...}: libbpf reads no further than sz.
        opts = ctypes.create_string_buffer(struct.pack("=QI4x", 16, XDP_FLAGS_DRV_MODE), 16)
    rcu.before_grace_period()  # tcx and netkit attaches wait for one (synchronize_rcu under RTNL)
    ret = lib().bpf_link_create(prog_fd, ifindex, ATTACH_TYPES[attach_type], opts)
    if ret < 0:
        err = _errno_of(ret)
        _fail(err, f"attaching a {attach_type} link on ifindex {ifindex}", _attach_hint(attach_type, err))
    return ret


def link_detach(link_fd):
    """Detach a link now (BPF_LINK_DETACH), before its last reference goes.

    Unpinning alone detaches too, but later: bpffs drops its reference after an RCU grace
    period and the link is released from a workqueue. A link that is already defunct
    (device gone, or detached by hand) is fine.
    """
    attr = ctypes.create_string_buffer(8)
    struct.pack_into("=I", attr, 0, link_fd)
    rcu.before_grace_period()
    try:
        _sys_bpf(BPF_CMD["BPF_LINK_DETACH"], attr, "detaching a link")
    except BpfError as exc:
        if exc.errno not in (errno_mod.ENOLINK, errno_mod.EINVAL, errno_mod.EOPNOTSUPP, errno_mod.ENODEV):
            raise


def link_update(link_fd, prog_fd):
    """Swap the program of a link atomically (BPF_LINK_UPDATE): no packet sees no program."""
    _ret(lib().bpf_link_update(link_fd, prog_fd, None), "replacing the program of a link",
         "ENOLINK means its device is gone: detach and attach again")


# ---------------------------------------------------------------- maps

def map_lookup(fd, key, value_size):
    val = ctypes.create_string_buffer(value_size)
    kb = ctypes.create_string_buffer(key, len(key))
    if _enoent(lib().bpf_map_lookup_elem(fd, kb, val), "looking up a map element"):
        return None
    return val.raw


def map_update(fd, key, value, flags=0):
    kb = ctypes.create_string_buffer(key, len(key))
    vb = ctypes.create_string_buffer(value, len(value))
    _ret(lib().bpf_map_update_elem(fd, kb, vb, flags), "updating a map element")


def map_delete(fd, key):
    kb = ctypes.create_string_buffer(key, len(key))
    _enoent(lib().bpf_map_delete_elem(fd, kb), "deleting a map element")


def map_keys(fd, key_size):
    """All keys of a hash or array map, in the kernel's order."""
    keys = []
    prev = None
    nxt = ctypes.create_string_buffer(key_size)
    while True:
        pk = None if prev is None else ctypes.create_string_buffer(prev, key_size)
        if _enoent(lib().bpf_map_get_next_key(fd, pk, nxt), "iterating a map"):
            return keys
        prev = nxt.raw
        keys.append(prev)


def map_items(fd):
    """[(key bytes, value bytes)] of a map fd (per-CPU maps: the values of all CPUs, concatenated)."""
    info = map_info(fd)
    vsize = info["value_size"]
    if info["type"] in (5, 6, 10):  # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH
        vsize = ((vsize + 7) // 8) * 8 * num_possible_cpus()
    items = []
    for key in map_keys(fd, info["key_size"]):
        val = map_lookup(fd, key, vsize)
        if val is not None:
            items.append((key, val))
    return items


def num_possible_cpus():
    return _ret(lib().libbpf_num_possible_cpus(), "counting possible CPUs")


def percpu_sum_u64(value):
    """Sum the u64 per-CPU values of one element as returned by map_lookup/map_items."""
    return sum(struct.unpack(f"={len(value) // 8}Q", value))


# ---------------------------------------------------------------- objects

class BpfObject:
    """One ELF object opened (and later loaded) through libbpf.

    pin_maps: {map name: pin path}; libbpf reuses a compatible map pinned there (so
    counters and routes survive a program swap) or pins the new one after load.
    """

    def __init__(self, path, pin_maps=None):
        self.path = path
        self._obj = None
        if not os.path.isfile(path):
            raise BpfError(errno_mod.ENOENT, f"BPF object {path} does not exist; compile it first (bpf/build.py, or the bpf_compile module)")
        so = lib()
        del _log[:]
        obj = so.bpf_object__open_file(path.encode(), None)
        if not obj:
            _fail(ctypes.get_errno() or errno_mod.EINVAL, f"opening BPF object {path}",
                  "libbpf said: " + " | ".join(_log[-5:]))
        self._obj = obj
        self.programs = {}
        prog = so.bpf_object__next_program(obj, None)
        while prog:
            self.programs[so.bpf_program__name(prog).decode()] = prog
            # libbpf < 1.3 knows no tcx/netkit sections; both are SCHED_CLS programs.
            if so.bpf_program__type(prog) == 0:
                so.bpf_program__set_type(prog, PROG_TYPE_SCHED_CLS)
            prog = so.bpf_object__next_program(obj, prog)
        self.maps = {}
        m = so.bpf_object__next_map(obj, None)
        while m:
            self.maps[so.bpf_map__name(m).decode()] = m
            m = so.bpf_object__next_map(obj, m)
        for name, pin in (pin_maps or {}).items():
            if name not in self.maps:
                self.close()
                raise BpfError(errno_mod.ENOENT, f"BPF object {path} has no map '{name}'")
            _ret(so.bpf_map__set_pin_path(self.maps[name], pin.encode()), f"setting pin path {pin}")

    def load(self):
        del _log[:]
        ret = lib().bpf_object__load(self._obj)
        if ret < 0:
            err = _errno_of(ret)
            hint = "libbpf said: " + " | ".join(line for line in _log[-8:])
            if any("reuse pinned map" in line for line in _log):
                hint = ("a map pinned by an earlier object does not match this object's map "
                        "(size or type changed); remove the phone (state: absent) and build it again. " + hint)
            _fail(err, f"loading BPF object {self.path}", hint)

    def prog_fd(self, name):
        if name not in self.programs:
            raise BpfError(errno_mod.ENOENT, f"BPF object {self.path} has no program '{name}' "
                           f"(it has: {', '.join(sorted(self.programs)) or 'none'})")
        return lib().bpf_program__fd(self.programs[name])

    def map_fd(self, name):
        return lib().bpf_map__fd(self.maps[name])

    def close(self):
        if self._obj:
            lib().bpf_object__close(self._obj)
            self._obj = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
