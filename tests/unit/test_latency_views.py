"""Latency without the kernel: the C and Python tables agree, rows sum time, percentiles, views, export, CLI."""
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from bpftools import abi, model
from bpftools.cli.options import parse_slower_than
from bpftools.errors import UsageError
from bpftools.export import state as export_state
from bpftools.model import Aggregator, Entry, Tick
from bpftools.session.contract import FileEvent
from bpftools.cgroups.names import Names
from bpftools.views import report
from bpftools.views.jsonl import event_json
from bpftools.views.text import event_line, human_time

ROOT = Path(__file__).resolve().parents[2]
FSTRACE_H = (ROOT / "bpf/fstrace.h").read_text()
MS = 1_000_000
ACCESS, OPEN, SYNC, CLOSE = (abi.EVENT_CODES[e] for e in ("access", "open", "sync", "close_write"))


def c_define(name: str) -> str:
    return re.search(r"^#define %s\s+(\S+)" % name, FSTRACE_H, re.M).group(1)


def test_the_c_and_python_tables_of_timed_operations_agree():
    assert int(c_define("FST_LAT_SLOTS")) == abi.LAT_SLOTS
    assert int(c_define("FST_HIST_BUCKETS")) == abi.HIST_BUCKETS
    assert int(c_define("FST_EV_SYNC")) == abi.EVENT_CODES["sync"]
    slot_map = int(c_define("FST_LAT_SLOT_MAP").rstrip("ULL"), 16)
    for code, name in enumerate(abi.EVENT_NAMES):
        slot = slot_map >> (4 * code) & 0xF
        assert slot == (abi.TIMED_EVENTS.index(name) if name in abi.TIMED_EVENTS else abi.LAT_SLOTS), name
    assert abi.TIMED_SYSCALLS == {"open", "creat", "openat", "openat2", "fsync", "fdatasync"} | abi.BYTES_SYSCALLS


def entry(cg, pid, file, counts, lat=(), err=0, comm=b"db"):
    """lat: {event name: (ns, operations)}."""
    c = [0] * len(abi.EVENT_NAMES)
    ns, timed = [0] * abi.LAT_SLOTS, [0] * abi.LAT_SLOTS
    for name, n in counts.items():
        c[abi.EVENT_CODES[name]] = n
    for name, (t, n) in dict(lat).items():
        ns[abi.TIMED_EVENTS.index(name)] = t
        timed[abi.TIMED_EVENTS.index(name)] = n
    return Entry(cg, file, pid, err, comm, tuple(c), 0, 0, tuple(ns), tuple(timed))


CGROUPS = {1: "/", 10: "/system.slice/db.service", 11: "/system.slice/web.service"}
FILES = {100: "/var/lib/db/wal", 101: "/var/lib/db/data", 102: "/srv/index.html"}
ENTRIES = [
    entry(10, 5, 100, {"modify": 100, "sync": 10}, {"modify": (100 * 20_000, 100), "sync": (10 * 8 * MS, 10)}),
    entry(10, 5, 101, {"access": 50, "open": 1}, {"access": (50 * 100_000, 50), "open": (30_000, 1)}),
    entry(11, 7, 102, {"open": 1000, "access": 1000, "close_nowrite": 1000},
          {"open": (1000 * 2_000, 1000), "access": (1000 * 1_000, 1000)}, comm=b"nginx"),
]


def hist(cg, op, times):
    b = [0] * abi.HIST_BUCKETS
    for t in times:
        b[abi.bucket_of(t)] += 1
    return abi.Hist(cg, op, tuple(b), sum(times), max(times))


HISTS = [
    hist(10, abi.EVENT_CODES["modify"], [20_000] * 100),
    hist(10, SYNC, [7 * MS] * 9 + [300 * MS]),
    hist(10, ACCESS, [100_000] * 50),
    hist(11, ACCESS, [1_000] * 999 + [250 * MS]),
]


def tick(ts=1000.0, elapsed=1.0):
    return Tick(ts=ts, elapsed=elapsed, entries=list(ENTRIES), cgroups=dict(CGROUPS), files=dict(FILES),
                hists=list(HISTS))


