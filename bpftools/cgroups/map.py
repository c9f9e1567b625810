"""The cgroup id -> path map: which cgroup a ``bpf_get_current_cgroup_id()`` value names.

A cgroup's id is the inode number of its directory on the cgroup2 mount; its
path is relative to the cgroup2 root ("/" is the root, id 1).  ``CgroupMap``
keeps id -> ``CgroupInfo`` current from up to three sources, each of which
turns what it sees into the same two observations, mkdir(id, path) and
rmdir(id, path), applied in one place:

* ``sweep``: a walk of the cgroup2 mount (at start, on ``resweep()`` and after
  a fanotify queue overflow).  Sees only cgroups alive at walk time.
* ``fanotify``: a ``FAN_MARK_FILESYSTEM`` watch on the mount (Linux 6.6+).
  A create event carries the parent's handle and the name, so the child's id
  comes from ``stat`` -- if the cgroup is already gone, the delete event
  (which does carry the child's handle) supplies it.  Ids the map has never
  seen are looked up by file handle (``open_by_handle_at``), so alive
  cgroups resolve without a sweep.  Cannot name a cgroup whose parent was
  created before the watch and removed before its events were read.
* ``tracepoint``: ``cgroup_mkdir``/``cgroup_rmdir`` records from BPF, passed
  in through ``feed()``.  Exact, but only for cgroups born after the probe.

The root ("/") is always known.  Whichever source reports a mkdir or rmdir
first is the one ``CgroupChange`` names; later reports of it are dropped.

Removed cgroups stay resolvable as tombstones for ``ttl`` seconds (counted
from when the map learns of the removal), at most ``max_tombstones`` of them,
oldest evicted first, so late events still get a name and memory stays
bounded under churn: a tombstone costs at most 450 bytes plus one byte per
path character, on top of a fixed 128 KiB for the map's hash tables, which
keep the size of their busiest moment (CPython 3.11, measured by
tests/privileged/test_cgroupmap.py), so the default 8192 tombstones with
100-character paths stay under 4.6 MiB.
Other state is bounded too: alive entries mirror the kernel's cgroups, and at
most ``MAX_WAITING_EVENTS`` fanotify events wait for a parent.

The map is single-threaded: the caller polls ``fileno()`` and calls ``poll()``.
"""

from __future__ import annotations

import os
import stat
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from bpftools.cgroups.names import Names, names_from_path
from bpftools.kernel import fanotify as fan
from bpftools.kernel import mountinfo
from bpftools.kernel.mountinfo import MOUNTINFO

SOURCES = ("sweep", "fanotify", "tracepoint")
LIVE = "live"
DEFAULT_TTL = 60.0
DEFAULT_MAX_TOMBSTONES = 8192
MAX_WAITING_EVENTS = 4096      # fanotify events waiting for a parent / creates waiting for an id
MAX_READS_PER_POLL = 64        # bounds one poll() to 64 x 64 KiB of fanotify events



class Cgroup2Unavailable(RuntimeError):
    """No cgroup2 mount is visible (a cgroup v1-only host)."""

    def __init__(self) -> None:
        super().__init__("cgroup attribution needs cgroup2; events still carry cgroup ids")


def find_cgroup2_mount(mountinfo_text: str) -> str | None:
    """The mount point of the cgroup2 hierarchy in a ``/proc/<pid>/mountinfo`` text, or None.

    Mounts stacked over others on the same mount point hide them (and what
    is mounted below them); of the visible cgroup2 mounts, one of the whole
    hierarchy (root "/") is preferred.
    """
    parsed = mountinfo.parse(os.fsencode(mountinfo_text))
    mounts = {m.mount_id: (m.parent_id, os.fsdecode(m.point), os.fsdecode(m.root)) for m in parsed}
    cgroup2 = [m.mount_id for m in parsed if m.fstype == "cgroup2"]
    covering: dict[tuple[int, str], set[int]] = {}  # (mount id, its mount point) -> mounts stacked on it
    for mount_id, (parent, point, _) in mounts.items():
        covering.setdefault((parent, point), set()).add(mount_id)

    def visible(mount_id: int) -> bool:
        child, seen = None, set()  # child: the mount we came up from, which may sit on this one
        while mount_id in mounts and mount_id not in seen:
            seen.add(mount_id)
            parent, point, _ = mounts[mount_id]
            if covering.get((mount_id, point), set()) - {child}:
                return False
            child, mount_id = mount_id, parent
        return True

    candidates = [m for m in cgroup2 if visible(m)]
    candidates.sort(key=lambda m: mounts[m][2] != "/")
    return mounts[candidates[0]][1] if candidates else None


