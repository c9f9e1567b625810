"""Absolute paths for the tracepoint backend's records.

The kernel sends names as tasks passed them (relative to the cwd or a dirfd)
and names open files by a file_id.  PathResolver turns those into absolute
paths from what it has seen in the stream (opens, chdirs, forks), falling back
to /proc for processes, cwds and fds that predate tracing.  Every table is
bounded (least recently used entries go first).
"""
from __future__ import annotations

import os
from collections import OrderedDict

from bpftools.abi import AT_FDCWD

MAX_FILES = 65536      # file_id -> path; matches the kernel's fd table
MAX_TASKS = 32768      # tgid -> cwd, tgid -> ppid


class BoundedDict(OrderedDict):
    """A dict that forgets its least recently set entries beyond maxlen."""

    def __init__(self, maxlen: int):
        super().__init__()
        self.maxlen = maxlen

    def __setitem__(self, key, value):
        if key in self:
            self.move_to_end(key)
        super().__setitem__(key, value)
        if len(self) > self.maxlen:
            self.popitem(last=False)


def normalize(path: bytes) -> bytes:
    """Collapse '//', '.' and '..' lexically (as a shell's logical cwd does).

    The kernel resolves '..' physically, so a name that climbs out of a
    symlinked directory may differ from the path fsnotify would report.
    """
    if not path.startswith(b"/"):
        return path
    if b"//" not in path and b"/." not in path and (len(path) == 1 or not path.endswith(b"/")):
        return path     # already normal: the common case
    parts: list[bytes] = []
    for p in path.split(b"/"):
        if p == b"..":
            if parts:
                parts.pop()
        elif p and p != b".":
            parts.append(p)
    return b"/" + b"/".join(parts)


def join(base: bytes, name: bytes | None) -> bytes:
    if not name:
        return base
    if name.startswith(b"/"):
        return normalize(name)
    return normalize(base + b"/" + name)


class PathResolver:
    def __init__(self, proc: str = "/proc", max_files: int = MAX_FILES, max_tasks: int = MAX_TASKS):
        self.proc = proc
        self.files: BoundedDict = BoundedDict(max_files)
        self.cwds: BoundedDict = BoundedDict(max_tasks)
        self.ppids: BoundedDict = BoundedDict(max_tasks)

    def _readlink(self, *parts) -> bytes | None:
        try:
            return os.readlink(os.path.join(self.proc.encode(), *parts))
        except OSError:
            return None

    # --- what the stream tells us -------------------------------------------------
    def forked(self, parent: int, child: int) -> None:
        self.ppids[child] = parent
        cwd = self.cwd(parent)
        if cwd is not None:
            self.cwds[child] = cwd

    def chdir(self, tgid: int, path: bytes | None) -> None:
        if path is not None and path.startswith(b"/"):
            self.cwds[tgid] = path

    def opened(self, file_id: int, path: bytes | None) -> None:
        if file_id and path is not None:
            self.files[file_id] = path

    # --- lookups ----------------------------------------------------------------
    def cwd(self, tgid: int) -> bytes | None:
        cwd = self.cwds.get(tgid)
        if cwd is None:
            cwd = self._readlink(b"%d" % tgid, b"cwd")
            if cwd is None:
                parent = self.ppids.get(tgid)
                cwd = self.cwds.get(parent) if parent is not None else None
            if cwd is not None:
                self.cwds[tgid] = cwd
        return cwd

    def ppid(self, tgid: int) -> int | None:
        ppid = self.ppids.get(tgid)
        if ppid is None:
            try:
                with open(os.path.join(self.proc, str(tgid), "stat"), "rb") as f:
                    stat = f.read()
                ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
            except (OSError, ValueError, IndexError):
                return None
            self.ppids[tgid] = ppid
        return ppid

    def file(self, tgid: int, fd: int, file_id: int) -> bytes | None:
        """Path of an open file: by its id, else what /proc says fd is now."""
        path = self.files.get(file_id) if file_id else None
        if path is None and fd >= 0:
            path = self._readlink(b"%d" % tgid, b"fd", b"%d" % fd)
            if path is not None and file_id:
                self.files[file_id] = path
        return path

    def resolve(self, tgid: int, dirfd: int, base_id: int, name: bytes | None) -> bytes | None:
        """Absolute path of name as tgid meant it, or name itself when no base is known."""
        if name is not None and name.startswith(b"/"):
            return normalize(name)
        base = self.cwd(tgid) if dirfd == AT_FDCWD else self.file(tgid, dirfd, base_id)
        if base is None:
            return name
        return join(base, name)

    # --- before tracing ---------------------------------------------------------
    def existing_fds(self, skip_tgid: int):
        """(tgid, fd, path, writable, cloexec) for regular files and directories open now."""
        for entry in os.scandir(self.proc):
            if not entry.name.isdigit() or int(entry.name) == skip_tgid:
                continue
            tgid = int(entry.name)
            fd_dir = os.path.join(self.proc, entry.name, "fd")
            try:
                fds = os.listdir(fd_dir)
            except OSError:
                continue
            for fd in fds:
                path = self._readlink(entry.name.encode(), b"fd", fd.encode())
                if path is None or not path.startswith(b"/"):
                    continue  # pipes, sockets, anon inodes
                try:
                    with open(os.path.join(self.proc, entry.name, "fdinfo", fd), "rb") as f:
                        info = f.read()
                    flags = int(info.split(b"flags:", 1)[1].split()[0], 8)
                except (OSError, IndexError, ValueError):
                    continue
                yield tgid, int(fd), path, (flags & 3) != 0, bool(flags & 0o2000000)
