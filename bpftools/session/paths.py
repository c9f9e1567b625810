"""Names as the kernel sends them, and who forked whom.

Every backend builds paths in the kernel (bpf/fst_kernel.h): absolute, or a
relative tail when a path is too deep or long to complete.  normalize()
collapses what a task wrote into a name ("a/../b", "./c", "//").  Parents
keeps each process's parent for the ppid of its events, from the fork
records in the stream and /proc for processes older than the trace.  Every
table is bounded (least recently used entries go first).
"""
from __future__ import annotations

import os
from collections import OrderedDict

MAX_TASKS = 32768      # tgid -> ppid


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


class Parents:
    def __init__(self, proc: str = "/proc", max_tasks: int = MAX_TASKS):
        self.proc = proc
        self.ppids: BoundedDict = BoundedDict(max_tasks)

    def forked(self, parent: int, child: int) -> None:
        self.ppids[child] = parent

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
