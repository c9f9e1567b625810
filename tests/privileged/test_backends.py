"""One workload, every backend: the same normalised events, but for the documented differences.

Runs here with whatever `--backend auto` picks (tracepoint on a kernel
without kprobes), and in the kernel matrix (tests/kernels) with fentry and
kprobe on Debian's 6.1 and 6.12 kernels.  Each workload runs once while every
backend under test traces it (tracer.py); docs/backends.md lists the
differences that workloads/shapes.py encodes.
"""
import collections
import ctypes
import json
import ctypes.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FSTRACE
from tracer import enter_cgroup, family, specs_under_test

from bpftools.abi import BYTES_SYSCALLS, SYSCALL_NAMES, TIMED_SYSCALLS
from bpftools.kernel import backends
from bpftools.kernel.backends import NAMES as BACKENDS

WORKLOADS = Path(__file__).parent / "workloads"
# workloads/slowread.py: the read that waits, and what no other operation takes, even in a guest
# emulated (TCG) beside another on a busy host: both far from the slow read's log2 bucket's edges
SLOW_READ_S = 0.7       # in [2**19, 2**20) us
FAST_US = 300_000
OVERLAY_SCRIPT = ": > new; echo x >> new; mv new moved; rm moved; rm gone; mv old renamed; mkdir d"
OBSERVED_S = 0.3        # workloads/observed.py: how long it opens and closes its file
RUN_TIMEOUT = 900       # a run includes compiling the BPF program: minutes under TCG
SPECS = specs_under_test()
IN_ALL_EVENTS = 0xFFF


def shape(events, base=""):
    """[event, dir, path, path2] with base cut off the paths."""
    def cut(p):
        return p[len(base):] if p is not None and base and p.startswith(base) else p
    return [[e["event"], e["dir"], cut(e["path"]), cut(e["path2"])] for e in events]


def expected_for(entries, backend):
    fam = family(backend)
    return [[ev, d[fam] if isinstance(d, dict) else d, p, p2]
            for ev, d, p, p2, only in entries if only in (None, fam)]


