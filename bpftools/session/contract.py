"""What a session promises its sinks, and what a user chose: the session layer's contract.

A sink is a view (views/text.py, views/jsonl.py, views/top.py,
views/report.py) or the exporter (export/prometheus.py).  Streaming sinks
get every FileEvent; counting sinks get one model.Tick per interval.  Both
kinds are written against the Protocols below; the session calls nothing
else on them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from bpftools.abi import DEFAULT_EVENTS
from bpftools.cgroups.map import CgroupChange
from bpftools.cgroups.names import Names
from bpftools.model import Tick


@dataclass(frozen=True)
class Options:
    """Everything a user chose, validated by the CLI."""

    backend: str = "auto"
    events: tuple[str, ...] = DEFAULT_EVENTS
    failed: bool = False
    pids: tuple[int, ...] = ()
    comms: tuple[str, ...] = ()
    cgroups: tuple[str, ...] = ()
    duration: float | None = None
    command: tuple[str, ...] = ()
    mounts: tuple[str, ...] = ()            # fsnotify backends: only the filesystems of these paths
    aggregate: bool = False                 # count in the kernel; the sink gets model.Ticks
    path_prefixes: tuple[str, ...] = ()     # aggregate: only files under these (absolute, normalised)
    containers: tuple[str, ...] = ()        # only these containers (name, runtime:short-id, id prefix)
    pods: tuple[str, ...] = ()              # only these Kubernetes pods (namespace/name, name, uid)
    slower_than_ns: int | None = None       # streaming: only timed operations at least this slow (in the kernel)


@dataclass(slots=True)
class FileEvent:
    """One file event as the JSON record contract (man fstrace, JSON OUTPUT) describes it."""

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
    bytes: int | None = None        # access/modify: the bytes the syscall moved; None: none, or not known
    latency_ns: int | None = None   # timed operations (abi.TIMED_SYSCALLS): the syscall's time; None: not timed


@dataclass
class StartInfo:
    """What runs: the backend, what it attached and skipped, and why the others are not used."""

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
    passed_over: tuple[str, ...] = ()                               # backends auto tried before this one
    armed: dict[str, str] = field(default_factory=dict)             # mount point -> fsnotify mark kind
    failed: bool = False                                            # failed operations traced too
    command: tuple[str, ...] = ()                                   # -- CMD
    filters: dict = field(default_factory=dict)     # "pids", "comms", "cgroups", "containers", "pods": as asked
    bytes: bool = True              # the backend knows the bytes each read and write moved
    blind_spots: list[str] = field(default_factory=list)     # what the backend cannot see
    latency: bool = True            # the backend times opens, reads, writes and syncs (latency_us)
    slower_than_ns: int | None = None   # trace --slower-than: only timed operations at least this slow


@dataclass
class Totals:
    events: int = 0
    lost: int = 0
    started: float = field(default_factory=time.monotonic)
    exit_status: int | None = None      # -- CMD's, once the run has ended


class Sink(Protocol):
    """What every sink gets, in this order: start, then cgroup changes (and events or counts), then summary."""

    def start(self, info: StartInfo, ts: float, pid: int) -> None:
        """Every probe is attached (ts: wall clock; pid: fstrace's own)."""

    def cgroup(self, change: CgroupChange) -> None:
        """A cgroup inside what is traced was created or removed (change.ts: wall clock)."""

    def flush(self) -> None:
        """Once per poll of the ring buffer (~20 times a second): write out what is buffered."""

    def summary(self, ts: float, totals: Totals, backend: str, duration: float) -> None:
        """The run has ended (not called when the reader of the output went away)."""

    def close(self) -> None:
        """Release what the sink holds (a terminal, a file); called once, last, whatever happened."""


class StreamSink(Sink, Protocol):
    """A sink of every event (fstrace trace).

    With a ``formatter`` (a bpftools.fastpath.Formatter: views/jsonl.py and
    views/text.py), the session has the ring formatted straight into it and
    calls cgroup_text() and write(); without one (None), it calls event()
    per event: the Python reference the formatter is tested against.
    """

    formatter: object | None

    def cgroup_text(self, cgroup_id: int, cgroup: str | None, names: Names) -> bytes:
        """What the formatter writes for this cgroup in each of its events (once per cgroup, or when it changes)."""

    def write(self, data) -> None:
        """Event lines as the formatter wrote them, in the order the kernel sent them per CPU."""

    def event(self, ev: FileEvent) -> None:
        """One file event (sinks without a formatter), in the order the kernel sent them per CPU."""

    def lost(self, count: int, ts: float) -> None:
        """count records the ring buffer had no room for since the last call."""


class CountSink(Sink, Protocol):
    """A sink of counts (fstrace top, report, export)."""

    interval: float            # seconds between drains of the kernel's counters
    finished: bool             # True ends the run (top -n)

    def counts(self, tick: Tick) -> None:
        """Everything counted since the last tick, named; loss is in tick.lost."""
