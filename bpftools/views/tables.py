"""Rows as rich tables and as records: what `fstrace top` and `fstrace report` share.

Pure functions of model rows; no terminal, no clock.  COLUMNS (from the
model's field table, model/fields.py) says once what each column counts:
top's help screen shows it, the man page repeats it.
"""
from __future__ import annotations

import math

from rich.cells import set_cell_size
from rich.console import Group
from rich.text import Text

from bpftools import model
from bpftools.abi import EVENT_NAMES
from bpftools.cgroups.names import display_name
from bpftools.cgroups.runtimes import named
from bpftools.escape import decode_fs, terminal_safe
from bpftools.model.fields import BY_NAME, BYTE_FIELDS, FIELDS, TIME_FIELDS
from bpftools.views.text import human_bytes, human_time, shorten_middle

SPARKS = "▁▂▃▄▅▆▇█"
NAME_MIN = 24           # the name column never gets narrower than this
NUM_WIDTH = 6
BYTES_WIDTH = 8         # "12.3 MiB"
TIME_WIDTH = 7          # "12.3 ms", "1.50 s", "105.2%"
TIME_COLS_FROM = {"time_us": 100, "avg_us": 120}    # terminal width from which each time column is shown
TREND_MAX = model.HISTORY
# Which event-class columns survive on a narrow terminal, most wanted first.
CLASS_PRIORITY = ("open", "write", "read", "create", "delete", "rename", "close", "attrib", "exec", "sync")
HEADINGS = {"cgroup": "CGROUP", "process": "PROCESS", "comm": "COMMAND", "file": "FILE", "dir": "DIRECTORY",
            "event": "EVENT"}

# column -> what it shows (top's help screen and the man page list these)
COLUMNS = tuple((f.column, f.help) for f in FIELDS) + (
    ("trend", "the row's events per second in each of the last %d ticks" % model.HISTORY),
)


def human(x: float) -> str:
    """A rate or count in at most six characters: 7, 2.5, 830, 12.4k, 3.1M."""
    if x == 0:
        return "0"
    if x < 10 and x != int(x):
        return "%.1f" % x
    if x < 10_000:
        return "%d" % round(x)
    for unit, scale in (("k", 1e3), ("M", 1e6), ("G", 1e9)):
        v = x / scale
        if v < 100:
            return "%.1f%s" % (v, unit)
        if v < 1000:
            return "%d%s" % (round(v), unit)
    return "%.0e" % x


def spark(values, width: int) -> str:
    """A sparkline of the last width values, scaled to their maximum; blank where zero."""
    values = list(values)[-width:]
    top = max(values, default=0)
    out = []
    for v in values:
        if v <= 0 or top <= 0:
            out.append(" ")
        else:
            out.append(SPARKS[min(len(SPARKS) - 1, math.ceil(v / top * len(SPARKS)) - 1)])
    return "".join(out).rjust(width)


def cgroup_name(path: str | None) -> str:
    """What a person calls a cgroup: its container, pod or unit, else its path."""
    if path is None:
        return "?"
    return display_name(path, named(path, read=False))


