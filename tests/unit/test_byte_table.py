"""Bytes: which syscalls move them (bpf/fstrace.h and bpftools/abi.py agree), and how they are shown."""
import re
from pathlib import Path

import pytest

from bpftools import abi
from bpftools.cgroups.names import Names
from bpftools.session.contract import FileEvent
from bpftools.views.text import event_line, human_bytes

ROOT = Path(__file__).resolve().parents[2]
UNISTD = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")


def numbers() -> dict[str, int]:
    """x86_64 syscall numbers from the system's header (linux-libc-dev)."""
    return {m[0]: int(m[1]) for m in re.findall(r"^#define __NR_(\w+) (\d+)$", UNISTD.read_text(), re.M)}


def test_the_c_list_and_the_python_list_name_the_same_syscalls():
    macro = (ROOT / "bpf/fstrace.h").read_text().split("#define FST_MOVES_BYTES(nr)")[1].split("\n\n")[0]
    in_c = {int(n) for n in re.findall(r"\(nr\) == (\d+)", macro)}
    nr = numbers()
    assert in_c == {nr[name] for name in abi.BYTES_SYSCALLS}
    for name in abi.BYTES_SYSCALLS:
        assert abi.moved_bytes(abi.EVENT_CODES["access"], nr[name], 4096) == 4096, name


@pytest.mark.parametrize("event,syscall,ret,moved", [
    ("access", "read", 100, 100),
    ("access", "read", 0, 0),                 # the end of a file: 0 bytes, not "none"
    ("access", "preadv2", -9, None),          # a failed call moved none
    ("modify", "pwritev2", 600, 600),
    ("modify", "ftruncate", 0, None),         # a truncate moves no bytes
    ("modify", "truncate", 0, None),
    ("open", "openat", 3, None),              # not an access or modify
    ("close_write", "close", 0, None),
])
def test_moved_bytes(event, syscall, ret, moved):
    nr = numbers()
    assert abi.moved_bytes(abi.EVENT_CODES[event], nr[syscall], ret) == moved


@pytest.mark.parametrize("n,text", [
    (0, "0 B"), (1, "1 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
    (99 * 1024, "99.0 KiB"), (100 * 1024, "100 KiB"), (1023 * 1024, "1023 KiB"), (1 << 20, "1.0 MiB"),
    (1 << 30, "1.0 GiB"), (5 << 40, "5.0 TiB"), (2.5, "2 B"),
])
def test_human_bytes(n, text):
    assert human_bytes(n) == text
    assert len(human_bytes(n)) <= 8


def event(name, syscall, ret, moved):
    return FileEvent(0.0, name, False, b"/f", None, 1, 1, None, 0, b"cat", 5, "/a", Names(), ret, syscall, moved)


def test_text_lines_show_bytes_only_where_there_are_some():
    assert event_line(event("access", "read", 4096, 4096), False).endswith("/f  (4.0 KiB)")
    assert event_line(event("access", "read", 0, 0), False).endswith("/f  (0 B)")
    assert event_line(event("modify", "ftruncate", 0, None), False).endswith("/f")
    assert event_line(event("modify", "write", -28, None), False).endswith("/f  ENOSPC")
