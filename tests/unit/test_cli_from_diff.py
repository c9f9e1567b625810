"""report --from and report --diff from the command line: no root, no kernel, one line per bad input."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_tracefile import JOB, ev, jsonl, start, summary

FSTRACE = str(Path(sys.executable).with_name("fstrace"))
NOBODY = 65534


def fstrace(*args, stdin=None, nobody=False):
    def drop():
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    return subprocess.run([FSTRACE, *args], input=stdin, capture_output=True, timeout=60,
                          preexec_fn=drop if nobody else None, env={**os.environ, "COLUMNS": "160"})


@pytest.fixture
def trace(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(jsonl(*JOB).getvalue())
    return path


def test_report_from_a_trace_prints_the_tables_and_what_was_not_recorded(trace):
    proc = fstrace("report", "--from", str(trace))
    out = proc.stdout.decode()
    assert proc.returncode == 0 and proc.stderr == b""
    assert out.startswith("fstrace report  replayed from %s (command in cgroup /fstrace-run-4100-a1b2c3)" % trace)
    assert "events 7  failed 1  lost 0" in out
    assert "/w/a" in out and "ENOENT" in out
    assert "note:" not in out           # a trace of every event, with a failure: nothing left out
    default = trace.parent / "default.jsonl"
    default.write_bytes(jsonl(start(events=("create",)), ev(1000.1, "create", "/a")).getvalue())
    proc = fstrace("report", "--from", str(default))
    assert proc.returncode == 0 and proc.stderr.decode() == \
        "fstrace: warning: %s: no summary record: the trace did not end cleanly\n" % default
    notes = [line for line in proc.stdout.decode().splitlines() if line.startswith("note: ")]
    assert notes == [
        "note: not traced, so not counted: open, exec, access, modify, attrib, close_write, close_nowrite, delete, "
        "rename, sync (trace -e all records every event)",
        "note: failed operations are counted only if the trace ran with --failed; this one does not say",
        "note: the trace has no summary record (it was cut short): counted up to its last record"]


def test_report_from_stdin_as_json_needs_no_root(trace):
    proc = fstrace("report", "--from", "-", "--json", "--top", "0", stdin=trace.read_bytes(),
                   nobody=os.geteuid() == 0)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["source"]["file"] == "-" and doc["source"]["events_missing"] == []
    assert doc["totals"]["by_event"]["create"] == 2 and doc["totals"]["failed"] == 1
    assert {f["path"] for f in doc["files"]} == {"/w/a", "/w/b", "/w/c", "/w/missing", "/bin/cp"}


def test_the_traces_own_filters_are_in_the_scope(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_bytes(jsonl(start(filters={"pids": [], "comms": ["nginx"], "cgroups": ["system.slice"]}),
                           ev(1000.1, "create", "/a", comm="nginx"), summary(1001.0)).getvalue())
    doc = json.loads(fstrace("report", "--from", str(path), "--json", "--path", "/").stdout)
    assert doc["scope"]["filters"] == ["--comm nginx", "--cgroup system.slice", "--path /"]
    assert doc["source"]["trace_filters"] == ["--comm nginx", "--cgroup system.slice"]


def test_report_from_keeps_every_format_and_filter(trace, tmp_path):
    proc = fstrace("report", "--from", str(trace), "--json", "-e", "create,modify", "--path", "/w", "--top", "1",
                   "--csv", str(tmp_path / "csv"), "--svg", str(tmp_path / "r.svg"), "--html", str(tmp_path / "r.html"))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["totals"]["by_event"]["create"] == 2 and doc["totals"]["by_event"]["modify"] == 2
    assert doc["totals"]["events"] == 4 and len(doc["files"]) == 1
    assert doc["scope"]["filters"] == ["-e create,modify", "--path /w"]
    assert (tmp_path / "csv" / "files.csv").read_text().startswith("path,")
    assert (tmp_path / "r.svg").read_text().startswith("<svg") and "<html" in (tmp_path / "r.html").read_text()


def test_a_cut_trace_warns_and_reports_what_it_has(tmp_path):
    path = tmp_path / "cut.jsonl"
    path.write_bytes(jsonl(start(), ev(1000.1, "create", "/a"), tail=b'{"type":"event","ts":10').getvalue())
    proc = fstrace("report", "--from", str(path), "--json")
    assert proc.returncode == 0
    assert proc.stderr.decode() == ("fstrace: warning: %s: line 3 is cut off (the trace did not end cleanly); "
                                    "reading the 2 lines before it\n" % path)
    doc = json.loads(proc.stdout)
    assert doc["totals"]["by_event"]["create"] == 1 and doc["source"]["complete"] is False


@pytest.mark.parametrize("data, message", [
    (b"", "is empty: no trace records"),
    (b"hello\n", "is not JSON Lines (line 1: Expecting value)"),
    (json.dumps({"type": "report", "version": 1}, indent=1).encode(), "is one JSON document, not JSON Lines"),
    (jsonl(start(version=2)).getvalue(), ":1: a trace of record version 2, written by a newer fstrace"),
    (jsonl(start()).getvalue() + b"oops\n" + jsonl(summary(1001.0)).getvalue(), ":2: not a JSON record"),
])
def test_bad_input_is_one_line_and_exit_65(tmp_path, data, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(data)
    proc = fstrace("report", "--from", str(path))
    err = proc.stderr.decode()
    assert proc.returncode == 65 and err.startswith("fstrace: error: %s" % path) and message in err, err
    assert err.count("\n") == 1 and proc.stdout == b""


@pytest.mark.parametrize("args, message", [
    (["--from", "-", "--", "true"], "-- CMD does not go with --from"),
    (["--from", "-", "--backend", "tracepoint"], "--backend does not go with --from"),
    (["--from", "-", "-d", "3s"], "-d/--duration does not go with --from"),
    (["--from", "-", "--map", "/a=/b"], "--map does not go with --from"),
    (["--map", "/a=/b"], "--map goes with --diff"),
    (["--diff", "a", "b", "--cgroup", "x"], "--cgroup does not go with --diff"),
    (["--diff", "a", "b", "--sort", "name"], "--sort does not go with --diff"),
    (["--diff", "-", "-"], "--diff - -: only one side can come from standard input"),
    (["--diff", "a", "b", "--map", "tmp=x"], "bad --map 'tmp=x': give OLD=NEW, two absolute paths"),
])
def test_options_that_do_not_fit_are_refused(args, message):
    proc = fstrace("report", *args, stdin=b"")
    err = proc.stderr.decode()
    assert proc.returncode == 2 and err.startswith("fstrace: error: " + message) and err.count("\n") == 1, err


def test_a_missing_file_is_one_line():
    proc = fstrace("report", "--from", "/nonexistent/t.jsonl")
    assert proc.returncode == 65
    assert proc.stderr.decode() == "fstrace: error: cannot read /nonexistent/t.jsonl: No such file or directory\n"


def report_doc(tmp_path, name, *records):
    trace = tmp_path / (name + ".jsonl")
    trace.write_bytes(jsonl(*records).getvalue())
    proc = fstrace("report", "--from", str(trace), "--json", "--top", "0")
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / (name + ".json")
    path.write_bytes(proc.stdout)
    return path


def variant(name, run):
    recs = [start(failed=True, command_cgroup="/fstrace-run-%d-abcdef" % run)]
    cg = {"cgroup": "/fstrace-run-%d-abcdef" % run, "pid": run}
    recs.append(ev(1000.1, "create", "/w/only-" + name, **cg))
    recs.append(ev(1000.2, "create", "/w/grow", **cg))
    recs += [ev(1000.3, "modify", "/w/grow", **cg)] * (10 if name == "a" else 50)
    if name == "b":
        recs.append(ev(1000.4, "delete", "/w/kept", **cg))
    return recs + [summary(1001.0)]


def test_diff_of_two_reports_as_json(tmp_path):
    a, b = report_doc(tmp_path, "a", *variant("a", 100)), report_doc(tmp_path, "b", *variant("b", 200))
    proc = fstrace("report", "--diff", str(a), str(b), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    files = {f["path"]: f for f in doc["files"]}
    assert files["/w/only-a"]["after"] is None and files["/w/only-a"]["status"] == "vanished"
    assert files["/w/only-b"]["before"] is None and files["/w/only-b"]["status"] == "new"
    assert (files["/w/grow"]["before"]["modify"], files["/w/grow"]["after"]["modify"]) == (10, 50)
    assert files["/w/kept"]["status"] == "new" and files["/w/kept"]["after"]["delete"] == 1
    assert [f["path"] for f in doc["files"]][0] == "/w/grow"         # the largest change first
    assert [c["path"] for c in doc["cgroups"]] == ["/fstrace-run-*"]


def test_diff_of_a_report_and_a_trace_as_tables_and_pictures(tmp_path):
    a = report_doc(tmp_path, "a", *variant("a", 100))
    b = tmp_path / "b.jsonl"
    b.write_bytes(jsonl(*variant("b", 200)).getvalue())
    proc = fstrace("report", "--diff", str(a), "-", "--svg", str(tmp_path / "d.svg"), "--html",
                   str(tmp_path / "d.html"), stdin=b.read_bytes())
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr
    assert out.startswith("fstrace report --diff  before %s (report) → after - (trace)" % a)
    assert any(line.split()[:2] == ["new", "/w/only-b"] for line in out.splitlines())
    assert any(line.split()[:2] == ["vanished", "/w/only-a"] for line in out.splitlines())
    assert "+40" in next(line for line in out.splitlines() if "/w/grow" in line)
    assert "/w/grow" in (tmp_path / "d.html").read_text() and (tmp_path / "d.svg").read_text().startswith("<svg")


def test_diff_maps_per_run_directories(tmp_path):
    a = tmp_path / "a.jsonl"
    a.write_bytes(jsonl(start(), ev(1000.1, "create", "/tmp/run.1/out"), summary(1001.0)).getvalue())
    b = tmp_path / "b.jsonl"
    b.write_bytes(jsonl(start(), ev(1000.1, "create", "/tmp/run.2/out"), summary(1001.0)).getvalue())
    plain = json.loads(fstrace("report", "--diff", str(a), str(b), "--json").stdout)
    assert len(plain["files"]) == 2
    mapped = json.loads(fstrace("report", "--diff", str(a), str(b), "--json", "--map", "/tmp/run.1=/tmp/run.2").stdout)
    assert mapped["files"] == [] and mapped["counts"]["files"]["unchanged"] == 1
    globbed = json.loads(fstrace("report", "--diff", str(a), str(b), "--json", "--map", "/tmp/run.*=/R").stdout)
    assert globbed["files"] == [] and globbed["maps"] == [{"old": "/tmp/run.*", "new": "/R"}]


def test_diff_refuses_a_side_that_is_neither(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"type": "diff"}, indent=1))
    proc = fstrace("report", "--diff", str(bad), str(bad))
    assert proc.returncode == 65
    assert proc.stderr.decode() == "fstrace: error: %s: not a report --json document\n" % bad


WRITER = r'''
import json, signal, sys, time
def rec(r):
    sys.stdout.write(json.dumps(r) + "\n"); sys.stdout.flush()
stop = []
signal.signal(signal.SIGINT, (lambda *a: stop.append(1)) if sys.argv[1] == "clean" else signal.SIG_IGN)
rec({"type": "start", "ts": 1000.0, "backend": "tracepoint", "kernel": "k", "pid": 1, "events": ["create"],
     "failed": True})
rec({"type": "event", "ts": 1000.1, "event": "create", "path": "/a", "pid": 5, "comm": "w", "cgroup_id": 1,
     "cgroup": "/", "ret": 0})
print("ready", file=sys.stderr, flush=True)
while not stop:
    time.sleep(0.02)
rec({"type": "event", "ts": 1000.2, "event": "create", "path": "/b", "pid": 5, "comm": "w", "cgroup_id": 1,
     "cgroup": "/", "ret": 0})
rec({"type": "summary", "ts": 1001.0, "events": 2, "lost": 0, "backend": "tracepoint", "duration_s": 1.0})
'''


def unread(pipe) -> int:
    """Bytes in a pipe that its reader has not read yet."""
    import fcntl
    import termios
    n = bytearray(4)
    fcntl.ioctl(pipe.fileno(), termios.FIONREAD, n)
    return int.from_bytes(n, sys.byteorder)


def pipeline(mode: str, interrupts: int):
    """writer | fstrace report --from - --json, Ctrl-C'd (SIGINT to both) interrupts times."""
    import signal
    import time
    writer = subprocess.Popen([sys.executable, "-c", WRITER, mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              process_group=0)
    report = subprocess.Popen([FSTRACE, "report", "--from", "-", "--json"], stdin=writer.stdout,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, process_group=writer.pid)
    try:
        assert writer.stderr.readline() == b"ready\n"
        deadline = time.monotonic() + 30
        while unread(writer.stdout) and time.monotonic() < deadline:
            time.sleep(0.05)                # the report reads (so its Ctrl-C handler is in place)
        time.sleep(0.2)
        for _ in range(interrupts):
            os.killpg(writer.pid, signal.SIGINT)
            time.sleep(0.5)
        out, err = report.communicate(timeout=30)
    finally:
        writer.stdout.close()
        for p in (writer, report):
            if p.poll() is None:
                p.kill()
                p.wait()
    return report.returncode, json.loads(out), err.decode()


def test_ctrl_c_on_a_pipeline_reports_everything_the_writer_wrote_before_it_ended():
    rc, doc, err = pipeline("clean", 1)
    assert rc == 0 and doc["totals"]["by_event"]["create"] == 2 and doc["source"]["complete"] is True
    assert err == "fstrace: reading to the end of the input (Ctrl-C again: stop here and report)\n"


def test_a_second_ctrl_c_reports_what_was_read():
    rc, doc, err = pipeline("stubborn", 2)
    assert rc == 0 and doc["totals"]["by_event"]["create"] == 1 and doc["source"]["complete"] is False
    assert "interrupted after line 2; reporting what was read" in err
    assert any("interrupted" in n for n in doc["notes"])
