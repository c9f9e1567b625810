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
from bpftools.views.tables import COLUMNS
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
    (">", "sort", "total"), ("<", "sort", "sync"), ("r", "reverse", True), ("g", "group", "process"),
    ("3", "group", "comm"), ("4", "group", "file"), ("5", "group", "event"), ("a", "accumulate", True), ("p", "paused", True), (" ", "paused", True),
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
    assert "read/s 320 KiB  write/s 205 KiB  since the start: read 320 KiB, written 205 KiB" in out
    assert "web.service" in out and "worker" in out
    head = next(line for line in lines if line.startswith("CGROUP"))
    assert "total▼" in head and "open" in head and "write" in head
    time_cols = ["time", "avg"] if width >= 120 else []         # tables.TIME_COLS_FROM
    assert head.split()[-3 - len(time_cols):] == ["rbytes", "wbytes"] + time_cols + ["trend"]
    row = next(line for line in lines if "web.service" in line)
    # total/s, failed/s, bytes read and written per second (60 x 4 KiB; 200 x 100 + 50 x 512), trend
    times = ["-", "-"] if width >= 120 else []                  # nothing timed in this tick
    assert row.split()[-7 - len(times):] == ["370", "7", "240", "KiB", "44.5", "KiB"] + times + ["█"]


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
    assert "the row's events per second in each of the last" in out
    small = render(snap, ViewState(help=True), 80, 24)
    assert all(keys in small for keys, _ in top.KEYS) and "the row's events per second" not in small
    assert "Columns:" in small and all(column in small for column, _ in COLUMNS)    # the legend, packed
    assert len(small.splitlines()) <= 24


def test_event_grouping_columns():
    snap = model.snapshot(agg_with(tick()), "event")
    out = render(snap, ViewState(group="event"), 100, 30)
    head = next(line for line in out.splitlines() if line.startswith("EVENT"))
    assert head.split() == ["EVENT", "cgroups", "procs", "files", "total▼", "fail", "rbytes", "wbytes", "time",
                            "trend"]


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


def styles_of(renderable, width=120, height=30) -> set:
    """Every style the renderable uses, as rich records them."""
    console = Console(file=io.StringIO(), width=width, height=height, color_system="truecolor", force_terminal=True)
    console.print(renderable)
    return set(re.findall(r"\x1b\[([\d;]+)m", console.file.getvalue()))


def test_only_bold_dim_and_reverse_are_used_as_the_man_page_promises():
    agg = agg_with(tick(lost=3))
    state = ViewState(failed=True, focus=(Focus("cgroup", WEB, "web.service"),))
    snap = model.snapshot(agg, "cgroup", focus=state.focus)
    codes = set()
    for s in styles_of(render_screen(snap, META, state, 120, 30)):
        codes |= set(s.split(";"))
    assert codes <= {"0", "1", "2", "4", "7", "22", "24", "27"}, codes      # no colour (30-37, 38;..., 90-97)


def test_the_selection_stays_on_its_row_when_rows_move():
    a = [entry(10, 42, 100, open=30), entry(10, 43, 101, open=20), entry(10, 44, 101, open=10)]
    rows = model.sort_rows(model.group_rows(a, "process", {10: WEB}, {}))
    state = handle_key(ViewState(group="process"), "down", rows)          # select pid 43, second
    assert state.selected == 1 and state.selected_key == 43
    b = [entry(10, 42, 100, open=5), entry(10, 43, 101, open=20), entry(10, 44, 101, open=90)]
    rows = model.sort_rows(model.group_rows(b, "process", {10: WEB}, {}))   # 44, 43, 42 now
    state = top.follow_selection(state, rows)
    assert rows[state.selected].key == 43
    assert handle_key(state, "enter", rows).focus[-1].key == 43
    gone = [r for r in rows if r.key != 43]
    state = top.follow_selection(state, gone)
    assert state.selected == 1 and state.selected_key == gone[1].key     # gone: the place is kept


