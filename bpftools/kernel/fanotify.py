"""fanotify(7) and file handles for Python: a cffi ABI-mode binding and a pure event parser.

The binding loads the functions from the running libc (``ffi.dlopen(None)``), so
installing fstrace needs no compiler.  Failures raise a ``FanotifyError``
subclass whose message ends in a one-line hint saying what to do.

Reading is split in two: ``read_events(fd)`` does the ``read(2)``, and
``parse_events(buf)`` is a pure function over the bytes the kernel returned,
so it can be tested on recorded buffers.
"""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass

import cffi

from bpftools.abi import AT_FDCWD

# fanotify_init(2) flags.
FAN_CLOEXEC = 0x00000001
FAN_NONBLOCK = 0x00000002
FAN_CLASS_NOTIF = 0x00000000
FAN_REPORT_FID = 0x00000200
FAN_REPORT_DIR_FID = 0x00000400
FAN_REPORT_NAME = 0x00000800
FAN_REPORT_TARGET_FID = 0x00001000
FAN_REPORT_DFID_NAME = FAN_REPORT_DIR_FID | FAN_REPORT_NAME
FAN_REPORT_DFID_NAME_TARGET = FAN_REPORT_DFID_NAME | FAN_REPORT_FID | FAN_REPORT_TARGET_FID

# fanotify_mark(2) flags.
FAN_MARK_ADD = 0x00000001
FAN_MARK_MOUNT = 0x00000010
FAN_MARK_FILESYSTEM = 0x00000100

# Event mask bits.
FAN_CREATE = 0x00000100
FAN_DELETE = 0x00000200
FAN_Q_OVERFLOW = 0x00004000
FAN_ONDIR = 0x40000000

# Info record types that carry a file handle (struct fanotify_event_info_fid).
FAN_EVENT_INFO_TYPE_FID = 1
FAN_EVENT_INFO_TYPE_DFID_NAME = 2
FAN_EVENT_INFO_TYPE_DFID = 3
FAN_EVENT_INFO_TYPE_OLD_DFID_NAME = 10
FAN_EVENT_INFO_TYPE_NEW_DFID_NAME = 12
_FID_INFO_TYPES = frozenset({
    FAN_EVENT_INFO_TYPE_FID, FAN_EVENT_INFO_TYPE_DFID_NAME, FAN_EVENT_INFO_TYPE_DFID,
    FAN_EVENT_INFO_TYPE_OLD_DFID_NAME, FAN_EVENT_INFO_TYPE_NEW_DFID_NAME,
})
_NAMED_INFO_TYPES = frozenset({
    FAN_EVENT_INFO_TYPE_DFID_NAME, FAN_EVENT_INFO_TYPE_OLD_DFID_NAME,
    FAN_EVENT_INFO_TYPE_NEW_DFID_NAME,
})

FANOTIFY_METADATA_VERSION = 3
FAN_NOFD = -1
FILEID_KERNFS = 0xFE  # kernfs (cgroupfs, sysfs) handle type; f_handle is the u64 node id
MAX_HANDLE_SZ = 128
READ_SIZE = 64 * 1024

# struct fanotify_event_metadata: event_len, vers, reserved, metadata_len, mask, fd, pid.
_METADATA = struct.Struct("=IBBHQii")
# struct fanotify_event_info_header: info_type, pad, len.
_INFO_HEADER = struct.Struct("=BBH")
# __kernel_fsid_t, then struct file_handle: handle_bytes, handle_type.
_FID_HEAD = struct.Struct("=IIIi")
_U64 = struct.Struct("=Q")

_ffi = cffi.FFI()
_ffi.cdef("""
struct file_handle { unsigned int handle_bytes; int handle_type; unsigned char f_handle[]; };
int fanotify_init(unsigned int flags, unsigned int event_f_flags);
int fanotify_mark(int fanotify_fd, unsigned int flags, uint64_t mask, int dirfd, const char *pathname);
int name_to_handle_at(int dirfd, const char *pathname, struct file_handle *handle, int *mount_id, int flags);
int open_by_handle_at(int mount_fd, struct file_handle *handle, int flags);
""")
_libc = _ffi.dlopen(None)


class FanotifyError(OSError):
    """A failed fanotify call; ``str()`` is one line ending in a hint when one is known."""

    def __init__(self, err: int, call: str, target: str | None = None, hint: str = ""):
        super().__init__(err, os.strerror(err), target)
        self.call = call
        self.hint = hint

    def __str__(self) -> str:
        where = f"{self.call}({self.filename})" if self.filename else self.call
        text = f"{where}: {self.strerror}"
        return f"{text}; {self.hint}" if self.hint else text


class FanotifyUnsupported(FanotifyError):
    """The kernel or the filesystem lacks what was asked for (EINVAL, ENODEV, EOPNOTSUPP, ...)."""


class FanotifyPermissionError(FanotifyError):
    """The caller lacks a capability (EPERM)."""


