"""A saved `fstrace trace --json` file, read back as the counts a live report makes.

`fstrace report --from FILE` reads the JSON Lines records of a trace (the
record contract: start, event, cgroup, lost, summary; man fstrace, JSON
RECORDS) and folds its events into model.Ticks the way the kernel's counters
and the session would have: one entry per (cgroup, file, process, errno), one
Tick per interval of the trace's own clock (a quarter second for the first
15 s, then a second, as a live report ticks), cgroup records as cgroup
changes, lost records as loss.  A sink (views/report.ReportSink) takes them
exactly as it takes the live session's, so the report code is shared.

What the trace did not record is kept in TraceInfo and said in the report:
the events it left out (trace leaves out access and modify unless asked),
failed operations (recorded only with trace --failed), lost records, and a
trace that ended without its summary record.

Bad input, as a user would expect it:
  not JSON Lines, an empty file,    one line on stderr, exit 65, nothing read
  a report --json document, a
  damaged line in the middle, a
  record of a newer version
  a last line cut off (the trace    a warning, and the report of every record
  was killed, the disk filled up)   before it
  no summary record / no start      a warning and a note in the report
  record types or events this       skipped, with one warning that counts them
  version does not know
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

from bpftools.abi import EVENT_CODES, EVENT_NAMES, HIST_BUCKETS, LAT_SLOTS, TIMED_EVENTS, Hist, bucket_of
from bpftools.cgroups.map import CgroupChange
from bpftools.cgroups.select import glob_selects, unknown_path, within
from bpftools.errors import BadInput
from bpftools.model import EV_COUNT, MAX_REPORT_ENTRIES, NO_FILE, OTHER_FILE, Aggregator, Entry, Tick, group_rows
from bpftools.model import diff as mdiff

RECORD_VERSION = 1          # of the records this fstrace writes and reads; a start record without one: 1
FAST_TICK_S = 15.0          # as views/report.py: quarter-second ticks until then, one-second ticks after
FAST_INTERVAL = 0.25
SLOW_INTERVAL = 1.0
_EXEC = EVENT_CODES["exec"]
_ACCESS, _MODIFY = EVENT_CODES["access"], EVENT_CODES["modify"]
MAX_PATHS = MAX_REPORT_ENTRIES  # distinct paths kept apart (memory); events on others count as "(other files)"


@dataclass
class TraceInfo:
    """What a trace file says about itself, and what it did not record."""

    name: str                               # as the user named it ("-": standard input)
    version: int = RECORD_VERSION
    backend: str = "?"
    kernel: str = "?"
    events: tuple[str, ...] | None = None   # traced events; None: no start record says
    failed: bool | None = None              # failed operations traced; None: the start record does not say
    bytes: bool | None = None               # access/modify events carry bytes; None: the start record does not say
    latency: bool | None = None             # timed events carry latency_us; None: the start record does not say
    command: tuple[str, ...] = ()
    command_cgroup: str | None = None
    exit_status: int | None = None          # the command's, from the summary record
    filters: tuple[str, ...] = ()           # the trace's own filters, as options ("--cgroup x")
    start: float | None = None
    end: float | None = None
    lost: int = 0                           # records the ring buffer had no room for
    records: int = 0
    event_records: int = 0                  # read, before filters
    failed_seen: int = 0                    # failed operations among them
    starts: int = 0
    complete: bool = False                  # a summary record closed the trace
    truncated: bool = False                 # the last line was cut off
    interrupted: int = 0                    # Ctrl-C stopped the reading after this line
    other_files: int = 0                    # events on paths beyond MAX_PATHS
    unknown: dict[str, int] = field(default_factory=dict)   # skipped record types / events -> how many
    warnings: list[str] = field(default_factory=list)

    def not_recorded(self, asked: tuple[str, ...] | None = None) -> list[str]:
        """Sentences for the report: what is missing from its counts, and why (empty: nothing)."""
        out = []
        wanted = asked or EVENT_NAMES
        if self.events is None:
            out.append("which events were traced is unknown (the trace has no start record)")
        else:
            missing = [e for e in wanted if e not in self.events]
            if missing:
                out.append("not traced, so not counted: %s (trace -e all records every event)" % ", ".join(missing))
        if self.failed is False:
            out.append("failed operations were not traced (trace --failed records them)")
        elif self.failed is None and not self.failed_seen:
            out.append("failed operations are counted only if the trace ran with --failed; this one does not say")
        if self.lost:
            out.append("%d records were lost by the trace (its ring buffer was full): the counts are short"
                       % self.lost)
        if self.interrupted:
            out.append("the reading was interrupted: counted up to line %d of the trace" % self.interrupted)
        elif self.truncated:
            out.append("the trace's last line was cut off: counted up to the line before it")
        elif not self.complete:
            out.append("the trace has no summary record (it was cut short): counted up to its last record")
        if self.other_files:
            out.append("the trace names more than %d files: %d events on the others are counted as "
                       "\"(other files)\"" % (MAX_PATHS, self.other_files))
        if self.starts > 1:
            out.append("the file holds %d traces one after the other: counted together" % self.starts)
        return out

    def source_record(self, asked: tuple[str, ...] | None = None) -> dict:
        """The report's "source" object (REPORT JSON)."""
        wanted = asked or EVENT_NAMES
        return {
            "file": self.name, "kind": "trace", "records": self.records, "events_read": self.event_records,
            "events_traced": list(self.events) if self.events is not None else None,
            "events_missing": [e for e in wanted if e not in self.events] if self.events is not None else None,
            "failed_traced": self.failed if self.failed is not None else (True if self.failed_seen else None),
            "lost": self.lost, "complete": self.complete and not self.truncated and not self.interrupted,
            "trace_filters": list(self.filters),
        }


