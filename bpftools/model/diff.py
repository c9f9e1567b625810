"""`fstrace report --diff`: what changed between two runs, per cgroup, process name and file.

Pure: each side comes in as a Side (made from a report --json document by
side_from_document, or from model rows by side_from_rows, which a replayed
trace gives), and diff() returns the rows that differ, sorted by the size of
the change.

Runs of one command compare as runs of one command:
  * a command's transient cgroup (/fstrace-run-<pid>-<hex>, or on a systemd
    host its scope /system.slice/fstrace-run-<pid>-<hex>.scope) is the same
    cgroup on both sides, COMMAND_CGROUP (COMMAND_SCOPE), and so are the
    cgroups below it;
  * processes compare by name (all processes of one name summed), not by pid;
  * file paths can be rewritten with PathMaps (--map OLD=NEW): a per-run
    temporary directory on one side is read as the other side's.
Only the events both sides recorded are compared (a trace leaves out access
and modify unless asked); the others are named in Diff.notes.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

from bpftools.abi import EVENT_CODES, EVENT_NAMES, parse_events
from bpftools.cgroups.select import within

EV_COUNT = len(EVENT_NAMES)
TABLES = ("cgroup", "process", "file")
RUN_CGROUP = re.compile(r"^/fstrace-run-\d+-[0-9a-f]+(?=/|$)")
COMMAND_CGROUP = "/fstrace-run-*"
RUN_SCOPE = re.compile(r"^/system\.slice/fstrace-run-\d+-[0-9a-f]+\.scope(?=/|$)")
COMMAND_SCOPE = "/system.slice/fstrace-run-*.scope"
STATUSES = ("new", "vanished", "changed")


class DiffInputError(ValueError):
    """A document that cannot be one side of a diff."""


@dataclass
class Counts:
    """One row of one side: successes per EVENT_NAMES, failures, and how many rows of the source it sums."""

    events: list[int]
    failed: int = 0
    rows: int = 1


@dataclass
class Side:
    name: str                                   # the file, as the user named it
    kind: str                                   # "report" or "trace"
    tables: dict[str, dict[str, Counts]]        # table -> key (cgroup path, process name, file path) -> Counts
    totals: list[int]
    failed: int = 0
    top: int = 0                                # rows per table the source kept (0: all)
    events: tuple[str, ...] = EVENT_NAMES       # the events it recorded
    lost: int = 0
    command: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()                 # what its source said it did not record
    failed_recorded: bool | None = True         # False: failed operations were not recorded
    filters: tuple[str, ...] = ()               # a report's filters (--path /srv, ...), as its scope says


@dataclass(frozen=True)
class PathMap:
    """--map OLD=NEW: a path prefix rewritten before paths are compared.

    A plain OLD rewrites BEFORE's paths only (BEFORE's /tmp/tmp.AbC is
    AFTER's /tmp/tmp.XyZ).  An OLD with a glob (*, ?, [..]) rewrites both
    sides: every path whose leading components match it gets NEW instead
    (/tmp/tmp.*=/tmp/TMP).  Whole components only: /tmp/a does not match
    /tmp/ab.  The first map that matches a path wins.
    """

    old: str
    new: str

    @property
    def glob(self) -> bool:
        return any(c in self.old for c in "*?[")

    def apply(self, path: str, side: str) -> str | None:
        """The rewritten path, or None when this map does not touch it (side: "before" or "after")."""
        if not self.glob:
            if side != "before" or not within(path, self.old):
                return None
            return (self.new.rstrip("/") + path[len(self.old.rstrip("/")):]) or "/"
        want = [p for p in self.old.split("/") if p]
        have = path.split("/")[1:] if path.startswith("/") else None
        if have is None or len(have) < len(want):
            return None
        if all(fnmatch.fnmatchcase(h, w) for h, w in zip(have, want)):
            rest = have[len(want):]
            return "/".join([self.new.rstrip("/")] + rest) if rest else (self.new.rstrip("/") or "/")
        return None


def parse_map(spec: str) -> PathMap:
    """"OLD=NEW" (both absolute) -> PathMap; ValueError with a sentence for the user."""
    old, sep, new = spec.partition("=")
    if not sep or not old.startswith("/") or not new.startswith("/"):
        raise ValueError("bad --map %r: give OLD=NEW, two absolute paths, e.g. --map /tmp/run.1=/tmp/run.2" % spec)
    return PathMap(old, new)


def map_path(path: str, maps, side: str) -> str:
    for m in maps:
        out = m.apply(path, side)
        if out is not None:
            return out
    return path


def command_cgroup(path: str) -> str:
    """A command's transient cgroup or scope (and those below it) under one name for every run."""
    return RUN_SCOPE.sub(COMMAND_SCOPE, RUN_CGROUP.sub(COMMAND_CGROUP, path, count=1), count=1)