def name_min(width: int) -> int:
    """The narrowest the name column gets: NAME_MIN, or 30% of a wide terminal."""
    return max(NAME_MIN, width * 3 // 10)


def fit_classes(width: int, fixed: int, num_w: int = NUM_WIDTH, sort: str | None = None) -> tuple[str, ...]:
    """The event classes whose columns fit next to a name column of at least name_min().

    The sort column is always one of them: it takes the place of the least wanted one shown.
    """
    room = width - fixed - name_min(width)
    keep = list(CLASS_PRIORITY[:max(0, room // (num_w + 1))])
    if sort in model.CLASS_NAMES and sort not in keep:
        keep[-1:] = [sort]
    return tuple(c for c in model.CLASS_NAMES if c in keep)


def sort_arrow(sort: str, reverse: bool) -> str:
    """▼ when the largest (or, by name, A) comes first, ▲ when reversed: header and column agree."""
    return "▲" if reverse else "▼"


def sort_columns(by: str, failed: bool) -> tuple[str, ...]:
    """The sort keys in the order their columns stand on screen (< and > step through these)."""
    if by == "event":
        return ("name", "total") + (("failed",) if failed else ())
    return ("name",) + model.CLASS_NAMES + ("total",) + (("failed",) if failed else ())


def time_cell(row: model.Row, name: str, per: float | None) -> str:
    """A time column: avg_us as a time; time_us as a time, or with per (seconds of wall time) as a share of it."""
    if not row.timed:
        return "-"
    if name == "avg_us":
        return human_time(row.lat_ns / row.timed)
    if per:
        share = row.lat_ns / 1e9 / per * 100
        return "%.0f%%" % share if share >= 99.5 else "%.1f%%" % share
    return human_time(row.lat_ns)


def row_label(row: model.Row, width: int) -> str:
    """A row's name, safe for a terminal and shortened in the middle to width."""
    if row.group == "cgroup":
        indent = "  " * min(row.depth, 8)
        return indent + shorten_middle(terminal_safe(row.label), max(4, width - len(indent)))
    return shorten_middle(terminal_safe(row.label), width)


def _cell(text: str, width: int, right: bool) -> str:
    """text cut or padded to exactly width terminal cells."""
    return set_cell_size(text, width) if not right else text.rjust(width)[-width:]


def rows_table(rows: list[model.Row], by: str, width: int, *, per: float | None = None,
               sort: str = model.DEFAULT_SORT, reverse: bool = False, selected: int | None = None,
               trends: dict | None = None, failed: bool = False, title: str | None = None,
               empty: str | None = None, moved: bool = True, timed: bool = True) -> Group:
    """Rows as a table fitted to width: rates (shortened) when per (seconds) is given, else exact counts.

    moved: show the bytes read and written (rbytes, wbytes: per second with per, else totals).
    timed: show the time of the timed operations (time: a share of per, else a total; avg).

    Laid out here, one Text per line, column by column: a report of 10k rows
    renders in a moment, where a rich Table takes half a minute.
    """
    value = (lambda n: human(n / per)) if per else str
    num_w = NUM_WIDTH if per else max([NUM_WIDTH] + [len(str(max(r.total, r.failed))) for r in rows])
    show_trend = trends is not None
    trend_w = min(TREND_MAX, max(8, (width - 100) // 2 + 8)) if show_trend else 0
    extra_cols = []
    if by == "event":
        extra_cols = [("cgroups", 7), ("procs", 6), ("files", 6)]
    elif by == "comm":
        extra_cols = [("procs", 6)]
    elif by == "process" and width >= 100:
        extra_cols = [("parent", 7), ("cgroup", min(28, (width - 78) // 2))]
    byte_cols = BYTE_FIELDS if moved else ()
    # the time columns on a terminal wide enough; the one sorted by, always
    time_cols = tuple(f for f in TIME_FIELDS if timed and (width >= TIME_COLS_FROM[f] or f == sort))
    fixed = ((num_w + 1) * (1 + failed) + (trend_w + 1 if show_trend else 0) + sum(w + 1 for _, w in extra_cols)
             + (BYTES_WIDTH + 1) * len(byte_cols) + (TIME_WIDTH + 1) * len(time_cols))
    classes = () if by == "event" else fit_classes(width, fixed, num_w, sort)
    name_w = max(name_min(width), width - fixed - len(classes) * (num_w + 1) - 1)

    # (heading, width, right-aligned) per column
    columns = [(HEADINGS[by], name_w, False)] + [(n, w, by in ("event", "comm") or n == "parent")
                                                 for n, w in extra_cols]
    columns += [(c, num_w, True) for c in classes] + [("total", num_w, True)]
    columns += [("fail", num_w, True)] if failed else []
    columns += [(BY_NAME[f].column, BYTES_WIDTH, True) for f in byte_cols]
    columns += [(BY_NAME[f].column, TIME_WIDTH, True) for f in time_cols]
    columns += [("trend", trend_w, False)] if show_trend else []
    sorted_col = HEADINGS[by] if sort == "name" else BY_NAME[sort].column
    head = Text(no_wrap=True, overflow="crop")
    for i, (name, w, right) in enumerate(columns):
        if name == sorted_col:
            head.append(_cell(name + sort_arrow(sort, reverse), w, right), style="bold underline")
        else:
            head.append(_cell(name, w, right), style="bold")
        head.append(" " if i < len(columns) - 1 else "")
    lines = [Text(title, style="bold", no_wrap=True, overflow="ellipsis")] if title else []
    lines += [head, Text("─" * min(width, sum(w + 1 for _, w, _ in columns) - 1), style="dim")]
    for i, row in enumerate(rows):
        line = Text(no_wrap=True, overflow="crop")
        line.append(_cell(row_label(row, name_w), name_w, False))
        if by == "event":
            for n, (_, w) in zip((row.extra["cgroups"], row.extra["processes"], row.extra["files"]), extra_cols):
                line.append(" " + _cell(str(n), w, True))
        elif by == "comm":
            line.append(" " + _cell(str(row.extra["processes"]), extra_cols[0][1], True))
        elif extra_cols:
            ppid = row.extra.get("ppid")
            line.append(" " + _cell("-" if ppid is None else str(ppid), extra_cols[0][1], True))
            line.append(" " + _cell(terminal_safe(cgroup_name(row.cgroup)), extra_cols[1][1], False))
        for c in classes:
            n = row.klass(c)
            line.append(" " + _cell(value(n), num_w, True), style="" if n else "dim")
        line.append(" " + _cell(value(row.total), num_w, True), style="bold")
        if failed:
            line.append(" " + _cell(value(row.failed), num_w, True), style="bold" if row.failed else "dim")
        for f in byte_cols:
            n = getattr(row, f)
            line.append(" " + _cell(human_bytes(n / per if per else n), BYTES_WIDTH, True), style="" if n else "dim")
        for f in time_cols:
            line.append(" " + _cell(time_cell(row, f, per), TIME_WIDTH, True), style="" if row.timed else "dim")
        if show_trend:
            line.append(" " + spark(trends.get(model.trend_key(row), []), trend_w))
        if i == selected:
            line.stylize("reverse")
        lines.append(line)
    if not rows and empty:
        lines.append(Text(empty, style="dim"))
    return Group(*lines)


def events_dict(counts) -> dict[str, int]:
    return {name: counts[i] for i, name in enumerate(EVENT_NAMES)}


def _opt(text, name: str | None) -> str | None:
    return None if name is None else text(name)


def _us(ns: int) -> float:
    return round(ns / 1000, 3)


def time_record(lat_ns: int, timed: int, known: bool = True, prefix: str = "") -> dict:
    """time_us (the time of the timed operations) and avg_us (per operation; null when none was timed)."""
    if not known:
        return {prefix + "time_us": None, prefix + "avg_us": None}
    return {prefix + "time_us": _us(lat_ns), prefix + "avg_us": _us(lat_ns / timed) if timed else None}


def row_record(row: model.Row, text=decode_fs, moved: bool = True, timed: bool = True) -> dict:
    """A row as a JSON object / CSV line: stable keys per grouping (see docs/top-report.md).

    text renders names: decode_fs (exact, the default) for JSON, terminal_safe for CSV.
    Bytes (read_bytes, write_bytes) are null when the backend cannot know them (moved=False),
    times (time_us, avg_us) when it cannot time operations (timed=False).
    """
    rec: dict = {}
    if row.group == "cgroup":
        names = named(row.key, read=False)
        rec.update(path=text(row.key), unit=names.unit, container=names.container, pod=names.pod,
                   container_name=names.container_name, image=names.image, pod_name=names.pod_name,
                   pod_namespace=names.pod_namespace)
    elif row.group == "process":
        rec.update(pid=row.key, comm=_opt(text, row.comm), cgroup=_opt(text, row.cgroup))
        if "ppid" in row.extra:         # top knows parents; a report does not keep them
            rec["ppid"] = row.extra["ppid"]
    elif row.group == "comm":
        rec.update(comm=text(row.key), processes=row.extra["processes"], busiest_cgroup=_opt(text, row.cgroup))
    elif row.group in ("file", "dir"):
        rec.update(path=text(row.key), cgroups=row.extra.get("cgroups", 0), busiest_cgroup=_opt(text, row.cgroup))
    elif row.group == "event":
        rec.update(event=row.key, cgroups=row.extra["cgroups"], processes=row.extra["processes"],
                   files=row.extra["files"], busiest_cgroup=_opt(text, row.cgroup))
    if row.group == "cgroup":       # its own events, and with every cgroup below it
        own = row.extra["own"]
        rec.update(total=sum(own), failed=row.extra["own_failed"], events=events_dict(own))
        rec.update({f: row.extra.get("own_" + f, 0) if moved else None for f in BYTE_FIELDS})
        rec.update(time_record(row.extra.get("own_lat_ns", 0), row.extra.get("own_timed", 0), timed))
        rec.update(subtree_total=row.total, subtree_failed=row.failed, subtree_events=events_dict(row.counts))
        rec.update({"subtree_" + f: getattr(row, f) if moved else None for f in BYTE_FIELDS})
        rec.update(time_record(row.lat_ns, row.timed, timed, "subtree_"))
    else:
        rec.update(total=row.total, failed=row.failed, events=events_dict(row.counts))
        rec.update({f: getattr(row, f) if moved else None for f in BYTE_FIELDS})
        rec.update(time_record(row.lat_ns, row.timed, timed))
    return rec
