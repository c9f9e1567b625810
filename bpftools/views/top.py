"""`fstrace top`: a live, keyboard-driven view of the model's last tick.

Pure parts first: ViewState and handle_key() (what each key does),
split_keys() (bytes from a terminal -> key names) and render_screen()
(snapshot -> renderable), all tested without a terminal.  Then the sinks the
session drives: Interactive (rich Live on the alternate screen, keys read in
cbreak mode between ticks) and Batch (plain tables or one JSON document per
tick, for pipes and `-b -n N`).
"""
from __future__ import annotations

import json
import os
import select
import termios
import time
import tty
from dataclasses import dataclass, replace

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from bpftools import model
from bpftools.escape import terminal_safe
from bpftools.model import Aggregator, Focus, Snapshot
from bpftools.session.contract import CountSink
from bpftools.views.tables import COLUMNS, human, row_record, rows_table, sort_arrow, sort_columns
from bpftools.views.text import human_bytes

_dumps = json.JSONEncoder(ensure_ascii=False, check_circular=False, separators=(",", ":")).encode
INTERVALS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)
PAGE = 10
GROUP_KEYS = {"1": "cgroup", "2": "process", "3": "comm", "4": "file", "5": "event"}

# key -> what it does: the help screen and the man page show this table
KEYS = (
    ("? h", "show or hide this help"),
    ("< >", "sort by the column to the left / right"),
    ("r", "reverse the sort order"),
    ("g", "next grouping"),
    ("1 2 3 4 5", "by cgroup, process, command name, file, event"),
    ("a", "running totals since pressed / rates per tick"),
    ("↑ ↓ j k PgUp PgDn Home End", "select a row (it stays selected as rows move)"),
    ("Enter →", "drill into the selected row"),
    ("Esc Backspace ←", "back out of a drill-in, or clear the filter"),
    ("/", "filter rows by text (Enter keeps, Esc drops)"),
    ("p space", "pause / resume the display (counting goes on)"),
    ("+ -", "refresh interval longer / shorter"),
    ("q", "quit"),
)


@dataclass(frozen=True)
class ViewState:
    """Everything the keys change."""

    group: str = "cgroup"
    sort: str = model.DEFAULT_SORT
    reverse: bool = False
    focus: tuple[Focus, ...] = ()
    text: str = ""
    typing: str | None = None       # the filter being typed after "/"
    selected: int = 0
    selected_key: object = None     # the selected row's key: the selection stays on its row as rows move
    paused: bool = False
    help: bool = False
    interval: float = 1.0
    quit: bool = False
    failed: bool = False            # the fail column (--failed)
    accumulate: bool = False        # running totals instead of per-tick rates


def follow_selection(state: ViewState, rows: list[model.Row]) -> ViewState:
    """The index of the selected row in rows as they are now (htop keeps its selection on its item)."""
    if not rows:
        return replace(state, selected=0)
    if state.selected_key is not None:
        for i, row in enumerate(rows):
            if row.key == state.selected_key:
                return replace(state, selected=i)
    i = min(state.selected, len(rows) - 1)      # the row is gone: stay at its place
    return replace(state, selected=i, selected_key=rows[i].key)


def _select(state: ViewState, rows: list[model.Row], index: int) -> ViewState:
    return replace(state, selected=index, selected_key=rows[index].key if rows else None)


def _step(seq, value, delta: int):
    i = seq.index(value) if value in seq else 0
    return seq[(i + delta) % len(seq)]


def _primary(state: ViewState) -> str:
    """The grouping of the table the keys act on."""
    return model.views_for(state.group, state.focus)[0]


def _interval(current: float, delta: int) -> float:
    if delta > 0:
        return next((i for i in INTERVALS if i > current), INTERVALS[-1])
    return next((i for i in reversed(INTERVALS) if i < current), INTERVALS[0])


