"""report --from and report --diff on real runs: a saved trace counts as the live report does, and two
variants of one job compare file by file.

The tracing needs root; the replay and the diff run as nobody (no root needed), reading the files on stdin.
"""
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import FSTRACE

WORKLOADS = Path(__file__).parent / "workloads"
RUN_TIMEOUT = 900
NOBODY = 65534


def nonzero(events: dict) -> dict:
    return {k: v for k, v in events.items() if v}


def as_nobody():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def fstrace(*args, stdin=None, nobody=False) -> subprocess.CompletedProcess:
    return subprocess.run([FSTRACE, *args], stdin=stdin, capture_output=True, timeout=RUN_TIMEOUT,
                          preexec_fn=as_nobody if nobody else None)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The job's variants traced and reported in one directory: name -> output file."""
    base = Path("/tmp") / ("fstrace-test-" + uuid.uuid4().hex[:10])
    out = tmp_path_factory.mktemp("replay")
    job = [sys.executable, "-B", str(WORKLOADS / "variants.py"), str(base)]
    files = {}
    try:
        for name, args in (("trace_b.jsonl", ["trace", "--json", "-e", "all", "--", *job, "b"]),
                           ("live_b.json", ["report", "--json", "--top", "0", "--", *job, "b"]),
                           ("default_a.jsonl", ["trace", "--json", "--", *job, "a"]),
                           ("a.json", ["report", "--json", "--top", "0", "--", *job, "a"]),
                           ("b.json", ["report", "--json", "--top", "0", "--", *job, "b"])):
            shutil.rmtree(base, ignore_errors=True)
            base.mkdir()
            proc = fstrace(*args)
            assert proc.returncode == 0, proc.stderr.decode()
            files[name] = out / name
            files[name].write_bytes(proc.stdout)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    files["base"] = base
    return files


def replayed(path: Path, *args) -> dict:
    with open(path, "rb") as f:
        proc = fstrace("report", "--json", "--top", "0", "--from", "-", *args, stdin=f, nobody=True)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


def under(doc: dict, base: Path) -> dict:
    return {f["path"]: nonzero(f["events"]) for f in doc["files"]
            if f["path"].startswith(str(base) + "/") and f["total"]}


def test_a_saved_trace_counts_what_the_live_report_counts(runs):
    live = json.loads(runs["live_b.json"].read_bytes())
    rep = replayed(runs["trace_b.jsonl"])
    for event, n in (("create", 5), ("rename", 1), ("delete", 1)):
        assert live["totals"]["by_event"][event] == n
        assert rep["totals"]["by_event"][event] == n, event
    out = str(runs["base"]) + "/out"
    assert under(rep, runs["base"]) == under(live, runs["base"])
    assert under(rep, runs["base"])[out + "/grow"] == {"create": 1, "modify": 50, "close_write": 1}
    assert rep["source"]["events_missing"] == [] and rep["source"]["complete"] is True
    assert rep["scope"]["command_cgroup"].startswith("/fstrace-run-")
    assert rep["scope"]["command"][-1] == "b" and rep["scope"]["exit_status"] == 0


def test_a_default_trace_says_it_left_out_reads_and_writes(runs):
    rep = replayed(runs["default_a.jsonl"])
    assert rep["source"]["events_missing"] == ["access", "modify"]
    assert any("access, modify" in n for n in rep["notes"])
    assert rep["totals"]["by_event"]["modify"] == 0 and rep["totals"]["by_event"]["create"] == 4
    with open(runs["default_a.jsonl"], "rb") as f:
        text = fstrace("report", "--from", "-", stdin=f, nobody=True)
    assert text.returncode == 0 and "not traced, so not counted: access, modify" in text.stdout.decode()


def test_two_variants_of_a_job_compare_file_by_file(runs):
    proc = fstrace("report", "--diff", str(runs["a.json"]), str(runs["b.json"]), "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    doc = json.loads(proc.stdout)
    out = str(runs["base"]) + "/out"
    files = {f["path"]: f for f in doc["files"]}
    assert files[out + "/only-a"]["status"] == "vanished" and files[out + "/only-a"]["after"] is None
    assert files[out + "/only-b"]["status"] == "new" and files[out + "/only-b"]["before"] is None
    grow = files[out + "/grow"]
    assert (grow["before"]["modify"], grow["after"]["modify"]) == (10, 50)
    kept = files[out + "/kept"]
    assert (kept["before"]["delete"], kept["after"]["delete"]) == (0, 1)
    assert out not in files                 # made the same way by both
    assert [c["path"] for c in doc["cgroups"]] == ["/fstrace-run-*"]      # one command, both runs
    assert {p["comm"] for p in doc["processes"]} <= {"python3", os.path.basename(sys.executable)}


def test_a_trace_and_a_report_compare_too(runs):
    with open(runs["trace_b.jsonl"], "rb") as f:
        proc = fstrace("report", "--diff", str(runs["b.json"]), "-", "--json", stdin=f)
    assert proc.returncode == 0, proc.stderr.decode()
    doc = json.loads(proc.stdout)
    assert not [f for f in doc["files"] if f["path"].startswith(str(runs["base"]) + "/")]
    assert doc["after"]["kind"] == "trace"
