"""Streaming (fstrace trace): every file record written by the sink's compiled formatter.

A sink with a ``formatter`` (views/jsonl.py, views/text.py: what users get)
has the ring drained straight into it by bpftools/fastpath: one C walk per
poll writes each file event's line, and this session answers what only it
knows, once per cgroup and per process (which cgroup is wanted and how it
is named, a process's parent), and handles every record that is not a file
event.  A sink without one gets a FileEvent per event (sink.event()): the
Python reference the compiled formatter is tested against
(tests/unit/test_fastpath.py).
"""
from __future__ import annotations

import time
from typing import NamedTuple

from bpftools.abi import EVENT_NAMES, F_DIR, F_TIMED, REC_FILE, REC_TASK, TASK_FORK, Record, moved_bytes
from bpftools.cgroups.map import CgroupInfo
from bpftools.cgroups.names import Names
from bpftools.kernel.ringbuf import MemoryRing
from bpftools.session.contract import FileEvent
from bpftools.session.paths import BoundedDict, normalize
from bpftools.session.runner import Session

# The ring holds a burst of ~200k events (8192 pages: 32 MiB) while the reader catches up.
STREAM_RING_PAGES = 8192
MAX_CGROUPS_SEEN = 8192     # cgroup id -> Seen, for the cgroups of recent events
FORGET_CGROUPS_S = 1.0      # the compiled formatter asks again about every cgroup this often (tombstones expire)
# At least this long between two polls of the ring: the kernel wakes the reader every 64 records per CPU, and
# each poll costs tens of microseconds in Python (loss counters, fanotify, flush) besides its records.
MIN_POLL_S = 0.01


class Seen(NamedTuple):
    """What the session decided about one cgroup of the stream."""

    info: CgroupInfo | None     # the map's entry it was decided on
    path: str | None
    names: Names
    wanted: bool                # passes --cgroup, --container, --pod
    pending: bool               # a container whose runtime's names could not be read yet


class StreamSession(Session):
    ring_pages = STREAM_RING_PAGES

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self._cg_seen: BoundedDict = BoundedDict(MAX_CGROUPS_SEEN)
        self._bytes = False         # the backend's records carry bytes (known once it is loaded)
        self.formatter = getattr(self.sink, "formatter", None)
        self._pending: set[int] = set()         # cgroups the formatter knows with names still to come
        self._forgot = self._polled_at = time.monotonic()

    def _reader(self):
        return _CompiledReader(self) if self.formatter is not None else self._on_bytes

    def _started(self) -> None:
        super()._started()
        self._bytes = self.probe.report.moves_bytes
        if self.formatter is not None:
            self.formatter.configure(self._offset, self._bytes)

    def _tick(self, timeout_ms: int) -> None:
        if timeout_ms:                      # not the last poll, which takes what is there at once
            wait = self._polled_at + MIN_POLL_S - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        self._polled_at = time.monotonic()
        super()._tick(timeout_ms)

    def _lost(self, count: int) -> None:
        self.sink.lost(count, time.time())

    def _record(self, rec: Record) -> None:
        if rec.type == REC_FILE:
            self._file(rec)
        else:
            super()._record(rec)
            if self.formatter is not None and rec.type == REC_TASK and rec.op == TASK_FORK:
                self.formatter.set_ppid(rec.fd, rec.pid)

    def _spawned(self, pid: int) -> None:
        super()._spawned(pid)
        if self.formatter is not None:
            self.formatter.set_ppid(pid, self.parents.ppid(pid))

    def _cgroup_changes(self, changes) -> None:
        super()._cgroup_changes(changes)
        if self.formatter is not None:
            for change in changes:
                self.formatter.drop_cgroup(change.id)

    # --- what the session decides per cgroup ---------------------------------------
    def _seen(self, cgroup_id: int) -> Seen:
        cg = self._cg_seen.get(cgroup_id)
        info = self.cgmap.resolve(cgroup_id) if self.cgmap else None
        if cg is None or cg.info is not info or (cg.pending and self._named(cg)):
            # new, the map learnt something about it, or its runtime's state became readable
            path = info.path if info else None
            names = self.names_of(path) if info else Names()
            pending = names.container_id is not None and not (names.container_name or names.image or names.pod_name)
            cg = self._cg_seen[cgroup_id] = Seen(
                info, path, names, self.cgroup_path_wanted(path) and self.names_wanted(names), pending)
        return cg

    def _named(self, cg: Seen) -> bool:
        """Can a container's names be read now (the runtime retries are spaced out by runtimes.Runtimes)?"""
        return self.runtimes.lookup(cg.names.runtime, cg.names.container_id) is not None

    def _formatter_cgroup(self, cgroup_id: int) -> tuple[bool, bytes]:
        """For the compiled formatter: are the cgroup's events wanted, and its text in each of them."""
        cg = self._seen(cgroup_id)
        if cg.pending:
            self._pending.add(cgroup_id)
        return cg.wanted, self.sink.cgroup_text(cgroup_id, cg.path, cg.names) if cg.wanted else b""

    def _before_drain(self) -> None:
        """Names still to come are looked for once per poll; every cgroup is asked about again once a second."""
        now = time.monotonic()
        if now - self._forgot >= FORGET_CGROUPS_S:
            self.formatter.clear_cgroups()
            self._pending.clear()
            self._forgot = now
        elif self._pending:
            for cgid in self._pending:
                self.formatter.drop_cgroup(cgid)
            self._pending.clear()

    # --- the Python reference path ----------------------------------------------------
    def _file(self, rec: Record) -> None:
        cg = self._seen(rec.cgroup_id)
        if cg.wanted:
            self._file_event(rec, cg.path, cg.names)

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


class _CompiledReader:
    """What the probe hands the ring to when the sink formats in C: drain(ring) per poll."""

    def __init__(self, session: StreamSession):
        self.session = session

    def drain(self, ring) -> None:
        s = self.session
        fmt = s.formatter
        s._before_drain()
        before = fmt.events
        try:
            fmt.drain(ring, s.sink.write, s._formatter_cgroup, s.parents.ppid, s._on_bytes)
        finally:
            s.totals.events += fmt.events - before

    def __call__(self, data) -> None:
        """A probe that hands over records one at a time: each goes through the same walk."""
        ring = MemoryRing([bytes(data)])
        try:
            self.drain(ring)
        finally:
            ring.close()
