"""A tracing session: probe + path resolver + cgroup map + the main loop.

Turns raw ring-buffer records into FileEvents with absolute paths and cgroup
names and hands them, with cgroup changes and loss, to a sink (a view).
Optionally runs a command in a transient cgroup and traces only that subtree.

With Options.aggregate (top, report) the kernel counts instead of sending
events: once per sink.interval the session drains the counters
(bpftools/kernel/counters.py), names their cgroups and files, and hands the sink
one model.Tick.  Only cgroup changes, task bookkeeping and the names of new
file keys come through the ring buffer then.
"""
from __future__ import annotations

import errno
import fnmatch
import functools
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace

from bpftools.cgroups import map as cgroup_map

from bpftools import abi

from bpftools.kernel import probe
from bpftools.kernel.counters import KEY_FD, Counters
from bpftools.errors import CommandNotFound, UsageError
from bpftools.abi import EVENT_NAMES, F_DIR, REC_CGROUP, REC_FILE, REC_NAME, REC_TASK, TASK_CHDIR, TASK_FORK, Record
from bpftools.model import Tick, within
from bpftools.cgroups.names import Names, names_from_path
from bpftools.session.paths import BoundedDict, PathResolver, join
from bpftools.escape import decode_name

POLL_MS = 50
# Streaming, the ring holds a burst of ~200k events (8192 pages: 32 MiB) while Python, at ~90k/s, catches
# up; counting, only names and cgroup changes travel through it.
STREAM_RING_PAGES = 8192
COUNT_RING_PAGES = 2048
MAX_CGROUPS_SEEN = 8192     # cgroup id -> (CgroupInfo, path, Names, wanted) of recent events
EV_OPEN, EV_CREATE = abi.EVENT_CODES["open"], abi.EVENT_CODES["create"]
MAX_FILE_NAMES = 262144     # file key -> (path, as text); above the kernel's FST_AGG_NAMES: it rarely asks twice

# A cgroup's names depend on its path only; busy cgroups are asked for them per event.
cached_names = functools.lru_cache(maxsize=4096)(names_from_path)


@dataclass(frozen=True)
class Options:
    """Everything a user chose, validated by the CLI."""

    backend: str = "auto"
    events: tuple[str, ...] = abi.DEFAULT_EVENTS
    failed: bool = False
    pids: tuple[int, ...] = ()
    comms: tuple[str, ...] = ()
    cgroups: tuple[str, ...] = ()
    duration: float | None = None
    command: tuple[str, ...] = ()
    mounts: tuple[str, ...] = ()            # fsnotify backends: only the filesystems of these paths
    aggregate: bool = False                 # count in the kernel; the sink gets model.Ticks
    path_prefixes: tuple[str, ...] = ()     # aggregate: only files under these (absolute, normalised)


@dataclass(slots=True)
class FileEvent:
    """One file event as the record contract (DESIGN.md §5) describes it."""

    ts: float
    event: str
    dir: bool
    path: bytes | None
    path2: bytes | None
    pid: int
    tid: int
    ppid: int | None
    uid: int
    comm: bytes
    cgroup_id: int
    cgroup: str | None
    names: Names
    ret: int
    syscall: str


@dataclass
class StartInfo:
    backend: str
    kernel: str
    headers: str
    headers_match: bool
    tracepoints: list[str]
    skipped: dict[str, str]
    missing_syscalls: list[str]
    cgroup_sources: dict[str, str]
    events: tuple[str, ...]
    command_cgroup: str | None = None
    backend_reasons: dict[str, str] = field(default_factory=dict)   # why not each other backend
    armed: dict[str, str] = field(default_factory=dict)             # mount point -> fsnotify mark kind


@dataclass
class Totals:
    events: int = 0
    lost: int = 0
    started: float = field(default_factory=time.monotonic)


class TransientCgroup:
    """A cgroup2 child made for `-- CMD`, removed when the run ends."""

    def __init__(self, mount: str):
        name = "fstrace-run-%d-%s" % (os.getpid(), os.urandom(3).hex())
        self.dir = os.path.join(mount, name)
        os.mkdir(self.dir)
        self.path = "/" + name
        self.id = os.stat(self.dir).st_ino

    def enter(self) -> None:
        """Move the calling process (the child, before exec) into the cgroup."""
        with open(os.path.join(self.dir, "cgroup.procs"), "w") as f:
            f.write("0")

    def populated(self) -> bool:
        with open(os.path.join(self.dir, "cgroup.events")) as f:
            return "populated 1" in f.read()

    def remove(self) -> None:
        """rmdir the cgroup and the cgroups the command made below it, deepest first.

        One that still holds a process (a daemon that outlived a Ctrl-C) is
        left in place, with one line on stderr.
        """
        for path, _dirs, _files in os.walk(self.dir, topdown=False):
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError as e:
                if e.errno != errno.EBUSY:
                    raise
                sys.stderr.write("fstrace: cgroup %s still holds processes; left in place\n" % path)
                return


