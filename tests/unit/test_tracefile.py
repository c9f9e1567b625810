"""report --from: a saved trace --json file read back and folded into the ticks a live report counts."""
import io
import json

import pytest

from bpftools.abi import EVENT_NAMES
from bpftools.errors import BadInput
from bpftools.model import Aggregator
from bpftools.session import tracefile as rp
from bpftools.views import report

RUN = "/fstrace-run-4100-a1b2c3"


def start(ts=1000.0, events=EVENT_NAMES, **extra):
    rec = {"type": "start", "ts": ts, "backend": "tracepoint", "kernel": "6.18.44", "pid": 4100,
           "events": list(events), "command_cgroup": RUN}
    rec.update(extra)
    return rec


def ev(ts, event, path, pid=42, comm="job", cgid=500, cgroup=RUN, ret=0, path2=None):
    return {"type": "event", "ts": ts, "event": event, "dir": False, "path": path, "path2": path2, "pid": pid,
            "tid": pid, "ppid": 1, "uid": 0, "comm": comm, "cgroup_id": cgid, "cgroup": cgroup, "unit": None,
            "container": None, "pod": None, "ret": ret, "error": None if ret >= 0 else "ENOENT",
            "syscall": "openat"}


def summary(ts, events=0, lost=0):
    return {"type": "summary", "ts": ts, "events": events, "lost": lost, "backend": "tracepoint",
            "duration_s": ts - 1000.0}


def jsonl(*records, tail=b"") -> io.BytesIO:
    return io.BytesIO(b"".join(json.dumps(r).encode() + b"\n" for r in records) + tail)


class Ticks:
    """A sink that keeps what the replay hands it."""

    def __init__(self):
        self.ticks, self.changes = [], []
        self.agg = Aggregator(cumulative=True)

    def counts(self, tick):
        self.ticks.append(tick)
        self.agg.add(tick)

    def cgroup(self, change):
        self.changes.append(change)
        self.agg.cgroup_change(change.action, change.id, change.path, change.ts)


def run(*records, filters=rp.ReplayFilter(), tail=b""):
    sink = Ticks()
    info = rp.replay(jsonl(*records, tail=tail), "t.jsonl", sink, filters)
    return sink, info


JOB = [start(), ev(1000.1, "create", "/w/a"), ev(1000.2, "modify", "/w/a"), ev(1000.3, "modify", "/w/a"),
       ev(1000.4, "rename", "/w/a", path2="/w/b"), ev(1001.0, "delete", "/w/b"),
       ev(1001.1, "open", "/w/missing", ret=-2), ev(1001.2, "exec", "/bin/cp", pid=43, comm="cp"),
       ev(1001.3, "create", "/w/c", pid=43, comm="cp", cgid=501, cgroup=RUN + "/sub"),
       summary(1002.0, events=8)]


def counted(sink):
    counts, failed = sink.agg.run_totals()
    return dict(zip(EVENT_NAMES, counts)), failed


def test_events_fold_into_the_counts_a_live_report_has():
    sink, info = run(*JOB)
    counts, failed = counted(sink)
    assert counts == {**{e: 0 for e in EVENT_NAMES}, "create": 2, "modify": 2, "rename": 1, "delete": 1,
                      "exec": 1}
    assert failed == 1
    assert info.complete and not info.warnings and info.event_records == 8 and info.failed_seen == 1
    assert (info.backend, info.kernel, info.command_cgroup) == ("tracepoint", "6.18.44", RUN)
    rep = report.build(sink.agg, report.ReportMeta(), top=0)
    files = {r.key: r for r in rep.tables["file"]}
    assert files["/w/a"].klass("create") == 1 and files["/w/a"].klass("rename") == 1  # counted for the old name
    assert files["/w/a"].klass("write") == 2
    assert files["/w/missing"].failed == 1 and files["/w/missing"].total == 0
    cgroups = {r.key: r for r in rep.tables["cgroup"]}
    assert cgroups[RUN].total == 8 - 1 and cgroups[RUN + "/sub"].total == 1     # a subtree includes /sub
    procs = {r.key: r for r in rep.tables["process"]}
    assert procs[43].comm == "cp" and procs[42].comm == "job"


def test_the_run_lasts_from_the_start_record_to_the_summary():
    sink, _ = run(*JOB)
    assert sink.agg.first_ts == 1000.0 and sink.agg.end_ts == 1002.0
    assert sum(t.elapsed for t in sink.ticks) == pytest.approx(2.0)