@dataclass(frozen=True)
class ReplayFilter:
    """report's filters, applied to recorded events (live, the kernel and the session apply them)."""

    events: tuple[str, ...] | None = None
    pids: tuple[int, ...] = ()
    comms: tuple[str, ...] = ()
    cgroup_paths: tuple[str, ...] = ()      # subtrees, "/a/b"
    cgroup_ids: tuple[int, ...] = ()        # subtrees, by the id of their top
    cgroup_globs: tuple[str, ...] = ()      # "system.slice/*.service": the path or an ancestor matches
    path_prefixes: tuple[str, ...] = ()     # absolute, normalised

    @property
    def cgroups(self) -> bool:
        return bool(self.cgroup_paths or self.cgroup_ids or self.cgroup_globs)


def path_selected(path: str | None, prefixes) -> bool:
    return path is not None and any(within(path, p) for p in prefixes)


# --- reading ------------------------------------------------------------------------------
def read_records(stream, info: TraceInfo):
    """(line number, record) for each line of a binary stream of JSON Lines; BadInput on bad input.

    A last line that is cut off ends the records with a warning (info.truncated).
    """
    name = info.name
    lineno = 0
    for raw in stream:
        lineno += 1
        if lineno == 1:
            _check_first_line(raw, name)
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except (ValueError, RecursionError) as e:
            if not raw.endswith(b"\n") and lineno > 1:
                info.truncated = True
                info.warnings.append("%s: line %d is cut off (the trace did not end cleanly); "
                                     "reading the %d lines before it" % (name, lineno, lineno - 1))
                return
            if lineno == 1:
                raise BadInput("%s is not JSON Lines (line 1: %s), not what `fstrace trace --json` writes"
                               % (name, _reason(e))) from None
            raise BadInput("%s:%d: not a JSON record (%s)" % (name, lineno, _reason(e))) from None
        if not isinstance(rec, dict) or not isinstance(rec.get("type"), str):
            if lineno == 1:
                raise BadInput("%s is not a trace: line 1 is JSON but not a record with a \"type\", not what "
                               "`fstrace trace --json` writes" % name)
            raise BadInput("%s:%d: not a trace record (a JSON object with a \"type\")" % (name, lineno))
        if lineno == 1 and rec["type"] == "report":
            raise BadInput("%s is a report --json document; --from reads a trace (`fstrace trace --json`), "
                           "--diff compares reports" % name)
        yield lineno, rec
    if lineno == 0:
        raise BadInput("%s is empty: no trace records" % name)


