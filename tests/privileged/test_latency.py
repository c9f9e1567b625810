"""Latency: operations of known duration, timed in the kernel (tracepoint backend, here).

workloads/slowread.py makes one read that blocks a known time on a FIFO
among hundreds of fast opens, reads and writes, and writes down how long
that read took, timed around the syscall; slowfs.py is a filesystem slowed
on purpose (FUSE) whose reads and fsyncs wait.
"""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import FSTRACE
from prometheus_client.parser import text_string_to_metric_families

from bpftools import abi

HERE = Path(__file__).parent
WORKLOADS = HERE / "workloads"
RUN_TIMEOUT = 900      # a run includes compiling the BPF program: minutes in the kernel matrix's TCG guests
WAIT = 0.3             # the slow read waits this long
# "slow": well above what a fast operation takes even on a busy machine (a preempted open can take 100 ms
# when other tests share the two cores), well below WAIT
SLOW = "200ms"
SLOW_US = 200_000
SLOWFS_DELAY = 0.2     # each read and fsync of the slowed filesystem waits this long


def slowread(base: Path, truth: Path, *extra: str) -> list[str]:
    return [sys.executable, "-B", "-I", str(WORKLOADS / "slowread.py"), str(base), str(WAIT), str(truth), *extra]


def events(stdout: bytes) -> list[dict]:
    recs = [json.loads(line) for line in stdout.splitlines()]
    assert recs[0]["type"] == "start" and recs[-1]["type"] == "summary" and recs[-1]["lost"] == 0
    return [r for r in recs if r["type"] == "event"]


def close_to(measured_us: float, truth_ns: int) -> bool:
    return abs(measured_us * 1000 - truth_ns) <= 0.1 * truth_ns


def test_slower_than_prints_exactly_the_slow_read(workdir):
    truth_file = workdir.parent / (workdir.name + ".truth.json")
    try:
        proc = subprocess.run([FSTRACE, "trace", "--json", "--slower-than", SLOW, "--",
                               *slowread(workdir, truth_file)], capture_output=True, timeout=RUN_TIMEOUT)
        truth = json.loads(truth_file.read_text())
    finally:
        truth_file.unlink(missing_ok=True)
    assert proc.returncode == 0, proc.stderr.decode()
    start = json.loads(proc.stdout.splitlines()[0])
    assert start["slower_than_us"] == SLOW_US and start["latency"] is True
    evs = events(proc.stdout)
    assert len(evs) == 1, evs                          # the one slow read, nothing fast
    ev = evs[0]
    assert (ev["event"], ev["path"], ev["syscall"], ev["pid"], ev["ret"], ev["bytes"]) == \
        ("access", truth["path"], "read", truth["pid"], 1, 1)
    assert close_to(ev["latency_us"], truth["read_ns"]), (ev["latency_us"], truth["read_ns"])
    assert truth["read_ns"] >= WAIT * 1e9


def test_every_timed_operation_has_its_latency_and_no_other_has_one(workdir):
    truth_file = workdir.parent / (workdir.name + ".truth.json")
    try:
        proc = subprocess.run([FSTRACE, "trace", "--json", "-e", "all", "--failed", "--",
                               *slowread(workdir, truth_file, str(workdir / "synced"))],
                              capture_output=True, timeout=RUN_TIMEOUT)
        truth = json.loads(truth_file.read_text())
    finally:
        truth_file.unlink(missing_ok=True)
    assert proc.returncode == 0, proc.stderr.decode()
    evs = events(proc.stdout)
    for ev in evs:
        timed = ev["syscall"] in abi.TIMED_SYSCALLS
        assert (ev["latency_us"] is not None) == timed, ev
        if timed:
            assert ev["event"] in abi.TIMED_EVENTS and ev["latency_us"] > 0, ev
    slow = [ev for ev in evs if ev["latency_us"] is not None and ev["latency_us"] >= SLOW_US]
    assert [(ev["event"], ev["path"]) for ev in slow] == [("access", truth["path"])]
    assert close_to(slow[0]["latency_us"], truth["read_ns"])
    fast = [ev for ev in evs if ev["path"] == str(workdir / "fast") and ev["latency_us"] is not None]
    # made by open(O_CREAT) (create), then opened, read and written 200 times each
    assert {ev["event"] for ev in fast} == {"create", "open", "access", "modify"} and len(fast) >= 600
    syncs = [ev for ev in evs if ev["event"] == "sync"]
    assert [(ev["path"], ev["syscall"], ev["ret"]) for ev in syncs] == [(str(workdir / "synced"), "fsync", 0)]


