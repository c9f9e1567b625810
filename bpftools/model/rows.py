"""Rows: counter entries grouped, drilled into, filtered and sorted (pure: no I/O, no clock).

The session hands the model one Tick per interval -- the entries drained
from the kernel's counter map (one per cgroup, file, process and errno, see
bpf/common.bpf.c) with the names it resolved.  The functions here turn
entries into rows, by key names the views only map to keys and labels.

Groupings:
  cgroup   the cgroup hierarchy as a tree; every row counts its own events
           plus those of every cgroup below it (rolled up), so a service's row
           includes its sub-cgroups, and siblings are sorted among themselves
  process  one row per process (tgid), with its cgroup
  file     one row per file path
  dir      one row per directory, counting the files directly in it (report)
  event    one row per event type, with how many cgroups, processes and files
"""
from __future__ import annotations

import errno as _errno
from dataclasses import dataclass, field
from operator import add

from bpftools.abi import EVENT_CODES, EVENT_NAMES, LAT_SLOTS, NO_TIME, TIMED_EVENTS, Entry, Hist
from bpftools.cgroups.names import display_name, names_from_path
from bpftools.cgroups.runtimes import named
from bpftools.cgroups.select import ancestors, unknown_path, within

EV_COUNT = len(EVENT_NAMES)

# The event classes top shows as columns: class -> the events it sums.
CLASSES = (
    ("open", ("open",)),
    ("read", ("access",)),
    ("write", ("modify",)),
    ("close", ("close_write", "close_nowrite")),
    ("create", ("create",)),
    ("delete", ("delete",)),
    ("rename", ("rename",)),
    ("attrib", ("attrib",)),
    ("exec", ("exec",)),
    ("sync", ("sync",)),
)
CLASS_NAMES = tuple(name for name, _ in CLASSES)
_CLASS_CODES = {name: tuple(EVENT_CODES[e] for e in evs) for name, evs in CLASSES}
EXEC = EVENT_CODES["exec"]
ACCESS = EVENT_CODES["access"]
MODIFY = EVENT_CODES["modify"]

GROUPINGS = ("cgroup", "process", "comm", "file", "event")
BYTE_KEYS = ("read_bytes", "write_bytes")     # Row attributes: bytes moved (model/fields.py)
TIME_KEYS = ("time_us", "avg_us")               # Row attributes: time of its timed operations (model/fields.py)
SORT_KEYS = ("total",) + CLASS_NAMES + ("failed",) + BYTE_KEYS + TIME_KEYS + ("name",)
# EVENT_NAMES code -> the latency slot of its timed operations (abi.TIMED_EVENTS), None if never timed
LAT_SLOT = tuple(TIMED_EVENTS.index(n) if n in TIMED_EVENTS else None for n in EVENT_NAMES)
DEFAULT_SORT = "total"
HISTORY = 20                    # ticks of trend per row
MAX_TIMELINE = 240              # report chart points; older ones are merged pairwise
MAX_REPORT_ENTRIES = 500_000    # report entries kept apart; the rest go to OTHER_FILE
MAX_LIVES = 100_000             # report: cgroups whose creation/removal is listed

NO_FILE = 0                     # entries of events with no file known
OTHER_FILE = -1                 # report: files beyond MAX_REPORT_ENTRIES
UNKNOWN_FILE = "(unknown file)"
OTHER_FILES = "(other files)"

# What a drill-in on a row of each grouping shows: the two tables below it.
DRILL = {
    "cgroup": ("process", "file"),
    "process": ("file", "event"),
    "comm": ("process", "file"),
    "file": ("process", "cgroup"),
    "event": ("process", "file"),
}


@dataclass(frozen=True)
class Tick:
    """One interval's worth of counts, with the names the session resolved."""

    ts: float                       # wall clock at the end of the interval
    elapsed: float                  # seconds it covers
    entries: list[Entry]
    cgroups: dict[int, str]         # cgroup id -> path ("/unknown:<id>" when unknown)
    files: dict[int, str]           # file key -> path (missing: not known yet)
    overflow: tuple[int, ...] = (0,) * EV_COUNT   # per event: not in entries, the map was full
    hists: list[Hist] = field(default_factory=list)  # latency histograms per (cgroup id, event)
    hist_overflow: int = 0          # timed operations not in hists: the histogram map was full
    lost: int = 0                   # ring-buffer records lost (names, cgroup changes)
    uptime: float = 0.0             # of the machine
    tracked: int = 0                # cgroups alive
    ppids: dict = field(default_factory=dict)    # pid -> parent pid, where known


