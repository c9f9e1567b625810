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

import os
import struct
from array import array

VMLINUX = "/sys/kernel/btf/vmlinux"
BTF_MAGIC = 0xEB9F

KIND_INT = 1
KIND_PTR = 2
KIND_ARRAY = 3
KIND_STRUCT = 4
KIND_UNION = 5
KIND_ENUM = 6
KIND_TYPEDEF = 8
KIND_VOLATILE = 9
KIND_CONST = 10
KIND_RESTRICT = 11
KIND_FUNC = 12
KIND_FUNC_PROTO = 13
KIND_TYPE_TAG = 18
KIND_ENUM64 = 19
_QUALIFIERS = {KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG}

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
        self._named: dict[tuple[int, int], int] = {}     # (name offset, kind) -> the first such type id
        pos, type_id = 0, 0
        while pos < len(self._types):
            name_off, info, _ = _TYPE.unpack_from(self._types, pos)
            kind, vlen = info >> 24 & 0x1F, info & 0xFFFF
            if kind not in _KINDS_KNOWN:
                raise BtfError("unknown BTF kind %d at offset %d" % (kind, pos))
            self._offsets.append(pos)
            type_id += 1
            if name_off and kind in _FOUND_KINDS:
                self._named.setdefault((name_off, kind), type_id)
            pos += _TYPE.size + _FIXED_TAIL.get(kind, 0) + _PER_ENTRY_TAIL.get(kind, 0) * vlen

    @classmethod
    def load(cls, path: str = VMLINUX) -> Btf:
        """The BTF in path, parsed once per process (a kernel's takes ~0.2 s) while the file stays the same."""
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                key = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
                if key not in _LOADED:
                    _LOADED.clear()
                    _LOADED[key] = cls(f.read())
                return _LOADED[key]
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
        if at >= 0 and kind in _FOUND_KINDS and (at + 1, kind) in self._named:
            return self._named[(at + 1, kind)]
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

    def _strip(self, type_id: int) -> int:
        """type_id without typedefs and qualifiers."""
        for _ in range(64):
            _, _, kind, _, size_or_type = self._head(type_id)
            if kind not in _QUALIFIERS:
                return type_id
            type_id = size_or_type
        raise BtfError("BTF type %d: qualifier chain too long" % type_id)

    def _members(self, type_id: int):
        """(name, type id, bit offset) of each member of a struct or union, bitfields left out."""
        pos, _, kind, vlen, _ = self._head(type_id)
        if kind not in (KIND_STRUCT, KIND_UNION):
            raise BtfError("BTF type %d is not a struct or union" % type_id)
        kind_flag = _TYPE.unpack_from(self._types, pos)[1] >> 31
        for i in range(vlen):
            name_off, member_type, offset = _MEMBER.unpack_from(self._types, pos + _TYPE.size + i * _MEMBER.size)
            if kind_flag and offset >> 24:
                continue
            yield (self._name(name_off) if name_off else ""), member_type, offset & 0xFFFFFF if kind_flag else offset

    def _member(self, type_id: int, name: str) -> tuple[int, int] | None:
        """(byte offset, type id) of member name of a struct or union, looking inside anonymous members."""
        for member, member_type, bits in self._members(type_id):
            if member == name and bits % 8 == 0:
                return bits // 8, member_type
            if not member:
                inner = self._strip(member_type)
                if self._head(inner)[2] in (KIND_STRUCT, KIND_UNION):
                    found = self._member(inner, name)
                    if found:
                        return bits // 8 + found[0], found[1]
        return None

    def offset(self, struct_name: str, member: str) -> int:
        """Byte offset of member in struct struct_name; member may be dotted ("d_u.d_alias") and sit in
        anonymous structs and unions at any depth (6.18's struct file keeps f_path in one)."""
        type_id = self.find(KIND_STRUCT, struct_name)
        total = 0
        for part in member.split("."):
            found = self._member(self._strip(type_id), part)
            if found is None:
                raise BtfError("struct %s has no member %s" % (struct_name, member))
            total += found[0]
            type_id = found[1]
        return total

    def enum_value(self, name: str) -> int:
        """The value of enumerator name (in any enum); BtfError if the kernel has none."""
        at = self._strings.find(b"\0" + name.encode() + b"\0")
        if at < 0:
            raise BtfError("no enumerator %s in the kernel's BTF" % name)
        name_off = at + 1
        for type_id in range(1, len(self._offsets)):
            pos, _, kind, vlen, _ = self._head(type_id)
            if kind == KIND_ENUM:
                signed = _TYPE.unpack_from(self._types, pos)[1] >> 31
                for i in range(vlen):
                    off, value = struct.unpack_from("=Ii" if signed else "=II", self._types,
                                                    pos + _TYPE.size + i * 8)
                    if off == name_off:
                        return value
            elif kind == KIND_ENUM64:
                for i in range(vlen):
                    off, lo, hi = struct.unpack_from("=III", self._types, pos + _TYPE.size + i * 12)
                    if off == name_off:
                        return hi << 32 | lo
        raise BtfError("no enumerator %s in the kernel's BTF" % name)

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
_FOUND_KINDS = frozenset((KIND_STRUCT, KIND_FUNC))      # the kinds find() is asked for
_LOADED: dict[tuple, Btf] = {}