class FanotifyLimitError(FanotifyError):
    """A per-user fanotify limit was hit (EMFILE for groups, ENOSPC for marks)."""


_CLASSES = {
    errno.EINVAL: FanotifyUnsupported, errno.ENODEV: FanotifyUnsupported,
    errno.EOPNOTSUPP: FanotifyUnsupported, errno.ENOSYS: FanotifyUnsupported,
    errno.EXDEV: FanotifyUnsupported,
    errno.EPERM: FanotifyPermissionError,
    errno.EMFILE: FanotifyLimitError, errno.ENOSPC: FanotifyLimitError,
}

_HINTS = {
    ("fanotify_init", errno.EPERM): "needs CAP_SYS_ADMIN",
    ("fanotify_init", errno.EINVAL): "this kernel lacks these fanotify_init flags "
                                     "(FAN_REPORT_DFID_NAME_TARGET needs Linux 5.17+)",
    ("fanotify_init", errno.ENOSYS): "this kernel is built without fanotify (CONFIG_FANOTIFY)",
    ("fanotify_init", errno.EMFILE): "fanotify group limit reached: "
                                     "raise /proc/sys/fs/fanotify/max_user_groups",
    ("fanotify_mark", errno.EPERM): "filesystem marks need CAP_SYS_ADMIN",
    ("fanotify_mark", errno.ENODEV): "fanotify on cgroupfs needs Linux 6.6+ (kernfs fsid)",
    ("fanotify_mark", errno.EINVAL): "mark rejected: fanotify on cgroupfs needs Linux 6.6+ "
                                     "(kernfs fsid) and FAN_MARK_FILESYSTEM",
    ("fanotify_mark", errno.EOPNOTSUPP): "this filesystem cannot encode file handles",
    ("fanotify_mark", errno.EXDEV): "path has a different fsid than its filesystem's root",
    ("fanotify_mark", errno.ENOSPC): "fanotify mark limit reached: "
                                     "raise /proc/sys/fs/fanotify/max_user_marks",
}


def fanotify_error(call: str, err: int, target: str | None = None) -> FanotifyError:
    """The typed error, with its hint, for ``call`` ("fanotify_init"/"fanotify_mark") failing with ``err``."""
    cls = _CLASSES.get(err, FanotifyError)
    return cls(err, call, target, _HINTS.get((call, err), ""))


def fanotify_init(flags: int, event_f_flags: int = os.O_RDONLY | os.O_CLOEXEC) -> int:
    """Create a fanotify group; returns its file descriptor."""
    fd = _libc.fanotify_init(flags, event_f_flags)
    if fd < 0:
        raise fanotify_error("fanotify_init", _ffi.errno)
    return fd


def fanotify_mark(fd: int, flags: int, mask: int, path: str, dirfd: int = AT_FDCWD) -> None:
    """Add, remove or change a mark on ``path``."""
    if _libc.fanotify_mark(fd, flags, mask, dirfd, os.fsencode(path)) < 0:
        raise fanotify_error("fanotify_mark", _ffi.errno, path)


@dataclass(frozen=True, slots=True)
class FileHandle:
    """A ``struct file_handle``: its type and opaque bytes."""

    type: int
    data: bytes

    @property
    def kernfs_id(self) -> int | None:
        """The kernfs node id (= cgroup id on cgroupfs) of a 0xfe handle, else None."""
        if self.type == FILEID_KERNFS and len(self.data) == _U64.size:
            return _U64.unpack(self.data)[0]
        return None

    @classmethod
    def for_kernfs_id(cls, node_id: int) -> FileHandle:
        """The handle the kernel would give the kernfs node ``node_id``."""
        return cls(FILEID_KERNFS, _U64.pack(node_id))


def name_to_handle_at(path: str, dirfd: int = AT_FDCWD, flags: int = 0) -> tuple[FileHandle, int]:
    """The file handle of ``path`` and the id of the mount it is on."""
    raw = _ffi.new("char[]", _ffi.sizeof("struct file_handle") + MAX_HANDLE_SZ)
    handle = _ffi.cast("struct file_handle *", raw)
    handle.handle_bytes = MAX_HANDLE_SZ
    mount_id = _ffi.new("int *")
    if _libc.name_to_handle_at(dirfd, os.fsencode(path), handle, mount_id, flags) < 0:
        err = _ffi.errno
        raise OSError(err, os.strerror(err), path)
    data = bytes(_ffi.buffer(handle.f_handle, handle.handle_bytes))
    return FileHandle(handle.handle_type, data), mount_id[0]


def open_by_handle_at(mount_fd: int, handle: FileHandle, flags: int = os.O_PATH | os.O_CLOEXEC) -> int:
    """Open the object ``handle`` names on the filesystem of ``mount_fd``; needs CAP_DAC_READ_SEARCH.

    Raises ``OSError`` (ESTALE when the object no longer exists).
    """
    raw = _ffi.new("char[]", _ffi.sizeof("struct file_handle") + len(handle.data))
    c_handle = _ffi.cast("struct file_handle *", raw)
    c_handle.handle_bytes = len(handle.data)
    c_handle.handle_type = handle.type
    _ffi.memmove(c_handle.f_handle, handle.data, len(handle.data))
    fd = _libc.open_by_handle_at(mount_fd, c_handle, flags)
    if fd < 0:
        err = _ffi.errno
        raise OSError(err, os.strerror(err))
    return fd