@dataclass(frozen=True)
class CgroupLife:
    """A cgroup created and/or removed while counting (wall-clock times)."""

    id: int
    path: str
    created: float | None = None
    removed: float | None = None

    @property
    def lifetime(self) -> float | None:
        if self.created is None or self.removed is None:
            return None
        return max(0.0, self.removed - self.created)


@dataclass(slots=True)
class Row:
    group: str                      # the grouping the row belongs to
    key: object                     # cgroup path, pid, file path, directory, event name
    label: str
    counts: list[int]               # successful operations per EVENT_NAMES
    failed: int = 0
    depth: int = 0                  # cgroup tree depth below the top row shown
    cgroup: str | None = None       # a process's cgroup; a file's or event's busiest cgroup
    comm: str | None = None         # process rows
    extra: dict = field(default_factory=dict)   # event rows: distinct cgroups, processes, files
    read_bytes: int = 0             # bytes moved by its reads (abi.BYTES_SYSCALLS)
    write_bytes: int = 0            # bytes moved by its writes
    lat_ns: int = 0                 # summed time of its timed operations (abi.TIMED_EVENTS), failed ones too
    timed: int = 0                  # how many of its operations were timed

    @property
    def total(self) -> int:
        return sum(self.counts)

    @property
    def time_us(self) -> float:
        """Time spent in its timed operations, in microseconds."""
        return self.lat_ns / 1000

    @property
    def avg_us(self) -> float | None:
        """The average time of its timed operations in microseconds; None when none was timed."""
        return self.lat_ns / self.timed / 1000 if self.timed else None

    def klass(self, name: str) -> int:
        return sum(self.counts[c] for c in _CLASS_CODES[name])


@dataclass(frozen=True)
class Focus:
    """A drill-in: only what belongs to one row of a grouping."""

    group: str
    key: object
    label: str


# --- pure helpers ------------------------------------------------------------------
def parent_dir(path: str) -> str:
    head = path.rsplit("/", 1)[0]
    return head or "/"


def cgroup_label(path: str) -> str:
    """A tree row's name: its last path component, or the container or pod it starts."""
    if path == "/":
        return "/"
    here = names_from_path(path)
    up = names_from_path(parent_dir(path))
    if here.container and here.container != up.container:
        return display_name(path, named(path, read=False))
    if here.pod and here.pod != up.pod:
        return "pod:" + here.pod
    return path.rsplit("/", 1)[1]


def comm_text(comm: bytes) -> str:
    """A process name as the model keeps names: exact (surrogates for bytes that are not UTF-8)."""
    return comm.decode("utf-8", "surrogateescape")


def errno_label(err: int) -> str:
    return _errno.errorcode.get(err, "E%d" % err)


def add_into(acc: list[int], counts) -> None:
    acc[:] = map(add, acc, counts)


def file_path(key: int, files: dict[int, str]) -> str:
    if key == NO_FILE:
        return UNKNOWN_FILE
    if key == OTHER_FILE:
        return OTHER_FILES
    return files.get(key) or "unknown:%x" % key


def matches(entry: Entry, focus: Focus, cgroups: dict[int, str], files: dict[int, str]) -> bool:
    g, k = focus.group, focus.key
    if g == "cgroup":
        return within(cgroup_path(cgroups, entry.cgroup_id), k)
    if g == "process":
        return entry.pid == k
    if g == "comm":
        return comm_text(entry.comm) == k
    if g == "file":
        return file_path(entry.file, files) == k
    if g == "event":
        return entry.counts[EVENT_CODES[k]] > 0
    raise ValueError("unknown grouping %r" % g)


def focused(entries, focus: tuple[Focus, ...], cgroups, files) -> list[Entry]:
    """The entries under every drill-in of focus; an event drill-in keeps only that event's counts."""
    out = list(entries)
    for f in focus:
        out = [e for e in out if matches(e, f, cgroups, files)]
        if f.group == "event":
            code = EVENT_CODES[f.key]
            slot = LAT_SLOT[code]
            out = [Entry(e.cgroup_id, e.file, e.pid, e.err, e.comm,
                         tuple(n if i == code else 0 for i, n in enumerate(e.counts)),
                         e.read_bytes if code == ACCESS else 0, e.write_bytes if code == MODIFY else 0,
                         tuple(t if i == slot else 0 for i, t in enumerate(e.lat_ns)),
                         tuple(t if i == slot else 0 for i, t in enumerate(e.timed)))
                   for e in out]
    return out


