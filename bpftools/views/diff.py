"""`fstrace report --diff`: a model.diff.Diff as tables, one JSON document, SVG and HTML.

Every format is written from the same Diff; tables and pictures show the
first `top` rows of each table (0: all), the JSON document every row unless
a top is given (so a script sees everything by default).
"""
from __future__ import annotations

import html
import io
import json

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.terminal_theme import DEFAULT_TERMINAL_THEME
from rich.text import Text

from bpftools.abi import EVENT_CODES, EVENT_NAMES
from bpftools.escape import terminal_safe
from bpftools.model import CLASSES
from bpftools.model.diff import COMMAND_CGROUP, COMMAND_SCOPE, TABLES, Diff, DiffRow, Side
from bpftools.views.report import _VIEWBOX, REPORT_WIDTH, stack_svg, svg_start
from bpftools.views.tables import events_dict

JSON_KEYS = {"cgroup": "cgroups", "process": "processes", "file": "files"}
KEY_NAMES = {"cgroup": "path", "process": "comm", "file": "path"}
TITLES = {"cgroup": "Cgroups (own events)", "process": "Process names (all processes of a name)", "file": "Files"}
HEADINGS = {"cgroup": "CGROUP", "process": "PROCESS", "file": "FILE"}
MARKS = {"new": ("new", "bold green"), "vanished": ("vanished", "bold red"), "changed": ("", "")}
DEFAULT_TOP = 10            # rows per table in the tables and pictures when --top is not given


# --- JSON ---------------------------------------------------------------------------------
def _side_record(side: Side) -> dict:
    return {"file": side.name, "kind": side.kind, "command": list(side.command) or None, "top": side.top,
            "events": list(side.events), "lost": side.lost,
            "events_total": sum(side.totals), "failed": side.failed}


def row_record(row: DiffRow) -> dict:
    """A diff row for JSON: before/after are the per-event counts (null: absent on that side)."""
    rec = {KEY_NAMES[row.table]: row.key, "status": row.status,
           "before": events_dict(row.before) if row.before is not None else None,
           "after": events_dict(row.after) if row.after is not None else None,
           "delta": {name: d for name, d in zip(EVENT_NAMES, row.delta()) if d},
           "change": row.change, "failed_before": row.failed_before, "failed_after": row.failed_after}
    if row.table == "process":
        rec.update(processes_before=row.rows_before, processes_after=row.rows_after)
    return rec


def document(d: Diff, top: int = 0) -> dict:
    """The report --diff --json document (man fstrace, DIFF JSON); top cuts each table (0: all)."""
    doc = {
        "type": "diff", "version": 1,
        "before": _side_record(d.before), "after": _side_record(d.after),
        "events": list(d.events), "maps": [{"old": m.old, "new": m.new} for m in d.maps], "top": top,
        "totals": {"before": events_dict(d.totals_before), "after": events_dict(d.totals_after),
                   "delta": {n: a - b for n, a, b in zip(EVENT_NAMES, d.totals_after, d.totals_before) if a != b},
                   "failed_before": d.before.failed, "failed_after": d.after.failed},
    }
    for t in TABLES:
        rows = d.tables[t][:top] if top else d.tables[t]
        doc[JSON_KEYS[t]] = [row_record(r) for r in rows]
    doc["counts"] = {JSON_KEYS[t]: dict(d.counts(t), unchanged=d.unchanged[t]) for t in TABLES}
    doc["notes"] = list(d.notes)
    return doc


def write_json(d: Diff, out, top: int = 0) -> None:
    out.write(json.dumps(document(d, top), ensure_ascii=False, indent=1) + "\n")


# --- tables -------------------------------------------------------------------------------
def _signed(n: int) -> str:
    return "%+d" % n if n else ""


def _total(n: int | None) -> str:
    return "-" if n is None else str(n)


def _side_text(label: str, side: Side) -> str:
    what = "report" if side.kind == "report" else "trace"
    cmd = " of %s" % " ".join(side.command) if side.command else ""
    return "%s %s (%s%s)" % (label, side.name, what, cmd)


def header(d: Diff) -> Text:
    t = Text()
    t.append("fstrace report --diff", style="bold")
    t.append("  " + terminal_safe(_side_text("before", d.before)) + " → "
             + terminal_safe(_side_text("after", d.after)) + "\n")
    b, a = sum(d.totals_before), sum(d.totals_after)
    t.append("events %d → %d (%+d)" % (b, a, a - b), style="bold")
    changed = [(n, x, y) for n, x, y in zip(EVENT_NAMES, d.totals_before, d.totals_after) if x != y]
    if changed:
        t.append("  " + "  ".join("%s %d → %d" % c for c in changed))
    if d.before.failed != d.after.failed:
        t.append("  failed %d → %d" % (d.before.failed, d.after.failed), style="red")
    return t


def _class_deltas(row: DiffRow) -> list[int]:
    """A row's differences per column class of the report tables (read = access, write = modify, ...)."""
    delta = row.delta()
    return [sum(delta[EVENT_CODES[e]] for e in events) for _, events in CLASSES]


