"""`fstrace export`: Prometheus metrics from the in-kernel counters, with bounded cardinality.

The session (bpftools/session/, Options.aggregate) hands an ``ExportSink``
one model.Tick per interval and every cgroup mkdir/rmdir; ``ExportState``
folds them into cumulative counters.  After each tick it publishes an
immutable ``Published`` copy, and the ``Collector`` -- called by
prometheus_client's HTTP server thread on every scrape -- reads only that
copy: a scrape never waits for a tick, and a tick never waits for a scrape.

Cardinality is bounded whatever the machine does:

* ``depth``: a cgroup is labelled with its path cut to its first N levels
  (``/kubepods.slice/kubepods-besteffort.slice`` at depth 2); unit, container
  and pod are derived from that label, so they add no series of their own.
* ``include``/``exclude``: globs matched against a cgroup's path and each of
  its ancestors (a glob selects subtrees, as ``trace --cgroup`` does); events
  of cgroups not selected are not exported.
* ``max_series``: at most this many ``fstrace_events_total`` series exist.
  ``fstrace_read_bytes_total`` / ``fstrace_write_bytes_total`` have the same
  labels minus ``event``: a label set has a bytes series while its
  ``access`` (read) or ``modify`` (write) series exists, and its bytes go to
  the ``__overflow__`` bytes series when that series found no room; so they
  add at most as many series as there are label sets, plus one.
  ``fstrace_operation_seconds`` (a histogram of the time of opens, reads,
  writes and syncs, from the kernel's log2 buckets) has the cgroup labels and
  ``event``; a label set has a histogram while an ``fstrace_events_total``
  series of its cgroup label and event exists, else its operations go to the
  ``__overflow__`` histogram of that event: at most as many histograms as
  there are such series, plus one per timed event type, each of
  len(LATENCY_BUCKETS) + 3 series (buckets, +Inf, _sum, _count).
  Room is kept for one overflow series per event type (cgroup
  ``__overflow__``); a label set that finds no room is counted there, and
  ``fstrace_folded_cgroups_total`` counts each cgroup label that had to be
  folded (once while it is remembered: its cgroup exists, or was removed
  less than ``ttl`` ago, and it is among the last FOLDED_MEMORY folded).
* ``ttl``: the series of a cgroup label disappear ``ttl`` seconds after the
  cgroup at that path is removed; with ``per_process``, a series also
  disappears after ``ttl`` seconds without an event (processes end unseen).

A series only ever grows while it exists; a series that has expired and
comes back starts from zero, which Prometheus reads as a counter reset.
ExportState is pure: no I/O, no clock (callers pass ``now``), no threads.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from bpftools.abi import CG_ACTIONS, EVENT_NAMES, HIST_BUCKETS
from bpftools.cgroups.names import Names, names_from_path
from bpftools.cgroups.select import UNKNOWN_PREFIX, glob_selects
from bpftools.model import Tick

DEFAULT_MAX_SERIES = 10000
DEFAULT_TTL = 300.0             # seconds: several scrape intervals, so the last increments are scraped
FOLDED_MEMORY = 65536           # folded cgroup labels remembered, so each is counted once
OVERFLOW = "__overflow__"       # the cgroup label of what found no room
UNKNOWN = "__unknown__"         # the cgroup label of every id the cgroup map could not name
CGROUP_LABELS = ("cgroup", "unit", "container", "pod", "container_name", "image", "pod_name", "pod_namespace")
MAX_CACHED_LABELS = 16384
PROCESS_LABELS = ("comm", "pid")
EV_COUNT = len(EVENT_NAMES)
MOVED_BY = ("access", "modify")     # the events whose syscalls' bytes are read_bytes, write_bytes
# fstrace_operation_seconds: bucket upper bounds, as exponents of 2 ns (every other log2 bucket of the
# kernel's, so each is exact): 1.024 us, 4.096 us, ... 17.2 s
LATENCY_BUCKETS = tuple(range(10, 35, 2))


def latency_buckets(buckets) -> list[tuple[float, int]]:
    """Kernel log2 buckets (abi.HIST_BUCKETS counts) -> Prometheus (le in seconds, cumulative count) pairs.

    The kernel's bucket b holds times in [2**b, 2**(b+1)) ns: all of it is <= 2**k ns when b < k.
    """
    out, seen, b = [], 0, 0
    for k in LATENCY_BUCKETS:
        while b < k and b < HIST_BUCKETS:
            seen += buckets[b]
            b += 1
        out.append(((1 << k) / 1e9, seen))
    return out


@dataclass(frozen=True)
class Limits:
    """What a user chose to keep the number of series bounded."""

    depth: int | None = None            # None: the whole path
    include: tuple[str, ...] = ()       # empty: every cgroup
    exclude: tuple[str, ...] = ()
    max_series: int = DEFAULT_MAX_SERIES
    ttl: float = DEFAULT_TTL
    per_process: bool = False

    @property
    def room(self) -> int:
        """Series for label sets of their own; the rest of max_series is kept for the overflow series."""
        return self.max_series - len(EVENT_NAMES)


def truncate(path: str, depth: int | None) -> str:
    """A cgroup path cut to its first depth levels ("/a/b/c", 2 -> "/a/b")."""
    if depth is None:
        return path
    parts = [p for p in path.split("/") if p][:depth]
    return "/" + "/".join(parts)


def selected(path: str, include: tuple[str, ...], exclude: tuple[str, ...]) -> bool:
    if include and not any(glob_selects(g, path) for g in include):
        return False
    return not any(glob_selects(g, path) for g in exclude)


def cgroup_labels(path: str, depth: int | None, names_of: Callable[[str], Names] = names_from_path
                  ) -> tuple[str, ...]:
    """CGROUP_LABELS of a (resolved) cgroup path; "" where a name does not apply.

    names_of gives the names of the label's path: from the path alone by
    default, or with the container's name, image and pod from its runtime
    (runtimes.named) -- one set of names per cgroup label, so they add no
    series of their own.
    """
    if path.startswith(UNKNOWN_PREFIX):      # an id nobody could resolve
        return (UNKNOWN,) + ("",) * (len(CGROUP_LABELS) - 1)
    label = truncate(path, depth)
    n = names_of(label)
    return (label, n.unit or "", n.container or "", n.pod or "", n.container_name or "", n.image or "",
            n.pod_name or "", n.pod_namespace or "")


@dataclass(frozen=True)
class Published:
    """What a scrape sees: a copy, never changed after it is made."""

    info: dict[str, str]                    # fstrace_build_info labels
    events: dict[tuple[str, ...], int]      # label values -> count, overflow series included
    folded_cgroups: int
    lost: int
    uncounted: tuple[int, ...]              # per EVENT_NAMES: the kernel's counter map was full
    tracked: int
    cgroup_changes: dict[str, int]          # mkdir/rmdir -> count
    moved: dict[tuple[str, ...], tuple[int, int]] = None   # labels minus event -> bytes read, written
    hists: dict[tuple[str, ...], tuple[tuple[int, ...], int]] = None   # cgroup labels + event -> buckets, sum ns


class ExportState:
    """Cumulative counters fed by ticks and cgroup changes, within Limits."""

    def __init__(self, limits: Limits, names_of: Callable[[str], Names] = names_from_path):
        self.limits = limits
        self.names_of = names_of
        self.info: dict[str, str] = {}
        self.labels = CGROUP_LABELS + (PROCESS_LABELS if limits.per_process else ()) + ("event",)
        self.series: dict[tuple[str, ...], int] = {}
        self.by_cgroup: dict[str, set[tuple[str, ...]]] = {}   # cgroup label -> its series
        self.last: dict[tuple[str, ...], float] = {}           # per_process: series -> time of its last event
        self.overflow = [0] * len(EVENT_NAMES)
        self.folded: OrderedDict[str, None] = OrderedDict()
        self.folded_cgroups = 0
        self.removed: dict[str, float] = {}     # cgroup label -> when the cgroup at that path went
        self.lost = 0
        self.uncounted = [0] * len(EVENT_NAMES)
        self.tracked = 0
        self.cgroup_changes = dict.fromkeys(CG_ACTIONS, 0)
        self._labels: dict[str, tuple[str, ...] | None] = {}     # cgroup path -> its labels, once final
        self.moved: dict[tuple[str, ...], list[int]] = {}      # labels minus event -> [read, written]
        self.moved_overflow = [0, 0]
        self.moved_bytes = True         # the backend knows bytes: the bytes metrics exist
        self.hists: dict[tuple[str, ...], list] = {}      # cgroup labels + event -> [kernel buckets, sum ns]
        self.timed = True               # the backend times operations: the latency histograms exist
        self.published: Published | None = None     # None until start(): scrapes show no fstrace metrics

    def start(self, info: dict[str, str]) -> None:
        """Counting has begun (the probes are attached): publish, with these build and backend labels."""
        self.info = dict(info)
        self.published = self._publish()

    def _labels_of(self, path: str) -> tuple[str, ...] | None:
        """The cgroup labels of a path, or None when it is not selected.

        Cached once final: a container whose runtime state could not be read
        yet is asked again, so its name arrives with its first series (the
        session reads the state when it first sees the cgroup).
        """
        labels = self._labels.get(path, False)
        if labels is not False:
            return labels
        if not selected(path, self.limits.include, self.limits.exclude):
            labels = None
        else:
            labels = cgroup_labels(path, self.limits.depth, self.names_of)
            if labels[2] and not any(labels[4:]):     # a container, nothing read about it yet
                return labels
        if len(self._labels) >= MAX_CACHED_LABELS:
            self._labels.clear()
        self._labels[path] = labels
        return labels

    # --- input ----------------------------------------------------------------------
    def add(self, tick: Tick, now: float) -> None:
        """Count one tick's entries, expire what is due and publish."""
        per_process = self.limits.per_process
        sums: dict[tuple[str, ...], list[int]] = {}
        for e in tick.entries:
            group = self._labels_of(tick.cgroups[e.cgroup_id])
            if group is None:
                continue
            if per_process:
                group = group + (e.comm.decode("utf-8", "backslashreplace"), str(e.pid))
            acc = sums.get(group)
            if acc is None:
                sums[group] = list(e.counts) + [e.read_bytes, e.write_bytes]
            else:
                for code, n in enumerate(e.counts):
                    acc[code] += n
                acc[EV_COUNT] += e.read_bytes
                acc[EV_COUNT + 1] += e.write_bytes
        for group, counts in sums.items():
            for code, n in enumerate(counts[:EV_COUNT]):
                if n:
                    self._count(group + (EVENT_NAMES[code],), code, n, now)
            for i, (event, n) in enumerate(zip(MOVED_BY, counts[EV_COUNT:])):
                if not n:
                    continue
                if group + (event,) in self.series:     # bytes live as long as their operations' series
                    self.moved.setdefault(group, [0, 0])[i] += n
                else:
                    self.moved_overflow[i] += n
        for h in tick.hists:
            group = self._labels_of(tick.cgroups[h.cgroup_id])
            if group is None or h.op >= EV_COUNT:
                continue
            event = EVENT_NAMES[h.op]
            key = group + (event,)
            if not self._has_series(group[0], event):   # histograms live as long as their operations' series
                key = (OVERFLOW,) + ("",) * (len(CGROUP_LABELS) - 1) + (event,)
            acc = self.hists.get(key)
            if acc is None:
                acc = self.hists[key] = [[0] * HIST_BUCKETS, 0]
            acc[0] = [a + b for a, b in zip(acc[0], h.buckets)]
            acc[1] += h.sum_ns
        self.lost += tick.lost
        for code, n in enumerate(tick.overflow):
            self.uncounted[code] += n
        self.tracked = tick.tracked
        self.expire(now)
        self.published = self._publish()

    def _has_series(self, cgroup: str, event: str) -> bool:
        """Is there an fstrace_events_total series of this cgroup label and event (any process)?"""
        return any(key[-1] == event for key in self.by_cgroup.get(cgroup, ()))

    def _count(self, key: tuple[str, ...], code: int, n: int, now: float) -> None:
        if key in self.series:
            self.series[key] += n
        elif len(self.series) < self.limits.room:
            self.series[key] = n
            self.by_cgroup.setdefault(key[0], set()).add(key)
        else:
            self.overflow[code] += n
            self._fold(key[0])
            return
        if self.limits.per_process:
            self.last[key] = now

    def _fold(self, cgroup: str) -> None:
        if cgroup in self.folded:
            self.folded.move_to_end(cgroup)
            return
        self.folded[cgroup] = None
        self.folded_cgroups += 1
        if len(self.folded) > FOLDED_MEMORY:
            self.folded.popitem(last=False)

    def cgroup_change(self, action: str, path: str, now: float) -> None:
        """A cgroup made or removed.  Removing the cgroup a label names starts its series' TTL."""
        self.cgroup_changes[action] += 1
        if action == "mkdir":
            self.removed.pop(path, None)        # the same path again: its series go on
        elif path in self.by_cgroup or path in self.folded:
            self.removed[path] = now

    def expire(self, now: float) -> None:
        """Forget the series (and folded labels) of cgroups removed ttl ago; per_process: idle ones."""
        ttl = self.limits.ttl
        dropped = False
        for label in [label for label, gone in self.removed.items() if now - gone >= ttl]:
            del self.removed[label]
            self.folded.pop(label, None)
            for key in self.by_cgroup.pop(label, ()):
                del self.series[key]
                self.last.pop(key, None)
                dropped = True
        for key in [key for key, seen in self.last.items() if now - seen >= ttl]:
            del self.series[key]
            del self.last[key]
            dropped = True
            keys = self.by_cgroup[key[0]]
            keys.discard(key)
            if not keys:
                del self.by_cgroup[key[0]]
        if dropped and self.moved:     # bytes series go with the last of their operations' series
            for group in list(self.moved):
                if not any(group + (event,) in self.series for event in MOVED_BY):
                    del self.moved[group]
        if dropped and self.hists:     # histograms too
            for key in list(self.hists):
                if key[0] != OVERFLOW and not self._has_series(key[0], key[-1]):
                    del self.hists[key]

    def _publish(self) -> Published:
        events = dict(self.series)
        blank = ("",) * (len(self.labels) - 2)
        for code, n in enumerate(self.overflow):
            if n:
                events[(OVERFLOW,) + blank + (EVENT_NAMES[code],)] = n
        moved = {group: tuple(rw) for group, rw in self.moved.items()}
        if any(self.moved_overflow):
            moved[(OVERFLOW,) + blank] = tuple(self.moved_overflow)
        return Published(info=self.info, events=events, folded_cgroups=self.folded_cgroups, lost=self.lost,
                         uncounted=tuple(self.uncounted), tracked=self.tracked,
                         cgroup_changes=dict(self.cgroup_changes), moved=moved,
                         hists={key: (tuple(b), s) for key, (b, s) in self.hists.items()})