@pytest.fixture(scope="module")
def runs(pool, scratch_fs, overlay_fs, tmp_path_factory):
    """Every shared scenario, run once while all tracers watch."""
    expect = tmp_path_factory.mktemp("expected")
    out = {}

    def run(name, argv, expected=None, **popen):
        base = scratch_fs / name
        base.mkdir()
        out[name] = pool.run(name, str(base), [str(a) for a in argv], expected and str(expected), **popen)
        return base

    py = sys.executable
    run("hostile", [py, WORKLOADS / "hostile.py", scratch_fs / "hostile", expect / "hostile.json", 0],
        expect / "hostile.json")
    run("shapes", [py, WORKLOADS / "shapes.py", scratch_fs / "shapes", expect / "shapes.json"],
        expect / "shapes.json")

    # the same with an inotify watch on the parent directory (fsnotify then also reports to it)
    watched = scratch_fs / "watched"
    watched.mkdir()
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    ifd = libc.inotify_init1(os.O_CLOEXEC)
    assert ifd >= 0 and libc.inotify_add_watch(ifd, bytes(watched), IN_ALL_EVENTS) >= 0
    try:
        cgroup, cgid = pool.child_cgroup("watched")
        subprocess.run([py, str(WORKLOADS / "shapes.py"), str(watched), str(expect / "watched.json")],
                       preexec_fn=enter_cgroup(cgroup), check=True, timeout=600)
        out["watched"] = pool.finish("watched", str(watched), cgroup, cgid, str(expect / "watched.json"))
    finally:
        os.close(ifd)

    # every syscall of the read/write family, sendfile, splice and copy_file_range, with known bytes
    run("bytes", [py, WORKLOADS / "rwbytes.py", scratch_fs / "bytes", expect / "bytes.json"], expect / "bytes.json")

    # one read that blocks SLOW_READ_S among hundreds of fast operations, then an fsync: known times
    latency = scratch_fs / "latency"
    run("latency", [py, WORKLOADS / "slowread.py", latency, SLOW_READ_S, expect / "latency.json", latency / "synced"],
        expect / "latency.json")

    # a file opened and closed while another process reads its /proc/PID/fd link
    run("observed", [py, WORKLOADS / "observed.py", scratch_fs / "observed", OBSERVED_S, expect / "observed.json"],
        expect / "observed.json")

    # in an overlay: new files made, renamed and deleted, and files of its lower layer renamed and deleted
    out["overlay"] = pool.run("overlay", str(overlay_fs.merged), ["/bin/sh", "-c", OVERLAY_SCRIPT, "sh"],
                              cwd=overlay_fs.merged)

    # a program in the scratch filesystem, executed
    exe = scratch_fs / "exec"
    exe.mkdir()
    shutil.copy(shutil.which("true"), exe / "true prog")
    out["exec"] = pool.run("exec", str(exe), [exe / "true prog"])

    # the file opened before fstrace started (conftest.py: pool)
    helper, cgroup, cgid = pool.preopened
    helper.communicate(b"go\n", timeout=120)
    assert helper.returncode == 0
    out["preopened"] = pool.finish("preopened", str(scratch_fs / "preopened"), cgroup, cgid)
    return out


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_start_record_names_the_backend_and_why_not_the_others(pool, scratch_fs, spec, record_property):
    start = pool.tracers[spec.id].start
    record_property("backend", start["backend"])
    for backend, why in start["backend_reasons"].items():
        record_property("not " + backend, why)
    if spec.expect:
        assert start["backend"] == spec.expect
    assert set(start["backend_reasons"]) == set(BACKENDS) - {start["backend"]}
    assert start["blind_spots"] == list(backends.by_name(start["backend"]).blind_spots) != []
    if backends.by_name(start["backend"]).arms_fsnotify:     # whatever headers are installed: offsets come from BTF
        assert start["armed"][str(scratch_fs)] == "fid"
        # raw_syscalls:sys_exit gives reads and writes their bytes (the pool traces -e all), sys_enter and
        # sys_exit time opens, reads, writes and syncs
        assert start["tracepoints"] == ["cgroup/cgroup_mkdir", "cgroup/cgroup_rmdir", "raw_syscalls/sys_enter",
                                        "raw_syscalls/sys_exit"]
        assert start["latency"] is True
    else:
        assert start["armed"] == {}


def test_a_backend_auto_passed_over_fails_alone_with_the_kernels_reason(pool):
    """Forced, a backend that cannot run here exits at once and says why.

    Struct offsets come from BTF, so the headers are no reason: auto's
    reason and the forced backend's error are the kernel's own.
    """
    auto = next(t for t in pool.tracers.values() if t.spec.arg == "auto").start
    for backend in BACKENDS[:BACKENDS.index(auto["backend"])]:
        proc = subprocess.run([FSTRACE, "trace", "--backend", backend, "-d", "1"], capture_output=True, timeout=900)
        err = proc.stderr.decode()
        assert proc.returncode in (69, 70), err
        assert err.startswith(("fstrace: error: %s backend: " % backend,
                               "fstrace: error: loading the %s BPF program failed: " % backend)), err
        assert auto["backend_reasons"][backend] in err


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_hostile_names_deep_paths_same_events(runs, pool, spec):
    run = runs["hostile"]
    assert shape(run.events(pool.tracers[spec.id])) == [e for e in run.expected]


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_files_and_directories_with_the_documented_differences(runs, pool, spec):
    tracer = pool.tracers[spec.id]
    run = runs["shapes"]
    events = run.events(tracer)
    assert shape(events) == expected_for(run.expected, tracer.backend)
    # every one came from a file syscall, and each backend names it (fsnotify: the task's orig_ax)
    assert {e["syscall"] for e in events} <= set(SYSCALL_NAMES.values())


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_a_watched_parent_directory_changes_nothing(runs, pool, spec):
    tracer = pool.tracers[spec.id]
    plain, watched = runs["shapes"], runs["watched"]
    assert shape(watched.events(tracer), watched.base) == shape(plain.events(tracer), plain.base)


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_reads_and_writes_carry_the_bytes_their_syscall_moved(runs, pool, spec, record_property):
    """Per file, the bytes of the access and modify events add up to what each call returned.

    Every backend: the syscall's return value (the fsnotify backends hold the
    event until raw_syscalls:sys_exit).  A read at the end of a file is an
    access of 0 bytes on the tracepoint backend and no event at all through
    fsnotify (the kernel notifies only reads that moved bytes).
    """
    run = runs["bytes"]
    events = [e for e in run.events(pool.tracers[spec.id]) if e["event"] in ("access", "modify")]
    seen = collections.Counter((e["syscall"], e["event"]) for e in events)
    record_property("access/modify events", ", ".join("%s:%s=%d" % (s, ev, n) for (s, ev), n in sorted(seen.items())))
    assert all(e["bytes"] is not None and e["bytes"] == e["ret"] for e in events), events
    got: dict = collections.defaultdict(lambda: [0, 0])
    for e in events:
        got[e["path"]][e["event"] == "modify"] += e["bytes"]
    # Measured in the kernel matrix: 6.1 notifies no access for splice's read side (file -> pipe), 6.12
    # does (the kernel added fsnotify calls to splice in between); the write side (pipe -> file) is a
    # modify on both.
    release = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2])
    no_splice_read = family(pool.tracers[spec.id].backend) == "fsnotify" and release < (6, 12)
    want: dict = collections.defaultdict(lambda: [0, 0])
    for path, rec in run.expected.items():
        for name, rets in rec["calls"].items():
            moved = sum(n for n in rets if n > 0)
            if name in ("sendfile", "splice", "copy_file_range"):
                source = path.endswith("/src")
                if not (source and name == "splice" and no_splice_read):
                    want[path][not source] += moved
            else:
                want[path][not name.startswith(("read", "pread"))] += moved
    assert dict(got) == dict(want)


