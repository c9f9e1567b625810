"""trace's compiled stream path under load: loss is counted and shown, SIGINT ends the run promptly.

Real BPF, a real ring buffer and real files.  Loss is forced with a one-page
ring (a session with ring_pages = 1) under a workload that opens and closes
a file as fast as Python can.
"""
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import FSTRACE

from bpftools.session.contract import Options
from bpftools.session.stream import StreamSession
from bpftools.views.jsonl import JsonSink
from bpftools.views.text import TextSink

PAIRS = 30000
LIVENESS = 20       # s: a bound on hanging after SIGINT, not the speed target (bench/trace_exit.py measures it)
LOOP = ("import os, sys\npath = sys.argv[1]\nos.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))\n"
        "for _ in range(int(sys.argv[2])):\n    os.close(os.open(path, os.O_RDONLY))\n")


class OnePageRing(StreamSession):
    ring_pages = 1          # 4 KiB: a couple of dozen records


def run_tiny(sink, workdir):
    """-- the open/close loop, traced through a one-page ring into sink: the session's totals."""
    target = str(workdir / "f")
    opts = Options(events=("open", "close_nowrite"), command=(sys.executable, "-c", LOOP, target, str(PAIRS)))
    session = OnePageRing(opts, sink)
    try:
        info = session.start()
        sink.start(info, time.time(), os.getpid())
        session.totals.exit_status = session.run()
        sink.summary(time.time(), session.totals, info.backend, session.duration)
        sink.flush()
    finally:
        session.close()
    return session.totals, target


def test_json_loss_is_counted_in_lost_records_and_the_summary(workdir):
    out = io.BytesIO()
    totals, target = run_tiny(JsonSink(out), workdir)
    recs = [json.loads(line) for line in out.getvalue().splitlines()]
    written = sum(1 for r in recs if r["type"] == "event" and r["path"] == target)
    lost_records = [r for r in recs if r["type"] == "lost"]
    summary = recs[-1]
    assert summary["type"] == "summary" and summary["lost"] == totals.lost
    assert totals.lost > 0 and lost_records, "a one-page ring under %d pairs lost nothing" % PAIRS
    assert sum(r["count"] for r in lost_records) == summary["lost"]
    assert summary["events"] == sum(1 for r in recs if r["type"] == "event")
    # every event of the loop is written or counted (the loss count also holds other records: cgroups, forks)
    assert written < 2 * PAIRS and written + summary["lost"] >= 2 * PAIRS


def test_text_loss_is_said_on_stderr(workdir):
    out, err = io.BytesIO(), io.StringIO()
    totals, target = run_tiny(TextSink(out, err, colour=False), workdir)
    said = [int(line.split()[2]) for line in err.getvalue().splitlines() if line.startswith("fstrace: lost ")]
    assert totals.lost > 0 and sum(said) == totals.lost
    assert err.getvalue().splitlines()[-1].endswith(", %d lost" % totals.lost)
    written = sum(1 for line in out.getvalue().splitlines() if line.endswith(b" " + target.encode()))
    assert written < 2 * PAIRS and written + totals.lost >= 2 * PAIRS


@pytest.mark.parametrize("as_json", [True, False])
def test_sigint_under_load_writes_what_the_ring_holds_and_exits(workdir, as_json):
    """Stopped by SIGINT while a process opens and closes a file flat out: the run ends, its output whole.

    The target (0.5 s plus writing what the ring holds) is measured by bench/trace_exit.py; on a busy
    machine the kernel's grace periods when the probe detaches alone took up to several seconds."""
    target = str(workdir / "f")
    loop = subprocess.Popen([sys.executable, "-c", LOOP, target, "100000000"])
    out_path = workdir / "out"
    try:
        with open(out_path, "wb") as out:
            tracer = subprocess.Popen([FSTRACE, "trace", *(["--json"] if as_json else []), "-e", "open,close_nowrite",
                                       "--pid", str(loop.pid)], stdout=out, stderr=subprocess.PIPE)
            try:
                if as_json:                                 # the start record
                    deadline = time.monotonic() + 120
                    while out_path.stat().st_size == 0 and time.monotonic() < deadline and tracer.poll() is None:
                        time.sleep(0.05)
                else:                                       # the start line
                    line = tracer.stderr.readline()
                    assert line.startswith(b"fstrace: backend"), line
                time.sleep(1.5)
                t = time.monotonic()
                tracer.send_signal(signal.SIGINT)
                tracer.wait(timeout=60)
                took = time.monotonic() - t
                err = tracer.stderr.read().decode()
            finally:
                if tracer.poll() is None:
                    tracer.kill()
                    tracer.wait()
    finally:
        loop.kill()
        loop.wait()
    assert tracer.returncode == 0, err
    data = out_path.read_bytes()
    if as_json:
        recs = [json.loads(line) for line in data.splitlines()]
        assert recs[-1]["type"] == "summary"
        events = [r for r in recs if r["type"] == "event"]
        assert len(events) == recs[-1]["events"] > 1000
        assert recs[-1]["lost"] == sum(r["count"] for r in recs if r["type"] == "lost")
        assert events[-1]["ts"] <= recs[-1]["ts"]
    else:
        lines = data.splitlines()
        written = sum(1 for line in lines if b" cgroup mkdir " not in line and b" cgroup rmdir " not in line)
        assert written > 1000 and data.endswith(b"\n")
        assert ("%d events in" % written) in err, err
    assert took < LIVENESS, "exit took %.2f s after SIGINT" % took
