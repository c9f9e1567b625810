"""inotify(7) for Python: a cffi ABI-mode binding and a pure event parser.

Used to see container runtimes write their state (cgroups/runtime_watch.py) the
moment they do, whatever the main loop is busy with.  ``parse_events(buf)``
is pure, so it is tested on bytes built by hand.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import cffi

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE_SELF = 0x00000400
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

_HEADER = struct.Struct("=iIII")    # struct inotify_event: wd, mask, cookie, len; then name[len]

_ffi = cffi.FFI()
_ffi.cdef("""
int inotify_init1(int flags);
int inotify_add_watch(int fd, const char *pathname, uint32_t mask);
int inotify_rm_watch(int fd, int wd);
""")
_libc = _ffi.dlopen(None)


@dataclass(frozen=True, slots=True)
class Event:
    wd: int
    mask: int
    name: str       # "" for events on the watched directory itself


def parse_events(buf: bytes) -> list[Event]:
    """The events in one read(2) of an inotify fd."""
    out, off = [], 0
    while off + _HEADER.size <= len(buf):
        wd, mask, _cookie, size = _HEADER.unpack_from(buf, off)
        raw = buf[off + _HEADER.size: off + _HEADER.size + size]
        out.append(Event(wd, mask, os.fsdecode(raw.split(b"\0", 1)[0])))
        off += _HEADER.size + size
    return out


def init() -> int:
    fd = _libc.inotify_init1(IN_CLOEXEC | IN_NONBLOCK)
    if fd < 0:
        err = _ffi.errno
        raise OSError(err, "inotify_init1: %s" % os.strerror(err))
    return fd


def add_watch(fd: int, path: str, mask: int) -> int:
    """A watch descriptor, or -1 when path cannot be watched (gone, not a directory, no permission)."""
    return _libc.inotify_add_watch(fd, os.fsencode(path), mask)


def read_events(fd: int) -> list[Event]:
    try:
        return parse_events(os.read(fd, 65536))
    except BlockingIOError:
        return []
