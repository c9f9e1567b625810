"""fstrace trace end to end: real BPF, a real transient cgroup, real files."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FSTRACE

WORKLOADS = Path(__file__).parent / "workloads"


def run_trace(args, timeout=120, **kw):
    return subprocess.run([FSTRACE, "trace", *args], capture_output=True, timeout=timeout, **kw)


def records(stdout: bytes):
    return [json.loads(line) for line in stdout.decode("utf-8").splitlines()]


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """One traced run of the hostile-names workload: (completed process, records, expected, base)."""
    base = Path("/tmp") / ("fstrace-test-" + os.urandom(5).hex())
    base.mkdir()
    expected_file = tmp_path_factory.mktemp("expected") / "expected.json"
    proc = run_trace(["--json", "-e", "all", "--", sys.executable, str(WORKLOADS / "hostile.py"),
                      str(base), str(expected_file), "7"])
    base.rmdir()
    expected = json.loads(expected_file.read_text())
    return proc, records(proc.stdout), expected, str(base)


def under(recs, base):
    return [r for r in recs if r["type"] == "event" and (r["path"] or "").startswith(base + "/")]


def test_every_line_is_json_with_start_first_and_summary_last(hostile_run):
    proc, recs, _, _ = hostile_run
    assert recs[0]["type"] == "start"
    assert recs[0]["backend"] == "tracepoint"
    assert recs[-1]["type"] == "summary"
    assert recs[-1]["lost"] == 0
    assert recs[-1]["events"] == sum(1 for r in recs if r["type"] == "event")


def test_command_exit_status_passes_through(hostile_run):
    proc, _, _, _ = hostile_run
    assert proc.returncode == 7, proc.stderr.decode()


def test_one_record_per_operation_with_absolute_paths(hostile_run):
    _, recs, expected, base = hostile_run
    got = [[r["event"], r["dir"], r["path"], r["path2"]] for r in under(recs, base)]
    assert got == expected


def test_events_carry_the_transient_cgroup(hostile_run):
    _, recs, _, base = hostile_run
    start = recs[0]
    evs = [r for r in recs if r["type"] == "event"]
    assert start["command_cgroup"].startswith("/fstrace-run-")
    assert {r["cgroup"] for r in evs} == {start["command_cgroup"]}
    assert len({r["cgroup_id"] for r in evs}) == 1
    assert all(r["comm"] == "python3" or r["comm"].startswith("python") for r in under(recs, base))


def test_text_mode_never_prints_a_raw_control_character(workdir, tmp_path):
    proc = run_trace(["-e", "all", "--", sys.executable, str(WORKLOADS / "hostile.py"),
                      str(workdir), str(tmp_path / "e.json"), "0"])
    assert proc.returncode == 0, proc.stderr.decode()
    lines = proc.stdout.split(b"\n")
    assert any(b"esc\\x1b[31mred" in line for line in lines)
    assert any(b"with space and\\nnewline" in line for line in lines)
    assert any(b"bad-utf8-\\xff\\xfe" in line for line in lines)
    for line in lines:
        assert not any(b < 0x20 or b == 0x7F for b in line), line


def test_failed_operations_are_hidden_by_default_and_shown_with_failed(workdir):
    missing = str(workdir / "does-not-exist")
    script = "import os\ntry:\n    os.unlink(%r)\nexcept FileNotFoundError:\n    pass\n" % missing
    default = records(run_trace(["--json", "--", sys.executable, "-c", script]).stdout)
    assert not [r for r in default if r.get("path") == missing]
    failed = records(run_trace(["--json", "--failed", "--", sys.executable, "-c", script]).stdout)
    hits = [r for r in failed if r.get("path") == missing]
    assert [(h["event"], h["error"], h["ret"]) for h in hits] == [("delete", "ENOENT", -2)]


def test_event_filter_in_the_kernel(workdir):
    script = ("import os\nos.mkdir(%r)\nfd = os.open(%r, os.O_CREAT|os.O_WRONLY)\nos.write(fd, b'x')\n"
              "os.close(fd)\nos.unlink(%r)\nos.rmdir(%r)\n") % (
        str(workdir / "d"), str(workdir / "d/f"), str(workdir / "d/f"), str(workdir / "d"))
    recs = records(run_trace(["--json", "-e", "delete", "--", sys.executable, "-c", script]).stdout)
    assert recs[0]["events"] == ["delete"]
    evs = [(r["event"], r["path"], r["dir"]) for r in recs if r["type"] == "event"]
    assert evs == [("delete", str(workdir / "d/f"), False), ("delete", str(workdir / "d"), True)]


def test_shell_redirect_through_dup2_is_attributed_to_the_file(workdir):
    target = str(workdir / "out.txt")
    recs = records(run_trace(["--json", "-e", "all", "--", "sh", "-c", "echo hello > %s" % target]).stdout)
    mine = [(r["event"], r["comm"]) for r in recs if r["type"] == "event" and r["path"] == target]
    assert ("create", "sh") in mine
    assert ("modify", "sh") in mine


def test_comm_filter(workdir):
    path = str(workdir / "seen")
    script = "open(%r, 'w').close()" % path
    recs = records(run_trace(["--json", "-c", "no-such-comm", "--", sys.executable, "-c", script]).stdout)
    assert not [r for r in recs if r["type"] == "event"]
    comm = Path(sys.executable).name[:15]    # the kernel names a task after the file it executed
    os.unlink(path)                          # the untraced run made it: create it again
    recs = records(run_trace(["--json", "-c", comm, "--", sys.executable, "-c", script]).stdout)
    assert [r["event"] for r in recs if r["type"] == "event" and r["path"] == path] == ["create", "close_write"]


def test_pid_filter_follows_one_running_process(workdir):
    """Two processes do the same thing; only the one named by --pid is traced."""
    script = "import sys\nsys.stdin.readline()\nopen(sys.argv[1], 'w').close()\n"
    procs = [subprocess.Popen([sys.executable, "-c", script, str(workdir / name)], stdin=subprocess.PIPE)
             for name in ("traced", "ignored")]
    tracer = subprocess.Popen([FSTRACE, "trace", "--json", "-p", str(procs[0].pid), "-d", "30"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert json.loads(tracer.stdout.readline())["type"] == "start"
        for p in procs:
            p.communicate(b"go\n", timeout=30)
        tracer.send_signal(2)
        out, err = tracer.communicate(timeout=30)
    finally:
        for p in procs + [tracer]:
            if p.poll() is None:
                p.kill()
                p.wait()
    recs = records(out)
    assert recs[-1]["type"] == "summary", err.decode()
    evs = [r for r in recs if r["type"] == "event"]
    assert {r["pid"] for r in evs} == {procs[0].pid}
    assert [r["event"] for r in evs if r["path"] == str(workdir / "traced")] == ["create", "close_write"]


def test_command_not_found_exits_127_before_anything_starts():
    for command in ("/nonexistent/fstrace-no-such-command", "fstrace-no-such-command"):
        proc = run_trace(["--json", "--", command])
        assert proc.returncode == 127
        assert proc.stderr.decode() == "fstrace: error: %s: command not found\n" % command
        assert proc.stdout == b""       # no start record: nothing started


def test_command_not_executable_exits_126_as_shells_do(workdir):
    script = workdir / "not-executable.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    proc = run_trace(["--", str(script)])
    assert proc.returncode == 126
    assert proc.stderr.decode().strip().splitlines()[-1] == "fstrace: error: %s: permission denied" % script


@pytest.mark.parametrize("command", [["trace"], ["trace", "--json"], ["top", "-b", "-i", "0.1"],
                                     ["top", "--json", "-i", "0.1"]])
def test_a_reader_that_goes_away_ends_the_run_quietly_with_status_0(command):
    # on a quiet machine nothing else opens files: give the tracer something to print
    opener = subprocess.Popen([sys.executable, "-c", "import time\nwhile True:\n"
                               "    open('/etc/hostname').close()\n    time.sleep(0.05)"])
    try:
        proc = subprocess.run("%s %s | head -c 10 >/dev/null; echo ${PIPESTATUS[0]}" % (FSTRACE, " ".join(command)),
                              shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=120)
    finally:
        opener.kill()
        opener.wait()
    assert proc.stdout == "0\n", proc.stderr
    assert "Traceback" not in proc.stderr and "error" not in proc.stderr


def test_mount_without_an_fsnotify_backend_is_a_missing_feature_whatever_the_backend():
    start = records(run_trace(["--json", "-d", "0.1"]).stdout)[0]
    if start["backend"] != "tracepoint":
        pytest.skip("an fsnotify backend runs here: --mount works (tests/kernels covers it)")
    for args in (["--mount", "/"], ["--backend", "tracepoint", "--mount", "/"]):
        proc = run_trace(["-d", "0.1", *args])
        assert proc.returncode == 69, (args, proc.stderr)
        assert "--mount needs an fsnotify backend" in proc.stderr.decode()


def test_unprivileged_user_gets_one_line():
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           FSTRACE, "trace", "-d", "1"], capture_output=True, timeout=60)
    assert proc.returncode == 77
    err = proc.stderr.decode()
    assert err.count("\n") == 1 and "needs root" in err and "Traceback" not in err


def test_output_file_holds_the_events_and_stdout_the_commands_lines(workdir):
    out = workdir / "events.jsonl"
    proc = run_trace(["--json", "-o", str(out), "--", "sh", "-c", "echo the command speaks; echo x > %s/f" % workdir])
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"the command speaks\n"
    recs = records(out.read_bytes())
    assert recs[0]["type"] == "start" and recs[-1]["type"] == "summary"
    assert "create" in [r["event"] for r in recs if r.get("path") == str(workdir / "f")]


@pytest.mark.parametrize("command", [["trace"], ["report", "--by", "file"]])
def test_a_bidi_override_or_backslash_in_a_name_never_reaches_text_raw(workdir, command):
    script = "touch %s/rtl$(printf '\\342\\200\\256')txt %s/'back\\slash' %s/\"$(printf 'nl\\nname')\"" % (
        workdir, workdir, workdir)
    proc = subprocess.run([FSTRACE, *command, "--", "sh", "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode()
    assert "\u202e" not in out and "rtl\\u202etxt" in out
    assert "back\\\\slash" in out and "nl\\nname" in out
    assert not any(c < " " and c != "\n" for c in out)
    assert {p.name for p in workdir.iterdir()} == {"rtl\u202etxt", "back\\slash", "nl\nname"}


def test_a_cgroup_path_removed_and_made_again_is_still_followed(test_cgroup, workdir):
    import signal
    import time

    def touch_in_cgroup(name):
        subprocess.run(["touch", str(workdir / name)], check=True,
                       preexec_fn=lambda: Path(test_cgroup, "cgroup.procs").write_text("0"))

    tracer = subprocess.Popen([FSTRACE, "trace", "--json", "-e", "create", "--cgroup", test_cgroup],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert json.loads(tracer.stdout.readline())["type"] == "start"
        touch_in_cgroup("before")
        old_id = os.stat(test_cgroup).st_ino
        os.rmdir(test_cgroup)
        os.mkdir(test_cgroup)
        assert os.stat(test_cgroup).st_ino != old_id
        time.sleep(0.5)         # the mkdir reaches fstrace through the ring buffer
        touch_in_cgroup("after")
        time.sleep(0.3)
        tracer.send_signal(signal.SIGINT)
        out, err = tracer.communicate(timeout=60)
    finally:
        if tracer.poll() is None:
            tracer.kill()
            tracer.wait()
    paths = [r["path"] for r in records(out) if r["type"] == "event"]
    assert paths == [str(workdir / "before"), str(workdir / "after")], err.decode()