def _events_list(events) -> list[int]:
    """A report row's events dict -> counts per EVENT_NAMES (names this version does not know are dropped)."""
    if not isinstance(events, dict):
        raise DiffInputError("a row without an events object")
    out = [0] * EV_COUNT
    for name, n in events.items():
        code = EVENT_CODES.get(name)
        if code is not None:
            if not isinstance(n, int):
                raise DiffInputError("a row whose %s count is not a number" % name)
            out[code] = n
    return out


def _add(table: dict[str, Counts], key: str, events: list[int], failed: int) -> None:
    c = table.get(key)
    if c is None:
        table[key] = Counts(list(events), failed)
    else:
        c.events = [a + b for a, b in zip(c.events, events)]
        c.failed += failed
        c.rows += 1


def side_from_document(doc: dict, name: str) -> Side:
    """A `report --json` document as one side; DiffInputError when it is not one this version reads."""
    if not isinstance(doc, dict) or doc.get("type") != "report":
        raise DiffInputError("not a report --json document")
    version = doc.get("version")
    if not isinstance(version, int) or version > 1:
        raise DiffInputError("a report document of version %s, written by a newer fstrace; this one reads "
                             "version 1" % version)
    try:
        tables: dict[str, dict[str, Counts]] = {t: {} for t in TABLES}
        for r in doc["cgroups"]:
            _add(tables["cgroup"], command_cgroup(r["path"]), _events_list(r["events"]), int(r.get("failed", 0)))
        for r in doc["processes"]:
            _add(tables["process"], str(r["comm"]), _events_list(r["events"]), int(r.get("failed", 0)))
        for r in doc["files"]:
            _add(tables["file"], r["path"], _events_list(r["events"]), int(r.get("failed", 0)))
        totals = doc["totals"]
        by_event = _events_list(totals["by_event"])
        scope = doc.get("scope") or {}
        events = EVENT_NAMES
        for word in scope.get("filters") or ():
            if isinstance(word, str) and word.startswith("-e "):
                events = parse_events(word[3:])
        source = doc.get("source") or {}
        if source.get("events_traced") is not None:
            events = tuple(e for e in events if e in source["events_traced"])
        return Side(name, "report", tables, by_event, int(totals.get("failed", 0)), int(doc.get("top") or 0),
                    events, int(totals.get("lost", 0)), tuple(scope.get("command") or ()),
                    tuple(doc.get("notes") or ()), source.get("failed_traced", True) if source else True,
                    tuple(str(w) for w in scope.get("filters") or ()))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        if isinstance(e, DiffInputError):
            raise
        raise DiffInputError("a report document without the keys of version 1 (%s)" % e) from None


def side_from_rows(name: str, rows: dict[str, list], totals: list[int], failed: int, *, kind: str = "trace",
                   events: tuple[str, ...] = EVENT_NAMES, lost: int = 0, command: tuple[str, ...] = (),
                   notes: tuple[str, ...] = (), failed_recorded: bool | None = True) -> Side:
    """model Rows ("cgroup", "process", "file" -> rows of model.group_rows) as one side."""
    tables: dict[str, dict[str, Counts]] = {t: {} for t in TABLES}
    for r in rows.get("cgroup", ()):
        _add(tables["cgroup"], command_cgroup(r.key), list(r.extra["own"]), r.extra["own_failed"])
    for r in rows.get("process", ()):
        _add(tables["process"], r.comm or "", list(r.counts), r.failed)
    for r in rows.get("file", ()):
        _add(tables["file"], r.key, list(r.counts), r.failed)
    return Side(name, kind, tables, list(totals), failed, 0, events, lost, command, notes, failed_recorded)


