"""bpftools/kernel/btf.py on a hand-built BTF blob and on this machine's kernel BTF."""
import os
import struct

import pytest

from bpftools.kernel import btf

KIND_INT, KIND_PTR = 1, 2


def blob(types: bytes, strings: bytes) -> bytes:
    header = struct.pack("=HBBIIIII", btf.BTF_MAGIC, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + strings


def typ(name_off, kind, vlen, size_or_type, kind_flag=0):
    return struct.pack("=III", name_off, kind_flag << 31 | kind << 24 | vlen, size_or_type)


# strings: "" int mount mnt_parent mnt flags f a b fsnotify
STRINGS = b"\0int\0mount\0mnt_parent\0mnt\0flags\0f\0a\0b\0fsnotify\0"
OFF = {s: STRINGS.index(b"\0" + s + b"\0") + 1 for s in
       (b"int", b"mount", b"mnt_parent", b"mnt", b"flags", b"f", b"a", b"b", b"fsnotify")}
TYPES = b"".join([
    typ(OFF[b"int"], KIND_INT, 0, 4) + struct.pack("=I", 32),                  # 1: int
    typ(0, KIND_PTR, 0, 1),                                                    # 2: int *
    typ(OFF[b"mount"], btf.KIND_STRUCT, 3, 40, kind_flag=1)                    # 3: struct mount
    + struct.pack("=III", OFF[b"mnt_parent"], 2, 16 * 8)
    + struct.pack("=III", OFF[b"mnt"], 1, 32 * 8)
    + struct.pack("=III", OFF[b"flags"], 1, 3 << 24 | 36 * 8 + 1),             # a 3-bit bitfield
    typ(0, btf.KIND_FUNC_PROTO, 2, 1)                                          # 4: int (int a, int *b)
    + struct.pack("=II", OFF[b"a"], 1) + struct.pack("=II", OFF[b"b"], 2),
    typ(OFF[b"fsnotify"], btf.KIND_FUNC, 0, 4),                                # 5: fsnotify
])


def test_member_offsets_in_bytes_without_bitfields():
    b = btf.Btf(blob(TYPES, STRINGS))
    assert b.member_offsets("mount") == {"mnt_parent": 16, "mnt": 32}


def test_function_id_and_parameter_names():
    b = btf.Btf(blob(TYPES, STRINGS))
    assert b.func_params("fsnotify") == (5, ["a", "b"])


def test_a_missing_type_is_a_btf_error():
    b = btf.Btf(blob(TYPES, STRINGS))
    with pytest.raises(btf.BtfError, match="no struct named 'f'"):
        b.member_offsets("f")        # "f" exists as a string, not as a struct


def test_garbage_is_refused():
    with pytest.raises(btf.BtfError, match="not BTF"):
        btf.Btf(b"\0" * 64)
    with pytest.raises(btf.BtfError, match="unknown BTF kind"):
        btf.Btf(blob(typ(0, 31, 0, 0), b"\0"))


@pytest.mark.skipif(not os.path.exists(btf.VMLINUX), reason="this kernel has no BTF")
def test_this_kernels_fsnotify_and_struct_mount():
    b = btf.Btf.load()
    _, params = b.func_params("fsnotify")
    assert params == ["mask", "data", "data_type", "dir", "file_name", "inode", "cookie"]
    offsets = b.member_offsets("mount")
    assert {"mnt_parent", "mnt_mountpoint", "mnt"} <= set(offsets)
    assert offsets["mnt_parent"] < offsets["mnt_mountpoint"] < offsets["mnt"]


# strings for a struct with members inside anonymous unions and structs, and enums
NSTR = b"\0int\0long\0file\0f_mode\0f_path\0path\0mnt\0dentry\0x\0e\0E_A\0E_B\0E_BIG\0"
NOFF = {s: NSTR.index(b"\0" + s + b"\0") + 1 for s in
        (b"int", b"long", b"file", b"f_mode", b"f_path", b"path", b"mnt", b"dentry", b"x", b"e",
         b"E_A", b"E_B", b"E_BIG")}
NTYPES = b"".join([
    typ(NOFF[b"int"], KIND_INT, 0, 4) + struct.pack("=I", 32),                    # 1: int
    typ(NOFF[b"long"], KIND_INT, 0, 8) + struct.pack("=I", 64),                   # 2: long
    typ(NOFF[b"path"], btf.KIND_STRUCT, 2, 16)                                    # 3: struct path
    + struct.pack("=III", NOFF[b"mnt"], 2, 0) + struct.pack("=III", NOFF[b"dentry"], 2, 64),
    typ(0, btf.KIND_STRUCT, 2, 24)                                                # 4: struct { x; path }
    + struct.pack("=III", NOFF[b"x"], 2, 0) + struct.pack("=III", NOFF[b"f_path"], 6, 64),
    typ(0, btf.KIND_UNION, 2, 24)                                                 # 5: union { long; struct 4 }
    + struct.pack("=III", NOFF[b"e"], 2, 0) + struct.pack("=III", 0, 4, 0),
    typ(0, btf.KIND_CONST, 0, 3),                                                 # 6: const struct path
    typ(NOFF[b"file"], btf.KIND_STRUCT, 2, 40)                                    # 7: struct file
    + struct.pack("=III", NOFF[b"f_mode"], 1, 32) + struct.pack("=III", 0, 5, 64),
    typ(NOFF[b"e"], btf.KIND_ENUM, 2, 4, kind_flag=1)                             # 8: enum, signed
    + struct.pack("=Ii", NOFF[b"E_A"], -22) + struct.pack("=Ii", NOFF[b"E_B"], 4),
    typ(0, btf.KIND_ENUM64, 1, 8) + struct.pack("=III", NOFF[b"E_BIG"], 1, 2),    # 9: enum64
])


def test_offsets_inside_anonymous_unions_and_structs_and_through_qualifiers():
    b = btf.Btf(blob(NTYPES, NSTR))
    assert b.offset("file", "f_mode") == 4
    assert b.offset("file", "f_path") == 16            # 8 (union) + 8 (in the anonymous struct)
    assert b.offset("file", "f_path.dentry") == 24     # through the const qualifier
    with pytest.raises(btf.BtfError, match="struct file has no member f_nope"):
        b.offset("file", "f_nope")


def test_enum_values_signed_and_64_bit():
    b = btf.Btf(blob(NTYPES, NSTR))
    assert b.enum_value("E_A") == -22
    assert b.enum_value("E_B") == 4
    assert b.enum_value("E_BIG") == 2 << 32 | 1
    with pytest.raises(btf.BtfError, match="no enumerator E_C"):
        b.enum_value("E_C")


@pytest.mark.skipif(not os.path.exists(btf.VMLINUX), reason="this kernel has no BTF")
def test_this_kernels_layout_has_every_member_fstrace_reads():
    flags = btf.layout_cflags(btf.Btf.load())
    macros = dict(f[2:].split("=") for f in flags)
    assert len([m for m in macros if m.startswith("FST_OFF_")]) == len(btf.LAYOUT)
    assert int(macros["FST_OFF_PATH_DENTRY"]) == 8      # struct path { mnt; dentry; }
    assert "FST_OFF_FILE_F_REF" in macros and "FST_OFF_FILE_F_PATH" in macros


def test_a_file_is_parsed_once_until_it_changes(tmp_path):
    path = tmp_path / "vmlinux"
    path.write_bytes(blob(TYPES, STRINGS))
    first = btf.Btf.load(str(path))
    assert btf.Btf.load(str(path)) is first
    os.utime(path, ns=(1, 1))                        # another file now: parsed again
    again = btf.Btf.load(str(path))
    assert again is not first and again.func_params("fsnotify") == (5, ["a", "b"])


def test_the_first_type_of_a_name_and_kind_is_found():
    twice = TYPES + typ(OFF[b"fsnotify"], btf.KIND_FUNC, 0, 4)                # 6: fsnotify again
    assert btf.Btf(blob(twice, STRINGS)).find(btf.KIND_FUNC, "fsnotify") == 5
