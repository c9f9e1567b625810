"""Recorded ring-buffer bytes through the real streaming and counting paths, without root.

tests/replay/{stream,count}.rec were recorded from the kernel by
tests/replay/record.py (workload: tests/replay/workload.sh); a ReplayProbe
(bpftools/kernel/replay.py) plays them into the same sessions and sinks
`fstrace trace --json` and `fstrace report --json` use, and the output must
be exactly tests/replay/expected-*.  After a change to the record layout or
to what the output says, rerun record.py, check the new expected files by
eye, and commit them together.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from bpftools.abi import EVENT_NAMES, TIMED_EVENTS, TIMED_SYSCALLS
from bpftools.cgroups.map import CgroupMap
from bpftools.cgroups.runtime_state import StateRoots
from bpftools.cgroups.runtimes import Runtimes
from bpftools.kernel.replay import ReplayProbe
from bpftools.session import open_session
from bpftools.session.contract import Options
from bpftools.views import report
from bpftools.views.jsonl import JsonSink
from bpftools.views.text import TextSink

HERE = Path(__file__).resolve().parents[1] / "replay"
META = json.loads((HERE / "meta.json").read_text())
REGENERATE = os.environ.get("FSTRACE_REGENERATE_REPLAY") == "1"


def replay(name: str, sink, aggregate: bool, tmp_path):
    """Play recording name through a session into sink, as the CLI would run it."""
    recording = (HERE / (name + ".rec")).read_bytes()
    cgmap = CgroupMap(sources=("tracepoint",), mount=str(tmp_path))
    cgmap.feed("mkdir", META["cgroup_id"], META["cgroup"], 0.0)
    opts = Options(events=EVENT_NAMES, failed=True, duration=0, aggregate=aggregate,
                   cgroups=(META["cgroup"],))      # as recorded: the ring also carries every other cgroup's mkdir
    session = open_session(opts, sink, cgmap=cgmap, runtimes=Runtimes(StateRoots()),    # no host state read
                           load_probe=lambda cfg, on_record: ReplayProbe(recording, cfg, on_record))
    info = session.start()
    sink.start(info, 0.0, 1)
    status = session.run()
    sink.summary(0.0, session.totals, info.backend, 0.0)
    sink.flush()
    session.close()
    return info, status


def check(name: str, text: str) -> None:
    expected = HERE / name
    if REGENERATE:
        expected.write_text(text, encoding="utf-8", errors="surrogateescape")
    assert text == expected.read_text(encoding="utf-8", errors="surrogateescape")


def without_time(line: str) -> str:
    rec = json.loads(line)
    rec.pop("ts", None)
    return json.dumps(rec, ensure_ascii=False)


def test_stream_json(tmp_path):
    out = io.BytesIO()
    replay("stream", JsonSink(out), False, tmp_path)
    lines = out.getvalue().decode("utf-8").splitlines()
    assert json.loads(lines[0])["type"] == "start" and json.loads(lines[-1])["type"] == "summary"
    events = [json.loads(line) for line in lines if json.loads(line)["type"] == "event"]
    assert {e["event"] for e in events} == set(EVENT_NAMES)         # every event type, sync included
    timed = [e for e in events if e["latency_us"] is not None]
    assert timed and all(e["event"] in TIMED_EVENTS and e["syscall"] in TIMED_SYSCALLS for e in timed)
    assert all(e["cgroup"] == META["cgroup"] for e in events)
    check("expected-stream.jsonl", "\n".join(without_time(line) for line in lines) + "\n")


def test_stream_text_escapes_hostile_names(tmp_path):
    out, err = io.BytesIO(), io.StringIO()
    replay("stream", TextSink(out, err, colour=False), False, tmp_path)
    text = out.getvalue().decode("utf-8", "surrogateescape")
    assert "\x1b" not in text
    lines = [line.split(" ", 1)[1] for line in text.splitlines()]     # without the clock
    check("expected-stream.txt", "\n".join(lines) + "\n")


def test_counting_report(tmp_path):
    sink = report.ReportSink()
    info, status = replay("count", sink, True, tmp_path)
    meta = report.ReportMeta(backend=info.backend, kernel="replay", command=(), command_cgroup=None,
                             exit_status=None, filters=())
    rep = report.build(sink.agg, meta, top=0, by=report.TABLES, sort="total")
    out = io.StringIO()
    report.write_json(rep, out)
    doc = json.loads(out.getvalue())
    # when the replay ran and how long it took are not part of the recording
    assert doc.pop("start") <= doc.pop("end") and doc.pop("duration_s") < 5
    for point in doc["timeline"]["points"]:
        assert point.pop("start") and point.pop("seconds") < 5
    # the kernel's histograms and its counters saw the same timed operations, with the same time
    lat = {r["event"]: r for r in doc["latency"]}
    assert set(lat) == {"open", "create", "access", "modify", "sync"} and lat["sync"]["count"] == 1
    rows = {r["event"]: r for r in doc["event_types"]}
    for name, r in lat.items():
        assert round(rows[name]["time_us"] / rows[name]["avg_us"]) == r["count"]     # avg_us: to the ns
        assert rows[name]["avg_us"] == pytest.approx(r["mean_us"], abs=1e-3)
    check("expected-report.json", json.dumps(doc, indent=1, ensure_ascii=False, sort_keys=True) + "\n")


@pytest.mark.parametrize("name", ["stream.rec", "count.rec"])
def test_recordings_are_frames(name):
    from bpftools.kernel.replay import frames
    assert frames((HERE / name).read_bytes())