def busiest(weights: dict) -> object:
    """The key with the most events (ties: the larger key, so the choice is stable)."""
    if len(weights) == 1:
        return next(iter(weights))
    return max(weights.items(), key=lambda kv: (kv[1], str(kv[0])))[0] if weights else None


def cgroup_path(cgroups: dict[int, str], cgid: int) -> str:
    path = cgroups.get(cgid)
    return path if path is not None else unknown_path(cgid)


def _accumulate(a: list, e: Entry) -> None:
    """Add an entry into a row accumulator
    [counts, failed, {cgroup id: events}, _, read bytes, write bytes, time in ns, timed operations]."""
    n = sum(e.counts)
    a[4] += e.read_bytes
    a[5] += e.write_bytes
    if e.timed is not NO_TIME:
        a[6] += sum(e.lat_ns)
        a[7] += sum(e.timed)
    if e.err:
        a[1] += n
    else:
        add_into(a[0], e.counts)
    a[2][e.cgroup_id] = a[2].get(e.cgroup_id, 0) + n


def group_rows(entries, by: str, cgroups: dict[int, str], files: dict[int, str]) -> list[Row]:
    """Rows of one grouping over entries (unsorted; the cgroup tree comes back flat, see tree()).

    Runs once per tick over up to tens of thousands of entries: it sums into
    plain lists and dicts first and makes Row objects once per row.
    """
    if by == "cgroup":
        return _cgroup_rows(entries, cgroups)
    if by == "event":
        return _event_rows(entries, cgroups)
    if by == "comm":
        return _comm_rows(entries, cgroups)
    if by not in ("process", "file", "dir"):
        raise ValueError("unknown grouping %r" % by)
    acc: dict = {}          # key -> [counts, failed, {cgroup id: events}, comm, read bytes, write bytes, ns, timed]
    names: dict[int, str] = {}
    for e in entries:
        if by == "process":
            key = e.pid
        else:
            key = names.get(e.file)
            if key is None:
                key = names[e.file] = file_path(e.file, files)
                if by == "dir" and e.file not in (NO_FILE, OTHER_FILE):
                    key = names[e.file] = parent_dir(key)
        a = acc.get(key)
        if a is None:
            a = acc[key] = [[0] * EV_COUNT, 0, {}, e.comm, 0, 0, 0, 0]
        _accumulate(a, e)
        if e.counts[EXEC] and not e.err:    # the name after an exec is the process's name now
            a[3] = e.comm
    rows = []
    for key, (counts, failed, w, comm, rb, wb, ns, timed) in acc.items():
        row = Row(by, key, str(key), counts, failed, cgroup=cgroup_path(cgroups, busiest(w)),
                  read_bytes=rb, write_bytes=wb, lat_ns=ns, timed=timed)
        if by == "process":
            row.comm = comm.decode("utf-8", "surrogateescape")
            row.label = "%s[%d]" % (row.comm, key)
        else:
            row.extra["cgroups"] = len(w)
        rows.append(row)
    return rows


def _comm_rows(entries, cgroups) -> list[Row]:
    """One row per command name, over all its processes (short-lived `mv`s become one row)."""
    acc: dict = {}          # name -> [counts, failed, {cgroup id: events}, pids, read bytes, write bytes, ns, timed]
    for e in entries:
        name = comm_text(e.comm)
        a = acc.get(name)
        if a is None:
            a = acc[name] = [[0] * EV_COUNT, 0, {}, set(), 0, 0, 0, 0]
        _accumulate(a, e)
        a[3].add(e.pid)
    return [Row("comm", name, name, counts, failed, cgroup=cgroup_path(cgroups, busiest(w)), comm=name,
                extra={"processes": len(pids), "cgroups": len(w)}, read_bytes=rb, write_bytes=wb,
                lat_ns=ns, timed=timed)
            for name, (counts, failed, w, pids, rb, wb, ns, timed) in acc.items()]


