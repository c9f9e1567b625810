"""`fstrace report --diff`: a model.diff.Diff as tables, one JSON document, SVG and HTML.

Every format is written from the same Diff; tables and pictures show the
first `top` rows of each table (0: all), the JSON document every row unless
a top is given (so a script sees everything by default).
"""
from __future__ import annotations

import io
import json

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from bpftools.abi import EVENT_NAMES
from bpftools.escape import terminal_safe
from bpftools.model.diff import COMMAND_CGROUP, TABLES, Diff, DiffRow, Side
from bpftools.views.report import _FONT_FACE, HTML_PAGE, REPORT_WIDTH
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


def table(d: Diff, name: str, top: int) -> Table:
    rows = d.tables[name][:top] if top else d.tables[name]
    n = d.counts(name)
    title = "%s: %d new, %d vanished, %d changed, %d unchanged" % (
        TITLES[name], n["new"], n["vanished"], n["changed"], d.unchanged[name])
    if top and len(d.tables[name]) > top:
        title += " (the %d largest changes shown)" % top
    columns = [c for c, _ in enumerate(EVENT_NAMES) if any(r.delta()[c] for r in rows)]
    fails = any((r.failed_after or 0) != (r.failed_before or 0) for r in rows)
    t = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", title_style="bold", pad_edge=False,
              show_edge=False, padding=(0, 1, 0, 0))
    t.add_column("", no_wrap=True)
    t.add_column(Text(HEADINGS[name], style="bold"), no_wrap=True, overflow="ellipsis", max_width=70)
    for heading in ("before", "after", "change"):
        t.add_column(Text(heading, style="bold"), justify="right", no_wrap=True)
    for c in columns:
        t.add_column(Text(EVENT_NAMES[c], style="bold"), justify="right", no_wrap=True)
    if fails:
        t.add_column(Text("fail", style="bold"), justify="right", no_wrap=True)
    for r in rows:
        mark, style = MARKS[r.status]
        label = r.key + ("  (the command's cgroup)" if r.key == COMMAND_CGROUP else "")
        delta = r.delta()
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
def _recorded(d: Diff, top: int) -> Console:
    console = Console(record=True, width=REPORT_WIDTH, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor")
    print_diff(d, console, top)
    return console


def to_svg(d: Diff, top: int = DEFAULT_TOP) -> str:
    """The diff tables as one self-contained SVG (nothing fetched from the network)."""
    return _FONT_FACE.sub("", _recorded(d, top).export_svg(title="fstrace report --diff")) + "\n"


def to_html(d: Diff, top: int = DEFAULT_TOP) -> str:
    """The diff tables as one self-contained HTML page."""
    page = _recorded(d, top).export_html(inline_styles=True, code_format=HTML_PAGE)
    return page.replace("<!--chart-->", "", 1).replace("<title>fstrace report</title>",
                                                        "<title>fstrace report --diff</title>", 1)