def test_rows_sum_the_time_of_their_timed_operations():
    files = {r.key: r for r in model.group_rows(ENTRIES, "file", CGROUPS, FILES)}
    wal = files["/var/lib/db/wal"]
    assert wal.lat_ns == 100 * 20_000 + 80 * MS and wal.timed == 110
    assert wal.avg_us == pytest.approx((2 * MS + 80 * MS) / 110 / 1000)
    events = {r.key: r for r in model.group_rows(ENTRIES, "event", CGROUPS, FILES)}
    assert (events["sync"].lat_ns, events["sync"].timed) == (80 * MS, 10)
    assert (events["access"].lat_ns, events["access"].timed) == (5 * MS + 1 * MS, 1050)
    assert events["close_nowrite"].timed == 0 and events["close_nowrite"].avg_us is None
    cg = {r.key: r for r in model.group_rows(ENTRIES, "cgroup", CGROUPS, FILES)}
    assert cg["/system.slice"].lat_ns == sum(sum(e.lat_ns) for e in ENTRIES)
    assert cg["/system.slice/db.service"].extra["own_lat_ns"] == 2 * MS + 80 * MS + 5 * MS + 30_000
    # a drill into an event keeps that event's time only
    sync_only = model.focused(ENTRIES, (model.Focus("event", "sync", "sync"),), CGROUPS, FILES)
    assert [sum(e.lat_ns) for e in sync_only] == [80 * MS]
    # sorted by mean time: the file whose operations are slowest first
    rows = model.sort_rows(list(files.values()), "avg_us")
    assert [r.key for r in rows] == ["/var/lib/db/wal", "/var/lib/db/data", "/srv/index.html"]
    assert model.sort_rows(list(files.values()), "time_us")[0].key == "/var/lib/db/wal"


def test_percentiles_are_exact_to_the_bucket():
    lat = model.Latency("/a", "access", list(HISTS[3].buckets), 250 * MS, HISTS[3].sum_ns)
    assert lat.count == 1000
    assert lat.percentile(50) == 1024                 # 1 us in [512, 1024) ns: its upper bound
    assert lat.percentile(99.9) == 1024
    assert lat.percentile(100) == 250 * MS            # the bucket's bound, capped at the slowest seen
    assert model.bucket_bounds(0) == (0, 2) and model.bucket_bounds(28) == (1 << 28, 1 << 29)
    assert model.bucket_bounds(abi.HIST_BUCKETS - 1)[1] is None


def test_the_aggregator_keeps_histograms_and_times_over_the_run():
    agg = Aggregator(cumulative=True)
    agg.add(tick())
    agg.add(tick(ts=1001.0))
    lats = model.latencies(agg.hists, agg.cgroups)
    assert [(l.cgroup, l.event) for l in lats][:2] == [("/system.slice/db.service", "sync"),
                                                       ("/system.slice/web.service", "access")]
    sync = lats[0]
    assert (sync.count, sync.max_ns, sync.sum_ns) == (20, 300 * MS, 2 * (63 * MS + 300 * MS))
    assert sync.percentile(50) == 1 << 23 and sync.percentile(99) == 300 * MS
    rows = {r.key: r for r in model.group_rows(agg.entries(), "file", agg.cgroups, agg.files)}
    assert rows["/var/lib/db/wal"].timed == 220
    assert agg.tick_time == (sum(sum(e.lat_ns) for e in ENTRIES), sum(sum(e.timed) for e in ENTRIES))


def sample_report(**kw):
    agg = Aggregator(cumulative=True)
    agg.add(tick())
    return report.build(agg, report.ReportMeta(backend="tracepoint", kernel="6.18", **kw), top=0)


def test_report_json_has_percentiles_histograms_and_the_slowest_files():
    doc = json.loads(json.dumps(report.document(sample_report())))
    web = next(r for r in doc["latency"] if r["event"] == "access" and r["cgroup"] == "/system.slice/web.service")
    assert (web["count"], web["p50_us"], web["p99_us"], web["max_us"]) == (1000, 1.024, 1.024, 250000.0)
    assert web["mean_us"] == pytest.approx((999 * 1000 + 250 * MS) / 1000 / 1000, abs=1e-3)
    assert web["histogram"] == [{"from_us": 0.512, "to_us": 1.024, "count": 999},
                                {"from_us": 134217.728, "to_us": 268435.456, "count": 1}]
    assert [f["path"] for f in doc["slowest_files"]] == ["/var/lib/db/wal", "/var/lib/db/data", "/srv/index.html"]
    assert doc["slowest_files"][0]["timed"] == 110
    wal = next(f for f in doc["files"] if f["path"] == "/var/lib/db/wal")
    assert wal["time_us"] == 82000.0 and wal["avg_us"] == pytest.approx(745.455, abs=1e-3)
    # a backend that cannot time: null, not zero
    unknown = report.document(sample_report(latency=False))
    assert unknown["latency"] is None and unknown["slowest_files"] is None
    assert next(f for f in unknown["files"] if f["path"] == "/var/lib/db/wal")["time_us"] is None


