"""fstrace top's pure parts: keys, key decoding, and the screen rendered through a StringIO console."""
import io
import json
import re

import pytest
from rich.console import Console
from test_model import ENTRIES, NESTED, WEB, entry, tick

from bpftools import model
from bpftools.model import Aggregator, Focus
from bpftools.views import tables, top
from bpftools.views.top import Meta, ViewState, handle_key, render_screen, split_keys

META = Meta(backend="tracepoint", kernel="6.18.44", filters=("--cgroup system.slice",))


def agg_with(*ticks):
    agg = Aggregator()
    for t in ticks:
        agg.add(t)
    return agg


def render(snap, state, width, height, **console_kw):
    console = Console(file=io.StringIO(), width=width, height=height, **console_kw)
    console.print(render_screen(snap, META, state, width, height))
    return console.file.getvalue()


ROWS = model.sort_rows(model.group_rows(ENTRIES, "process", {1: "/", 10: WEB, 11: "/db", 12: NESTED},
                                        {100: "/a"}))


@pytest.mark.parametrize("key,field,value", [
    (">", "sort", "open"), ("<", "sort", "name"), ("r", "reverse", True), ("g", "group", "process"),
    ("3", "group", "file"), ("4", "group", "event"), ("p", "paused", True), (" ", "paused", True),
    ("+", "interval", 2.0), ("-", "interval", 0.5), ("q", "quit", True), ("?", "help", True),
    ("h", "help", True), ("/", "typing", ""), ("end", "selected", 3), ("pgdn", "selected", 3),
    ("j", "selected", 1), ("down", "selected", 1), ("x", "sort", "total"),
])
def test_each_key_does_what_the_help_says(key, field, value):
    assert getattr(handle_key(ViewState(), key, ROWS), field) == value


def test_cursor_stays_within_the_rows():
    s = ViewState(selected=3)
    assert handle_key(s, "down", ROWS).selected == 3
    assert handle_key(ViewState(), "up", ROWS).selected == 0
    assert handle_key(s, "home", ROWS).selected == 0


def test_enter_drills_into_the_selected_row_and_esc_backs_out():
    s = handle_key(ViewState(group="process", selected=1), "enter", ROWS)
    assert s.focus == (Focus("process", ROWS[1].key, ROWS[1].label),) and s.selected == 0
    assert handle_key(s, "esc", ROWS).focus == ()
    assert handle_key(s, "backspace", ROWS).focus == ()
    assert handle_key(ViewState(), "enter", []).focus == ()


def test_typing_a_filter():
    s = ViewState()
    for k in ["/", "w", "e", "x", "backspace", "b", "enter"]:
        s = handle_key(s, k, ROWS)
    assert s.text == "web" and s.typing is None
    assert handle_key(s, "esc", ROWS).text == ""            # Esc outside typing clears it
    typing = handle_key(ViewState(), "/", ROWS)
    assert handle_key(typing, "q", ROWS).typing == "q"      # keys are text while typing
    assert handle_key(handle_key(typing, "a", ROWS), "esc", ROWS).text == ""


def test_help_closes_on_any_key_and_grouping_resets_drill_in():
    assert handle_key(ViewState(help=True), "x", ROWS).help is False
    s = ViewState(focus=(Focus("cgroup", WEB, "web.service"),), selected=2)
    assert handle_key(s, "g", ROWS).focus == () and handle_key(s, "1", ROWS).selected == 0


def test_interval_steps_stop_at_the_ends():
    assert handle_key(ViewState(interval=30.0), "+", ROWS).interval == 30.0
    assert handle_key(ViewState(interval=0.25), "-", ROWS).interval == 0.25
    assert handle_key(ViewState(interval=1.5), "+", ROWS).interval == 2.0


def test_split_keys_decodes_escape_sequences_and_utf8():
    assert split_keys(b"q\x1b[A\x1b[B\x1bOC\x1b[5~\x1b[6~\r\x7f\x1b") == [
        "q", "up", "down", "right", "pgup", "pgdn", "enter", "backspace", "esc"]
    assert split_keys("é/".encode()) == ["é", "/"]
    assert split_keys(b"\x1b[99;5~x") == ["x"]


@pytest.mark.parametrize("width,height", [(80, 24), (120, 40)])
def test_screen_fits_the_terminal(width, height):
    snap = model.snapshot(agg_with(tick()), "cgroup")
    out = render(snap, ViewState(), width, height)
    lines = out.splitlines()
    assert len(lines) <= height
    assert all(len(line) <= width for line in lines)
    assert re.match(r"fstrace top  \d\d:\d\d:\d\d  every 1s  up 0:00:00  tracepoint on 6\.18\.44", lines[0])
    assert "filters: --cgroup system.slice" in out
    assert "web.service" in out and "worker" in out
    head = next(line for line in lines if line.startswith("CGROUP"))
    assert "total▼" in head and "open" in head and "write" in head
    row = next(line for line in lines if "web.service" in line)
    assert row.split()[-3:] == ["370", "7", "█"]           # total/s, failed/s, trend of one tick