def handle_key(state: ViewState, key: str, rows: list[model.Row]) -> ViewState:
    """The state after one key; rows are those of the table the cursor moves in."""
    if state.typing is not None:
        if key == "enter":
            return replace(state, text=state.typing, typing=None, selected=0, selected_key=None)
        if key == "esc":
            return replace(state, typing=None)
        if key == "backspace":
            return replace(state, typing=state.typing[:-1])
        if len(key) == 1 and key.isprintable():
            return replace(state, typing=state.typing + key)
        return state
    if state.help and key not in ("q",):
        return replace(state, help=False)
    last = max(0, len(rows) - 1)
    moves = {"up": -1, "k": -1, "down": 1, "j": 1, "pgup": -PAGE, "pgdn": PAGE}
    if key in moves:
        return _select(state, rows, min(last, max(0, state.selected + moves[key])))
    if key == "home":
        return _select(state, rows, 0)
    if key == "end":
        return _select(state, rows, last)
    if key in ("?", "h"):
        return replace(state, help=True)
    if key == "q":
        return replace(state, quit=True)
    if key in ("<", ">"):
        order = sort_columns(_primary(state), state.failed)
        i = order.index(state.sort) if state.sort in order else order.index("total")
        return replace(state, sort=order[max(0, min(len(order) - 1, i + (1 if key == ">" else -1)))])
    if key == "a":
        return replace(state, accumulate=not state.accumulate)
    if key == "r":
        return replace(state, reverse=not state.reverse)
    if key == "g":
        return replace(state, group=_step(model.GROUPINGS, state.group, 1), focus=(), selected=0, selected_key=None)
    if key in GROUP_KEYS:
        return replace(state, group=GROUP_KEYS[key], focus=(), selected=0, selected_key=None)
    if key in ("enter", "right") and rows:
        row = rows[min(state.selected, last)]
        return replace(state, focus=state.focus + (Focus(row.group, row.key, row.label),), selected=0,
                       selected_key=None)
    if key in ("esc", "backspace", "left"):
        if state.focus:
            return replace(state, focus=state.focus[:-1], selected=0, selected_key=None)
        return replace(state, text="", selected=0, selected_key=None)
    if key == "/":
        return replace(state, typing="")
    if key in ("p", " "):
        return replace(state, paused=not state.paused)
    if key in ("+", "-"):
        return replace(state, interval=_interval(state.interval, 1 if key == "+" else -1))
    return state


_SEQUENCES = {
    b"\x1b[A": "up", b"\x1b[B": "down", b"\x1b[C": "right", b"\x1b[D": "left",
    b"\x1bOA": "up", b"\x1bOB": "down", b"\x1bOC": "right", b"\x1bOD": "left",
    b"\x1b[5~": "pgup", b"\x1b[6~": "pgdn", b"\x1b[H": "home", b"\x1b[F": "end",
    b"\x1b[1~": "home", b"\x1b[4~": "end", b"\x1bOH": "home", b"\x1bOF": "end",
}
_SINGLE = {b"\r": "enter", b"\n": "enter", b"\x7f": "backspace", b"\x08": "backspace", b"\x1b": "esc"}


def split_keys(data: bytes) -> list[str]:
    """Bytes read from a terminal -> key names ("up", "enter", "q", ...); unknown sequences are dropped."""
    keys = []
    i = 0
    while i < len(data):
        if data[i:i + 1] == b"\x1b" and i + 1 < len(data) and data[i + 1:i + 2] in (b"[", b"O"):
            j = i + 2
            while j < len(data) and not (0x40 <= data[j] <= 0x7E):
                j += 1
            seq = data[i:j + 1]
            if seq in _SEQUENCES:
                keys.append(_SEQUENCES[seq])
            i = j + 1
            continue
        one = data[i:i + 1]
        if one in _SINGLE:
            keys.append(_SINGLE[one])
            i += 1
            continue
        n = 1
        while n < 4 and i + n <= len(data):     # one UTF-8 character
            try:
                keys.append(data[i:i + n].decode("utf-8"))
                break
            except UnicodeDecodeError:
                n += 1
        i += n
    return keys


# --- rendering -------------------------------------------------------------------------
@dataclass(frozen=True)
class Meta:
    """What the header says about the session."""

    backend: str = "?"
    kernel: str = "?"
    filters: tuple[str, ...] = ()
    bytes: bool = True          # the backend knows the bytes each read and write moved
    latency: bool = True        # the backend times opens, reads, writes and syncs