@dataclass(frozen=True, slots=True)
class FidInfo:
    """An info record with a file handle: FID (the object), DFID or DFID_NAME (its directory + entry name)."""

    type: int
    fsid: tuple[int, int]
    handle: FileHandle
    name: str | None = None


@dataclass(frozen=True, slots=True)
class FanEvent:
    """One ``struct fanotify_event_metadata`` with the info records that follow it."""

    mask: int
    fd: int
    pid: int
    infos: tuple[FidInfo, ...] = ()

    @property
    def overflow(self) -> bool:
        """The kernel dropped events after this one (the queue was full)."""
        return bool(self.mask & FAN_Q_OVERFLOW)

    def info(self, info_type: int) -> FidInfo | None:
        """The first info record of ``info_type``, or None."""
        return next((i for i in self.infos if i.type == info_type), None)


class FanotifyParseError(ValueError):
    """The buffer does not hold well-formed fanotify events."""


def parse_events(buf: bytes) -> list[FanEvent]:
    """Parse what one ``read(2)`` of a fanotify fd returned.

    Info records of types other than FID/DFID/DFID_NAME (and the rename
    OLD/NEW_DFID_NAME, same layout) are skipped.  Names are decoded like
    ``os.fsdecode``.  Raises ``FanotifyParseError`` on a truncated or
    inconsistent buffer; the kernel only ever returns whole events.
    """
    events = []
    offset = 0
    while offset < len(buf):
        left = len(buf) - offset
        if left < _METADATA.size:
            raise FanotifyParseError(f"truncated event at offset {offset}: "
                                     f"{left} bytes, metadata needs {_METADATA.size}")
        event_len, vers, _, meta_len, mask, fd, pid = _METADATA.unpack_from(buf, offset)
        if vers != FANOTIFY_METADATA_VERSION:
            raise FanotifyParseError(f"event at offset {offset}: metadata version {vers}, "
                                     f"expected {FANOTIFY_METADATA_VERSION}")
        if meta_len < _METADATA.size or event_len < meta_len:
            raise FanotifyParseError(f"event at offset {offset}: bad lengths "
                                     f"(event_len {event_len}, metadata_len {meta_len})")
        if event_len > left:
            raise FanotifyParseError(f"truncated event at offset {offset}: "
                                     f"event_len {event_len}, {left} bytes left")
        infos = _parse_infos(buf, offset + meta_len, offset + event_len)
        events.append(FanEvent(mask, fd, pid, infos))
        offset += event_len
    return events


def _parse_infos(buf: bytes, start: int, end: int) -> tuple[FidInfo, ...]:
    infos = []
    pos = start
    while pos < end:
        if end - pos < _INFO_HEADER.size:
            raise FanotifyParseError(f"truncated info record at offset {pos}")
        info_type, _, info_len = _INFO_HEADER.unpack_from(buf, pos)
        if info_len < _INFO_HEADER.size or pos + info_len > end:
            raise FanotifyParseError(f"info record at offset {pos}: bad length {info_len}")
        if info_type in _FID_INFO_TYPES:
            infos.append(_parse_fid(buf, info_type, pos + _INFO_HEADER.size, pos + info_len))
        pos += info_len
    return tuple(infos)


def _parse_fid(buf: bytes, info_type: int, start: int, end: int) -> FidInfo:
    if end - start < _FID_HEAD.size:
        raise FanotifyParseError(f"fid record at offset {start}: too short")
    fsid0, fsid1, handle_bytes, handle_type = _FID_HEAD.unpack_from(buf, start)
    data_start = start + _FID_HEAD.size
    data_end = data_start + handle_bytes
    if data_end > end:
        raise FanotifyParseError(f"fid record at offset {start}: "
                                 f"handle of {handle_bytes} bytes overruns the record")
    name = None
    if info_type in _NAMED_INFO_TYPES:
        nul = buf.find(b"\0", data_end, end)
        if nul < 0:
            raise FanotifyParseError(f"fid record at offset {start}: name is not NUL-terminated")
        name = os.fsdecode(buf[data_end:nul])
    handle = FileHandle(handle_type, bytes(buf[data_start:data_end]))
    return FidInfo(info_type, (fsid0, fsid1), handle, name)


def read_events(fd: int, size: int = READ_SIZE) -> list[FanEvent]:
    """One ``read(2)`` of a fanotify fd, parsed; ``[]`` when a non-blocking fd has nothing queued."""
    try:
        buf = os.read(fd, size)
    except BlockingIOError:
        return []
    return parse_events(buf)
