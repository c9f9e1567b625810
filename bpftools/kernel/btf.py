"""Facts about the running kernel read from its BTF (/sys/kernel/btf/vmlinux).

The fsnotify backends need two things the kernel headers cannot give:

* the layout of ``struct mount`` (private to fs/, not in any headers
  package) to cross mount points when rebuilding a path, and
* the BTF id and parameter names of ``fsnotify()``, to attach a test fentry
  program and to check the hook's signature before compiling anything.

This is a small reader for the BTF format (include/uapi/linux/btf.h): one
pass over the type section records where each type starts; names are looked
up in the string section.
"""
from __future__ import annotations

import struct
from array import array

VMLINUX = "/sys/kernel/btf/vmlinux"
BTF_MAGIC = 0xEB9F

KIND_STRUCT = 4
KIND_FUNC = 12
KIND_FUNC_PROTO = 13

# Bytes that follow struct btf_type for each kind: fixed, or per vlen entry.
_FIXED_TAIL = {1: 4, 3: 12, 14: 4, 17: 4}
_PER_ENTRY_TAIL = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}
_KINDS_KNOWN = set(range(1, 20))

_HEADER = struct.Struct("=HBBIIIII")   # magic, version, flags, hdr_len, type_off, type_len, str_off, str_len
_TYPE = struct.Struct("=III")          # name_off, info, size/type
_MEMBER = struct.Struct("=III")        # name_off, type, offset
_PARAM = struct.Struct("=II")          # name_off, type


class BtfError(ValueError):
    """The BTF blob is missing, malformed, or lacks what was asked for."""


class Btf:
    def __init__(self, blob: bytes):
        if len(blob) < _HEADER.size:
            raise BtfError("BTF blob of %d bytes is shorter than its header" % len(blob))
        magic, _, _, hdr_len, type_off, type_len, str_off, str_len = _HEADER.unpack_from(blob)
        if magic != BTF_MAGIC:
            raise BtfError("not BTF (magic %#x)" % magic)
        self._types = memoryview(blob)[hdr_len + type_off: hdr_len + type_off + type_len]
        self._strings = bytes(blob[hdr_len + str_off: hdr_len + str_off + str_len])
        self._offsets = array("I", [0])     # type id -> offset in the type section; id 0 is void
        pos = 0
        while pos < len(self._types):
            _, info, _ = _TYPE.unpack_from(self._types, pos)
            kind, vlen = info >> 24 & 0x1F, info & 0xFFFF
            if kind not in _KINDS_KNOWN:
                raise BtfError("unknown BTF kind %d at offset %d" % (kind, pos))
            self._offsets.append(pos)
            pos += _TYPE.size + _FIXED_TAIL.get(kind, 0) + _PER_ENTRY_TAIL.get(kind, 0) * vlen

    @classmethod
    def load(cls, path: str = VMLINUX) -> Btf:
        try:
            with open(path, "rb") as f:
                return cls(f.read())
        except OSError as e:
            raise BtfError("cannot read %s: %s" % (path, e.strerror)) from None

    def _name(self, off: int) -> str:
        end = self._strings.index(b"\0", off)
        return self._strings[off:end].decode()

    def _head(self, type_id: int) -> tuple[int, int, int, int, int]:
        """(offset, name_off, kind, vlen, size_or_type) of a type."""
        pos = self._offsets[type_id]
        name_off, info, size_or_type = _TYPE.unpack_from(self._types, pos)
        return pos, name_off, info >> 24 & 0x1F, info & 0xFFFF, size_or_type

    def find(self, kind: int, name: str) -> int:
        """The id of the type of this kind and name; BtfError if there is none."""
        at = self._strings.find(b"\0" + name.encode() + b"\0")
        if at >= 0:
            name_off = at + 1
            for type_id in range(1, len(self._offsets)):
                _, off, k, _, _ = self._head(type_id)
                if off == name_off and k == kind:
                    return type_id
        raise BtfError("no %s named %r in the kernel's BTF" % (_KIND_NAMES.get(kind, kind), name))

    def member_offsets(self, struct_name: str) -> dict[str, int]:
        """Byte offset of each named member of struct struct_name (bitfields left out)."""
        pos, _, _, vlen, _ = self._head(self.find(KIND_STRUCT, struct_name))
        kind_flag = _TYPE.unpack_from(self._types, pos)[1] >> 31
        out = {}
        for i in range(vlen):
            name_off, _, offset = _MEMBER.unpack_from(self._types, pos + _TYPE.size + i * _MEMBER.size)
            bits = offset & 0xFFFFFF if kind_flag else offset
            if name_off and bits % 8 == 0 and not (kind_flag and offset >> 24):
                out[self._name(name_off)] = bits // 8
        return out

    def func_params(self, func_name: str) -> tuple[int, list[str]]:
        """The BTF id of function func_name and the names of its parameters."""
        func_id = self.find(KIND_FUNC, func_name)
        _, _, _, _, proto_id = self._head(func_id)
        pos, _, kind, vlen, _ = self._head(proto_id)
        if kind != KIND_FUNC_PROTO:
            raise BtfError("%s: BTF type %d is not a function prototype" % (func_name, proto_id))
        names = [self._name(_PARAM.unpack_from(self._types, pos + _TYPE.size + i * _PARAM.size)[0])
                 for i in range(vlen)]
        return func_id, names


_KIND_NAMES = {KIND_STRUCT: "struct", KIND_FUNC: "function", KIND_FUNC_PROTO: "prototype"}