def _check_first_line(raw: bytes, name: str) -> None:
    if raw[:2] == b"\x1f\x8b":
        raise BadInput("%s is gzip-compressed: try  zcat %s | fstrace report --from -" % (name, name))
    if raw.strip() in (b"{", b"["):
        raise BadInput("%s is one JSON document, not JSON Lines (a report --json document? "
                       "--diff compares those; --from reads `fstrace trace --json` output)" % name)


def _reason(e: Exception) -> str:
    if isinstance(e, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(e, RecursionError):
        return "nested too deep"
    return str(e).split(":")[0]


# --- folding --------------------------------------------------------------------------------
class Folder:
    """Events in, one Tick per interval out: the kernel's counting and the session's naming, replayed."""

    def __init__(self, info: TraceInfo, filters: ReplayFilter = ReplayFilter(), sink=None):
        self.info = info
        self.filters = filters
        self.sink = sink
        self.t0: float | None = None            # the trace's start: tick boundaries count from here
        self.bucket_start = 0.0                 # the tick being filled
        self.bucket_end = 0.0
        # (cgroup id, file key, pid, err) -> [counts, comm, read, written, ns per slot, timed per slot]
        self.acc: dict[tuple, list] = {}
        self.hists: dict[tuple[int, int], list] = {}    # (cgroup id, event code) -> [buckets, sum ns, max ns]
        self.pending_lost = 0
        self.path_keys: dict[str, int] = {}     # path -> file key (1, 2, ...; NO_FILE: no path)
        self.key_paths: list[str | None] = [None]   # file key -> path
        self.cgroup_paths: dict[int, str] = {}  # cgroup id -> path, from events and cgroup records
        self._wanted_cgroups: dict[int, bool] = {}
        self.ticks = 0

    # the interval schedule of a live report, on the trace's clock
    def _next_end(self, after: float) -> float:
        """The first tick boundary after a time."""
        elapsed = after - self.t0
        if elapsed < FAST_TICK_S:
            return self.t0 + (int(elapsed / FAST_INTERVAL) + 1) * FAST_INTERVAL
        return self.t0 + FAST_TICK_S + (int((elapsed - FAST_TICK_S) / SLOW_INTERVAL) + 1) * SLOW_INTERVAL

    def _interval(self, end: float) -> float:
        """The length of the tick that ends at a boundary."""
        return FAST_INTERVAL if end - self.t0 <= FAST_TICK_S + 1e-9 else SLOW_INTERVAL

    def _advance(self, ts: float) -> None:
        """Close the ticks that end at or before ts; a quiet stretch becomes one empty tick."""
        if self.t0 is None:
            self.t0 = ts
            self.bucket_start, self.bucket_end = ts, self._next_end(ts)
            return
        if ts < self.bucket_end:
            return
        self._emit(self.bucket_start, self.bucket_end)
        end = self._next_end(ts)
        start = end - self._interval(end)
        if start > self.bucket_end + 1e-9:
            self._emit(self.bucket_end, start)
        self.bucket_start, self.bucket_end = max(start, self.bucket_end), end

    def _emit(self, start: float, end: float) -> None:
        entries, files, cgroups = [], {}, {}
        for (cgid, key, pid, err), (counts, comm, rb, wb, ns, timed) in self.acc.items():
            entries.append(Entry(cgid, key, pid, err, comm, tuple(counts), rb, wb, tuple(ns), tuple(timed)))
            if key > 0:
                files[key] = self.key_paths[key]
            cgroups[cgid] = self.cgroup_paths.get(cgid) or unknown_path(cgid)
        hists = [Hist(cgid, op, tuple(b), s, m) for (cgid, op), (b, s, m) in self.hists.items()]
        for h in hists:
            cgroups.setdefault(h.cgroup_id, self.cgroup_paths.get(h.cgroup_id) or unknown_path(h.cgroup_id))
        tick = Tick(ts=end, elapsed=max(0.0, end - start), entries=entries, cgroups=cgroups,
                    files=files, lost=self.pending_lost, hists=hists)
        self.acc = {}
        self.hists = {}
        self.pending_lost = 0
        self.ticks += 1
        if self.sink is not None:
            self.sink.counts(tick)

    # --- records ----------------------------------------------------------------------
    def start(self, rec: dict, lineno: int) -> None:
        info = self.info
        version = rec.get("version", 1)
        if not isinstance(version, int) or version > RECORD_VERSION:
            raise BadInput("%s:%d: a trace of record version %s, written by a newer fstrace; this one "
                           "reads version %d" % (info.name, lineno, version, RECORD_VERSION))
        info.starts += 1
        if info.starts > 1:
            return
        info.version = version
        info.backend = str(rec.get("backend") or "?")
        info.kernel = str(rec.get("kernel") or "?")
        evs = rec.get("events")
        if isinstance(evs, list):
            info.events = tuple(e for e in EVENT_NAMES if e in evs)
        if isinstance(rec.get("failed"), bool):
            info.failed = rec["failed"]
        if isinstance(rec.get("bytes"), bool):
            info.bytes = rec["bytes"]
        if isinstance(rec.get("latency"), bool):
            info.latency = rec["latency"]
        if isinstance(rec.get("command"), list):
            info.command = tuple(str(a) for a in rec["command"])
        if isinstance(rec.get("command_cgroup"), str):
            info.command_cgroup = rec["command_cgroup"]
        filters = rec.get("filters") if isinstance(rec.get("filters"), dict) else {}
        words = []
        if filters.get("pids"):
            words.append("--pid %s" % ",".join(str(p) for p in filters["pids"]))
        words += ["--comm %s" % c for c in filters.get("comms") or ()]
        words += ["--cgroup %s" % c for c in filters.get("cgroups") or ()]
        words += ["--container %s" % c for c in filters.get("containers") or ()]
        words += ["--pod %s" % p for p in filters.get("pods") or ()]
        info.filters = tuple(words)
        ts = _number(rec.get("ts"))
        if ts is not None:
            info.start = ts
            if self.t0 is None:
                self._advance(ts)

    def event(self, rec: dict, lineno: int) -> None:
        info = self.info
        name = rec.get("event")
        code = EVENT_CODES.get(name) if isinstance(name, str) else None
        if code is None:
            if not isinstance(name, str):
                raise BadInput("%s:%d: an event record without an event name" % (info.name, lineno))
            key = "event %r" % name
            info.unknown[key] = info.unknown.get(key, 0) + 1
            return
        ts, pid, cgid = _number(rec.get("ts")), rec.get("pid"), rec.get("cgroup_id")
        if ts is None or not isinstance(pid, int) or not isinstance(cgid, int):
            raise BadInput("%s:%d: an event record without a number in ts, pid or cgroup_id"
                           % (info.name, lineno))
        info.event_records += 1
        ret = rec.get("ret")
        err = -ret if isinstance(ret, int) and ret < 0 else 0
        if err:
            info.failed_seen += 1
        cgroup = rec.get("cgroup")
        if isinstance(cgroup, str):
            self.cgroup_paths[cgid] = cgroup
        if info.start is None:
            info.start = ts
        info.end = ts if info.end is None else max(info.end, ts)
        self._advance(ts)
        path = rec.get("path") if isinstance(rec.get("path"), str) else None
        comm = rec.get("comm") if isinstance(rec.get("comm"), str) else ""
        if not self._wanted(name, pid, comm, cgid, path):
            return
        key = NO_FILE
        if path is not None:
            key = self.path_keys.get(path)
            if key is None:
                if len(self.key_paths) > MAX_PATHS:     # as a live report: the rest are "(other files)"
                    key = OTHER_FILE
                    self.info.other_files += 1
                else:
                    key = self.path_keys[path] = len(self.key_paths)
                    self.key_paths.append(path)
        k = (cgid, key, pid, err)
        a = self.acc.get(k)
        raw_comm = comm.encode("utf-8", "surrogateescape")
        if a is None:
            a = self.acc[k] = [[0] * EV_COUNT, raw_comm, 0, 0, [0] * LAT_SLOTS, [0] * LAT_SLOTS]
        a[0][code] += 1
        lat = _number(rec.get("latency_us"))    # timed events: the syscall's time, as the kernel measured it
        if lat is not None and lat > 0 and name in TIMED_EVENTS:
            ns = round(lat * 1000)
            slot = TIMED_EVENTS.index(name)
            a[4][slot] += ns
            a[5][slot] += 1
            h = self.hists.get((cgid, code))
            if h is None:
                h = self.hists[(cgid, code)] = [[0] * HIST_BUCKETS, 0, 0]
            h[0][bucket_of(ns)] += 1
            h[1] += ns
            h[2] = max(h[2], ns)
        moved = rec.get("bytes")        # access and modify: the bytes the syscall moved
        if isinstance(moved, int) and moved > 0 and (code == _ACCESS or code == _MODIFY):
            a[2 if code == _ACCESS else 3] += moved
        if code == _EXEC:               # as the kernel does: the name after an exec
            a[1] = raw_comm

    def _wanted(self, name: str, pid: int, comm: str, cgid: int, path: str | None) -> bool:
        f = self.filters
        if f.events is not None and name not in f.events:
            return False
        if f.pids and pid not in f.pids:
            return False
        if f.comms and comm not in f.comms:
            return False
        if f.cgroups and not self._cgroup_wanted(cgid):
            return False
        if f.path_prefixes and not path_selected(path, f.path_prefixes):
            return False
        return True

    def _cgroup_wanted(self, cgid: int, path: str | None = None) -> bool:
        if path is None:
            hit = self._wanted_cgroups.get(cgid)
            if hit is not None:
                return hit
            path = self.cgroup_paths.get(cgid)
        f = self.filters
        subtrees = list(f.cgroup_paths) + [self.cgroup_paths[i] for i in f.cgroup_ids if i in self.cgroup_paths]
        hit = cgid in f.cgroup_ids or path is not None and (
            any(within(path, sub) for sub in subtrees) or any(glob_selects(g, path) for g in f.cgroup_globs))
        self._wanted_cgroups[cgid] = hit
        return hit

    def cgroup(self, rec: dict, lineno: int) -> None:
        action, cgid, path, ts = rec.get("action"), rec.get("id"), rec.get("path"), _number(rec.get("ts"))
        if action not in ("mkdir", "rmdir") or not isinstance(cgid, int) or not isinstance(path, str) or ts is None:
            raise BadInput("%s:%d: a cgroup record without action, id, path and ts" % (self.info.name, lineno))
        self.cgroup_paths.setdefault(cgid, path)
        self._wanted_cgroups.pop(cgid, None)
        if self.filters.cgroups and not self._cgroup_wanted(cgid, path):
            return
        if self.sink is not None:
            self.sink.cgroup(CgroupChange(action, cgid, path, ts, "trace"))

    def lost(self, rec: dict, lineno: int) -> None:
        count = rec.get("count")
        if not isinstance(count, int) or count < 0:
            raise BadInput("%s:%d: a lost record without a count" % (self.info.name, lineno))
        self.info.lost += count
        self.pending_lost += count
        ts = _number(rec.get("ts"))
        if ts is not None and self.t0 is not None:
            self._advance(ts)

    def summary(self, rec: dict, lineno: int) -> None:
        info = self.info
        info.complete = True
        if isinstance(rec.get("exit_status"), int) and not isinstance(rec.get("exit_status"), bool):
            info.exit_status = rec["exit_status"]
        lost = rec.get("lost")
        if isinstance(lost, int) and lost > info.lost:       # the summary's total is the authority
            self.pending_lost += lost - info.lost
            info.lost = lost
        ts = _number(rec.get("ts"))
        if ts is not None:
            info.end = ts if info.end is None else max(info.end, ts)

    def finish(self) -> None:
        """The last tick: up to the summary (or the last record)."""
        end = self.info.end
        if self.t0 is None:
            if end is None:             # not one timed record
                return
            self._advance(end)
        end = max(end if end is not None else self.bucket_start, self.bucket_start)
        self._advance(end)
        if self.acc or self.pending_lost or end > self.bucket_start or not self.ticks:
            self._emit(self.bucket_start, end)


def _number(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def replay(stream, name: str, sink, filters: ReplayFilter = ReplayFilter()) -> TraceInfo:
    """Read a trace from a binary stream and hand sink what a live session would: cgroup changes, Ticks.

    Returns what the trace said about itself; raises BadInput on input that is not a trace.
    """
    info = TraceInfo(name)
    folder = Folder(info, filters, sink)
    handlers = {"start": folder.start, "event": folder.event, "cgroup": folder.cgroup, "lost": folder.lost,
                "summary": folder.summary}
    lineno = 0
    try:
        for lineno, rec in read_records(stream, info):
            info.records += 1
            handler = handlers.get(rec["type"])
            if handler is None:
                key = "record %r" % rec["type"]
                info.unknown[key] = info.unknown.get(key, 0) + 1
                continue
            handler(rec, lineno)
    except KeyboardInterrupt:           # as a live report: Ctrl-C ends the counting, the report follows
        info.interrupted = lineno
        info.warnings.append("%s: interrupted after line %d; reporting what was read" % (name, lineno))
    folder.finish()
    if info.unknown:
        info.warnings.append("%s: skipped what this fstrace does not know (a newer trace?): %s" % (
            name, ", ".join("%s x%d" % kv for kv in sorted(info.unknown.items()))))
    if info.starts == 0:
        info.warnings.append("%s: no start record: which events were traced is unknown" % name)
    if not info.complete and not info.truncated and not info.interrupted:
        info.warnings.append("%s: no summary record: the trace did not end cleanly" % name)
    return info


# --- one side of a diff --------------------------------------------------------------------
def open_input(name: str):
    """A binary stream for a file name ("-": standard input); BadInput when it cannot be read."""
    if name == "-":
        return sys.stdin.buffer
    try:
        return open(name, "rb")
    except OSError as e:
        raise BadInput("cannot read %s: %s" % (name, e.strerror)) from None


def count_trace(stream, name: str, filters: ReplayFilter = ReplayFilter()):
    """A trace folded into a cumulative model.Aggregator: (aggregator, TraceInfo)."""
    class _Sink:
        def __init__(self):
            self.agg = Aggregator(cumulative=True)

        def cgroup(self, change) -> None:
            self.agg.cgroup_change(change.action, change.id, change.path, change.ts)

        def counts(self, tick) -> None:
            self.agg.add(tick)

    sink = _Sink()
    info = replay(stream, name, sink, filters)
    return sink.agg, info


def load_side(name: str):
    """One side of report --diff: a report --json document or a trace --json file, told apart by content.

    Returns (model.diff.Side, warnings).
    """
    stream = open_input(name)
    try:
        first = stream.readline()
        rest = stream.read() if _is_document(first) else None
        if rest is not None:
            try:
                doc = json.loads(first + rest)
            except (ValueError, RecursionError) as e:
                raise BadInput("%s is not a report --json document (%s)" % (name, _reason(e))) from None
            try:
                return mdiff.side_from_document(doc, name), []
            except mdiff.DiffInputError as e:
                raise BadInput("%s: %s" % (name, e)) from None
        agg, info = count_trace(_Prepend(first, stream), name)
    finally:
        if name != "-":
            stream.close()
    entries = agg.entries()
    rows = {t: group_rows(entries, t, agg.cgroups, agg.files) for t in mdiff.TABLES}
    totals, failed = agg.run_totals()
    failed_recorded = info.failed if info.failed is not None else (True if info.failed_seen else None)
    side = mdiff.side_from_rows(name, rows, totals, failed, kind="trace",
                                events=info.events if info.events is not None else EVENT_NAMES,
                                lost=info.lost, command=info.command, notes=tuple(info.not_recorded()),
                                failed_recorded=failed_recorded)
    return side, info.warnings


def _is_document(first: bytes) -> bool:
    """Is this the first line of a report --json document (indented, or compacted to one line)?"""
    line = first.strip()
    if line in (b"{", b"["):
        return True
    if line.startswith(b"{"):
        try:
            rec = json.loads(line)
        except ValueError:
            return False
        return isinstance(rec, dict) and rec.get("type") == "report"
    return False


class _Prepend:
    """A line read already, then the rest of a stream: iterates by line like the stream."""

    def __init__(self, first: bytes, stream):
        self.first = first
        self.stream = stream

    def __iter__(self):
        if self.first:
            yield self.first
        yield from self.stream
