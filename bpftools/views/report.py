"""`fstrace report`: one summary of a whole run, as tables, JSON, CSV, SVG and HTML.

build() turns the model's cumulative rows into a Report (rows already
sorted and cut to --top); every format is written from that one Report, so
the terminal, the JSON document, the CSV files and the pictures show the same
numbers.  The chart of events over time for the busiest cgroups is an inline
SVG written here; the tables in the SVG/HTML files are rich's own export of
the terminal rendering, with nothing fetched from the network.
"""
from __future__ import annotations

import csv
import dataclasses
import html
import io
import json
import math
import os
import re
import time
from dataclasses import dataclass

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.terminal_theme import DEFAULT_TERMINAL_THEME
from rich.text import Text

from bpftools import model
from bpftools.escape import decode_fs, terminal_safe
from bpftools.model import Aggregator
from bpftools.model.fields import BY_NAME, BYTE_FIELDS
from bpftools.session.contract import CountSink
from bpftools.views.tables import cgroup_name, events_dict, human, row_record, rows_table, spark, time_record
from bpftools.views.text import human_bytes, human_time

TABLES = ("cgroup", "process", "file", "dir", "event", "errno", "lifecycle", "timeline", "latency", "slowest")
ROW_TABLES = ("cgroup", "process", "file", "dir", "event")
JSON_KEYS = {"cgroup": "cgroups", "process": "processes", "file": "files", "dir": "dirs", "event": "event_types",
             "errno": "errors", "lifecycle": "cgroup_lifecycle", "timeline": "timeline", "latency": "latency",
             "slowest": "slowest_files"}
TITLES = {"cgroup": "Cgroups (tree; each row includes the cgroups below it)", "process": "Processes",
          "file": "Files", "dir": "Directories (files directly in them)", "event": "Event types",
          "errno": "Failed operations", "lifecycle": "Cgroups created or removed during the run",
          "timeline": "Events over time",
          "latency": "Latency per cgroup and event type",
          "slowest": "Slowest files (mean time of an operation)"}
HISTOGRAMS_SHOWN = 5        # text and SVG histograms: the slowest (cgroup, event) pairs
CHART_SERIES = 5
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd")
REPORT_WIDTH = 120          # of the SVG/HTML rendering and of a report in a pipe
FAST_TICK_S = 15.0          # report ticks four times a second until this, then once a second


@dataclass(frozen=True)
class ReportMeta:
    backend: str = "?"
    kernel: str = "?"
    command: tuple[str, ...] = ()
    command_cgroup: str | None = None
    exit_status: int | None = None
    filters: tuple[str, ...] = ()
    source: dict | None = None          # report --from: the trace file and what it recorded (REPORT JSON)
    notes: tuple[str, ...] = ()         # what the counts leave out, said below the tables
    bytes: bool = True          # the backend knows the bytes each read and write moved
    latency: bool = True        # the backend times opens, reads, writes and syncs


@dataclass
class Report:
    meta: ReportMeta
    start: float
    end: float
    totals: list[int]
    failed: int
    lost: int
    overflow: int
    tables: dict[str, list[model.Row]]
    errors: list[dict]
    lifecycle: list[dict]
    series: list[tuple[str, str, list[int]]]      # (cgroup path, name, events per point)
    points: list[tuple[float, float]]             # (start, seconds) per point
    top: int = 0
    by: tuple[str, ...] = TABLES
    sort: str = model.DEFAULT_SORT
    moved: tuple[int, int] = (0, 0)                               # bytes read, written in the run
    bytes_points: list[tuple[int, int]] = ()                      # bytes read, written per point
    latency: list[model.Latency] = ()                             # per (cgroup, event), slowest p99 first
    slowest: list[model.Row] = ()                                 # file rows, slowest mean first

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)


def _cut(rows, top: int):
    return rows[:top] if top else rows


def build(agg: Aggregator, meta: ReportMeta, top: int = 10, by: tuple[str, ...] = TABLES,
          sort: str = model.DEFAULT_SORT) -> Report:
    """The report of everything agg accumulated: rows sorted by sort, top rows per table (0: all)."""
    entries = agg.entries()
    tables = {}
    for g in ROW_TABLES:
        rows = model.group_rows(entries, g, agg.cgroups, agg.files)
        tables[g] = _cut(model.arrange(rows, g, sort), top)
    own = {}
    for e in entries:
        if not e.err:
            own[e.cgroup_id] = own.get(e.cgroup_id, 0) + sum(e.counts)
    lifecycle = [{"id": life.id, "path": life.path,
                  "created": round(life.created, 6) if life.created is not None else None,
                  "removed": round(life.removed, 6) if life.removed is not None else None,
                  "lifetime_s": round(life.lifetime, 6) if life.lifetime is not None else None,
                  "events": own.get(life.id, 0)} for life in agg.lifecycle()]
    busiest = sorted(own, key=lambda c: (-own[c], agg.cgroups.get(c, "")))[:CHART_SERIES]
    series_points = agg.series(busiest)
    series = [(model.cgroup_path(agg.cgroups, c), cgroup_name(model.cgroup_path(agg.cgroups, c)),
               [p[2][i] for p in series_points]) for i, c in enumerate(busiest)]
    totals, failed = agg.run_totals()
    end = agg.end_ts if agg.end_ts is not None else time.time()
    bytes_points = [(r, w) for _, _, r, w in agg.bytes_timeline]   # merged as the timeline is: same points
    files = [r for r in model.group_rows(entries, "file", agg.cgroups, agg.files) if r.timed]
    if agg.hist_overflow:
        meta = dataclasses.replace(meta, notes=meta.notes + (
            "%d timed operations found the kernel's latency histogram map full: the latency table misses them "
            "(the rows' times count them)" % agg.hist_overflow,))
    return Report(
        meta=meta, start=agg.first_ts if agg.first_ts is not None else end, end=end, totals=totals,
        failed=failed, lost=agg.lost, overflow=sum(agg.overflow), tables=tables,
        errors=_cut(agg.errors(), top), lifecycle=_cut(lifecycle, top), series=series,
        points=[(p[0], p[1]) for p in series_points], top=top, by=by, sort=sort,
        moved=tuple(agg.bytes_total), bytes_points=bytes_points,
        latency=_cut(model.latencies(agg.hists, agg.cgroups), top),
        slowest=_cut(model.sort_rows(files, "avg_us"), top),
    )