def wall_clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def duration_text(seconds: float) -> str:
    s = int(seconds)
    days, s = divmod(s, 86400)
    text = "%d:%02d:%02d" % (s // 3600, s % 3600 // 60, s % 60)
    return ("%dd " % days + text) if days else text


def header(snap: Snapshot, meta: Meta, state: ViewState, interactive: bool = True) -> Group:
    """Four lines, each cropped to the terminal: the session, the rates, the health, the view;
    and the bytes read and written, above the view, when the backend knows them (not under the help)."""
    per = snap.elapsed or 1.0
    classes = [(name, sum(snap.totals[model.EVENT_CODES[e]] for e in evs)) for name, evs in model.CLASSES]
    line1 = Text.assemble(
        ("fstrace top", "bold"), "  ", wall_clock(snap.ts), "  every %gs" % state.interval,
        ("  PAUSED" if state.paused else "", "bold reverse"), "  up ", duration_text(snap.uptime),
        "  ", (meta.backend, "bold"), " on ", meta.kernel,
    )
    if not snap.elapsed:            # nothing counted yet: no rate to show, not a rate of 0
        line2 = Text.assemble(("events/s ", "bold"), ("…", "bold"),
                              ("  counting: the first figures come after %gs" % state.interval, "dim"))
        classes = []
    else:
        line2 = Text.assemble(("events/s ", "bold"), (human(sum(snap.totals) / per), "bold"))
    for name, n in classes:
        if n:
            line2.append("  %s %s" % (name, human(n / per)))
    if snap.failed:
        line2.append("  failed %s" % human(snap.failed / per), style="bold")
    warn = "bold reverse" if snap.lost_total or snap.overflow_total else ""
    line3 = Text.assemble(
        "cgroups %d" % snap.tracked,
        ("  lost %d  overflow %d" % (snap.lost_total, snap.overflow_total), warn),
        "  filters: " + (terminal_safe(" ".join(meta.filters)) if meta.filters else "none"),
    )
    lines = [line1, line2, line3]
    if meta.bytes and not state.help:   # everything counted, as iotop's "Total DISK READ", then since top started
        lines.append(Text.assemble(
            ("read/s ", "bold"), (human_bytes(snap.read_bytes / per), "bold"),
            ("  write/s ", "bold"), (human_bytes(snap.write_bytes / per), "bold"),
            "  since the start: read %s, written %s" % (human_bytes(snap.read_bytes_total),
                                                         human_bytes(snap.write_bytes_total))))
    where = " › ".join(terminal_safe(f.label) for f in snap.focus)
    line4 = Text.assemble(("group ", "dim"), (snap.group, "bold"),
                          ((" › " + where) if where else "", "bold"),
                          ("  sort ", "dim"), snap.sort + " " + sort_arrow(snap.sort, snap.reverse))
    if snap.accumulated:
        line4.append("  totals", style="bold reverse")
        line4.append(" since %s" % wall_clock(snap.accumulated_since or snap.ts), style="dim")
    if state.typing is not None:
        line4.append("  filter: ", style="bold")
        line4.append(terminal_safe(state.typing) + "█")
    elif snap.text:
        line4.append("  filter ", style="dim")
        line4.append(terminal_safe(snap.text), style="bold")
    if interactive:
        line4.append("   ? help", style="dim")
    lines.append(line4)
    for line in lines:
        line.no_wrap = True
        line.overflow = "ellipsis"
    return Group(*lines)


LEGEND = ("open read write close create delete rename attrib exec sync: events per class (write: + truncates; "
          "delete: + rmdirs; attrib: chmod, chown, utimes, xattrs); total: all; fail: failed (--failed); "
          "rbytes wbytes: bytes read, written; time avg: I/O time (%% of wall), mean; trend: %d ticks."
          % model.HISTORY)


def help_panel(lines: int, width: int = 80) -> Panel:
    """The keys, then the columns: one per line when there is room, else packed into a few lines."""
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    for keys, what in KEYS:
        t.add_row(keys, what)
    if lines >= len(KEYS) + len(COLUMNS) + 6:      # borders, a blank row, wrapped lines
        t.add_row("", "")
        for column, what in COLUMNS:
            t.add_row(Text(column, style="dim"), what)
        return Panel(t, title="fstrace top: keys", subtitle="any key closes this", expand=False)
    legend = Text.assemble(("Columns: ", "bold"), LEGEND)
    return Panel(Group(t, Text(""), legend), title="fstrace top: keys", subtitle="any key closes this",
                 expand=False, width=min(width, 100))


TABLE_CHROME = 2        # column heads, rule (and a title line in a drill-in)


def _window(rows, selected: int, room: int) -> tuple[list, int | None]:
    """The rows that fit in room lines, scrolled so the selected one shows; its index among them."""
    if room <= 0:
        return [], None
    start = max(0, min(selected - room + 1, len(rows) - room)) if selected >= room else 0
    return rows[start:start + room], (selected - start if 0 <= selected - start < room else None)


def split_room(room: int, wanted: list[int]) -> list[int]:
    """Lines per table: equal shares, and what one table does not need goes to the other."""
    if len(wanted) == 1:
        return [room]
    first = min(wanted[0], max(room // 2, room - wanted[1]))
    return [first, room - first]


def render_screen(snap: Snapshot, meta: Meta, state: ViewState, width: int, height: int):
    """The whole screen for one snapshot at width x height."""
    head = header(snap, meta, state)
    parts = [head]
    header_lines = len(head.renderables)
    if state.help:
        parts.append(help_panel(height - header_lines, width))
        return Group(*parts)
    titles = len(snap.tables) if snap.focus else 0
    room = height - header_lines - TABLE_CHROME * len(snap.tables) - titles
    shares = split_room(room, [len(rows) for _, rows in snap.tables])
    for i, ((by, rows), lines) in enumerate(zip(snap.tables, shares)):
        shown, sel = _window(rows, state.selected if i == 0 else -1, max(1, lines))
        title = None
        if snap.focus:
            title = "%s of %s" % ({"process": "processes", "file": "files", "event": "events", "comm": "commands",
                                   "cgroup": "cgroups"}[by], terminal_safe(snap.focus[-1].label))
        empty = "no file activity in the last %gs" % round(snap.elapsed, 1) if not snap.text else "no row matches"
        if snap.accumulated:
            empty = "no file activity since %s" % wall_clock(snap.accumulated_since or snap.ts)
        parts.append(rows_table(shown, by, width, per=None if snap.accumulated else snap.elapsed or 1.0,
                                sort=snap.sort, reverse=snap.reverse, selected=sel, trends=snap.trends,
                                failed=state.failed or bool(snap.failed), title=title, empty=empty,
                                moved=meta.bytes, timed=meta.latency))
    return Group(*parts)


def primary_rows(snap: Snapshot | None) -> list[model.Row]:
    return snap.tables[0][1] if snap and snap.tables else []


# --- the sinks ---------------------------------------------------------------------------
class KeyReader:
    """The terminal on fd in cbreak mode (no echo, keys at once, Ctrl-C still a signal)."""

    def __init__(self, fd: int):
        self.fd = fd
        self._saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)

    def read(self) -> list[str]:
        data = b""
        while select.select([self.fd], [], [], 0)[0]:
            chunk = os.read(self.fd, 1024)
            if not chunk:
                break
            data += chunk
        return split_keys(data)

    def close(self) -> None:
        termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)


class Interactive(CountSink):
    """The TUI: one redraw per tick, per key and per resize."""

    def __init__(self, console: Console, state: ViewState, meta: Meta, keys_fd: int, iterations: int | None = None):
        self.console = console
        self.state = state
        self.meta = meta
        self.iterations = iterations
        self.done = 0
        self.agg = Aggregator(cumulative=state.accumulate)
        self.snap: Snapshot | None = None
        self._keys_fd = keys_fd
        self._keys: KeyReader | None = None
        self._live: Live | None = None
        self._size = None

    @property
    def interval(self) -> float:
        return self.state.interval

    @property
    def finished(self) -> bool:
        return self.state.quit or (self.iterations is not None and self.done >= self.iterations)

    def start(self, info, ts: float, pid: int) -> None:
        self.meta = replace(self.meta, backend=info.backend, kernel=info.kernel, bytes=info.bytes,
                            latency=info.latency)
        self._keys = KeyReader(self._keys_fd)
        self._live = Live(console=self.console, screen=True, auto_refresh=False,
                          redirect_stdout=False, redirect_stderr=False)
        self._live.start()
        self._rebuild()

    def cgroup(self, change) -> None:
        """Cgroup changes reach top through the next tick's names."""

    def counts(self, tick: model.Tick) -> None:
        self.done += 1
        if self.state.paused:
            return
        self.agg.add(tick)
        self._rebuild()

    def _rebuild(self) -> None:
        s = self.state
        self.agg.set_cumulative(s.accumulate)
        self.snap = model.snapshot(self.agg, s.group, s.sort, s.reverse, s.focus, s.text, accumulated=s.accumulate)
        self.state = follow_selection(s, primary_rows(self.snap))
        self._draw()

    def _draw(self) -> None:
        size = self.console.size
        self._size = size
        self._live.update(render_screen(self.snap, self.meta, self.state, size.width, size.height), refresh=True)

    def flush(self) -> None:
        if self._keys is None:
            return
        keys = self._keys.read()
        for key in keys:
            self.state = handle_key(self.state, key, primary_rows(self.snap))
        if keys:
            self._rebuild()
        elif self.console.size != self._size:
            self._draw()

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
        if self._keys is not None:
            self._keys.close()


class Batch(CountSink):
    """Plain tables (or one JSON document) per tick on a stream, for -n ticks."""

    def __init__(self, console: Console, state: ViewState, meta: Meta, iterations: int | None,
                 as_json: bool, out):
        self.console = console
        self.state = state
        self.meta = meta
        self.iterations = iterations
        self.as_json = as_json
        self.out = out
        self.agg = Aggregator(cumulative=state.accumulate)
        self.done = 0

    @property
    def interval(self) -> float:
        return self.state.interval

    @property
    def finished(self) -> bool:
        return self.iterations is not None and self.done >= self.iterations

    def start(self, info, ts: float, pid: int) -> None:
        self.meta = replace(self.meta, backend=info.backend, kernel=info.kernel, bytes=info.bytes,
                            latency=info.latency)

    def cgroup(self, change) -> None:
        """Batch tables show cgroups through each tick's names."""

    def counts(self, tick: model.Tick) -> None:
        if self.finished:
            return
        self.agg.add(tick)
        self.done += 1
        s = self.state
        if self.as_json:
            snap = model.snapshot(self.agg, s.group, s.sort, s.reverse, text=s.text,
                                  groupings=model.GROUPINGS, trend_rows=0, accumulated=s.accumulate)
            self.out.write(_dumps(snapshot_record(snap, self.meta)) + "\n")
            return
        snap = model.snapshot(self.agg, s.group, s.sort, s.reverse, text=s.text, accumulated=s.accumulate)
        self.console.print(header(snap, self.meta, s, interactive=False))
        by, rows = snap.tables[0]
        self.console.print(rows_table(rows, by, self.console.width,
                                      per=None if snap.accumulated else snap.elapsed or 1.0, sort=snap.sort,
                                      reverse=snap.reverse, failed=s.failed or bool(snap.failed),
                                      moved=self.meta.bytes, timed=self.meta.latency))

    def flush(self) -> None:
        self.out.flush()
        self.console.file.flush()


def snapshot_record(snap: Snapshot, meta: Meta) -> dict:
    """One top --json document (docs/top-report.md: TOP JSON)."""
    rec = {
        "type": "snapshot", "ts": round(snap.ts, 6), "interval_s": round(snap.elapsed, 6),
        "uptime_s": round(snap.uptime, 3), "backend": meta.backend, "kernel": meta.kernel,
        "filters": list(meta.filters),
        "events": dict(zip(model.EVENT_NAMES, snap.totals)), "total": sum(snap.totals), "failed": snap.failed,
        "lost": snap.lost, "overflow": snap.overflow, "cgroups_tracked": snap.tracked,
        "accumulated_since": round(snap.accumulated_since, 6) if snap.accumulated and snap.accumulated_since else None,
        "read_bytes": snap.read_bytes if meta.bytes else None,
        "write_bytes": snap.write_bytes if meta.bytes else None,
    }
    names = {"cgroup": "cgroups", "process": "processes", "comm": "commands", "file": "files",
             "event": "event_types"}
    for by, rows in snap.tables:
        rec[names[by]] = [row_record(r, moved=meta.bytes, timed=meta.latency) for r in rows]
    return rec