def _close_to(latency_us: float, truth_ns: int) -> bool:
    return abs(latency_us * 1000 - truth_ns) <= 0.1 * truth_ns


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_opens_reads_writes_and_syncs_carry_their_time(runs, pool, spec, record_property):
    """Every backend times the syscall behind each open, read, write and sync (the fsnotify backends from
    raw_syscalls:sys_enter to sys_exit); the slow read within 10 % of the time the workload measured."""
    run = runs["latency"]
    truth = run.expected
    events = run.events(pool.tracers[spec.id])
    slow = [e for e in events if e["path"] == truth["path"] and e["event"] == "access"]
    assert len(slow) == 1 and _close_to(slow[0]["latency_us"], truth["read_ns"]), (slow, truth)
    record_property("slow read", "%s us, measured %s us" % (slow[0]["latency_us"], truth["read_ns"] / 1000))
    for e in events:
        timed = (e["event"] in ("open", "create") and e["syscall"] in ("open", "openat", "openat2", "creat")
                 or e["event"] in ("access", "modify") and e["syscall"] in BYTES_SYSCALLS
                 or e["event"] == "sync")
        assert (e["latency_us"] is not None) == timed, e
        assert e["latency_us"] is None or (e["syscall"] in TIMED_SYSCALLS and 0 < e["latency_us"] < FAST_US
                                            or e is slow[0]), e
    syncs = [e for e in events if e["event"] == "sync"]
    assert [(e["path"], e["syscall"], e["ret"]) for e in syncs] == [(run.base + "/synced", "fsync", 0)]
    fast = [e for e in events if e["path"] == run.base + "/fast"]
    assert {e["event"] for e in fast if e["latency_us"] is not None} == {"create", "open", "access", "modify"}


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_slower_than_and_the_report_histogram(spec, tmp_path, record_property):
    """trace --slower-than prints the slow read alone; report puts it in its histogram bucket."""
    out = {}
    for name, argv in (("trace", ["trace", "--json", "--slower-than", "%dms" % (FAST_US // 1000)]),
                       ("report", ["report", "--json", "--top", "0"])):
        base = tmp_path / name
        base.mkdir()
        truth_file = tmp_path / (name + ".json")
        proc = subprocess.run([FSTRACE, *argv, "--backend", spec.arg, "--", sys.executable, "-B", "-I",
                               str(WORKLOADS / "slowread.py"), str(base), str(SLOW_READ_S), str(truth_file)],
                              capture_output=True, timeout=RUN_TIMEOUT)
        assert proc.returncode == 0, proc.stderr.decode()
        out[name] = (proc.stdout, json.loads(truth_file.read_text()))
    stdout, truth = out["trace"]
    recs = [json.loads(line) for line in stdout.splitlines()]
    assert recs[0]["backend"] == (spec.expect or recs[0]["backend"])
    events = [r for r in recs if r["type"] == "event"]
    assert [(e["event"], e["path"]) for e in events] == [("access", truth["path"])], (events, truth)
    assert _close_to(events[0]["latency_us"], truth["read_ns"]), (events[0], truth)
    stdout, truth = out["report"]
    doc = json.loads(stdout)
    reads = next(r for r in doc["latency"] if r["cgroup"] == doc["scope"]["command_cgroup"] and r["event"] == "access")
    slow = [b for b in reads["histogram"] if b["to_us"] is None or b["to_us"] * 1000 > truth["read_ns"]]
    assert [b["count"] for b in slow] == [1], reads     # the slow read alone in its bucket, nothing slower
    assert slow[0]["from_us"] * 1000 <= truth["read_ns"] < slow[0]["to_us"] * 1000, (reads, truth)
    assert _close_to(reads["max_us"], truth["read_ns"]), (reads, truth)
    record_property("report", "access p50 %s us, p99 %s us, max %s us" % (reads["p50_us"], reads["p99_us"],
                                                                          reads["max_us"]))


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_an_overlay_is_changed_once_by_its_user_and_never_by_overlayfs(runs, pool, overlay_fs, spec):
    """Changing an overlay, overlayfs creates, renames and deletes in its upper and work directories
    (copies up, whiteouts) inside the user's syscall: every backend reports the user's change alone."""
    run = runs["overlay"]
    tracer = pool.tracers[spec.id]
    changes = [e for e in run.events(tracer) if e["event"] in ("create", "modify", "rename", "delete")]
    assert shape(changes, run.base) == [
        ["create", False, "/new", None], ["modify", False, "/new", None], ["rename", False, "/new", "/moved"],
        ["delete", False, "/moved", None], ["delete", False, "/gone", None], ["rename", False, "/old", "/renamed"],
        ["create", True, "/d", None]]
    inside = tuple(str(d) + "/" for d in (overlay_fs.upper, overlay_fs.work))
    assert shape(e for e in tracer.events(run.cgroup_id)
                 if (e["path"] or "").startswith(inside) or (e["path2"] or "").startswith(inside)) == []


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_exec_names_the_program(runs, pool, spec):
    run = runs["exec"]
    execs = [e for e in shape(run.events(pool.tracers[spec.id])) if e[0] == "exec"]
    assert execs == [["exec", False, run.base + "/true prog", None]]


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_a_file_opened_before_tracing_is_followed(runs, pool, spec):
    run = runs["preopened"]
    path = run.base + "/file"
    assert shape(run.events(pool.tracers[spec.id])) == [["modify", False, path, None],
                                                        ["close_write", False, path, None]]


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_a_close_while_another_process_holds_the_file_is_that_processs(runs, pool, spec, record_property):
    """A reader of /proc/PID/fd (lsof, a monitoring agent) holds the file for a moment.

    A close(2) then does not drop the last reference: the file is released, and closed for
    fsnotify, when the reader lets go, in the reader.  fentry and kprobe report that close with
    the reader as its process; tracepoint cannot see it -- a blind spot its start record and the
    man page name -- so it reports fewer closes than opens, at most one fewer per link read.
    """
    run = runs["observed"]
    want = run.expected
    tracer = pool.tracers[spec.id]
    events = [e for e in run.events(tracer) if e["path"] == want["path"]]
    opens = sum(1 for e in events if e["event"] == "open")
    closes = collections.Counter(e["pid"] for e in events if e["event"] == "close_nowrite")
    spinner, reader = closes.pop(want["spinner"], 0), closes.pop(want["observer"], 0)
    record_property("closes", "%d opens; closed by the spinner %d, by the reader %d; %d links read" % (
        opens, spinner, reader, want["reads"]))
    assert tracer.lost() == 0
    assert opens == want["rounds"] + 1 and closes == {}        # and the open that found the fd number
    if family(tracer.backend) == "fsnotify":
        assert spinner + reader == opens
    else:
        assert reader == 0 and 0 < opens - spinner <= want["reads"]