# --- the diff ---------------------------------------------------------------------------
@dataclass
class DiffRow:
    table: str
    key: str
    before: list[int] | None            # None: absent on that side
    after: list[int] | None
    failed_before: int | None = None
    failed_after: int | None = None
    rows_before: int = 0                # processes: how many of that name
    rows_after: int = 0

    @property
    def status(self) -> str:
        if self.before is None:
            return "new"
        if self.after is None:
            return "vanished"
        return "changed" if any(self.delta()) or self.failed_before != self.failed_after else "same"

    def delta(self) -> list[int]:
        b = self.before or [0] * EV_COUNT
        a = self.after or [0] * EV_COUNT
        return [y - x for x, y in zip(b, a)]

    @property
    def change(self) -> int:
        """The size of the change: every event and failure that differs, counted once."""
        return sum(abs(d) for d in self.delta()) + abs((self.failed_after or 0) - (self.failed_before or 0))

    @property
    def total_before(self) -> int | None:
        return None if self.before is None else sum(self.before)

    @property
    def total_after(self) -> int | None:
        return None if self.after is None else sum(self.after)


@dataclass
class Diff:
    before: Side
    after: Side
    events: tuple[str, ...]                     # compared: recorded on both sides
    tables: dict[str, list[DiffRow]]            # table -> rows that differ, largest change first
    unchanged: dict[str, int]                   # table -> rows equal on both sides
    totals_before: list[int]
    totals_after: list[int]
    maps: tuple[PathMap, ...] = ()
    notes: list[str] = field(default_factory=list)

    def counts(self, table: str) -> dict[str, int]:
        out = {s: 0 for s in STATUSES}
        for r in self.tables[table]:
            out[r.status] += 1
        return out


def _mask(events: list[int], keep: list[bool]) -> list[int]:
    return [n if k else 0 for n, k in zip(events, keep)]


def _rekey(table: dict[str, Counts], name: str, maps, side: str, keep: list[bool], failed: bool
           ) -> dict[str, Counts]:
    """A side's table as compared: paths mapped, events masked, rows left with nothing dropped."""
    out: dict[str, Counts] = {}
    for key, c in table.items():
        events, nfailed = _mask(c.events, keep), c.failed if failed else 0
        if not any(events) and not nfailed:
            continue
        k = map_path(key, maps, side) if name == "file" and maps else key
        if k in out:
            _add(out, k, events, nfailed)
            out[k].rows += c.rows - 1
        else:
            out[k] = Counts(events, nfailed, c.rows)
    return out


def _filter_text(filters: tuple[str, ...]) -> str:
    return "with " + " ".join(filters) if filters else "without filters"


def diff(before: Side, after: Side, maps: tuple[PathMap, ...] = ()) -> Diff:
    """The rows that differ between two sides, per table, the largest change first (ties: by key)."""
    events = tuple(e for e in EVENT_NAMES if e in before.events and e in after.events)
    keep = [e in events for e in EVENT_NAMES]
    notes = []
    left_out = [e for e in EVENT_NAMES if e not in events]
    if left_out and len(left_out) < EV_COUNT:
        notes.append("not compared, not recorded on both sides: %s" % ", ".join(left_out))
    for label, side in (("BEFORE", before), ("AFTER", after)):
        if side.top:
            notes.append("%s (%s) holds only its top %d rows per table (report --top 0 keeps all): a row "
                         "missing from it may be below that cut" % (label, side.name, side.top))
        if side.lost:
            notes.append("%s (%s) lost %d records: its counts are short" % (label, side.name, side.lost))
        notes += ["%s (%s): %s" % (label, side.name, n) for n in side.notes]
    if before.filters != after.filters:
        notes.append("BEFORE (%s) counted %s, AFTER (%s) %s: what only one of them counted compares as new or "
                     "vanished" % (before.name, _filter_text(before.filters), after.name,
                                   _filter_text(after.filters)))
    failed = before.failed_recorded is not False and after.failed_recorded is not False
    if not failed:
        notes.append("failed operations not compared: %s did not record them"
                     % (before.name if before.failed_recorded is False else after.name))
    tables, unchanged = {}, {}
    for t in TABLES:
        b = _rekey(before.tables.get(t, {}), t, maps, "before", keep, failed)
        a = _rekey(after.tables.get(t, {}), t, maps, "after", keep, failed)
        rows, same = [], 0
        for key in sorted(set(b) | set(a)):
            cb, ca = b.get(key), a.get(key)
            row = DiffRow(t, key, cb.events if cb else None, ca.events if ca else None,
                          cb.failed if cb else None, ca.failed if ca else None,
                          cb.rows if cb else 0, ca.rows if ca else 0)
            if row.status == "same":
                same += 1
            else:
                rows.append(row)
        rows.sort(key=lambda r: -r.change)      # stable: keys stay sorted among equal changes
        tables[t] = rows
        unchanged[t] = same
    return Diff(before, after, events, tables, unchanged, _mask(before.totals, keep), _mask(after.totals, keep),
                tuple(maps), notes)
