"""/proc/<pid>/mountinfo (proc(5)), parsed once for everyone who needs mounts."""
from __future__ import annotations

from dataclasses import dataclass

MOUNTINFO = "/proc/self/mountinfo"


@dataclass(frozen=True)
class Mount:
    """One line of mountinfo."""

    mount_id: int
    parent_id: int
    dev: int            # the kernel's dev_t of the superblock: major << 20 | minor
    root: bytes         # the directory of the filesystem mounted here
    point: bytes        # where, relative to our root
    fstype: str
    options: bytes = b""    # the superblock's options as mountinfo writes them (values still escaped)


def kernel_dev(major: int, minor: int) -> int:
    return major << 20 | minor


def unescape(field: bytes) -> bytes:
    """mountinfo writes space, tab, newline and backslash as \\ooo."""
    out, i = bytearray(), 0
    while i < len(field):
        if field[i] == 0x5C and i + 4 <= len(field) and field[i + 1:i + 4].isdigit():
            out.append(int(field[i + 1:i + 4], 8))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return bytes(out)


def parse(text: bytes) -> list[Mount]:
    """Every well-formed line of a mountinfo text; others are passed over."""
    mounts = []
    for line in text.splitlines():
        fields = line.split(b" ")
        try:
            sep = fields.index(b"-", 6)
            major, minor = fields[2].split(b":")
            mounts.append(Mount(int(fields[0]), int(fields[1]), kernel_dev(int(major), int(minor)),
                                unescape(fields[3]), unescape(fields[4]), fields[sep + 1].decode(),
                                fields[sep + 3] if len(fields) > sep + 3 else b""))
        except (ValueError, IndexError):
            continue
    return mounts


def overlay_upper_dirs(mount: Mount) -> list[bytes]:
    """An overlay mount's upperdir and workdir: where overlayfs itself creates, renames and deletes."""
    if mount.fstype != "overlay":
        return []
    # comma-separated; a comma (space, tab, newline, backslash) inside a path is written \ooo
    return [unescape(o.split(b"=", 1)[1]) for o in mount.options.split(b",")
            if o.startswith((b"upperdir=", b"workdir="))]


def read(path: str = MOUNTINFO) -> list[Mount]:
    with open(path, "rb") as f:
        return parse(f.read())
