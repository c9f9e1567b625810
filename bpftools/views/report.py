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
import html
import io
import json
import os
import re
import time
from dataclasses import dataclass

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bpftools import model
from bpftools.escape import decode_fs, terminal_safe
from bpftools.model import Aggregator
from bpftools.session.contract import CountSink
from bpftools.views.tables import cgroup_name, events_dict, row_record, rows_table, spark

TABLES = ("cgroup", "process", "file", "dir", "event", "errno", "lifecycle", "timeline")
ROW_TABLES = ("cgroup", "process", "file", "dir", "event")
JSON_KEYS = {"cgroup": "cgroups", "process": "processes", "file": "files", "dir": "dirs", "event": "event_types",
             "errno": "errors", "lifecycle": "cgroup_lifecycle", "timeline": "timeline"}
TITLES = {"cgroup": "Cgroups (tree; each row includes the cgroups below it)", "process": "Processes",
          "file": "Files", "dir": "Directories (files directly in them)", "event": "Event types",
          "errno": "Failed operations", "lifecycle": "Cgroups created or removed during the run",
          "timeline": "Events over time"}
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
    return Report(
        meta=meta, start=agg.first_ts if agg.first_ts is not None else end, end=end, totals=totals,
        failed=failed, lost=agg.lost, overflow=sum(agg.overflow), tables=tables,
        errors=_cut(agg.errors(), top), lifecycle=_cut(lifecycle, top), series=series,
        points=[(p[0], p[1]) for p in series_points], top=top, by=by, sort=sort,
    )


def scope_text(meta: ReportMeta) -> str:
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
                   "by_event": events_dict(rep.totals)},
    }
    for g in ROW_TABLES:
        doc[JSON_KEYS[g]] = [row_record(r, text) for r in rep.tables[g]]
    doc["errors"] = [dict(e, top_process=text(e["top_process"]), top_path=text(e["top_path"])) for e in rep.errors]
    doc["cgroup_lifecycle"] = [dict(life, path=text(life["path"])) for life in rep.lifecycle]
    doc["timeline"] = {
        "points": [{"start": round(s, 6), "seconds": round(d, 6)} for s, d in rep.points],
        "series": [{"cgroup": text(path), "name": text(name), "events": counts} for path, name, counts in rep.series],
    }
    return doc


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
                recs.append(rec)
            out["timeline"] = recs
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
            out.append(rows_table(rows, g, width, sort=rep.sort, failed=True, title=TITLES[g]))
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
            spark_w = max(10, min(60, width - 60))
            out.append(_simple(TITLES[g], [("cgroup", "left"), ("events", "right"), ("peak/s", "right"),
                                           ("over the run", "left")],
                               [(terminal_safe(name), str(sum(counts)), "%.0f" % _peak(counts, rep.points),
                                 Text(spark(_resample(counts, spark_w), spark_w), style="cyan"))
                                for _, name, counts in rep.series]))
    return out


def _peak(counts, points) -> float:
    return max((n / secs for n, (_, secs) in zip(counts, points) if secs > 0), default=0.0)


