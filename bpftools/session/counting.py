"""Counting (fstrace top, report, export): the kernel counts, the session names and drains.

Once per sink.interval the session drains the kernel's counters
(kernel/counters.py), names their cgroups and files, and hands the sink one
model.Tick.  Only cgroup changes, task bookkeeping and the names of new file
keys come through the ring buffer then.
"""
from __future__ import annotations

import time

from bpftools.abi import REC_NAME, Record
from bpftools.cgroups.select import unknown_path
from bpftools.escape import fs_text
from bpftools.model import Tick
from bpftools.session.paths import BoundedDict, normalize
from bpftools.session.runner import Session

COUNT_RING_PAGES = 2048     # names and cgroup changes only
MAX_FILE_NAMES = 262144     # file key -> (path, as text); above the kernel's FST_AGG_NAMES: it rarely asks twice


class CountingSession(Session):
    ring_pages = COUNT_RING_PAGES

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.file_names: BoundedDict = BoundedDict(MAX_FILE_NAMES)
        self._collected = 0.0               # monotonic time of the last drain
        self._lost_delivered = 0

    def _started(self) -> None:
        super()._started()
        self.counters = self.probe.counters()
        self.counters.start()           # counting from here: whoever hears of the start misses nothing
        self._collected = time.monotonic()

    def _record(self, rec: Record) -> None:
        if rec.type == REC_NAME:
            self._learn_name(rec)
        else:
            super()._record(rec)

    def _learn_name(self, rec: Record) -> None:
        """What a file key names (fstrace.h: FST_REC_NAME): file_id is the key, name1 the name built in the kernel."""
        if rec.name1 is not None:
            path = normalize(rec.name1)
            self.file_names[rec.file_id] = (path, fs_text(path))

    def _path_wanted(self, path: str) -> bool:
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.opts.path_prefixes)

    def collect(self) -> Tick:
        """Drain the counters: everything counted since the last call, named."""
        entries = self.counters.swap()
        hists = self.counters.hists         # drained by the same swap
        now = time.monotonic()
        self.probe.poll(0)              # the names of every key just drained are in the buffer now
        overflow = tuple(self.counters.overflow())
        hist_overflow = self.counters.hist_overflow()
        cgroup_paths: dict[int, str | None] = {}
        files: dict[int, str] = {}
        kept = []
        names, globs, prefixes = self.file_names, self._globs, self.opts.path_prefixes
        by_names = bool(self.opts.containers or self.opts.pods)
        wanted: dict[int, bool] = {}

        def cgroup_wanted(cgid: int) -> bool:
            if cgid not in cgroup_paths:
                info = self.cgmap.resolve(cgid) if self.cgmap else None
                path = cgroup_paths[cgid] = info.path if info else None
                # the runtime's names are read here, into the cache the model and the views read
                owner = self.names_of(path) if path is not None else None
                wanted[cgid] = ((not globs or self.cgroup_path_wanted(path))
                                and (not by_names or (owner is not None and self.names_wanted(owner))))
            return wanted[cgid]

        for e in entries:
            if not cgroup_wanted(e.cgroup_id):
                continue
            if e.file and e.file not in files:
                name = names.get(e.file)
                if name is None:
                    self.counters.forget(e.file)        # lost or forgotten: have it sent again
                else:
                    files[e.file] = name[1]
            if prefixes and not self._path_wanted(files.get(e.file, "")):
                continue
            kept.append(e)
        hists = [h for h in hists if cgroup_wanted(h.cgroup_id)]
        elapsed, self._collected = now - self._collected, now
        lost, self._lost_delivered = self.totals.lost - self._lost_delivered, self.totals.lost
        ppids = {}
        for pid in {e.pid for e in kept}:
            ppid = self.parents.ppid(pid)       # from the fork records, else /proc
            if ppid is not None:
                ppids[pid] = ppid
        return Tick(
            ts=self._offset + now, elapsed=elapsed, entries=kept, ppids=ppids,
            cgroups={cgid: path or unknown_path(cgid) for cgid, path in cgroup_paths.items()},
            files=files, overflow=overflow, lost=lost, uptime=time.clock_gettime(time.CLOCK_BOOTTIME),
            hists=hists, hist_overflow=hist_overflow,
            tracked=sum(1 for info in self.cgmap.entries() if info.alive) if self.cgmap else 0,
        )

    def _polled(self, last: bool) -> None:
        if last or time.monotonic() - self._collected >= self.sink.interval:
            self.sink.counts(self.collect())

    def _finished(self) -> bool:
        return self.sink.finished