def test_ticks_follow_a_live_reports_schedule_and_a_quiet_stretch_is_one_tick():
    sink, _ = run(start(), ev(1000.1, "create", "/a"), ev(1000.3, "create", "/b"), ev(1020.5, "create", "/c"),
                  summary(1021.0))
    spans = [(round(t.ts - t.elapsed - 1000, 2), round(t.elapsed, 2), len(t.entries)) for t in sink.ticks]
    # 0.25 s ticks; the gap from 0.5 s to 20 s (the 1-s tick boundaries after 15 s) in one tick
    assert spans == [(0.0, 0.25, 1), (0.25, 0.25, 1), (0.5, 19.5, 0), (20.0, 1.0, 1)]


def test_an_exec_renames_the_process_as_the_kernel_does():
    sink, _ = run(start(), ev(1000.1, "open", "/x", pid=7, comm="sh"), ev(1000.15, "exec", "/bin/ls", pid=7,
                                                                               comm="ls"), summary(1000.2))
    assert sink.agg.comms[7] == b"ls"
    rep = report.build(sink.agg, report.ReportMeta(), top=0)
    assert [r.label for r in rep.tables["process"]] == ["ls[7]"]


def test_unknown_cgroups_are_named_like_the_live_session_names_them():
    sink, _ = run(start(), ev(1000.1, "create", "/x", cgid=99, cgroup=None), summary(1000.2))
    assert sink.ticks[0].cgroups == {99: "/unknown:99"}


def test_cgroup_records_become_cgroup_changes():
    sink, _ = run(start(), {"type": "cgroup", "action": "mkdir", "ts": 1000.1, "id": 501, "path": RUN + "/sub"},
                  {"type": "cgroup", "action": "rmdir", "ts": 1000.6, "id": 501, "path": RUN + "/sub"},
                  summary(1001.0))
    life = sink.agg.lifecycle()[0]
    assert (life.path, life.lifetime) == (RUN + "/sub", pytest.approx(0.5))


@pytest.mark.parametrize("filters, expected", [
    (rp.ReplayFilter(events=("create",)), {"create": 2}),
    (rp.ReplayFilter(pids=(43,)), {"exec": 1, "create": 1}),
    (rp.ReplayFilter(comms=("cp",)), {"exec": 1, "create": 1}),
    (rp.ReplayFilter(cgroup_paths=(RUN + "/sub",)), {"create": 1}),
    (rp.ReplayFilter(cgroup_ids=(501,)), {"create": 1}),
    (rp.ReplayFilter(cgroup_globs=("fstrace-run-*/s*",)), {"create": 1}),
    (rp.ReplayFilter(cgroup_globs=("fstrace-run-*",)), {"create": 2, "modify": 2, "rename": 1, "delete": 1,
                                                        "exec": 1}),
    (rp.ReplayFilter(path_prefixes=("/w",)), {"create": 2, "modify": 2, "rename": 1, "delete": 1}),
])
def test_filters_keep_what_the_kernel_would_have_counted(filters, expected):
    sink, _ = run(*JOB, filters=filters)
    counts, _ = counted(sink)
    assert {k: v for k, v in counts.items() if v} == expected


def test_a_default_trace_says_what_it_did_not_record():
    _, info = run(start(events=("open", "exec", "attrib", "close_write", "close_nowrite", "create", "delete",
                                "rename", "sync"), failed=False), ev(1000.1, "create", "/a"),
                  {"type": "lost", "ts": 1000.2, "count": 5}, summary(1001.0, lost=5))
    notes = info.not_recorded()
    assert any("access, modify" in n for n in notes)
    assert any("failed operations were not traced" in n for n in notes)
    assert any("5 records were lost" in n for n in notes)
    src = info.source_record()
    assert src["events_missing"] == ["access", "modify"] and src["failed_traced"] is False
    assert src["lost"] == 5 and src["complete"] is True


def test_the_commands_exit_status_comes_from_the_summary():
    _, info = run(start(command=["make"]), ev(1000.1, "create", "/a"), {**summary(1001.0), "exit_status": 2})
    assert info.command == ("make",) and info.exit_status == 2


def test_a_complete_trace_of_everything_has_nothing_to_say():
    _, info = run(start(failed=True), ev(1000.1, "create", "/a"), summary(1001.0))
    assert info.not_recorded() == []


def test_lost_records_reach_the_report():
    sink, info = run(start(), ev(1000.1, "create", "/a"), {"type": "lost", "ts": 1000.2, "count": 3},
                     summary(1001.0, lost=4))
    assert sink.agg.lost == 4 and info.lost == 4          # the summary's total wins