def _resample(values: list[int], width: int) -> list[int]:
    """values summed into at most width buckets."""
    if len(values) <= width:
        return values
    out = [0] * width
    for i, v in enumerate(values):
        out[i * width // len(values)] += v
    return out


def print_report(rep: Report, console: Console) -> None:
    for part in renderables(rep, console.width):
        console.print(part)


# --- pictures -------------------------------------------------------------------------------
def chart_svg(rep: Report, width: int = 860, height: int = 260) -> str:
    """Events per second over the run for the busiest cgroups, as a standalone <svg> element."""
    left, right, top, bottom = 60, 220, 30, 40
    pw, ph = width - left - right, height - top - bottom
    rates = [[n / secs if secs > 0 else 0.0 for n, (_, secs) in zip(counts, rep.points)]
             for _, _, counts in rep.series]
    ymax = max((max(r, default=0.0) for r in rates), default=0.0) or 1.0
    span = rep.duration or 1.0
    esc = html.escape
    parts = [
        '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
        'font-family="DejaVu Sans, Arial, sans-serif" font-size="12">' % (width, height, width, height),
        '<rect width="100%" height="100%" fill="#ffffff"/>',
        '<text x="%d" y="18" font-size="14" font-weight="bold" fill="#222">%s</text>'
        % (left, esc("Events per second, busiest cgroups")),
        '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#444"/>' % (left, top + ph, left + pw, top + ph),
        '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#444"/>' % (left, top, left, top + ph),
    ]
    for i in range(5):
        y = top + ph - ph * i / 4
        parts.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>' % (left, y, left + pw, y))
        parts.append('<text x="%d" y="%.1f" text-anchor="end" fill="#444">%s</text>'
                     % (left - 6, y + 4, esc("%.3g" % (ymax * i / 4))))
    for i in range(5):
        x = left + pw * i / 4
        parts.append('<text x="%.1f" y="%d" text-anchor="middle" fill="#444">%s</text>'
                     % (x, top + ph + 16, esc("%.3g s" % (span * i / 4))))
    for k, ((_, name, _), r) in enumerate(zip(rep.series, rates)):
        colour = PALETTE[k % len(PALETTE)]
        pts = []
        for (start, secs), v in zip(rep.points, r):
            x = left + pw * min(1.0, (start + secs / 2 - rep.start) / span)
            y = top + ph - ph * v / ymax
            pts.append((x, y))
        if len(pts) > 1:
            parts.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>'
                         % (colour, " ".join("%.1f,%.1f" % p for p in pts)))
        for x, y in pts if len(pts) <= 60 else ():
            parts.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>' % (x, y, colour))
        ly = top + 10 + 18 * k
        parts.append('<rect x="%d" y="%d" width="12" height="12" fill="%s"/>' % (left + pw + 14, ly - 10, colour))
        parts.append('<text x="%d" y="%d" fill="#222">%s</text>'
                     % (left + pw + 32, ly, esc(name if len(name) <= 28 else name[:13] + "…" + name[-14:])))
    if not rep.series:
        parts.append('<text x="%d" y="%d" fill="#888">no file activity</text>' % (left + 10, top + ph // 2))
    parts.append('</svg>')
    return "\n".join(parts)


def _recorded(rep: Report) -> Console:
    console = Console(record=True, width=REPORT_WIDTH, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor")
    print_report(rep, console)
    return console


_FONT_FACE = re.compile(r"@font-face\s*\{[^}]*\}")
_VIEWBOX = re.compile(r'viewBox="0 0 ([\d.]+) ([\d.]+)"')


def to_svg(rep: Report) -> str:
    """The report as one self-contained SVG: the chart above rich's picture of the tables."""
    console = _recorded(rep)
    tables = _FONT_FACE.sub("", console.export_svg(title="fstrace report"))
    w, h = (float(v) for v in _VIEWBOX.search(tables).groups())
    chart = chart_svg(rep) if "timeline" in rep.by else ""
    chart_h = 270 if chart else 0
    width = max(w, 860.0)
    inner = tables.replace("<svg ", '<svg x="0" y="%d" width="%.1f" height="%.1f" ' % (chart_h, w, h), 1)
    return "\n".join([
        '<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.1f %.1f">'
        % (width, chart_h + h, width, chart_h + h),
        '<rect width="100%" height="100%" fill="#ffffff"/>',
        chart, inner, '</svg>',
    ]) + "\n"


HTML_PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="UTF-8">
<title>fstrace report</title>
<style>
{stylesheet}
body {{ color: {foreground}; background-color: {background}; margin: 1.5em; }}
pre {{ font-family: 'DejaVu Sans Mono', Menlo, Consolas, monospace; font-size: 13px; }}
</style>
</head>
<body>
<!--chart-->
<pre><code>{code}</code></pre>
</body>
</html>
"""


def to_html(rep: Report) -> str:
    """The report as one self-contained HTML page: the chart inline, the tables as styled text."""
    console = _recorded(rep)
    chart = chart_svg(rep) if "timeline" in rep.by else ""
    page = console.export_html(inline_styles=True, code_format=HTML_PAGE)
    return page.replace("<!--chart-->", chart, 1)


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