def scope_text(meta: ReportMeta) -> str:
    if meta.source is not None:
        return "replayed from %s (%s)" % (meta.source["file"], _scope_words(meta))
    return _scope_words(meta)


def _scope_words(meta: ReportMeta) -> str:
    if meta.command_cgroup and not meta.command:
        return "command in cgroup %s" % meta.command_cgroup
    if meta.command:
        status = "" if meta.exit_status is None else ", exit status %d" % meta.exit_status
        return "command: %s (cgroup %s%s)" % (" ".join(meta.command), meta.command_cgroup, status)
    if meta.filters:
        return "filtered: " + " ".join(meta.filters)
    return "system-wide"


# --- JSON ---------------------------------------------------------------------------------
def document(rep: Report, text=decode_fs) -> dict:
    """The report --json document (docs/top-report.md: REPORT JSON); text renders names (row_record)."""
    doc = {
        "type": "report", "version": 1,
        "scope": {"command": list(rep.meta.command) or None, "command_cgroup": rep.meta.command_cgroup,
                  "exit_status": rep.meta.exit_status, "filters": list(rep.meta.filters)},
        "backend": rep.meta.backend, "kernel": rep.meta.kernel,
        "start": round(rep.start, 6), "end": round(rep.end, 6), "duration_s": round(rep.duration, 6),
        "top": rep.top, "sort": rep.sort,
        "totals": {"events": sum(rep.totals), "failed": rep.failed, "lost": rep.lost, "overflow": rep.overflow,
                   "by_event": events_dict(rep.totals),
                   "read_bytes": rep.moved[0] if rep.meta.bytes else None,
                   "write_bytes": rep.moved[1] if rep.meta.bytes else None},
    }
    for g in ROW_TABLES:
        doc[JSON_KEYS[g]] = [row_record(r, text, rep.meta.bytes, rep.meta.latency) for r in rep.tables[g]]
    doc["errors"] = [dict(e, top_process=text(e["top_process"]), top_path=text(e["top_path"])) for e in rep.errors]
    doc["cgroup_lifecycle"] = [dict(life, path=text(life["path"])) for life in rep.lifecycle]
    doc["timeline"] = {
        "points": [{"start": round(s, 6), "seconds": round(d, 6)} for s, d in rep.points],
        "series": [{"cgroup": text(path), "name": text(name), "events": counts} for path, name, counts in rep.series],
        "read_bytes": [r for r, _ in rep.bytes_points] if rep.meta.bytes else None,
        "write_bytes": [w for _, w in rep.bytes_points] if rep.meta.bytes else None,
    }
    doc["latency"] = [latency_record(lat, text) for lat in rep.latency] if rep.meta.latency else None
    doc["slowest_files"] = ([dict(path=text(r.key), busiest_cgroup=text(r.cgroup) if r.cgroup else None,
                                  timed=r.timed, **time_record(r.lat_ns, r.timed)) for r in rep.slowest]
                            if rep.meta.latency else None)
    doc["source"] = rep.meta.source
    doc["notes"] = list(rep.meta.notes)
    return doc


def _us(ns: float) -> float:
    return round(ns / 1000, 3)


def latency_record(lat: model.Latency, text=decode_fs) -> dict:
    """One (cgroup, event) of REPORT JSON latency: count, p50/p99/max and the histogram's buckets with a count."""
    buckets = []
    for b, c in enumerate(lat.buckets):
        if c:
            low, high = model.bucket_bounds(b)
            buckets.append({"from_us": _us(low), "to_us": None if high is None else _us(high), "count": c})
    return {"cgroup": text(lat.cgroup), "name": text(cgroup_name(lat.cgroup)), "event": lat.event,
            "count": lat.count, "mean_us": _us(lat.sum_ns / lat.count) if lat.count else None,
            "p50_us": _us(lat.percentile(50)), "p99_us": _us(lat.percentile(99)),
            "max_us": _us(lat.max_ns), "histogram": buckets}


def write_json(rep: Report, out) -> None:
    out.write(json.dumps(document(rep), ensure_ascii=False, indent=1) + "\n")


# --- CSV ----------------------------------------------------------------------------------
def flatten(rec: dict) -> dict:
    """A record with its event dicts spread into columns: events -> open, ...; subtree_events -> subtree_open, ..."""
    out = {}
    for k, v in rec.items():
        if isinstance(v, dict):
            prefix = "" if k == "events" else k[:-len("events")]
            out.update({prefix + ek: ev for ek, ev in v.items()})
        else:
            out[k] = v
    return out