# --- bad input ---------------------------------------------------------------------------
def read_error(data: bytes) -> str:
    with pytest.raises(BadInput) as e:
        rp.replay(io.BytesIO(data), "t.jsonl", Ticks())
    assert "\n" not in str(e.value)
    return str(e.value)


def test_an_empty_file_is_an_error():
    assert read_error(b"") == "t.jsonl is empty: no trace records"


def test_text_that_is_not_json_lines_is_an_error():
    assert "t.jsonl is not JSON Lines (line 1" in read_error(b"fstrace: counting with...\n")


def test_binary_data_is_an_error():
    assert "not UTF-8" in read_error(b"\xff\xfe\x00garbage\n")


def test_json_nested_too_deep_is_an_error_not_a_crash():
    assert "nested too deep" in read_error(jsonl(start()).getvalue() + b"[" * 100000 + b"\n")


def test_a_gzipped_trace_gets_a_hint():
    assert "zcat" in read_error(b"\x1f\x8b\x08\x00\x00\x00\n")


def test_a_report_document_is_pointed_at_diff():
    doc = json.dumps({"type": "report", "version": 1}, indent=1).encode()
    assert "--diff" in read_error(doc)
    assert "--diff" in read_error(json.dumps({"type": "report", "version": 1}).encode() + b"\n")


def test_a_damaged_line_in_the_middle_is_an_error_with_its_number():
    data = jsonl(start(), ev(1000.1, "create", "/a")).getvalue() + b"{\"type\": \"ev\n" + \
        jsonl(summary(1001.0)).getvalue()
    assert read_error(data).startswith("t.jsonl:3: not a JSON record")


def test_json_that_is_not_a_record_is_an_error():
    assert read_error(jsonl(start()).getvalue() + b"[1, 2]\n") == \
        't.jsonl:2: not a trace record (a JSON object with a "type")'


def test_a_newer_record_version_is_an_error():
    assert "newer fstrace" in read_error(jsonl(start(version=2)).getvalue())


def test_an_event_without_its_numbers_is_an_error():
    bad = ev(1000.1, "create", "/a")
    del bad["pid"]
    assert read_error(jsonl(start(), bad).getvalue()).startswith("t.jsonl:2: an event record without")


def test_a_cut_last_line_is_a_warning_and_the_lines_before_it_count():
    sink, info = run(start(), ev(1000.1, "create", "/a"), ev(1000.2, "create", "/b"),
                     tail=b'{"type":"event","ts":1000.3,"event":"cre')
    assert counted(sink)[0]["create"] == 2
    assert info.truncated and "line 4 is cut off" in info.warnings[0]
    assert any("cut off" in n for n in info.not_recorded())


def test_a_trace_without_summary_is_a_warning():
    sink, info = run(start(), ev(1000.1, "create", "/a"))
    assert counted(sink)[0]["create"] == 1 and sink.agg.end_ts == pytest.approx(1000.1)
    assert info.warnings == ["t.jsonl: no summary record: the trace did not end cleanly"]


def test_a_grepped_trace_without_start_record_still_counts():
    sink, info = run(ev(1000.1, "create", "/a"), ev(1000.2, "delete", "/a"))
    assert counted(sink)[0]["delete"] == 1
    assert any("no start record" in w for w in info.warnings)
    assert any("which events were traced is unknown" in n for n in info.not_recorded())


def test_records_and_events_of_a_newer_version_are_skipped_with_one_warning():
    sink, info = run(start(), {"type": "mount", "ts": 1000.0}, ev(1000.1, "create", "/a"),
                     ev(1000.2, "chmod2", "/a"), ev(1000.3, "chmod2", "/a"), summary(1001.0))
    assert counted(sink)[0]["create"] == 1
    assert info.warnings == ["t.jsonl: skipped what this fstrace does not know (a newer trace?): "
                             "event 'chmod2' x2, record 'mount' x1"]


def test_blank_lines_are_ignored():
    sink, _ = run(start(), ev(1000.1, "create", "/a"), tail=b"\n\n")
    assert counted(sink)[0]["create"] == 1


def test_non_utf8_names_come_back_as_the_live_report_shows_them():
    sink, _ = run(start(), ev(1000.1, "create", "/w/caf\\xe9", comm="a\\xffb"), summary(1001.0))
    rep = report.build(sink.agg, report.ReportMeta(), top=0)
    assert [r.key for r in rep.tables["file"]] == ["/w/caf\\xe9"]
    assert rep.tables["process"][0].comm == "a\\xffb"