def _cgroup_rows(entries, cgroups) -> list[Row]:
    own: dict[int, list] = {}        # cgroup id -> [counts, failed, read bytes, write bytes, ns, timed]
    for e in entries:
        a = own.get(e.cgroup_id)
        if a is None:
            a = own[e.cgroup_id] = [[0] * EV_COUNT, 0, 0, 0, 0, 0]
        a[2] += e.read_bytes
        a[3] += e.write_bytes
        if e.timed is not NO_TIME:
            a[4] += sum(e.lat_ns)
            a[5] += sum(e.timed)
        if e.err:
            a[1] += sum(e.counts)
        else:
            a[0] = list(map(add, a[0], e.counts))
    by_path = {}
    for cgid, a in own.items():
        path = cgroup_path(cgroups, cgid)
        if path in by_path:           # two ids, one path: a cgroup removed and made again
            b = by_path[path]
            by_path[path] = [list(map(add, b[0], a[0])), b[1] + a[1], b[2] + a[2], b[3] + a[3], b[4] + a[4],
                             b[5] + a[5]]
        else:
            by_path[path] = a
    rows: dict[str, Row] = {}
    for path, (counts, failed, rb, wb, ns, timed) in by_path.items():
        for up in [path] + ancestors(path):
            target = rows.get(up)
            if target is None:
                target = rows[up] = Row("cgroup", up, cgroup_label(up), [0] * EV_COUNT)
            add_into(target.counts, counts)
            target.failed += failed
            target.read_bytes += rb
            target.write_bytes += wb
            target.lat_ns += ns
            target.timed += timed
    for path, row in rows.items():
        mine = by_path.get(path)
        row.extra["own"] = list(mine[0]) if mine else [0] * EV_COUNT
        row.extra["own_failed"] = mine[1] if mine else 0
        row.extra["own_read_bytes"] = mine[2] if mine else 0
        row.extra["own_write_bytes"] = mine[3] if mine else 0
        row.extra["own_lat_ns"] = mine[4] if mine else 0
        row.extra["own_timed"] = mine[5] if mine else 0
    return list(rows.values())


def _event_rows(entries, cgroups) -> list[Row]:
    ok = [0] * EV_COUNT
    failed = [0] * EV_COUNT
    weights: list[dict] = [{} for _ in range(EV_COUNT)]
    pids: list[set] = [set() for _ in range(EV_COUNT)]
    keys: list[set] = [set() for _ in range(EV_COUNT)]
    moved = [0] * EV_COUNT          # bytes: access (read) and modify (write)
    lat = [0] * LAT_SLOTS
    timed = [0] * LAT_SLOTS
    for e in entries:
        moved[ACCESS] += e.read_bytes
        moved[MODIFY] += e.write_bytes
        if e.timed is not NO_TIME:
            lat[:] = map(add, lat, e.lat_ns)
            timed[:] = map(add, timed, e.timed)
        for code, n in enumerate(e.counts):
            if n:
                if e.err:
                    failed[code] += n
                else:
                    ok[code] += n
                w = weights[code]
                w[e.cgroup_id] = w.get(e.cgroup_id, 0) + n
                pids[code].add(e.pid)
                if e.file != NO_FILE:
                    keys[code].add(e.file)
    rows = []
    for code, name in enumerate(EVENT_NAMES):
        if not weights[code]:
            continue
        counts = [0] * EV_COUNT
        counts[code] = ok[code]
        slot = LAT_SLOT[code]
        rows.append(Row("event", name, name, counts, failed[code],
                        lat_ns=lat[slot] if slot is not None else 0, timed=timed[slot] if slot is not None else 0,
                        cgroup=cgroup_path(cgroups, busiest(weights[code])),
                        extra={"cgroups": len(weights[code]), "processes": len(pids[code]),
                               "files": len(keys[code])},
                        read_bytes=moved[code] if code == ACCESS else 0,
                        write_bytes=moved[code] if code == MODIFY else 0))
    return rows


def sort_value(row: Row, key: str):
    if key == "total":
        return row.total
    if key == "failed":
        return row.failed
    if key == "name":
        return row.label.lower()
    if key in _CLASS_CODES:
        return row.klass(key)
    if key in BYTE_KEYS:
        return getattr(row, key)
    if key == "time_us":
        return row.lat_ns
    if key == "avg_us":
        return row.lat_ns / row.timed if row.timed else -1
    raise ValueError("unknown sort key %r (known: %s)" % (key, ", ".join(SORT_KEYS)))