def table(d: Diff, name: str, top: int) -> Table:
    """The rows that differ, with their totals and a signed difference per column class that changed."""
    rows = d.tables[name][:top] if top else d.tables[name]
    n = d.counts(name)
    title = "%s: %d new, %d vanished, %d changed, %d unchanged" % (
        TITLES[name], n["new"], n["vanished"], n["changed"], d.unchanged[name])
    if top and len(d.tables[name]) > top:
        title += " (the %d largest changes shown)" % top
    deltas = [_class_deltas(r) for r in rows]
    columns = [c for c in range(len(CLASSES)) if any(x[c] for x in deltas)]
    fails = any((r.failed_after or 0) != (r.failed_before or 0) for r in rows)
    t = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", title_style="bold", pad_edge=False,
              show_edge=False, padding=(0, 1, 0, 0))
    t.add_column("", no_wrap=True, min_width=8)
    t.add_column(Text(HEADINGS[name], style="bold"), no_wrap=True, overflow="ellipsis", max_width=70)
    numbers = [h for h in ("before", "after", "change")] + [CLASSES[c][0] for c in columns]
    numbers += ["fail"] if fails else []
    for heading in numbers:
        t.add_column(Text(heading, style="bold"), justify="right", no_wrap=True, min_width=max(len(heading), 4))
    for r, delta in zip(rows, deltas):
        mark, style = MARKS[r.status]
        label = r.key + ("  (the command's cgroup)" if r.key in (COMMAND_CGROUP, COMMAND_SCOPE) else "")
        cells = [Text(mark, style=style), Text(terminal_safe(label)), _total(r.total_before),
                 _total(r.total_after), Text("%d" % r.change, style="bold")]
        cells += [Text(_signed(delta[c]), style="green" if delta[c] > 0 else "red") for c in columns]
        if fails:
            cells.append(_signed((r.failed_after or 0) - (r.failed_before or 0)))
        t.add_row(*cells)
    return t


def renderables(d: Diff, top: int) -> list:
    out: list = [header(d)]
    for name in TABLES:
        out.append(table(d, name, top))
    if d.notes:
        out.append(Group(*[Text("note: " + terminal_safe(n), style="yellow") for n in d.notes]))
    return out


def print_diff(d: Diff, console: Console, top: int = DEFAULT_TOP) -> None:
    for part in renderables(d, top):
        console.print(part)


# --- pictures -----------------------------------------------------------------------------
CHART_ROWS = 12
GREEN, RED = "#2ca02c", "#d62728"


def chart_svg(d: Diff, top: int = DEFAULT_TOP, width: int = 860) -> str:
    """The largest changes of all three tables (top of them, at most CHART_ROWS) as signed bars of
    events after minus before: an <svg> element."""
    n = min(top, CHART_ROWS) if top else CHART_ROWS
    rows = sorted((r for t in TABLES for r in d.tables[t]), key=lambda r: -r.change)[:n]
    bar_h, top, label_w = 18, 34, 330
    height = top + bar_h * max(1, len(rows)) + 16
    mid = label_w + (width - label_w - 20) / 2
    half = (width - label_w - 20) / 2 - 50
    deltas = [(r.total_after or 0) - (r.total_before or 0) for r in rows]
    scale = max((abs(x) for x in deltas), default=0) or 1
    esc = html.escape
    parts = svg_start(width, height) + [
        '<text x="10" y="20" font-size="14" font-weight="bold" fill="#222">%s</text>'
        % esc("Largest changes: events after − before"),
        '<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#444"/>' % (mid, top - 4, mid, height - 12),
    ]
    for i, (r, delta) in enumerate(zip(rows, deltas)):
        y = top + i * bar_h
        name = "%s %s" % (r.table, r.key)
        if len(name) > 48:
            name = name[:22] + "…" + name[-25:]
        mark = {"new": " (new)", "vanished": " (vanished)"}.get(r.status, "")
        parts.append('<text x="10" y="%d" fill="#222">%s</text>' % (y + 12, esc(name + mark)))
        w = half * abs(delta) / scale
        x = mid if delta >= 0 else mid - w
        parts.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>'
                     % (x, y + 2, w, bar_h - 5, GREEN if delta >= 0 else RED))
        tx, anchor = (mid + w + 4, "start") if delta >= 0 else (mid - w - 4, "end")
        parts.append('<text x="%.1f" y="%d" text-anchor="%s" fill="#444">%s</text>'
                     % (tx, y + 12, anchor, esc("%+d" % delta)))
    if not rows:
        parts.append('<text x="%d" y="%d" fill="#888">no change</text>' % (label_w, top + 12))
    parts.append("</svg>")
    return "\n".join(parts)


def _recorded(d: Diff, top: int) -> Console:
    console = Console(record=True, width=REPORT_WIDTH, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor")
    print_diff(d, console, top)
    return console


def to_svg(d: Diff, top: int = DEFAULT_TOP) -> str:
    """The diff as one self-contained SVG (nothing fetched from the network): the bars above the tables."""
    chart = chart_svg(d, top)
    return stack_svg(chart, float(_VIEWBOX.search(chart).group(2)) + 10, _recorded(d, top), "fstrace report --diff")


HTML_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<title>fstrace report --diff</title>
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


def to_html(d: Diff, top: int = DEFAULT_TOP) -> str:
    """The diff as one self-contained, light HTML page: the bars inline, the tables as styled text."""
    page = _recorded(d, top).export_html(inline_styles=True, code_format=HTML_PAGE, theme=DEFAULT_TERMINAL_THEME)
    return page.replace("<!--chart-->", chart_svg(d, top), 1)