def test_sort_keys_step_through_the_columns_on_screen_and_the_sort_column_is_always_shown():
    state = ViewState(group="process")
    assert handle_key(state, "<", []).sort == "sync"            # left of total, not "name"
    assert handle_key(replace_state(state, sort="name"), "<", []).sort == "name"
    assert handle_key(replace_state(state, failed=True), ">", []).sort == "failed"
    assert handle_key(state, ">", []).sort == "total"            # no fail column: nothing right of total
    snap = model.snapshot(agg_with(tick()), "process", sort="exec")
    narrow = render(snap, ViewState(group="process", sort="exec"), 80, 24)
    head = next(line for line in narrow.splitlines() if line.startswith("PROCESS"))
    assert "exec▼" in head                                     # exec is the first to go on a narrow screen
    snap = model.snapshot(agg_with(tick()), "process", sort="name", reverse=True)
    out = render(snap, ViewState(group="process", sort="name", reverse=True), 120, 24)
    assert "sort name ▲" in out and "PROCESS▲" in out          # header and column agree


def replace_state(state, **kw):
    from dataclasses import replace
    return replace(state, **kw)


def test_command_grouping_folds_short_lived_processes_into_one_row():
    mvs = [entry(10, pid, 100 + pid, comm=b"mv", rename=1) for pid in range(200, 230)]
    rows = model.group_rows(mvs + [entry(10, 42, 100, open=3)], "comm", {10: WEB}, {})
    by = {r.key: r for r in rows}
    assert by["mv"].total == 30 and by["mv"].extra["processes"] == 30
    snap = model.snapshot(agg_with(tick(mvs)), "comm")
    out = render(snap, ViewState(group="comm"), 100, 24)
    assert re.search(r"^mv\s+30\s", out, re.M)
    assert top.snapshot_record(model.snapshot(agg_with(tick(mvs)), groupings=model.GROUPINGS), META)[
        "commands"][0]["processes"] == 30


def test_running_totals_add_up_ticks_and_say_since_when():
    agg = Aggregator(cumulative=True)
    for i in range(3):
        agg.add(tick(ts=1000.0 + i))
    snap = model.snapshot(agg, "process", accumulated=True)
    web = next(r for r in snap.tables[0][1] if r.key == 42)
    assert web.total == 3 * (30 + 30 + 60 + 200)
    out = render(snap, ViewState(group="process", accumulate=True), 120, 24)
    assert "totals since" in out and re.search(r"nginx\[42\].* %d " % (3 * 320), out)


def test_first_frame_says_counting_not_zero():
    snap = model.snapshot(Aggregator(), "cgroup")
    out = render(snap, ViewState(), 100, 24)
    assert "events/s …" in out and "events/s 0" not in out


def test_trends_are_rates_so_a_longer_interval_draws_no_spike():
    agg = Aggregator()
    agg.add(tick(elapsed=1.0, ts=1001.0))
    agg.add(tick(entries=[e._replace(counts=tuple(2 * n for n in e.counts)) for e in ENTRIES], elapsed=2.0,
                 ts=1003.0))         # the same rate over a tick twice as long (+)
    row = next(r for r in agg.rows("process") if r.key == 42)
    assert agg.trend(row) == [320.0, 320.0]


def test_process_rows_show_their_parent():
    agg = Aggregator()
    agg.add(model.Tick(ts=1001.0, elapsed=1.0, entries=list(ENTRIES), cgroups={1: "/", 10: WEB, 11: "/db", 12: NESTED},
                       files={}, ppids={42: 1, 43: 42}))
    snap = model.snapshot(agg, "process")
    out = render(snap, ViewState(group="process"), 120, 24)
    head = next(line for line in out.splitlines() if line.startswith("PROCESS"))
    assert head.split()[1] == "parent"
    assert re.search(r"^worker\[43\]\s+42\s", out, re.M)
    rec = top.snapshot_record(model.snapshot(agg, groupings=model.GROUPINGS), META)
    assert {p["pid"]: p["ppid"] for p in rec["processes"]} == {42: 1, 43: 42, 50: None, 1: None}