def csv_tables(rep: Report) -> dict[str, list[dict]]:
    """Table name -> flat records, one CSV file each; names escaped as in text (terminal_safe)."""
    doc = document(rep, terminal_safe)
    out = {}
    for g in rep.by:
        if g == "timeline":
            recs = []
            for i, p in enumerate(doc["timeline"]["points"]):
                rec = dict(p)
                rec.update({s["cgroup"]: s["events"][i] for s in doc["timeline"]["series"]})
                if rep.meta.bytes and rep.bytes_points:
                    rec.update(read_bytes=rep.bytes_points[i][0], write_bytes=rep.bytes_points[i][1])
                recs.append(rec)
            out["timeline"] = recs
        elif g == "latency":
            out["latency"] = [dict({k: v for k, v in r.items() if k != "histogram"},
                                   histogram=" ".join("%s-%s:%d" % (h["from_us"], "" if h["to_us"] is None
                                                                    else h["to_us"], h["count"])
                                                      for h in r["histogram"]))
                              for r in doc["latency"] or ()]
        elif g == "slowest":
            out["slowest_files"] = list(doc["slowest_files"] or ())
        else:
            out[JSON_KEYS[g]] = [flatten(r) for r in doc[JSON_KEYS[g]]]
    return out


def write_csv(rep: Report, directory: str) -> list[str]:
    os.makedirs(directory, exist_ok=True)
    written = []
    for name, recs in csv_tables(rep).items():
        path = os.path.join(directory, name + ".csv")
        columns: list[str] = []
        for r in recs:
            columns += [k for k in r if k not in columns]
        with open(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
            w = csv.DictWriter(f, fieldnames=columns or ["empty"])
            w.writeheader()
            for r in recs:
                w.writerow({k: "" if v is None else v for k, v in r.items()})
        written.append(path)
    return written


# --- terminal tables ----------------------------------------------------------------------
def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(ts)) + ".%03d" % int(ts % 1 * 1000)


def _seconds(s: float | None) -> str:
    if s is None:
        return "-"
    return "%.0f ms" % (s * 1000) if s < 1 else "%.1f s" % s


def header(rep: Report) -> Text:
    t = Text()
    t.append("fstrace report", style="bold")
    t.append("  " + terminal_safe(scope_text(rep.meta)) + "\n")
    t.append("backend %s · kernel %s · %s → %s (%s)\n" % (
        rep.meta.backend, rep.meta.kernel, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(rep.start)),
        time.strftime("%H:%M:%S", time.localtime(rep.end)), _seconds(rep.duration)))
    warn = "bold red" if rep.lost or rep.overflow else ""
    t.append("events %d" % sum(rep.totals), style="bold")
    t.append("  failed %d" % rep.failed, style="red" if rep.failed else "")
    t.append("  lost %d  overflow %d" % (rep.lost, rep.overflow), style=warn)
    if rep.meta.bytes:
        t.append("  read %s  written %s" % (human_bytes(rep.moved[0]), human_bytes(rep.moved[1])))
    if rep.top:
        t.append("  (top %d rows per table)" % rep.top, style="dim")
    return t


def _simple(title: str, columns, rows) -> Table:
    t = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", title_style="bold", pad_edge=False,
              show_edge=False, padding=(0, 1, 0, 0))
    for name, justify in columns:
        t.add_column(Text(name, style="bold"), justify=justify, no_wrap=True, overflow="ellipsis",
                     max_width=60 if justify == "left" else None)
    for r in rows:
        t.add_row(*r)
    return t


def renderables(rep: Report, width: int) -> list:
    """Everything the report shows, in order, for a console of this width."""
    out: list = [header(rep)]
    for g in rep.by:
        if g in ROW_TABLES:
            rows = rep.tables[g]
            out.append(rows_table(rows, g, width, sort=rep.sort, failed=True, title=TITLES[g], moved=rep.meta.bytes,
                                  timed=rep.meta.latency))
        elif g == "errno":
            out.append(_simple(TITLES[g], [("errno", "left"), ("event", "left"), ("count", "right"),
                                           ("most by", "left"), ("most on", "left")],
                               [(e["errno"], e["event"], str(e["count"]), terminal_safe(e["top_process"]),
                                 terminal_safe(e["top_path"])) for e in rep.errors]))
        elif g == "lifecycle":
            out.append(_simple(TITLES[g], [("cgroup", "left"), ("created", "right"), ("removed", "right"),
                                           ("lifetime", "right"), ("events", "right")],
                               [(terminal_safe(life["path"]), _when(life["created"]), _when(life["removed"]),
                                 _seconds(life["lifetime_s"]), str(life["events"])) for life in rep.lifecycle]))
        elif g == "timeline":
            spark_w = max(10, min(60, width - 70))
            points, series = whole_points(rep.points, [c for _, _, c in rep.series])
            out.append(_simple(TITLES[g], [("cgroup", "left"), ("events", "right"), ("mean/s", "right"),
                                           ("peak/s", "right"), ("events/s over the run", "left")],
                               [(terminal_safe(name), str(sum(counts)), human(sum(counts) / (rep.duration or 1.0)),
                                 human(max(rates(c, points), default=0.0)),
                                 Text(spark(fit(rates(c, points), spark_w), spark_w), style="bold"))
                                for (_, name, counts), c in zip(rep.series, series)]))
        elif g == "latency" and rep.meta.latency:
            out.append(_simple(TITLES[g], [("cgroup", "left"), ("event", "left"), ("count", "right"),
                                           ("p50", "right"), ("p99", "right"), ("max", "right")],
                               [(terminal_safe(cgroup_name(lat.cgroup)), lat.event, str(lat.count),
                                 human_time(lat.percentile(50)), human_time(lat.percentile(99)),
                                 human_time(lat.max_ns)) for lat in rep.latency]))
            out += [histogram_text(lat, width) for lat in rep.latency[:HISTOGRAMS_SHOWN]]
        elif g == "slowest" and rep.meta.latency:
            out.append(rows_table(list(rep.slowest), "file", width, sort="avg_us", failed=False, title=TITLES[g],
                                  moved=False))
    if rep.meta.notes:
        out.append(Group(*[Text("note: " + terminal_safe(n), style="bold") for n in rep.meta.notes]))
    return out


