"""fstrace report's formats: one Report, the same numbers in tables, JSON, CSV, SVG and HTML."""
import csv
import io
import json
import re

from rich.console import Console
from test_model import NESTED, WEB, tick

from bpftools import model
from bpftools.model import Aggregator
from bpftools.views import report

META = report.ReportMeta(backend="tracepoint", kernel="6.18.44", command=("make", "-j2"),
                         command_cgroup="/fstrace-run-1", exit_status=3)


def sample(top=0, by=report.TABLES):
    agg = Aggregator(cumulative=True)
    for i in range(4):
        agg.add(tick(ts=1000.0 + i, overflow=(0,) * 9 + (1, 0)))
    agg.cgroup_change("mkdir", 12, NESTED, 999.5)
    agg.cgroup_change("rmdir", 12, NESTED, 1001.75)
    return report.build(agg, META, top=top, by=by)


def test_document_has_stable_keys_and_the_run_totals():
    doc = json.loads(json.dumps(report.document(sample())))
    assert list(doc) == ["type", "version", "scope", "backend", "kernel", "start", "end", "duration_s", "top",
                         "sort", "totals", "cgroups", "processes", "files", "dirs", "event_types", "errors",
                         "cgroup_lifecycle", "timeline", "latency", "slowest_files", "source", "notes"]
    assert doc["scope"] == {"command": ["make", "-j2"], "command_cgroup": "/fstrace-run-1", "exit_status": 3,
                            "filters": []}
    assert doc["totals"]["events"] == 4 * 402 and doc["totals"]["failed"] == 28
    assert doc["totals"]["overflow"] == 4
    assert doc["duration_s"] == 4.0
    assert doc["totals"]["by_event"]["modify"] == 4 * 270


def test_document_rows_attribute_to_cgroups_and_processes():
    doc = report.document(sample())
    nested = next(c for c in doc["cgroups"] if c["path"] == NESTED)
    assert nested["events"]["modify"] == 200 and nested["total"] == 200
    web = next(c for c in doc["cgroups"] if c["path"] == WEB)
    assert web["total"] == 4 * 320 and web["subtree_total"] == 4 * 370 and web["failed"] == 28
    worker = next(p for p in doc["processes"] if p["pid"] == 43)
    assert worker == {"pid": 43, "comm": "worker", "cgroup": NESTED, "total": 200, "failed": 0,
                      "events": {**{k: 0 for k in model.EVENT_NAMES}, "modify": 200},
                      "read_bytes": 0, "write_bytes": 4 * 50 * 512, "time_us": 0.0, "avg_us": None}
    assert (web["read_bytes"], web["write_bytes"]) == (4 * 60 * 4096, 4 * 200 * 100)
    assert web["subtree_write_bytes"] == 4 * (200 * 100 + 50 * 512)
    assert doc["totals"]["read_bytes"] == 4 * (60 * 4096 + 10 * 8192)
    assert doc["timeline"]["write_bytes"] == [200 * 100 + 50 * 512 + 20 * 8192] * 4
    assert doc["errors"] == [{"errno": "ENOENT", "event": "open", "count": 28, "top_process": "nginx[42]",
                              "top_path": "/tmp/x"}]
    life = doc["cgroup_lifecycle"][0]
    assert life["path"] == NESTED and life["lifetime_s"] == 2.25 and life["events"] == 200


def test_top_cuts_every_table():
    doc = report.document(sample(top=2))
    assert all(len(doc[k]) <= 2 for k in ("cgroups", "processes", "files", "dirs", "event_types"))
    assert doc["totals"]["events"] == 4 * 402          # totals are never cut


def test_timeline_series_cover_the_busiest_cgroups():
    doc = report.document(sample())
    tl = doc["timeline"]
    assert len(tl["points"]) == 4
    assert [s["cgroup"] for s in tl["series"]] == [WEB, NESTED, "/system.slice/db.service", "/"]
    assert tl["series"][0]["events"] == [320] * 4
    assert tl["series"][0]["name"] == "web.service"


