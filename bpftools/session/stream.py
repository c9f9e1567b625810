"""Streaming (fstrace trace): every file record becomes a FileEvent for the sink."""
from __future__ import annotations

import time

from bpftools.abi import EVENT_NAMES, F_DIR, F_TIMED, REC_FILE, Record, moved_bytes
from bpftools.cgroups.names import Names
from bpftools.session.contract import FileEvent
from bpftools.session.paths import BoundedDict, normalize
from bpftools.session.runner import Session

# The ring holds a burst of ~200k events (8192 pages: 32 MiB) while Python, at ~90k/s, catches up.
STREAM_RING_PAGES = 8192
MAX_CGROUPS_SEEN = 8192     # cgroup id -> (CgroupInfo, path, Names, wanted, names pending) of recent events


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
        # every backend builds the names in the kernel: absolute, or (a path it could not complete,
        # a name relative to a directory that changed during the call) as the kernel had it
        name1, name2, pid = rec.name1, rec.name2, rec.pid
        self.totals.events += 1
        self.sink.event(FileEvent(
            self._offset + rec.ts_ns / 1e9, EVENT_NAMES[rec.op], bool(rec.flags & F_DIR),
            normalize(name1) if name1 is not None else None, normalize(name2) if name2 is not None else None,
            pid, rec.tid, self.parents.ppid(pid), rec.uid, rec.comm, rec.cgroup_id, cgroup, names, rec.ret,
            rec.syscall_name, moved_bytes(rec.op, rec.syscall, rec.ret, rec.flags) if self._bytes else None,
            rec.lat_ns if rec.flags & F_TIMED else None))