# Every kernel struct member a BPF program reads: -D FST_OFF_<STRUCT>_<MEMBER>=<byte offset>
# (bpf/fst_kernel.h).  Alternatives are tried in order: the first the kernel has wins.
LAYOUT = (
    ("task_struct", "files"), ("task_struct", "fs"), ("task_struct", "cred"), ("task_struct", "real_cred"),
    ("files_struct", "fdt"), ("files_struct", "count"),
    ("fdtable", "fd"), ("fdtable", "max_fds"),
    ("file", "f_path"), ("file", "f_mode"), ("file", "f_inode"), ("file", "f_flags"),
    ("file", ("f_ref", "f_count")),
    ("path", "mnt"), ("path", "dentry"),
    ("dentry", "d_parent"), ("dentry", "d_name"), ("dentry", "d_sb"), ("dentry", "d_inode"),
    ("dentry", "d_u.d_alias"),
    ("qstr", "name"), ("qstr", "len"), ("qstr", "hash"),
    ("inode", "i_mode"), ("inode", "i_dentry"),
    ("mount", "mnt_parent"), ("mount", "mnt_mountpoint"), ("mount", "mnt_ns"), ("mount", "mnt"),
    ("vfsmount", "mnt_root"), ("vfsmount", "mnt_sb"),
    ("fs_struct", "root"), ("fs_struct", "pwd"),
    ("super_block", "s_dev"),
    # the tracepoint backend's raw sys_enter/sys_exit: a syscall's arguments and number
    ("pt_regs", "di"), ("pt_regs", "si"), ("pt_regs", "dx"), ("pt_regs", "r10"), ("pt_regs", "r8"),
    ("pt_regs", "r9"), ("pt_regs", "orig_ax"),
)


def layout_macro(struct_name: str, member: str) -> str:
    return "FST_OFF_%s_%s" % (struct_name.upper(), member.split(".")[-1].upper())


def layout_cflags(kernel_btf: Btf) -> list[str]:
    """The -D flags of every struct offset in LAYOUT; BtfError names the first one the kernel lacks."""
    flags = []
    for struct_name, members in LAYOUT:
        alternatives = (members,) if isinstance(members, str) else members
        for member in alternatives:
            try:
                off = kernel_btf.offset(struct_name, member)
            except BtfError:
                continue
            flags.append("-D%s=%d" % (layout_macro(struct_name, alternatives[0]), off))
            if member == "f_ref":
                flags.append("-DFST_FILE_REF_BIAS=1")
            break
        else:
            raise BtfError("struct %s has no member %s" % (struct_name, " or ".join(alternatives)))
    return flags