def test_report_puts_the_slow_read_in_its_bucket(workdir):
    truth_file = workdir.parent / (workdir.name + ".truth.json")
    try:
        proc = subprocess.run([FSTRACE, "report", "--json", "--top", "0", "--",
                               *slowread(workdir, truth_file, str(workdir / "synced"))],
                              capture_output=True, timeout=RUN_TIMEOUT)
        truth = json.loads(truth_file.read_text())
    finally:
        truth_file.unlink(missing_ok=True)
    assert proc.returncode == 0, proc.stderr.decode()
    doc = json.loads(proc.stdout)
    cgroup = doc["scope"]["command_cgroup"]
    lat = {(r["cgroup"], r["event"]): r for r in doc["latency"]}
    reads = lat[(cgroup, "access")]
    # the slow read alone in its bucket (where its measured time is), and nothing slower
    slow = [b for b in reads["histogram"] if b["to_us"] is None or b["to_us"] * 1000 > truth["read_ns"]]
    assert [b["count"] for b in slow] == [1]
    assert slow[0]["from_us"] * 1000 <= truth["read_ns"] < slow[0]["to_us"] * 1000
    assert close_to(reads["max_us"], truth["read_ns"]) and reads["p99_us"] <= reads["max_us"]
    assert reads["p50_us"] < 1000                       # the fast reads: hundreds of them, well under 1 ms
    assert reads["count"] >= 200 and sum(b["count"] for b in reads["histogram"]) == reads["count"]
    assert lat[(cgroup, "sync")]["count"] == 1
    assert {"open", "modify"} <= {event for c, event in lat if c == cgroup}
    # the slowest file is the FIFO; its row has the read's time
    assert doc["slowest_files"][0]["path"] == truth["path"]
    fifo = next(f for f in doc["files"] if f["path"] == truth["path"])
    assert fifo["time_us"] >= reads["max_us"] and fifo["avg_us"] is not None
    # the same time on the event-type row, the cgroup's, the process's
    access = next(e for e in doc["event_types"] if e["event"] == "access")
    assert access["time_us"] >= reads["max_us"]
    top = next(c for c in doc["cgroups"] if c["path"] == cgroup)
    assert top["subtree_time_us"] >= access["time_us"]


@pytest.fixture
def slowfs(workdir):
    """A FUSE filesystem whose reads and fsyncs wait SLOWFS_DELAY, mounted on workdir/mnt (tests/slowfs.py)."""
    pytest.importorskip("fusepy", reason="python3-fusepy (make install) runs the slowed filesystem")
    if not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse: this kernel has no FUSE")
    mnt = workdir / "mnt"
    mnt.mkdir()
    server = subprocess.Popen([sys.executable, "-B", str(HERE / "slowfs.py"), str(mnt), str(SLOWFS_DELAY)],
                              stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not os.path.ismount(mnt):
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()
            time.sleep(0.05)
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


SLOW_IO = """
import os, sys
path = sys.argv[1]
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b"data" * 1024)
os.fsync(fd)
for i in range(3):
    os.pread(fd, 4096, 0)
os.close(fd)
"""


def test_a_slowed_filesystem_shows_its_reads_and_fsyncs_slow(slowfs):
    target = slowfs / "data"
    proc = subprocess.run([FSTRACE, "trace", "--json", "--slower-than", "%dms" % (SLOWFS_DELAY * 500), "--",
                           sys.executable, "-B", "-I", "-c", SLOW_IO, str(target)],
                          capture_output=True, timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, proc.stderr.decode()
    evs = events(proc.stdout)
    assert sorted((ev["event"], ev["syscall"]) for ev in evs) == [("access", "pread64")] * 3 + [("sync", "fsync")]
    assert all(ev["path"] == str(target) for ev in evs)
    for ev in evs:
        assert SLOWFS_DELAY * 1e6 <= ev["latency_us"] < 10 * SLOWFS_DELAY * 1e6, ev


def test_export_has_a_histogram_per_cgroup_and_event(workdir, test_cgroup):
    """fstrace export over a cgroup that makes one slow read: the read is in its bucket of the histogram."""
    truth_file = workdir.parent / (workdir.name + ".truth.json")
    cgroup = "/" + os.path.basename(test_cgroup)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = "http://127.0.0.1:%d" % port
    exporter = subprocess.Popen([FSTRACE, "export", "--listen", "127.0.0.1:%d" % port, "--interval", "0.2",
                                 "--cgroup", cgroup], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + RUN_TIMEOUT
    try:
        said = ""
        while "fstrace: serving" not in said:
            line = exporter.stderr.readline()
            assert line, "fstrace export ended before serving: %s" % said
            said += line
        subprocess.run(slowread(workdir, truth_file), check=True, timeout=60,
                       preexec_fn=lambda: Path(test_cgroup, "cgroup.procs").write_text("0"))
        truth = json.loads(truth_file.read_text())

        def scrape() -> dict:
            body = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
            fam = {f.name: f for f in text_string_to_metric_families(body)}["fstrace_operation_seconds"]
            return {(s.name, s.labels.get("le")): s.value for s in fam.samples
                    if s.labels["cgroup"] == cgroup and s.labels["event"] == "access"}
        samples = {}
        while samples.get(("fstrace_operation_seconds_sum", None), 0) < truth["read_ns"] / 1e9 * 0.9:
            assert time.monotonic() < deadline
            time.sleep(0.3)
            samples = scrape()
        time.sleep(1.0)             # five more ticks: whatever the workload did is counted by now
        samples = scrape()
    finally:
        exporter.terminate()
        exporter.wait(timeout=30)
        truth_file.unlink(missing_ok=True)
    count = samples[("fstrace_operation_seconds_count", None)]
    assert samples[("fstrace_operation_seconds_bucket", "+Inf")] == count
    truth_s = truth["read_ns"] / 1e9
    below = [le for (name, le) in samples if name.endswith("_bucket") and le != "+Inf" and float(le) < truth_s]
    above = [le for (name, le) in samples if name.endswith("_bucket") and le != "+Inf" and float(le) >= truth_s]
    # every fast read is below the largest bound under the truth, the slow one only from the next bound on
    assert samples[("fstrace_operation_seconds_bucket", max(below, key=float))] == count - 1
    assert samples[("fstrace_operation_seconds_bucket", min(above, key=float))] == count
    assert samples[("fstrace_operation_seconds_sum", None)] >= truth_s * 0.9