def test_rates_are_per_second_of_the_tick():
    snap = model.snapshot(agg_with(tick(elapsed=2.0)), "process")
    out = render(snap, ViewState(group="process"), 120, 40)
    row = next(line for line in out.splitlines() if line.startswith("nginx[42]"))
    assert " 160 " in row                          # 320 events in 2 s
    assert "events/s 201" in out                   # 402 in 2 s


def test_many_rows_scroll_to_keep_the_selection_visible():
    many = [entry(10, pid, 100, open=1000 - pid) for pid in range(100)]
    snap = model.snapshot(agg_with(tick(many)), "process")
    out = render(snap, ViewState(group="process", selected=60), 80, 24)
    assert "[60]" in out and "[0]" not in out
    assert len(out.splitlines()) <= 24


def test_drill_in_screen_shows_processes_and_files_of_the_cgroup():
    focus = (Focus("cgroup", WEB, "web.service"),)
    snap = model.snapshot(agg_with(tick()), "cgroup", focus=focus)
    out = render(snap, ViewState(focus=focus), 120, 40)
    assert "processes of web.service" in out and "files of web.service" in out
    assert "nginx[42]" in out and "worker[43]" in out and "/srv/www/app.log" in out
    assert "postgres" not in out
    assert "group cgroup › web.service" in out


def test_help_screen_lists_every_key_and_the_columns_when_they_fit():
    snap = model.snapshot(agg_with(tick()), "cgroup")
    out = render(snap, ViewState(help=True), 120, 40)
    for keys, _ in top.KEYS:
        assert keys in out
    assert "the row's total per tick" in out
    small = render(snap, ViewState(help=True), 80, 24)
    assert all(keys in small for keys, _ in top.KEYS) and "the row's total per tick" not in small
    assert len(small.splitlines()) <= 24


def test_event_grouping_columns():
    snap = model.snapshot(agg_with(tick()), "event")
    out = render(snap, ViewState(group="event"), 100, 30)
    head = next(line for line in out.splitlines() if line.startswith("EVENT"))
    assert head.split() == ["EVENT", "cgroups", "procs", "files", "total▼", "fail", "trend"]


def test_empty_tick_says_so():
    snap = model.snapshot(agg_with(tick([])), "cgroup")
    assert "no file activity in the last 1s" in render(snap, ViewState(), 80, 24)


def test_no_color_means_no_escape_sequences():
    snap = model.snapshot(agg_with(tick()), "cgroup")
    out = render(snap, ViewState(), 120, 40, force_terminal=True, no_color=True)
    assert "\x1b[3" not in out and "\x1b[9" not in out      # bold/reverse may stay, colours may not
    coloured = render(snap, ViewState(), 120, 40, force_terminal=True)
    assert "\x1b[" in coloured


def test_hostile_names_never_reach_the_terminal_raw():
    t = model.Tick(ts=1.0, elapsed=1.0, entries=[entry(10, 7, 5, comm=b"ev\x1bil", open=1)],
                   cgroups={10: "/bad\x1b[31m.service"}, files={5: "/tmp/a\nb"})
    for group in model.GROUPINGS:
        snap = model.snapshot(agg_with(t), group)
        out = render(snap, ViewState(group=group), 120, 40)
        assert "\x1b" not in out and "a\nb" not in out


def test_sparkline_scales_to_the_row_maximum():
    assert tables.spark([0, 1, 2, 4, 8], 5) == " ▁▂▄█"
    assert tables.spark([3], 4) == "   █"
    assert tables.spark([], 3) == "   "


@pytest.mark.parametrize("x,text", [(0, "0"), (0.5, "0.5"), (7, "7"), (830.4, "830"), (9999, "9999"),
                                    (12_400, "12.4k"), (1_234_567, "1.2M"), (123_456, "123k")])
def test_human_numbers_fit_six_characters(x, text):
    assert tables.human(x) == text


def test_json_snapshot_has_every_grouping_and_exact_counts():
    agg = agg_with(tick())
    snap = model.snapshot(agg, groupings=model.GROUPINGS, trend_rows=0)
    rec = json.loads(json.dumps(top.snapshot_record(snap, META)))
    assert rec["type"] == "snapshot" and rec["total"] == 402 and rec["failed"] == 7
    assert {"cgroups", "processes", "files", "event_types"} <= set(rec)
    web = next(c for c in rec["cgroups"] if c["path"] == WEB)
    assert web["unit"] == "web.service"
    assert web["total"] == 320 and web["subtree_total"] == 370 and web["events"]["modify"] == 200
    nginx = next(p for p in rec["processes"] if p["pid"] == 42)
    assert nginx["events"] == {**{k: 0 for k in model.EVENT_NAMES}, "open": 30, "close_nowrite": 30,
                               "access": 60, "modify": 200}


@pytest.mark.parametrize("room,wanted,shares", [(20, [1, 50], [1, 19]), (20, [50, 2], [18, 2]),
                                                (20, [50, 50], [10, 10]), (20, [3, 4], [3, 17]), (20, [7], [20])])
def test_two_tables_share_the_screen_by_need(room, wanted, shares):
    assert top.split_room(room, wanted) == shares