def split_cgroup_specs(specs, mount: str | None):
    """--cgroup values -> (subtree paths relative to the root, ids, globs)."""
    paths, ids, globs = [], [], []
    for spec in specs:
        if spec.isdigit():
            ids.append(int(spec))
        elif any(c in spec for c in "*?["):
            globs.append(spec.strip("/"))
        else:
            rel = spec
            if mount and (spec == mount or spec.startswith(mount.rstrip("/") + "/")):
                rel = spec[len(mount.rstrip("/")):]
            paths.append("/" + rel.strip("/") if rel.strip("/") else "/")
    return paths, ids, globs


def level_of(path: str) -> int:
    return len([p for p in path.split("/") if p])


class Session:
    def __init__(self, opts: Options, sink):
        self.opts = opts
        self.sink = sink
        self.totals = Totals()
        self.resolver = PathResolver()
        self.stopping = False
        self.child: subprocess.Popen | None = None
        self.transient: TransientCgroup | None = None
        try:
            self.mount = cgroup_map.cgroup2_mount()
        except cgroup_map.Cgroup2Unavailable:
            self.mount = None       # events still flow, with bare cgroup ids
        self.cgmap = cgroup_map.CgroupMap(mount=self.mount) if self.mount else None
        self._globs: list[str] = []
        self._subtrees: list[str] = []
        self._offset = time.time() - time.monotonic()
        self.counters: Counters | None = None
        self.file_names: BoundedDict = BoundedDict(MAX_FILE_NAMES)
        self._collected = 0.0               # monotonic time of the last drain
        self._lost_delivered = 0
        self._cg_seen: BoundedDict = BoundedDict(MAX_CGROUPS_SEEN)

    # --- setup ------------------------------------------------------------------
    def _filter_ids(self) -> tuple[list[int], int]:
        """Cgroup ids for the kernel's subtree filter and the smallest level they sit at.

        A glob is filtered in two steps: the kernel lets through the subtree
        of its fixed prefix (so a cgroup born a microsecond ago is never
        missed), and _cgroup_path_wanted() keeps the events whose cgroup, or
        an ancestor of it, matches the glob.
        """
        paths, ids, self._globs = split_cgroup_specs(self.opts.cgroups, self.mount)
        if (paths or self._globs) and not self.cgmap:
            raise UsageError("--cgroup with a path needs cgroup2, and none is mounted (try a cgroup id)")
        alive = {info.path: info for info in self.cgmap.entries() if info.alive} if self.cgmap else {}
        by_id = {info.id: info for info in alive.values()}
        for cgid in ids:
            if self.cgmap and cgid not in by_id:
                raise UsageError("cgroup id %d not found under %s" % (cgid, self.mount))
        prefixes = []
        for glob in self._globs:
            parts = glob.split("/")
            fixed = parts[:next(i for i, part in enumerate(parts) if any(c in part for c in "*?["))]
            prefixes.append("/" + "/".join(fixed))
        for path in paths + prefixes:
            if path not in alive:
                raise UsageError("cgroup %s not found under %s" % (path, self.mount))
        self._subtrees = paths + [by_id[cgid].path for cgid in ids if cgid in by_id]
        roots = [alive[p].id for p in paths + prefixes] + ids
        levels = [level_of(p) for p in paths + prefixes] + [level_of(by_id[c].path) if c in by_id else 0 for c in ids]
        return roots, min(levels, default=0)

    def _cgroup_path_wanted(self, path: str | None) -> bool:
        """Does a cgroup path pass --cgroup (the kernel has filtered by subtree already)?"""
        if not self._globs:
            return True
        if path is None:
            return False
        if any(within(path, sub) for sub in self._subtrees):
            return True
        parts = path.strip("/").split("/")
        return any(fnmatch.fnmatchcase("/".join(parts[:n]), g) for g in self._globs for n in range(1, len(parts) + 1))

    def start(self) -> StartInfo:
        if self.opts.command:
            if not self.mount:
                raise UsageError("-- CMD needs cgroup2 to follow the command and its children")
            self.transient = TransientCgroup(self.mount)
            self.cgmap.feed("mkdir", self.transient.id, self.transient.path, time.monotonic())
        ids, min_level = self._filter_ids()
        if self.transient:
            ids.append(self.transient.id)
            min_level = level_of(self.transient.path) if not self.opts.cgroups else min(min_level, 1)
            self._subtrees.append(self.transient.path)
        cfg = probe.ProbeConfig(
            backend=self.opts.backend, mounts=self.opts.mounts,
            events=self.opts.events, failed=self.opts.failed, pids=self.opts.pids,
            comms=self.opts.comms, cgroup_filter=bool(ids),
            cgroup_min_level=min_level, aggregate=self.opts.aggregate,
            ring_pages=COUNT_RING_PAGES if self.opts.aggregate else STREAM_RING_PAGES,
        )
        self.probe = probe.Probe(cfg, self._on_bytes)
        if ids:
            self.probe.add_cgroups(ids)
        if self.opts.aggregate:
            self.counters = Counters.from_probe(self.probe)
            self.counters.start()           # counting from here: whoever hears of the start misses nothing
            self._collected = time.monotonic()
        if self.cgmap and "cgroup/cgroup_mkdir" in self.probe.report.skipped:
            self.cgmap.disable("tracepoint", self.probe.report.skipped["cgroup/cgroup_mkdir"])
        rep = self.probe.report
        if rep.backend == "tracepoint":     # the others name files in the kernel
            self._seed_fds()
        return StartInfo(
            backend=rep.backend, kernel=os.uname().release, headers=rep.headers.describe(),
            headers_match=rep.headers.matches, tracepoints=rep.tracepoints, skipped=rep.skipped,
            missing_syscalls=rep.missing_syscalls,
            cgroup_sources=self.cgmap.sources if self.cgmap else {"all": "off: no cgroup2 mount"},
            events=self.opts.events,
            command_cgroup=self.transient.path if self.transient else None,
            backend_reasons=dict(rep.reasons), armed=dict(rep.armed),
        )

    def _seed_fds(self) -> None:
        """Files open before tracing began get ids too (the kernel table is not overwritten)."""
        next_id = 1 << 62
        for tgid, fd, path, writable, cloexec in self.resolver.existing_fds(os.getpid()):
            next_id += 1
            if self.probe.seed_fd(tgid, fd, next_id, writable, cloexec):
                self.resolver.opened(next_id, path)

    def spawn(self) -> None:
        try:
            self.child = subprocess.Popen(self.opts.command, preexec_fn=self.transient.enter)
        except FileNotFoundError:
            raise CommandNotFound("%s: command not found" % self.opts.command[0]) from None
        except PermissionError:
            raise CommandNotFound("%s: permission denied" % self.opts.command[0]) from None
        self.resolver.forked(os.getpid(), self.child.pid)

    # --- the stream -------------------------------------------------------------
    def _on_bytes(self, data: bytes) -> None:
        rec = abi.decode(data)
        if rec.type == REC_FILE:
            self._file(rec)
        elif rec.type == REC_TASK:
            if rec.op == TASK_FORK:
                self.resolver.forked(rec.pid, rec.fd)
            elif rec.op == TASK_CHDIR:
                path = (self.resolver.file(rec.pid, rec.fd, rec.file_id) if rec.fd >= 0 and rec.name1 is None
                        else self.resolver.resolve(rec.pid, rec.dirfd, rec.base_id, rec.name1))
                self.resolver.chdir(rec.pid, path)
        elif rec.type == REC_NAME:
            self._learn_name(rec)
        elif rec.type == REC_CGROUP and self.cgmap:
            action = abi.CG_ACTIONS[rec.op]
            path = os.fsdecode(rec.name1 or b"")      # as the sweep and fanotify spell it
            self._cgroup_changes(self.cgmap.feed(action, rec.cgroup_id, path, rec.ts_ns / 1e9))

    def _cgroup_changes(self, changes) -> None:
        for change in changes:
            if self._cgroup_wanted(change.path):
                self.sink.cgroup(replace(change, ts=self._offset + change.ts))

    def _file(self, rec: Record) -> None:
        cg = self._cg_seen.get(rec.cgroup_id)
        info = self.cgmap.resolve(rec.cgroup_id) if self.cgmap else None
        if cg is None or cg[0] is not info:     # new, or the map learnt something about it
            cg = self._cg_seen[rec.cgroup_id] = (
                info, info.path if info else None, cached_names(info.path) if info else Names(),
                not self._globs or self._cgroup_path_wanted(info.path if info else None))
        if cg[3]:
            self._file_event(rec, cg[1], cg[2])

    def _cgroup_wanted(self, path: str) -> bool:
        """Is a cgroup change inside what is traced?"""
        if self._globs:
            return self._cgroup_path_wanted(path)
        return not self._subtrees or any(within(path, sub) for sub in self._subtrees)

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
            rec.syscall_name))

    # --- counting (aggregate) -------------------------------------------------------
    def _learn_name(self, rec: Record) -> None:
        """What a file key names (fstrace.h: FST_REC_NAME): file_id is the key, base_id2 its directory's."""
        key = rec.file_id
        if rec.name1 is None:           # known by its open file only: by its file id if the key holds it
            path = self.resolver.file(rec.pid, rec.fd, key & ~KEY_FD if key & KEY_FD else 0)
        elif rec.base_id2 and not rec.name1.startswith(b"/") and rec.base_id2 in self.file_names:
            path = join(self.file_names[rec.base_id2][0], rec.name1)
        else:
            path = self.resolver.resolve(rec.pid, rec.dirfd, rec.base_id, rec.name1)
        if path is not None:
            self.file_names[key] = (path, decode_name(path))

    def _path_wanted(self, path: str) -> bool:
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.opts.path_prefixes)

    def collect(self) -> Tick:
        """Drain the counters: everything counted since the last call, named."""
        entries = self.counters.swap()
        now = time.monotonic()
        self.probe.poll(0)              # the names of every key just drained are in the buffer now
        overflow = tuple(self.counters.overflow())
        cgroup_paths: dict[int, str | None] = {}
        files: dict[int, str] = {}
        kept = []
        names, globs, prefixes = self.file_names, self._globs, self.opts.path_prefixes
        for e in entries:
            if e.cgroup_id not in cgroup_paths:
                info = self.cgmap.resolve(e.cgroup_id) if self.cgmap else None
                cgroup_paths[e.cgroup_id] = info.path if info else None
            if globs and not self._cgroup_path_wanted(cgroup_paths[e.cgroup_id]):
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
        elapsed, self._collected = now - self._collected, now
        lost, self._lost_delivered = self.totals.lost - self._lost_delivered, self.totals.lost
        return Tick(
            ts=self._offset + now, elapsed=elapsed, entries=kept,
            cgroups={cgid: path or "/unknown:%d" % cgid for cgid, path in cgroup_paths.items()},
            files=files, overflow=overflow, lost=lost, uptime=time.clock_gettime(time.CLOCK_BOOTTIME),
            tracked=sum(1 for info in self.cgmap.entries() if info.alive) if self.cgmap else 0,
        )

    # --- the loop ---------------------------------------------------------------
    def request_stop(self, signum=None, _frame=None) -> None:
        self.stopping = True
        if signum is not None and self.child and self.child.poll() is None:
            self.child.send_signal(signum)

    def _done(self) -> bool:
        if self.stopping:
            return True
        if self.opts.duration is not None and time.monotonic() - self.totals.started >= self.opts.duration:
            return True
        if self.child is not None and self.child.poll() is not None:
            return not self.transient.populated()
        return self.counters is not None and self.sink.finished

    def _tick(self, timeout_ms: int) -> None:
        self.probe.poll(timeout_ms)
        if self.cgmap:
            self._cgroup_changes(self.cgmap.poll())
        lost = self.probe.lost()
        if lost:
            self.totals.lost += lost
            if self.counters is None:           # counting sinks get it with the next Tick
                self.sink.lost(lost, time.time())
            if self.cgmap:
                self._cgroup_changes(self.cgmap.resweep())

    def run(self) -> int:
        """Trace until the duration ends, the command's cgroup empties, or a signal; the exit status."""
        old = {s: signal.signal(s, self.request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.totals.started = time.monotonic()
            if self.opts.command:
                self.spawn()
            while not self._done():
                self._tick(POLL_MS)
                if self.counters is not None and time.monotonic() - self._collected >= self.sink.interval:
                    self.sink.counts(self.collect())
                self.sink.flush()
            self._tick(0)      # what was sent before the end
            if self.counters is not None:
                self.sink.counts(self.collect())
            if self.child is not None:
                try:
                    self.child.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
            return self.exit_status()
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def exit_status(self) -> int:
        if self.child is None or self.child.returncode is None:
            return 0
        rc = self.child.returncode
        return 128 - rc if rc < 0 else rc

    def close(self) -> None:
        probe_ = getattr(self, "probe", None)
        if probe_ is not None:
            probe_.close()
        if self.cgmap:
            self.cgmap.close()
        if self.transient:
            self.transient.remove()

    @property
    def duration(self) -> float:
        return time.monotonic() - self.totals.started