def cgroup2_mount(path: str = MOUNTINFO) -> str:
    """The cgroup2 mount point of this process; raises ``Cgroup2Unavailable``."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        mount = find_cgroup2_mount(f.read())
    if mount is None:
        raise Cgroup2Unavailable()
    return mount


def sweep(mount: str) -> dict[int, str]:
    """Walk the cgroup2 mount: cgroup id (directory inode) -> path ("/" for the root).

    Directories removed during the walk are skipped.
    """
    found = {os.stat(mount).st_ino: "/"}
    todo = [(mount, "")]
    while todo:
        directory, prefix = todo.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        path = f"{prefix}/{entry.name}"
                        found[entry.inode()] = path
                        todo.append((entry.path, path))
        except (FileNotFoundError, PermissionError):
            continue
    return found


@dataclass(frozen=True, slots=True)
class CgroupInfo:
    """What the map knows about one cgroup.

    ``created``/``removed`` are on the map's clock: exact for tracepoint
    records, read time for fanotify, ``created`` None for cgroups found by a
    sweep or handle lookup (they existed before the map looked).
    """

    id: int
    path: str
    alive: bool = True
    created: float | None = None
    removed: float | None = None

    @property
    def names(self) -> Names:
        """Unit, slice, container and pod, from the path."""
        return names_from_path(self.path)


@dataclass(frozen=True, slots=True)
class CgroupChange:
    """One cgroup appearing ("mkdir") or going ("rmdir"), reported once whichever source saw it first."""

    action: str
    id: int
    path: str
    ts: float
    source: str


class _FanotifyWatch:
    """A non-blocking fanotify group with a filesystem mark on the cgroup2 mount."""

    def __init__(self, mount: str):
        self.mount = mount
        flags = fan.FAN_CLASS_NOTIF | fan.FAN_CLOEXEC | fan.FAN_NONBLOCK | fan.FAN_REPORT_DFID_NAME_TARGET
        self.fd = fan.fanotify_init(flags)
        try:
            fan.fanotify_mark(self.fd, fan.FAN_MARK_ADD | fan.FAN_MARK_FILESYSTEM,
                              fan.FAN_CREATE | fan.FAN_DELETE | fan.FAN_ONDIR, mount)
            self.mount_fd = os.open(mount, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except BaseException:
            os.close(self.fd)
            raise

    def lookup(self, cgid: int) -> str | None:
        """The path of the alive cgroup ``cgid`` via its kernfs file handle, or None."""
        try:
            fd = fan.open_by_handle_at(self.mount_fd, fan.FileHandle.for_kernfs_id(cgid))
        except OSError:
            return None
        try:
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                return None  # a kernfs file such as cgroup.procs, not a cgroup
            target = os.readlink(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        prefix = self.mount.rstrip("/")
        if target.endswith(" (deleted)") or not (target + "/").startswith(prefix + "/"):
            return None
        return target[len(prefix):] or "/"

    def close(self) -> None:
        os.close(self.mount_fd)
        os.close(self.fd)


def _join(parent: str, name: str) -> str:
    return f"/{name}" if parent == "/" else f"{parent}/{name}"


class CgroupMap:
    """cgroup id -> ``CgroupInfo``, kept current by the selected sources.

    ``sources`` is a subset of ``SOURCES``.  ``ttl`` (seconds) and
    ``max_tombstones`` bound how long and how many removed cgroups stay
    resolvable.  ``clock`` is the time base of all timestamps; ``feed()``
    timestamps must use it too (the default, ``time.monotonic``, equals
    ``bpf_ktime_get_ns() / 1e9``).  Raises ``Cgroup2Unavailable`` when no
    ``mount`` is given and none is found.
    """

    def __init__(self, sources: Iterable[str] = SOURCES, *, mount: str | None = None,
                 ttl: float = DEFAULT_TTL, max_tombstones: int = DEFAULT_MAX_TOMBSTONES,
                 clock: Callable[[], float] = time.monotonic):
        sources = set(sources)
        unknown = sources - set(SOURCES)
        if unknown:
            raise ValueError(f"unknown cgroup source(s): {', '.join(sorted(unknown))}")
        if max_tombstones < 0 or ttl < 0:
            raise ValueError("ttl and max_tombstones must not be negative")
        self.mount = os.path.abspath(mount) if mount is not None else cgroup2_mount()
        self.ttl = ttl
        self.max_tombstones = max_tombstones
        self._clock = clock
        self._alive: dict[int, CgroupInfo] = {}
        self._dead: OrderedDict[int, tuple[float, CgroupInfo]] = OrderedDict()  # id -> (expiry, info)
        self._backlog: deque[tuple[fan.FanEvent, float]] = deque()  # fanotify events, parent unknown
        self._unresolved: OrderedDict[tuple[int, str], float] = OrderedDict()  # (parent id, name) -> ts
        self._undelivered: list[CgroupChange] = []
        self._fan: _FanotifyWatch | None = None
        self._states = {name: "off: not selected" for name in SOURCES}

        root = os.stat(self.mount).st_ino
        self._alive[root] = CgroupInfo(root, "/")
        if "fanotify" in sources:  # mark before sweeping, so nothing falls between the two
            try:
                self._fan = _FanotifyWatch(self.mount)
                self._states["fanotify"] = LIVE
            except fan.FanotifyError as err:
                self._states["fanotify"] = f"off: {err.hint or err.strerror}"
        if "sweep" in sources:
            try:
                self.resweep()
                self._states["sweep"] = LIVE
            except OSError as err:
                self._states["sweep"] = f"off: {err}"
        if "tracepoint" in sources:
            self._states["tracepoint"] = LIVE

    @property
    def sources(self) -> dict[str, str]:
        """Each source's state: "live" or "off: <reason>"."""
        return dict(self._states)

    def disable(self, source: str, reason: str) -> None:
        """Mark ``source`` off, e.g. "tracepoint" when its BPF program could not attach."""
        if source not in SOURCES:
            raise ValueError(f"unknown cgroup source: {source}")
        if source == "fanotify" and self._fan is not None:
            self._fan.close()
            self._fan = None
        self._states[source] = f"off: {reason}"

    def fileno(self) -> int | None:
        """The fanotify fd to poll for readability, or None when fanotify is off."""
        return self._fan.fd if self._fan is not None else None

    def close(self) -> None:
        """Release the fanotify watch."""
        if self._fan is not None:
            self._fan.close()
            self._fan = None

    def __enter__(self) -> CgroupMap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def poll(self) -> list[CgroupChange]:
        """Apply what fanotify has queued (at most ``MAX_READS_PER_POLL`` reads); the changes since the last call."""
        self._expire()
        changes, self._undelivered = self._undelivered, []
        if self._fan is not None:
            changes += self._drain_fanotify()
        return changes

    def feed(self, action: str, cgid: int, path: str, ts: float) -> list[CgroupChange]:
        """Apply one ``cgroup_mkdir``/``cgroup_rmdir`` tracepoint record ("mkdir" or "rmdir").

        ``path`` is relative to the cgroup2 root, decoded like ``os.fsdecode``
        (as the sweep and fanotify decode names); ``ts`` is on the map's clock.
        """
        if self._states["tracepoint"] != LIVE:
            raise ValueError(f"tracepoint source is {self._states['tracepoint']}")
        self._expire()
        if action == "mkdir":
            return self._mkdir(cgid, path, ts, "tracepoint", created=ts)
        if action == "rmdir":
            return self._rmdir(cgid, path, ts, "tracepoint")
        raise ValueError(f"unknown cgroup action: {action!r}")

    def resweep(self) -> list[CgroupChange]:
        """Walk the mount again: cgroups found are added, alive ones not found become tombstones."""
        now = self._clock()
        found = sweep(self.mount)
        changes = []
        for cgid, path in found.items():
            changes += self._mkdir(cgid, path, now, "sweep", created=None)
        for cgid in [c for c in self._alive if c not in found]:
            changes += self._rmdir(cgid, None, now, "sweep")
        return changes

    def resolve(self, cgid: int) -> CgroupInfo | None:
        """The cgroup ``cgid`` (alive or a tombstone), or None.

        On a miss, fanotify is drained once (its changes are kept for the
        next ``poll()``) and the id is looked up by file handle.
        """
        self._expire()
        info = self._known(cgid)
        if info is None and self._fan is not None:
            self._undelivered += self._drain_fanotify()
            info = self._known(cgid) or self._learn(cgid)
        return info

    def label(self, cgid: int) -> str:
        """The cgroup's path, or ``unknown:<id>``."""
        info = self.resolve(cgid)
        return info.path if info is not None else f"unknown:{cgid}"

    def entries(self) -> list[CgroupInfo]:
        """Every cgroup the map holds: the alive ones, then the tombstones oldest first."""
        self._expire()
        return list(self._alive.values()) + [info for _, info in self._dead.values()]

    def _known(self, cgid: int) -> CgroupInfo | None:
        info = self._alive.get(cgid)
        if info is None and cgid in self._dead:
            info = self._dead[cgid][1]
        return info

    def _learn(self, cgid: int) -> CgroupInfo | None:
        path = self._fan.lookup(cgid) if self._fan is not None else None
        if path is None:
            return None
        info = self._alive[cgid] = CgroupInfo(cgid, path)
        return info

    def _mkdir(self, cgid: int, path: str, ts: float, source: str,
               created: float | None) -> list[CgroupChange]:
        if cgid in self._alive or cgid in self._dead:
            return []  # already reported, or removed before this late record
        self._alive[cgid] = CgroupInfo(cgid, path, created=created)
        return [CgroupChange("mkdir", cgid, path, ts, source)]

    def _rmdir(self, cgid: int, path: str | None, ts: float, source: str) -> list[CgroupChange]:
        info = self._alive.pop(cgid, None)
        if info is None:
            if cgid in self._dead or path is None:
                return []
            info = CgroupInfo(cgid, path)
        self._dead[cgid] = (self._clock() + self.ttl, replace(info, alive=False, removed=ts))
        while len(self._dead) > self.max_tombstones:
            self._dead.popitem(last=False)
        return [CgroupChange("rmdir", cgid, info.path, ts, source)]

    def _expire(self) -> None:
        now = self._clock()
        while self._dead and next(iter(self._dead.values()))[0] <= now:
            self._dead.popitem(last=False)

    def _drain_fanotify(self) -> list[CgroupChange]:
        changes = []
        for _ in range(MAX_READS_PER_POLL):
            events = fan.read_events(self._fan.fd)
            if not events:
                # Queue empty: every delete that could still name a waiting event has been read.
                self._backlog.clear()
                self._unresolved.clear()
                break
            now = self._clock()
            for event in events:
                if event.overflow:
                    self._backlog.clear()
                    self._unresolved.clear()
                    changes += self.resweep()
                elif event.mask & fan.FAN_ONDIR:
                    self._backlog.append((event, now))
            changes += self._work_backlog()
        return changes

    def _work_backlog(self) -> list[CgroupChange]:
        """Apply queued fanotify events in order; keep those whose parent is not known yet.

        A parent becomes known when its own (later) delete event names it, so
        passes repeat while they make progress (one per level of nesting).
        """
        changes = []
        progress = True
        while progress and self._backlog:
            progress = False
            waiting = deque()
            for event, ts in self._backlog:
                applied = self._fanotify_event(event, ts)
                if applied is None:
                    waiting.append((event, ts))
                else:
                    changes += applied
                    progress = True
            self._backlog = waiting
        while len(self._backlog) > MAX_WAITING_EVENTS:
            self._backlog.popleft()
        return changes

    def _fanotify_event(self, event: fan.FanEvent, now: float) -> list[CgroupChange] | None:
        """The changes one create/delete event makes, or None while its parent is unknown."""
        entry = event.info(fan.FAN_EVENT_INFO_TYPE_DFID_NAME)
        if entry is None or entry.handle.kernfs_id is None:
            return []
        parent_id = entry.handle.kernfs_id
        parent = self._known(parent_id) or self._learn(parent_id)
        if parent is None:
            return None
        path = _join(parent.path, entry.name)
        target = event.info(fan.FAN_EVENT_INFO_TYPE_FID)
        cgid = target.handle.kernfs_id if target is not None else None
        key = (parent_id, entry.name)
        if event.mask & fan.FAN_CREATE:
            if cgid is None:  # kernfs reports no child handle on create: stat it
                try:
                    cgid = os.stat(self.mount + path, follow_symlinks=False).st_ino
                except FileNotFoundError:  # already gone: its delete event will carry the id
                    self._unresolved[key] = now
                    if len(self._unresolved) > MAX_WAITING_EVENTS:
                        self._unresolved.popitem(last=False)
                    return []
            return self._mkdir(cgid, path, now, "fanotify", created=now)
        if event.mask & fan.FAN_DELETE and cgid is not None:
            changes = []
            created = self._unresolved.pop(key, None)
            if created is not None:
                changes += self._mkdir(cgid, path, created, "fanotify", created=created)
            return changes + self._rmdir(cgid, path, now, "fanotify")
        return []