def sort_rows(rows: list[Row], key: str = DEFAULT_SORT, reverse: bool = False) -> list[Row]:
    """Largest first (names: A to Z); reverse flips it.  Ties go by name, so the order is stable."""
    by_name = sorted(rows, key=lambda r: (r.label.lower(), str(r.key)))
    if key == "name":
        return list(reversed(by_name)) if reverse else by_name
    return sorted(by_name, key=lambda r: sort_value(r, key), reverse=not reverse)


def tree(rows: list[Row], key: str = DEFAULT_SORT, reverse: bool = False) -> list[Row]:
    """Cgroup rows in depth-first order, siblings sorted; depth counts from the top row."""
    by_path = {r.key: r for r in rows}
    children: dict[str, list[Row]] = {}
    roots = []
    for r in rows:
        parent = None if r.key == "/" else parent_dir(r.key)
        while parent is not None and parent not in by_path:
            parent = None if parent == "/" else parent_dir(parent)
        if parent is None:
            roots.append(r)
        else:
            children.setdefault(parent, []).append(r)
    out: list[Row] = []
    stack = [(r, 0) for r in reversed(sort_rows(roots, key, reverse))]
    while stack:
        row, depth = stack.pop()
        row.depth = depth
        out.append(row)
        for child in reversed(sort_rows(children.get(row.key, []), key, reverse)):
            stack.append((child, depth + 1))
    return out


def text_filter(rows: list[Row], text: str) -> list[Row]:
    """Rows whose label, key or cgroup contains text (any case); a tree keeps the ancestors of a match."""
    if not text:
        return rows
    needle = text.lower()

    def hit(r: Row) -> bool:
        return any(needle in s.lower() for s in (r.label, str(r.key), r.cgroup or "") if s)

    if rows and rows[0].group == "cgroup":
        keep = set()
        for r in rows:
            if hit(r):
                keep.add(r.key)
                keep.update(ancestors(r.key))
        return [r for r in rows if r.key in keep]
    return [r for r in rows if hit(r)]


def arrange(rows: list[Row], by: str, key: str = DEFAULT_SORT, reverse: bool = False, text: str = "") -> list[Row]:
    """Sorted rows of a grouping as a view shows them: the cgroup tree or a sorted list, filtered by text."""
    ordered = tree(rows, key, reverse) if by == "cgroup" else sort_rows(rows, key, reverse)
    return text_filter(ordered, text)


def trend_key(row: Row):
    return (row.group, row.key)


def tick_time(entries) -> tuple[int, int]:
    """Time spent in timed operations (ns) and how many there were, over every entry of a tick."""
    ns = timed = 0
    for e in entries:
        if e.timed is not NO_TIME:
            ns += sum(e.lat_ns)
            timed += sum(e.timed)
    return ns, timed


def tick_bytes(entries) -> tuple[int, int]:
    """Bytes read and written by every entry of a tick."""
    return sum(e.read_bytes for e in entries), sum(e.write_bytes for e in entries)


def summarize(entries, cgroups: dict[int, str], files: dict[int, str]) -> tuple[list[int], int, dict]:
    """One pass over a tick: successes per event, failures, and each row's total (for its trend)."""
    ok = [e.counts for e in entries if not e.err]
    counts = [sum(col) for col in zip(*ok)] if ok else [0] * EV_COUNT
    failed = sum(sum(e.counts) for e in entries if e.err)
    by_pid: dict[int, int] = {}
    by_file: dict[int, int] = {}
    by_cgroup: dict[int, int] = {}
    for e in entries:
        if e.err:
            continue
        n = sum(e.counts)
        by_pid[e.pid] = by_pid.get(e.pid, 0) + n
        by_file[e.file] = by_file.get(e.file, 0) + n
        by_cgroup[e.cgroup_id] = by_cgroup.get(e.cgroup_id, 0) + n
    out: dict = {("process", pid): n for pid, n in by_pid.items()}
    for e in entries:
        if not e.err:
            k = ("comm", comm_text(e.comm))
            out[k] = out.get(k, 0) + sum(e.counts)
    for key, n in by_file.items():
        k = ("file", file_path(key, files))
        out[k] = out.get(k, 0) + n
    for cgid, n in by_cgroup.items():
        for up in [cgroup_path(cgroups, cgid)] + ancestors(cgroup_path(cgroups, cgid)):
            k = ("cgroup", up)
            out[k] = out.get(k, 0) + n
    for code, n in enumerate(counts):
        if n:
            out[("event", EVENT_NAMES[code])] = n
    return counts, failed, out