# --- one side of a diff --------------------------------------------------------------------
def test_load_side_tells_a_trace_from_a_report(tmp_path):
    trace = tmp_path / "t.jsonl"
    trace.write_bytes(jsonl(*JOB).getvalue())
    side, warnings = rp.load_side(str(trace))
    assert side.kind == "trace" and warnings == []
    assert side.tables["file"]["/w/a"].events[EVENT_NAMES.index("modify")] == 2
    assert "/fstrace-run-*/sub" in side.tables["cgroup"]
    assert side.tables["process"]["cp"].rows == 1
    sink = Ticks()
    rp.replay(jsonl(*JOB), "t.jsonl", sink)
    doc = report.document(report.build(sink.agg, report.ReportMeta(), top=0))
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc, indent=1))
    side2, _ = rp.load_side(str(path))
    assert side2.kind == "report"
    assert {k: v.events for k, v in side2.tables["file"].items()} == \
        {k: v.events for k, v in side.tables["file"].items()}
    path.write_text(json.dumps(doc))            # compacted to one line (jq -c)
    assert rp.load_side(str(path))[0].kind == "report"


def test_load_side_says_why_a_document_is_no_side(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"type": "report", "version": 7}, indent=1))
    with pytest.raises(BadInput, match="r.json: a report document of version 7"):
        rp.load_side(str(path))
    path.write_text("{\n \"type\": \"report\",\n")
    with pytest.raises(BadInput, match="is not a report --json document"):
        rp.load_side(str(path))
    with pytest.raises(BadInput, match="cannot read .*nothing.json: No such file"):
        rp.load_side(str(tmp_path / "nothing.json"))


# --- against the recorded kernel ------------------------------------------------------------
def test_a_recorded_trace_replays_to_the_counts_the_kernel_counted(tmp_path):
    """tests/replay: the same workload recorded streaming (trace --json) and counting (report)."""
    import test_replay as recorded

    from bpftools.views.jsonl import JsonSink

    out = io.BytesIO()
    recorded.replay("stream", JsonSink(out), False, tmp_path)
    sink = report.ReportSink()
    info = rp.replay(io.BytesIO(out.getvalue()), "stream.jsonl", sink)
    assert info.not_recorded() == [] and info.warnings == []
    from_trace = report.document(report.build(sink.agg, report.ReportMeta(), top=0))
    live_sink = report.ReportSink()
    recorded.replay("count", live_sink, True, tmp_path)
    live = report.document(report.build(live_sink.agg, report.ReportMeta(), top=0))
    assert from_trace["totals"] == live["totals"]
    assert from_trace["totals"]["by_event"]["create"] == 7 and from_trace["totals"]["by_event"]["rename"] == 1

    def untimed(rows):      # two runs of the workload: the same operations, not the same times
        return [{k: v for k, v in r.items() if not k.endswith(("time_us", "avg_us"))} for r in rows]
    for key in ("files", "dirs", "cgroups", "event_types"):
        assert untimed(from_trace[key]) == untimed(live[key]), key
    # latency_us carried through: the same operations timed, per cgroup and event type
    assert [(r["cgroup"], r["event"], r["count"]) for r in sorted(from_trace["latency"], key=lambda r: r["event"])] \
        == [(r["cgroup"], r["event"], r["count"]) for r in sorted(live["latency"], key=lambda r: r["event"])]
    assert all(f["time_us"] > 0 for f in from_trace["slowest_files"])
    assert [(p["comm"], p["events"], p["failed"]) for p in from_trace["processes"]] == \
        [(p["comm"], p["events"], p["failed"]) for p in live["processes"]]
    assert [{**e, "top_process": None} for e in from_trace["errors"]] == \
        [{**e, "top_process": None} for e in live["errors"]]


def test_paths_beyond_the_limit_count_as_other_files(monkeypatch):
    monkeypatch.setattr(rp, "MAX_PATHS", 2)
    sink, info = run(start(), *[ev(1000.1, "create", "/f%d" % i) for i in range(5)], summary(1001.0))
    rep = report.build(sink.agg, report.ReportMeta(), top=0)
    assert {r.key: r.total for r in rep.tables["file"]} == {"/f0": 1, "/f1": 1, "(other files)": 3}
    assert any("more than 2 files: 3 events" in n for n in info.not_recorded())