BAR_WIDTH = 40


def histogram_text(lat: model.Latency, width: int = 120) -> Text:
    """One (cgroup, event)'s histogram as text bars, as bcc's *dist tools print theirs."""
    t = Text()
    t.append("%s in %s: %d timed, max %s\n" % (lat.event, terminal_safe(cgroup_name(lat.cgroup)), lat.count,
                                               human_time(lat.max_ns)), style="bold")
    shown = lat.shown_buckets()
    top = max((c for _, c in shown), default=0) or 1
    bar_w = max(10, min(BAR_WIDTH, width - 40))
    t.append("  %19s  %9s  distribution\n" % ("time", "count"), style="dim")
    for b, c in shown:
        low, high = model.bucket_bounds(b)
        span = "%7s -> %-7s" % (human_time(low), human_time(high) if high is not None else "")
        bar = "█" * round(c / top * bar_w) if c else ""
        t.append("  %19s  %9d  |%-*s|\n" % (span, c, bar_w, bar))
    return t


PARTIAL = 0.5       # a timeline point shorter than this share of the usual one is a partial tick


def whole_points(points, series) -> tuple[list[tuple[float, float]], list[list[int]]]:
    """The timeline with each partial point (the last tick, cut short by the end) merged into its neighbour.

    A rate over 0.019 s is no rate: 152 events in it would plot as 8000/s.
    """
    secs = sorted(s for _, s in points if s > 0)
    usual = secs[len(secs) // 2] if secs else 0.0
    out_points: list[list[float]] = []
    out_series: list[list[int]] = [[] for _ in series]
    for i, (start, s) in enumerate(points):
        if out_points and s < PARTIAL * usual:
            out_points[-1][1] = start + s - out_points[-1][0]
            for k, counts in enumerate(series):
                out_series[k][-1] += counts[i]
            continue
        out_points.append([start, s])
        for k, counts in enumerate(series):
            out_series[k].append(counts[i])
    if len(out_points) > 1 and out_points[0][1] < PARTIAL * usual:      # a partial first point
        first = out_points.pop(0)
        out_points[0] = [first[0], out_points[0][0] + out_points[0][1] - first[0]]
        for k in range(len(series)):
            n = out_series[k].pop(0)
            out_series[k][0] += n
    return [(a, b) for a, b in out_points], out_series


def rates(counts, points) -> list[float]:
    return [n / secs if secs > 0 else 0.0 for n, (_, secs) in zip(counts, points)]


def fit(values: list[float], width: int) -> list[float]:
    """values stretched or averaged to exactly width points (a sparkline spans the whole run)."""
    if not values:
        return []
    if len(values) >= width:
        out = [0.0] * width
        n = [0] * width
        for i, v in enumerate(values):
            out[i * width // len(values)] += v
            n[i * width // len(values)] += 1
        return [v / k if k else 0.0 for v, k in zip(out, n)]
    return [values[i * len(values) // width] for i in range(width)]


def print_report(rep: Report, console: Console) -> None:
    for part in renderables(rep, console.width):
        console.print(part)


# --- pictures -------------------------------------------------------------------------------
def nice_step(top: float, ticks: int = 4) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) so that ticks steps cover top."""
    raw = top / ticks if top > 0 else 1.0
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


def seconds_label(s: float) -> str:
    if s >= 120:
        return "%dm%02ds" % (s // 60, s % 60) if s % 60 else "%dm" % (s // 60)
    return ("%.1f s" % s).replace(".0 s", " s")


def chart_svg(rep: Report, width: int = 860, height: int = 260) -> str:
    """Events per second over the run for the busiest cgroups, as a standalone <svg> element.

    Rates are events over each point's own length, partial points merged
    (whole_points); the y axis has round steps in short units (12k, 1.5M).
    """
    return _line_chart(rep, "Events per second, busiest cgroups", [(name, c) for _, name, c in rep.series],
                       lambda v: human(v) + "/s", width, height)


def bytes_chart_svg(rep: Report, width: int = 860, height: int = 260) -> str:
    """Bytes read and written per second over the run (everything counted), as a standalone <svg> element."""
    series = [("read", [r for r, _ in rep.bytes_points]), ("written", [w for _, w in rep.bytes_points])]
    if not any(any(v) for _, v in series):
        series = []
    return _line_chart(rep, "Bytes per second, read and written", series, lambda v: human_bytes(v) + "/s",
                       width, height, left=84)


def svg_start(width: int, height: int) -> list[str]:
    """The opening tag and white background every chart of a report starts with."""
    return ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
            'font-family="DejaVu Sans, Arial, sans-serif" font-size="12">' % (width, height, width, height),
            '<rect width="100%" height="100%" fill="#ffffff"/>']


def _plot_frame(title: str, left: int, top: int, pw: int, ph: int, step: float, ticks: int, label) -> list[str]:
    """A plot's title, its two axes, and a grid line with its label at each of ticks + 1 steps up the y axis."""
    esc = html.escape
    parts = ['<text x="%d" y="18" font-size="14" font-weight="bold" fill="#222">%s</text>' % (left, esc(title)),
             '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#444"/>' % (left, top + ph, left + pw, top + ph),
             '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#444"/>' % (left, top, left, top + ph)]
    for i in range(ticks + 1):
        y = top + ph - ph * i / ticks
        parts.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>' % (left, y, left + pw, y))
        parts.append('<text x="%d" y="%.1f" text-anchor="end" fill="#444">%s</text>'
                     % (left - 6, y + 4, esc(label(step * i))))
    return parts


def _legend_entry(x: int, top: int, k: int, colour: str, name: str) -> list[str]:
    """The k-th line of a legend right of a plot ending at x: a colour swatch and the name, shortened."""
    y = top + 10 + 18 * k
    text = terminal_safe(name)
    return ['<rect x="%d" y="%d" width="12" height="12" fill="%s"/>' % (x + 14, y - 10, colour),
            '<text x="%d" y="%d" fill="#222">%s</text>'
            % (x + 32, y, html.escape(text if len(text) <= 28 else text[:13] + "…" + text[-14:]))]


def _svg_end(parts: list[str], empty: str | None, left: int, top: int, ph: int) -> str:
    """The chart's elements as one <svg> element; empty: what an empty plot says in its middle."""
    if empty:
        parts.append('<text x="%d" y="%d" fill="#888">%s</text>' % (left + 10, top + ph // 2, empty))
    parts.append('</svg>')
    return "\n".join(parts)


def latency_chart_svg(rep: Report, width: int = 860, height: int = 260) -> str:
    """The latency histograms of the slowest (cgroup, event) pairs: operations per log2 bucket of time, as bars
    side by side in each bucket, as a standalone <svg> element."""
    shown = list(rep.latency[:HISTOGRAMS_SHOWN])
    left, right, top, bottom = 64, 220, 34, 44
    pw, ph = width - left - right, height - top - bottom
    used = [b for lat in shown for b, c in enumerate(lat.buckets) if c]
    first, last = (min(used), max(used)) if used else (0, 0)
    nb = last - first + 1
    ymax = max((c for lat in shown for c in lat.buckets), default=0) or 1
    step = nice_step(ymax)
    ticks = max(1, math.ceil(ymax / step))
    ymax = step * ticks
    esc = html.escape
    parts = svg_start(width, height) + _plot_frame(
        "Latency histograms, slowest cgroups and event types (operations per log2 bucket)",
        left, top, pw, ph, step, ticks, human)
    slot = pw / nb
    bar = slot * 0.8 / max(1, len(shown))
    label_every = max(1, math.ceil(nb / 8))
    for i in range(nb):
        if i % label_every == 0:
            parts.append('<text x="%.1f" y="%d" text-anchor="middle" fill="#444">%s</text>'
                         % (left + slot * i, top + ph + 16, esc(human_time(model.bucket_bounds(first + i)[0]))))
    parts.append('<text x="%.1f" y="%d" text-anchor="middle" fill="#666">%s</text>'
                 % (left + pw / 2, top + ph + 34, esc("time of one operation (bucket from)")))
    for k, lat in enumerate(shown):
        colour = PALETTE[k % len(PALETTE)]
        for i in range(nb):
            c = lat.buckets[first + i]
            if c:
                h = ph * c / ymax
                parts.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>'
                             % (left + slot * (i + 0.1) + bar * k, top + ph - h, bar, h, colour,
                                esc("%d in %s -> %s" % ((c,) + tuple(
                                    human_time(v) if v is not None else "" for v in model.bucket_bounds(first + i))))))
        parts += _legend_entry(left + pw, top, k, colour, "%s %s" % (lat.event, cgroup_name(lat.cgroup)))
    return _svg_end(parts, None if shown else "nothing timed", left, top, ph)


CHART_STEP = 270        # pixels from one chart's top to the next one's


def charts(rep: Report) -> list[str]:
    """The pictures above the tables: events over time, and bytes over time when the backend knows them;
    the latency histograms when anything was timed."""
    out = []
    if "timeline" in rep.by:
        out += [chart_svg(rep)] + ([bytes_chart_svg(rep)] if rep.meta.bytes else [])
    if "latency" in rep.by and rep.meta.latency and rep.latency:
        out.append(latency_chart_svg(rep))
    return out


def _line_chart(rep: Report, title: str, series: list[tuple[str, list[int]]], label, width: int, height: int,
                left: int = 64) -> str:
    """Per-second rates at rep.points, one line per (name, values per point), as a standalone <svg> element."""
    right, top, bottom = 220, 34, 44
    pw, ph = width - left - right, height - top - bottom
    points, values = whole_points(rep.points, [c for _, c in series])
    rate_rows = [rates(c, points) for c in values]
    ymax = max((max(r, default=0.0) for r in rate_rows), default=0.0) or 1.0
    step = nice_step(ymax)
    ticks = max(1, math.ceil(ymax / step))
    ymax = step * ticks
    span = rep.duration or 1.0
    esc = html.escape
    parts = svg_start(width, height) + _plot_frame(title, left, top, pw, ph, step, ticks, label)
    for i in range(5):
        x = left + pw * i / 4
        parts.append('<text x="%.1f" y="%d" text-anchor="middle" fill="#444">%s</text>'
                     % (x, top + ph + 16, esc(seconds_label(span * i / 4))))
    parts.append('<text x="%.1f" y="%d" text-anchor="middle" fill="#666">%s</text>'
                 % (left + pw / 2, top + ph + 34, esc("time since the start of the run")))
    for k, ((name, _), r) in enumerate(zip(series, rate_rows)):
        colour = PALETTE[k % len(PALETTE)]
        pts = []
        for (start, secs), v in zip(points, r):
            x = left + pw * min(1.0, max(0.0, (start + secs / 2 - rep.start) / span))
            y = top + ph - ph * v / ymax
            pts.append((x, y))
        if len(pts) > 1:
            parts.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>'
                         % (colour, " ".join("%.1f,%.1f" % p for p in pts)))
        for x, y in pts if len(pts) <= 60 else ():
            parts.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>' % (x, y, colour))
        parts += _legend_entry(left + pw, top, k, colour, name)
    return _svg_end(parts, None if series else "no file activity", left, top, ph)


def _recorded(rep: Report) -> Console:
    console = Console(record=True, width=REPORT_WIDTH, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor")
    print_report(rep, console)
    return console


_FONT_FACE = re.compile(r"@font-face\s*\{[^}]*\}")
_VIEWBOX = re.compile(r'viewBox="0 0 ([\d.]+) ([\d.]+)"')


def stack_svg(chart: str, chart_h: float, console: Console, title: str) -> str:
    """One self-contained SVG: chart (chart_h high) above rich's picture of what console recorded."""
    tables = _FONT_FACE.sub("", console.export_svg(title=title, theme=DEFAULT_TERMINAL_THEME))
    w, h = (float(v) for v in _VIEWBOX.search(tables).groups())
    width = max(w, 860.0)
    inner = tables.replace("<svg ", '<svg x="0" y="%.1f" width="%.1f" height="%.1f" ' % (chart_h, w, h), 1)
    return "\n".join([
        '<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.1f %.1f">'
        % (width, chart_h + h, width, chart_h + h),
        '<rect width="100%" height="100%" fill="#ffffff"/>',
        chart, inner, '</svg>',
    ]) + "\n"


def to_svg(rep: Report) -> str:
    """The report as one self-contained SVG: the charts above rich's picture of the tables."""
    pictures = charts(rep)
    chart = "\n".join(c.replace("<svg ", '<svg y="%d" ' % (CHART_STEP * i), 1) for i, c in enumerate(pictures))
    return stack_svg(chart, CHART_STEP * len(pictures), _recorded(rep), "fstrace report")


HTML_STYLE = """
body { font-family: 'DejaVu Sans', Arial, sans-serif; font-size: 14px; color: #1d1d1f; background: #fff;
       margin: 1.5em; max-width: 1500px; }
h1 { font-size: 20px; margin: 0 0 .2em 0; }
h2 { font-size: 16px; margin: 1.6em 0 .4em 0; }
.meta { color: #444; margin: .2em 0; }
.totals span { margin-right: 1.5em; }
.warn { color: #b00020; font-weight: bold; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 3px 8px; border-bottom: 1px solid #e4e4e4; white-space: nowrap; }
th { background: #f2f4f7; text-align: left; cursor: pointer; user-select: none; position: sticky; top: 0; }
th.num, td.num { text-align: right; font-variant-numeric: tabular-nums; }
th.sorted-down::after { content: " \\25BC"; } th.sorted-up::after { content: " \\25B2"; }
td.zero { color: #aaa; }
td.fail { color: #b00020; }
td.name { max-width: 46em; overflow: hidden; text-overflow: ellipsis; font-family: 'DejaVu Sans Mono', monospace; }
tr:nth-child(even) td { background: #fafbfc; }
.note { color: #666; font-size: 12px; }
"""

# Click a heading to sort by it (numbers by their exact value), again to reverse.  A link can carry a
# sort: #sort=TABLE.COLUMN (both counted from 0) clicks that heading once the page has loaded.
HTML_SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var down = !th.classList.contains('sorted-down');
      table.querySelectorAll('th').forEach(function (h) { h.classList.remove('sorted-down', 'sorted-up'); });
      th.classList.add(down ? 'sorted-down' : 'sorted-up');
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v, r;
        if (x !== undefined && y !== undefined) { r = parseFloat(x) - parseFloat(y); }
        else { r = a.cells[col].textContent.localeCompare(b.cells[col].textContent); }
        return down ? -r : r;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
var wanted = /^#sort=(\\d+)\\.(\\d+)$/.exec(location.hash);
if (wanted) {
  var table = document.querySelectorAll('table.sortable')[+wanted[1]];
  if (table && table.tHead.rows[0].cells[+wanted[2]]) { table.tHead.rows[0].cells[+wanted[2]].click(); }
}
"""


def _number(n: float) -> str:
    """A count with thousands separated by thin spaces: 113 627."""
    return "{:,}".format(int(n)).replace(",", "\u2009") if n == int(n) else "%.1f" % n


def _rate(x: float) -> float:
    """A rate as shown: whole numbers from 10/s, one decimal below."""
    return round(x) if x >= 10 else round(x, 1)


def sparkline_svg(values: list[float], width: int = 240, height: int = 28, colour: str = PALETTE[0]) -> str:
    """A small line of values (rates) scaled to their maximum, for one table row."""
    if not values:
        return ""
    top = max(values) or 1.0
    n = len(values)
    pts = " ".join("%.1f,%.1f" % (width * (i + 0.5) / n, height - 2 - (height - 4) * v / top)
                   for i, v in enumerate(values))
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">'
            '<line x1="0" y1="%d" x2="%d" y2="%d" stroke="#ccc"/>'
            '<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/></svg>'
            % (width, height, width, height, height - 2, width, height - 2, colour, pts))


def sparkline_bars(lat: model.Latency, width: int = 240, height: int = 28, colour: str = PALETTE[0]) -> str:
    """A small bar chart of one histogram's buckets (from its first to its last bucket with a count)."""
    shown = lat.shown_buckets()
    if not shown:
        return ""
    top = max(c for _, c in shown) or 1
    w = width / len(shown)
    bars = "".join('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>'
                   % (w * i + 0.5, height - 1 - (height - 2) * c / top, max(1.0, w - 1), (height - 2) * c / top,
                      colour, html.escape("%d from %s" % (c, human_time(model.bucket_bounds(b)[0]))))
                   for i, (b, c) in enumerate(shown) if c)
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">'
            '<line x1="0" y1="%d" x2="%d" y2="%d" stroke="#ccc"/>%s</svg>'
            % (width, height, width, height, height - 1, width, height - 1, bars))


class _Html:
    """One sortable HTML table: text cells escaped (terminal_safe, then HTML), numbers with their exact value."""

    def __init__(self, title: str, columns: list[tuple[str, bool]], note: str = ""):
        self.parts = ['<h2>%s</h2>' % html.escape(title)]
        if note:
            self.parts.append('<p class="note">%s</p>' % html.escape(note))
        self.parts.append('<table class="sortable"><thead><tr>%s</tr></thead><tbody>' % "".join(
            '<th class="%s">%s</th>' % ("num" if num else "", html.escape(name)) for name, num in columns))

    def row(self, cells: list) -> None:
        out = []
        for c in cells:
            if isinstance(c, tuple):            # (kind, value): raw HTML or a failed count
                kind, v = c
                if kind == "html":
                    out.append("<td>%s</td>" % v)
                elif kind == "seconds":
                    out.append('<td class="num" data-v="%s">%s</td>' % (v, _seconds(v)))
                elif kind == "time":            # ns, shown as ns, us, ms, s
                    out.append('<td class="num" data-v="%s">%s</td>' % (v, human_time(v)))
                elif kind == "id":
                    out.append('<td class="num" data-v="%d">%d</td>' % (v, v))
                elif kind == "bytes":           # shown as KiB, MiB; sorted and titled exact
                    out.append('<td class="num%s" data-v="%d" title="%d bytes">%s</td>'
                               % ("" if v else " zero", v, v, human_bytes(v)))
                else:
                    out.append('<td class="num %s" data-v="%s">%s</td>' % ("fail" if v else "zero", v, _number(v)))
            elif isinstance(c, (int, float)):
                out.append('<td class="num%s" data-v="%s">%s</td>' % ("" if c else " zero", c, _number(c)))
            else:
                out.append('<td class="name" title="%s">%s</td>' % (html.escape(c or ""), html.escape(c or "-")))
        self.parts.append("<tr>%s</tr>" % "".join(out))

    def html(self) -> str:
        return "\n".join(self.parts) + "</tbody></table>"


def html_tables(rep: Report) -> list[str]:
    """Every table of rep.by as a sortable HTML table."""
    doc = document(rep, terminal_safe)
    out = []
    for g in rep.by:
        recs = doc.get(JSON_KEYS[g]) if g in ROW_TABLES else None
        key = "subtree_events" if g == "cgroup" else "events"
        # the event types that occur in this table (a column of zeros says nothing)
        events = [e for e in model.EVENT_NAMES if any(r[key][e] for r in recs)] if recs else []
        ev_cols = [(e, True) for e in events]
        # bytes read and written, when the backend knows them (rbytes, wbytes: model/fields.py)
        b_cols = [(BY_NAME[f].column, True) for f in BYTE_FIELDS] if rep.meta.bytes else []

        def moved(r, prefix=""):
            return [("bytes", r[prefix + f]) for f in BYTE_FIELDS] if rep.meta.bytes else []
        if g == "cgroup":
            t = _Html(TITLES[g], [("cgroup", False), ("unit / container", False)] + ev_cols
                      + [("total", True), ("failed", True), ("own total", True)] + b_cols,
                      "Each row counts its cgroup and every cgroup below it; own total: the cgroup alone.")
            for r in doc["cgroups"]:
                t.row([r["path"], r["container"] or r["unit"] or ""] + [r["subtree_events"][e] for e in events]
                      + [r["subtree_total"], ("fail", r["subtree_failed"]), r["total"]] + moved(r, "subtree_"))
        elif g == "process":
            t = _Html(TITLES[g], [("process", False), ("pid", True), ("cgroup", False)] + ev_cols
                      + [("total", True), ("failed", True)] + b_cols)
            for r in doc["processes"]:
                t.row([r["comm"], ("id", r["pid"]), r["cgroup"]] + [r["events"][e] for e in events]
                      + [r["total"], ("fail", r["failed"])] + moved(r))
        elif g in ("file", "dir"):
            t = _Html(TITLES[g], [("path", False), ("busiest cgroup", False), ("cgroups", True)] + ev_cols
                      + [("total", True), ("failed", True)] + b_cols)
            for r in doc[JSON_KEYS[g]]:
                t.row([r["path"], r["busiest_cgroup"], r["cgroups"]] + [r["events"][e] for e in events]
                      + [r["total"], ("fail", r["failed"])] + moved(r))
        elif g == "event":
            t = _Html(TITLES[g], [("event", False), ("cgroups", True), ("processes", True), ("files", True),
                                  ("total", True), ("failed", True)] + b_cols)
            for r in doc["event_types"]:
                t.row([r["event"], r["cgroups"], r["processes"], r["files"], r["total"], ("fail", r["failed"])]
                      + moved(r))
        elif g == "errno":
            t = _Html(TITLES[g], [("errno", False), ("event", False), ("count", True), ("most by", False),
                                  ("most on", False)])
            for e in doc["errors"]:
                t.row([e["errno"], e["event"], e["count"], e["top_process"], e["top_path"]])
        elif g == "lifecycle":
            t = _Html(TITLES[g], [("cgroup", False), ("created", False), ("removed", False),
                                  ("lifetime", True), ("events", True)])
            for life in doc["cgroup_lifecycle"]:
                t.row([life["path"], _when(life["created"]), _when(life["removed"]),
                       ("seconds", life["lifetime_s"]) if life["lifetime_s"] is not None else ("html", "-"),
                       life["events"]])
        elif g == "latency":
            t = _Html(TITLES[g], [("cgroup", False), ("event", False), ("count", True), ("p50", True),
                                  ("p99", True), ("max", True), ("histogram", False)],
                      "Times from entry to return of the syscall, counted in the kernel per log2 bucket; p50 "
                      "and p99 are the upper bound of their bucket.")
            for lat, r in zip(rep.latency, doc["latency"] or ()):
                t.row([terminal_safe(r["name"]), r["event"], r["count"], ("time", lat.percentile(50)),
                       ("time", lat.percentile(99)), ("time", lat.max_ns),
                       ("html", sparkline_bars(lat))])
        elif g == "slowest":
            t = _Html(TITLES[g], [("path", False), ("busiest cgroup", False), ("timed", True), ("time", True),
                                  ("mean", True)])
            for r in rep.slowest:
                t.row([terminal_safe(r.key), terminal_safe(r.cgroup or ""), r.timed, ("time", r.lat_ns),
                       ("time", r.lat_ns / r.timed)])
        elif g == "timeline":
            points, series = whole_points(rep.points, [c for _, _, c in rep.series])
            t = _Html(TITLES[g], [("cgroup", False), ("events", True), ("mean /s", True), ("peak /s", True),
                                  ("events per second over the run", False)],
                      "Rates are events over each interval's own length; the last, partial interval is "
                      "merged into the one before it.")
            for k, ((_, name, counts), c) in enumerate(zip(rep.series, series)):
                r = rates(c, points)
                t.row([terminal_safe(name), sum(counts), _rate(sum(counts) / (rep.duration or 1.0)),
                       _rate(max(r, default=0.0)), ("html", sparkline_svg(r, colour=PALETTE[k % len(PALETTE)]))])
        else:
            continue
        out.append(t.html())
    return out


def to_html(rep: Report) -> str:
    """The report as one self-contained HTML page: header, chart, sortable tables; nothing fetched."""
    esc = html.escape
    m = rep.meta
    totals = ['<span><b>%s</b> events</span>' % _number(sum(rep.totals)),
              '<span class="%s">%s failed</span>' % ("warn" if rep.failed else "", _number(rep.failed)),
              '<span class="%s">%s lost</span>' % ("warn" if rep.lost else "", _number(rep.lost)),
              '<span class="%s">%s overflow</span>' % ("warn" if rep.overflow else "", _number(rep.overflow)),
              '<span>%s events/s on average</span>' % human(sum(rep.totals) / (rep.duration or 1.0))]
    if m.bytes:
        totals.append('<span>%s read, %s written</span>' % (human_bytes(rep.moved[0]), human_bytes(rep.moved[1])))
    head = [
        '<h1>fstrace report</h1>',
        '<p class="meta">%s</p>' % esc(terminal_safe(scope_text(m))),
        '<p class="meta">backend %s · kernel %s · %s → %s (%s)%s</p>' % (
            esc(m.backend), esc(m.kernel), time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(rep.start)),
            time.strftime("%H:%M:%S", time.localtime(rep.end)), esc(_seconds(rep.duration)),
            " · top %d rows per table" % rep.top if rep.top else ""),
        '<p class="meta totals">%s</p>' % "".join(totals),
    ]
    chart = "\n".join(charts(rep))
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="UTF-8">',
        "<title>fstrace report: %s</title>" % esc(terminal_safe(scope_text(m))),
        "<style>%s</style>" % HTML_STYLE, "</head>", "<body>",
        *head, chart, *html_tables(rep),
        '<p class="note">Click a column heading to sort by it. Counted in the kernel by fstrace.</p>',
        "<script>%s</script>" % HTML_SCRIPT, "</body>", "</html>",
    ]) + "\n"


class ReportSink(CountSink):
    """Accumulates the whole run for one report."""

    finished = False

    def __init__(self):
        self.agg = Aggregator(cumulative=True)

    @property
    def interval(self) -> float:
        return 0.25 if self.agg.elapsed < FAST_TICK_S else 1.0

    def start(self, info, ts: float, pid: int) -> None:
        """Nothing to show before the end."""

    def cgroup(self, change) -> None:
        self.agg.cgroup_change(change.action, change.id, change.path, change.ts)

    def counts(self, tick: model.Tick) -> None:
        self.agg.add(tick)

    def flush(self) -> None:
        """The report is written once, at the end."""