def test_csv_files_load_and_agree_with_json(tmp_path):
    rep = sample()
    written = report.write_csv(rep, str(tmp_path))
    assert sorted(p.rsplit("/", 1)[1] for p in written) == sorted(
        ["cgroups.csv", "processes.csv", "files.csv", "dirs.csv", "event_types.csv", "errors.csv",
         "cgroup_lifecycle.csv", "timeline.csv", "latency.csv", "slowest_files.csv"])
    doc = report.document(rep)
    with open(tmp_path / "processes.csv", newline="") as f:
        procs = list(csv.DictReader(f))
    assert [int(p["pid"]) for p in procs] == [p["pid"] for p in doc["processes"]]
    for row, rec in zip(procs, doc["processes"]):
        assert int(row["total"]) == rec["total"]
        assert {k: int(row[k]) for k in model.EVENT_NAMES} == rec["events"]
    with open(tmp_path / "cgroups.csv", newline="") as f:
        cgs = list(csv.DictReader(f))
    web = next(r for r in cgs if r["path"] == WEB)
    assert int(web["subtree_modify"]) == 4 * 250 and int(web["modify"]) == 4 * 200
    with open(tmp_path / "timeline.csv", newline="") as f:
        tl = list(csv.DictReader(f))
    assert [int(r[WEB]) for r in tl] == [320] * 4
    assert [int(r["read_bytes"]) for r in tl] == [60 * 4096 + 10 * 8192] * 4
    with open(tmp_path / "files.csv", newline="") as f:
        files = {r["path"]: r for r in csv.DictReader(f)}
    assert int(files["/srv/www/app.log"]["write_bytes"]) == 4 * (200 * 100 + 50 * 512)


def test_terminal_report_has_every_table_and_the_header():
    console = Console(file=io.StringIO(), width=120)
    report.print_report(sample(), console)
    out = console.file.getvalue()
    assert "command: make -j2 (cgroup /fstrace-run-1, exit status 3)" in out
    assert "events 1608  failed 28  lost 0  overflow 4  read 1.2 MiB  written 818 KiB" in out
    for title in report.TITLES.values():
        assert title in out
    assert "ENOENT" in out and "2.2 s" in out
    nginx = next(line for line in out.splitlines() if line.startswith("nginx[42]"))
    # exact counts, not 1.3k; nothing timed
    assert nginx.split()[-8:] == ["1280", "28", "960", "KiB", "78.1", "KiB", "-", "-"]


def test_by_picks_tables():
    console = Console(file=io.StringIO(), width=100)
    report.print_report(sample(by=("errno", "file")), console)
    out = console.file.getvalue()
    assert report.TITLES["file"] in out and report.TITLES["errno"] in out
    assert report.TITLES["process"] not in out
    assert out.index(report.TITLES["errno"]) < out.index(report.TITLES["file"])


def _no_network(text: str) -> None:
    """No URL outside comments but the SVG namespace: nothing to fetch."""
    urls = set(re.findall(r"https?://[^\"') ]+", re.sub(r"<!--.*?-->", "", text, flags=re.S)))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls


def test_svg_is_self_contained_with_chart_and_tables():
    svg = report.to_svg(sample())
    _no_network(svg)
    assert svg.startswith("<svg ") and svg.rstrip().endswith("</svg>")
    assert "@font-face" not in svg
    assert "Events per second, busiest cgroups" in svg and "<polyline" in svg
    assert "web.service" in svg and "Failed" in svg
    assert "Bytes per second, read and written" in svg and "KiB/s" in svg
    assert svg.count("<polyline") == 4 + 2           # the four cgroups with events, then read and written


def test_html_is_self_contained_with_chart_and_tables():
    page = report.to_html(sample())
    _no_network(page)
    assert page.startswith("<!DOCTYPE html>")
    assert "<svg " in page and "<polyline" in page
    assert "nginx[42]" in page and "Processes" in page


def test_backends_without_bytes_say_null_and_draw_no_bytes_chart():
    agg = Aggregator(cumulative=True)
    agg.add(tick())
    rep = report.build(agg, report.ReportMeta(backend="fentry", bytes=False))
    doc = report.document(rep)
    assert doc["totals"]["read_bytes"] is None and doc["timeline"]["write_bytes"] is None
    assert all(r["read_bytes"] is None and r["write_bytes"] is None for r in doc["files"] + doc["processes"])
    assert all(c["subtree_write_bytes"] is None for c in doc["cgroups"])
    assert "Bytes per second" not in report.to_svg(rep)
    console = Console(file=io.StringIO(), width=120)
    report.print_report(rep, console)
    assert "rbytes" not in console.file.getvalue() and "written" not in console.file.getvalue()


def test_chart_of_an_idle_run_says_so():
    agg = Aggregator(cumulative=True)
    agg.add(tick([]))
    svg = report.chart_svg(report.build(agg, META))
    assert "no file activity" in svg