def test_report_text_svg_html_and_csv_show_the_histograms(tmp_path):
    rep = sample_report()
    console = Console(file=io.StringIO(), width=120)
    report.print_report(rep, console)
    out = console.file.getvalue()
    assert report.TITLES["latency"] in out and report.TITLES["slowest"] in out
    assert "sync in db.service: 10 timed, max 300 ms" in out
    bars = [line for line in out.splitlines() if "->" in line and "|" in line]
    assert any(line.split()[-2:] == ["9", "|" + "█" * 40 + "|"] for line in bars)   # the busiest bucket: full
    svg = report.to_svg(rep)
    assert "Latency histograms" in svg and svg.count("<rect") > 10
    page = report.to_html(rep)
    assert "<h2>%s</h2>" % report.TITLES["latency"] in page and "300 ms" in page
    report.write_csv(rep, str(tmp_path))
    latency_csv = (tmp_path / "latency.csv").read_text()
    assert "p50_us" in latency_csv.splitlines()[0] and "134217.728-268435.456:1" in latency_csv


def event(**kw):
    base = dict(ts=1000.5, event="access", dir=False, path=b"/srv/slow.fifo", path2=None, pid=42, tid=42, ppid=1,
                uid=0, comm=b"cat", cgroup_id=7, cgroup="/a", names=Names(), ret=1, syscall="read", bytes=1,
                latency_ns=300_123_456)
    base.update(kw)
    return FileEvent(**base)


def test_trace_shows_latency_in_json_and_text():
    first, second = (json.loads(event_json(ev)) for ev in (
        event(), event(event="close_write", latency_ns=None, bytes=None, syscall="close", ret=0)))
    assert first["latency_us"] == 300123.456 and second["latency_us"] is None
    assert list(first)[-2:] == ["bytes", "latency_us"]
    assert event_line(event(), colour=False).endswith("/srv/slow.fifo  (1 B, 300 ms)")
    assert [human_time(n) for n in (850, 12_345, 3_020_000, 250 * MS, 1_500 * MS)] == \
        ["850 ns", "12.3 us", "3.0 ms", "250 ms", "1.50 s"]


@pytest.mark.parametrize("text,ns", [("10ms", 10 * MS), ("250us", 250_000), ("1s", 1_000_000_000),
                                     ("1.5ms", 1_500_000), (" 2 s ", 2_000_000_000), ("500ns", 500)])
def test_slower_than_parses_times(text, ns):
    assert parse_slower_than(text) == ns


@pytest.mark.parametrize("text", ["10", "fast", "-1ms", "0ms", "1h", "", "1e3ms"])
def test_slower_than_refuses_other_text(text):
    with pytest.raises(UsageError, match="bad --slower-than"):
        parse_slower_than(text)


def test_a_bad_slower_than_is_one_line_and_exit_2():
    proc = subprocess.run([str(Path(sys.executable).with_name("fstrace")), "trace", "--slower-than", "soon"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == ("fstrace: error: bad --slower-than 'soon': give a time above 0 with a unit, "
                           "e.g. 10ms, 250us, 1s\n")


def test_export_histograms_follow_their_series_and_fold_with_them():
    s = export_state.ExportState(export_state.Limits(max_series=len(abi.EVENT_NAMES) + 4))
    s.start({"version": "0"})
    s.add(tick(), now=0)
    hists = s.published.hists
    db = ("/system.slice/db.service", "db.service") + ("",) * 6
    assert set(hists) >= {db + ("sync",), db + ("modify",)}
    buckets, sum_ns = hists[db + ("sync",)]
    assert sum(buckets) == 10 and sum_ns == 63 * MS + 300 * MS
    # four series of their own: db's open, access, modify and sync; web's found no room: its histogram neither
    over = (export_state.OVERFLOW,) + ("",) * 7 + ("access",)
    assert sum(hists[over][0]) == 1000
    le = export_state.latency_buckets(hists[db + ("sync",)][0])
    assert le[0] == (1024 / 1e9, 0) and le[-1][1] == 10
    assert [n for bound, n in le if bound >= 0.3][:1] == [10] and [n for bound, n in le if bound < 0.268][-1] == 9


def test_operations_the_histogram_map_had_no_room_for_are_said():
    agg = Aggregator(cumulative=True)
    agg.add(Tick(ts=1000.0, elapsed=1.0, entries=list(ENTRIES), cgroups=dict(CGROUPS), files=dict(FILES),
                 hists=list(HISTS), hist_overflow=3))
    rep = report.build(agg, report.ReportMeta(), top=0)
    assert [n for n in rep.meta.notes if "histogram map full" in n] == [
        "3 timed operations found the kernel's latency histogram map full: the latency table misses them "
        "(the rows' times count them)"]
