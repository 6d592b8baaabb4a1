# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Read the running kernel's BTF (/sys/kernel/btf/vmlinux): struct member offsets and enums.

The drop tracer follows skb->dev->ifindex and dev->nd_net->ns.inum with bpf_probe_read_kernel
at offsets that differ by kernel (nd_net: 280 on 6.12, 264 on 6.18), so they are read here at
run time instead of from kernel headers (bcc 0.26 cannot compile <linux/netdevice.h> of 6.12).
Only the BTF format itself (linux/btf.h, stable uapi) is known here.

PRIVATE to the yogurt.phone collection (like community.crypto's module_utils): no public API,
names may change in any release.
"""

from __future__ import annotations

import struct

VMLINUX = "/sys/kernel/btf/vmlinux"
MAGIC = 0xEB9F
KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM = 1, 2, 3, 4, 5, 6
KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG, KIND_ENUM64 = 8, 9, 10, 11, 18, 19
# Bytes that follow a btf_type of each kind: fixed, or per member (vlen).
_FIXED = {KIND_INT: 4, KIND_ARRAY: 12, 14: 4, 17: 4}  # 14 VAR, 17 DECL_TAG
_PER_MEMBER = {KIND_STRUCT: 12, KIND_UNION: 12, KIND_ENUM: 8, 13: 8, 15: 12, KIND_ENUM64: 12}  # 13 FUNC_PROTO, 15 DATASEC
_MODIFIERS = (KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG)


class BtfError(Exception):
    """The BTF is missing, not BTF, or lacks a type or member asked for."""


class Btf:
    """The types of one BTF blob, indexed lazily: by name for structs, unions and enums."""

    def __init__(self, data):
        if len(data) < 24 or struct.unpack_from("<H", data, 0)[0] != MAGIC:
            raise BtfError("not BTF (bad magic)")
        hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<5I", data, 4)
        self.data = data
        self.types_at = hdr_len + type_off
        self.types_end = self.types_at + type_len
        self.strings = data[hdr_len + str_off:hdr_len + str_off + str_len]
        self.offsets = [None]  # type id -> offset of its btf_type
        self.by_name = {}
        self._index()

    def _index(self):
        pos, data, unpack = self.types_at, self.data, struct.unpack_from
        while pos < self.types_end:
            name_off, info = unpack("<II", data, pos)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            self.offsets.append(pos)
            if kind in (KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_ENUM64) and name_off:
                self.by_name.setdefault((kind, self.name(name_off)), len(self.offsets) - 1)
            pos += 12 + _FIXED.get(kind, 0) + _PER_MEMBER.get(kind, 0) * vlen

    def name(self, off):
        end = self.strings.index(b"\0", off)
        return self.strings[off:end].decode()

    def type(self, type_id):
        """(kind, name, vlen, kflag, size_or_type, offset of the member records)."""
        pos = self.offsets[type_id]
        name_off, info, size = struct.unpack_from("<III", self.data, pos)
        kind = (info >> 24) & 0x1F
        return kind, self.name(name_off), info & 0xFFFF, info >> 31, size, pos + 12 + _FIXED.get(kind, 0)

    def resolve(self, type_id):
        """Through typedefs and qualifiers to the type itself."""
        while True:
            kind, _name, _vlen, _kflag, ref, _at = self.type(type_id)
            if kind not in _MODIFIERS:
                return type_id
            type_id = ref

    def members(self, type_id):
        """(name, type id, byte offset) of a struct or union, anonymous members included."""
        kind, _name, vlen, kflag, _size, at = self.type(self.resolve(type_id))
        if kind not in (KIND_STRUCT, KIND_UNION):
            return []
        out = []
        for i in range(vlen):
            name_off, member_type, offset = struct.unpack_from("<III", self.data, at + 12 * i)
            bits = offset & 0xFFFFFF if kflag else offset
            out.append((self.name(name_off), member_type, bits // 8))
        return out

    def find_member(self, type_id, member):
        """(byte offset, type id) of member, searching anonymous structs and unions too."""
        for name, member_type, offset in self.members(type_id):
            if name == member:
                return offset, member_type
            if not name:
                found = self.find_member(member_type, member)
                if found:
                    return offset + found[0], found[1]
        return None

    def struct_id(self, name):
        for kind in (KIND_STRUCT, KIND_UNION):
            if (kind, name) in self.by_name:
                return self.by_name[(kind, name)]
        raise BtfError(f"no struct {name} in the kernel's BTF")

    def offset(self, path):
        """Byte offset of 'struct.member.member...' (members of embedded structs, not through pointers)."""
        struct_name, *members = path.split(".")
        type_id, total = self.struct_id(struct_name), 0
        for member in members:
            found = self.find_member(type_id, member)
            if found is None:
                raise BtfError(f"no member {member} on the way to {path} in the kernel's BTF")
            total += found[0]
            type_id = found[1]
        return total

    def enum(self, name):
        """{value: name} of an enum (ENUM or ENUM64)."""
        type_id = self.by_name.get((KIND_ENUM, name)) or self.by_name.get((KIND_ENUM64, name))
        if type_id is None:
            raise BtfError(f"no enum {name} in the kernel's BTF")
        kind, _name, vlen, _kflag, _size, at = self.type(type_id)
        out = {}
        for i in range(vlen):
            if kind == KIND_ENUM:
                name_off, value = struct.unpack_from("<Ii", self.data, at + 8 * i)
            else:
                name_off, low, high = struct.unpack_from("<III", self.data, at + 12 * i)
                value = low | (high << 32)
            out[value] = self.name(name_off)
        return out


def load(path=VMLINUX):
    try:
        with open(path, "rb") as fh:
            return Btf(fh.read())
    except OSError as exc:
        raise BtfError(f"cannot read {path} ({exc.strerror}): the kernel needs CONFIG_DEBUG_INFO_BTF") from None