def test_flatten_spreads_event_dicts():
    assert report.flatten({"path": "/", "events": {"open": 1}, "subtree_events": {"open": 2}}) == {
        "path": "/", "open": 1, "subtree_open": 2}


HOSTILE = "/srv/esc\x1b[31m-rtl\u202etxt-back\\slash-bad\udcff"


def hostile_report():
    agg = Aggregator(cumulative=True)
    files = {100: HOSTILE}
    agg.add(model.Tick(ts=1000.0, elapsed=1.0,
                       entries=[model.Entry(1, 100, 7, 0, b"ev\xe2\x80\xaeil", (1,) + (0,) * 10)],
                       cgroups={1: "/"}, files=files))
    return report.build(agg, META)


def test_csv_escapes_names_as_text_does_and_json_keeps_them_exact(tmp_path):
    rep = hostile_report()
    report.write_csv(rep, str(tmp_path))
    raw = (tmp_path / "files.csv").read_bytes() + (tmp_path / "processes.csv").read_bytes()
    assert b"\x1b" not in raw and "\u202e".encode() not in raw
    with open(tmp_path / "files.csv", newline="") as f:
        assert next(csv.DictReader(f))["path"] == "/srv/esc\\x1b[31m-rtl\\u202etxt-back\\\\slash-bad\\xff"
    with open(tmp_path / "processes.csv", newline="") as f:
        assert next(csv.DictReader(f))["comm"] == "ev\\u202eil"
    doc = json.loads(json.dumps(report.document(rep), ensure_ascii=False))
    assert doc["files"][0]["path"] == "/srv/esc\x1b[31m-rtl\u202etxt-back\\slash-bad\\xff"
    assert doc["processes"][0]["comm"] == "ev\u202eil"


def test_terminal_report_never_shows_a_hostile_name_raw():
    console = Console(file=io.StringIO(), width=200, no_color=True)
    report.print_report(hostile_report(), console)
    out = console.file.getvalue()
    assert "\x1b" not in out and "\u202e" not in out
    assert "back\\\\slash" in out and "rtl\\u202etxt" in out


def test_a_partial_last_point_is_merged_not_plotted_as_a_spike():
    points = [(0.0, 1.0), (1.0, 1.0), (2.0, 1.0), (3.0, 0.019)]
    merged, (counts,) = report.whole_points(points, [[3000, 3100, 2900, 152]])
    assert [(a, round(b, 6)) for a, b in merged] == [(0.0, 1.0), (1.0, 1.0), (2.0, 1.019)]
    assert counts == [3000, 3100, 3052] and sum(counts) == 3000 + 3100 + 2900 + 152
    assert max(report.rates(counts, merged)) == 3100            # not 152 / 0.019 = 8000
    assert report.whole_points([(0.0, 0.1)], [[5]]) == ([(0.0, 0.1)], [[5]])      # one short point stays


def test_chart_axis_has_round_steps_in_short_units():
    agg = Aggregator(cumulative=True)
    for i in range(5):
        agg.add(tick(ts=1000.0 + i, entries=[model.Entry(10, 100, 42, 0, b"nginx", (30700 + 100 * i,) + (0,) * 10)]))
    svg = report.chart_svg(report.build(agg, META))
    labels = re.findall(r'text-anchor="end" fill="#444">([^<]*)<', svg)
    assert labels == ["0/s", "10.0k/s", "20.0k/s", "30.0k/s", "40.0k/s"]
    assert "e+" not in svg


def test_fit_stretches_a_short_run_over_the_whole_sparkline_and_averages_a_long_one():
    assert report.fit([1, 2], 4) == [1, 1, 2, 2]
    assert report.fit([1, 3, 5, 7], 2) == [2.0, 6.0]


def test_html_is_a_light_page_with_sortable_tables_and_escaped_names():
    page = report.to_html(hostile_report())
    assert page.count('<table class="sortable">') == len(report.TABLES) - 0
    assert "addEventListener('click'" in page
    assert "\u202e" not in page and "\x1b" not in page
    assert "rtl\\u202etxt-back\\\\slash" in page
    assert "<polyline" in page                  # the chart and the rows' sparklines are lines, not blocks
    assert "▇" not in page and "█" not in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")     # nothing fetched


def test_svg_tables_are_on_a_light_background():
    svg = report.to_svg(sample())
    assert 'fill="#ffffff"' in svg
    assert "#0c0c0c" not in svg.lower() and "#292929" not in svg.lower()    # rich's dark SVG theme
