"""Streaming (fstrace trace): every file record becomes a FileEvent for the sink."""
from __future__ import annotations

import time

from bpftools.abi import EVENT_CODES, EVENT_NAMES, F_DIR, REC_FILE, Record, moved_bytes
from bpftools.cgroups.names import Names
from bpftools.session.contract import FileEvent
from bpftools.session.paths import BoundedDict
from bpftools.session.runner import Session

# The ring holds a burst of ~200k events (8192 pages: 32 MiB) while Python, at ~90k/s, catches up.
STREAM_RING_PAGES = 8192
MAX_CGROUPS_SEEN = 8192     # cgroup id -> (CgroupInfo, path, Names, wanted, names pending) of recent events
EV_OPEN, EV_CREATE = EVENT_CODES["open"], EVENT_CODES["create"]


class StreamSession(Session):
    ring_pages = STREAM_RING_PAGES

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self._cg_seen: BoundedDict = BoundedDict(MAX_CGROUPS_SEEN)
        self._bytes = False         # the backend's records carry bytes (known once it is loaded)

    def _started(self) -> None:
        super()._started()
        self._bytes = self.probe.report.moves_bytes

    def _lost(self, count: int) -> None:
        self.sink.lost(count, time.time())

    def _record(self, rec: Record) -> None:
        if rec.type == REC_FILE:
            self._file(rec)
        else:
            super()._record(rec)

    def _file(self, rec: Record) -> None:
        cg = self._cg_seen.get(rec.cgroup_id)
        info = self.cgmap.resolve(rec.cgroup_id) if self.cgmap else None
        if cg is None or cg[0] is not info or (cg[4] and self._named(cg)):
            # new, the map learnt something about it, or its runtime's state became readable
            path = info.path if info else None
            names = self.names_of(path) if info else Names()
            pending = names.container_id is not None and not (names.container_name or names.image or names.pod_name)
            cg = self._cg_seen[rec.cgroup_id] = (
                info, path, names, self.cgroup_path_wanted(path) and self.names_wanted(names), pending)
        if cg[3]:
            self._file_event(rec, cg[1], cg[2])

    def _named(self, cg) -> bool:
        """Can a container's names be read now (the runtime retries are spaced out by runtimes.Runtimes)?"""
        names = cg[2]
        return self.runtimes.lookup(names.runtime, names.container_id) is not None

    def _file_event(self, rec: Record, cgroup: str | None, names: Names) -> None:
        r = self.resolver
        op, pid, fd, name1 = rec.op, rec.pid, rec.fd, rec.name1
        if (op == EV_OPEN or op == EV_CREATE) and rec.file_id and fd >= 0 and rec.ret >= 0:
            path = r.resolve(pid, rec.dirfd, rec.base_id, name1)
            r.opened(rec.file_id, path)
        elif name1 is None and fd >= 0:      # fd events: write, close, fchmod, ...
            path = r.file(pid, fd, rec.file_id)
        else:
            path = r.resolve(pid, rec.dirfd, rec.base_id, name1)
        path2 = r.resolve(pid, rec.dirfd2, rec.base_id2, rec.name2) if rec.name2 is not None else None
        self.totals.events += 1
        self.sink.event(FileEvent(
            self._offset + rec.ts_ns / 1e9, EVENT_NAMES[op], bool(rec.flags & F_DIR), path, path2, pid,
            rec.tid, r.ppid(pid), rec.uid, rec.comm, rec.cgroup_id, cgroup, names, rec.ret,
            rec.syscall_name, moved_bytes(op, rec.syscall, rec.ret) if self._bytes else None))
