"""systemd for real: `-- CMD` in a transient scope, units named from real .service cgroups.

Not collected by `pytest tests` (the name does not start with test_): the kernel matrix runs it
in the 6.12 guest under a real systemd (tests/kernels/systemd_guest.py starts it as pid 1 of a
pid and mount namespace of its own and runs pytest inside them, where /run/systemd/system exists
and systemd-run reaches systemd).  fstrace sees a systemd host there, as it would any.

In that pid namespace the pids fstrace and the command see are not those the kernel puts in
events (the initial namespace's): pids are compared only where both come from one side.
"""
import json
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

from commands import (check_command_run, check_scope_run, command_env, direct_run, signalled_command,
                      trace_command)
from conftest import FSTRACE

from bpftools.session import command

if not command.systemd_booted():
    raise RuntimeError("systemd_checks.py runs under systemd (tests/kernels/systemd_guest.py starts one)")

SCOPE = r"/system\.slice/fstrace-run-\d+-[0-9a-f]{6}\.scope"
START_TIMEOUT = 600


def units(pattern: str) -> list[str]:
    out = subprocess.run(["systemctl", "list-units", "--all", "--plain", "--no-legend", pattern],
                         capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def test_command_runs_in_a_transient_scope(workdir):
    run = trace_command([FSTRACE], workdir)
    check_command_run(run, workdir, pidns=True)
    check_scope_run(run, SCOPE)
    env = command_env(workdir)
    status, direct_env = direct_run(workdir)
    assert {k: run.status[k] for k in ("SigBlk", "SigIgn")} == {k: status[k] for k in ("SigBlk", "SigIgn")}
    assert re.fullmatch("[0-9a-f]{32}", env.pop("INVOCATION_ID", "")), env   # systemd-run's, the scope's
    direct_env.pop("INVOCATION_ID", None)
    assert env == direct_env
    unit = run.start["command_cgroup"].rsplit("/", 1)[1]
    deadline = time.monotonic() + 30
    while units(unit) and time.monotonic() < deadline:      # systemd collects the empty scope
        time.sleep(0.2)
    assert units(unit) == []


def test_a_stop_signal_reaches_the_command_in_its_scope(workdir):
    rc, err = signalled_command([FSTRACE], workdir, signal.SIGTERM)
    assert rc == 128 + signal.SIGTERM, err


def wait_for(predicate, what: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("no %s after %.0f s" % (what, timeout))
        time.sleep(0.2)


def test_a_transient_service_is_named_by_its_unit(workdir):
    """systemd-run --unit fstrace-test-<x> (a service, not under fstrace) is seen by trace and report."""
    unit = "fstrace-test-%s.service" % uuid.uuid4().hex[:10]
    trace_out, report_out = workdir / "trace.jsonl", workdir / "report.json"
    tracer = subprocess.Popen([FSTRACE, "trace", "--json", "-e", "create,delete,rename",
                               "--cgroup", "/system.slice", "-o", str(trace_out)], stderr=subprocess.PIPE)
    reporter = subprocess.Popen([FSTRACE, "report", "--json", "--top", "0", "--cgroup", "/system.slice",
                                 "-o", str(report_out)], stderr=subprocess.PIPE)
    try:
        wait_for(lambda: trace_out.exists() and trace_out.read_text().startswith('{"type":"start"'), "trace start")
        news = [reporter.stderr.readline()]
        while news[-1] and not news[-1].startswith(b"fstrace: counting with"):      # report has begun
            news.append(reporter.stderr.readline())
        assert news[-1], b"".join(news).decode()
        svc = subprocess.run(["systemd-run", "--quiet", "--wait", "--collect", "--unit", unit, "--",
                              "/bin/sh", "-c", ': > "$1/a"; echo x > "$1/b"; mv "$1/b" "$1/c"; rm "$1/a"',
                              "sh", str(workdir)], capture_output=True, text=True, timeout=300)
        assert svc.returncode == 0, svc.stderr
        time.sleep(1)
        for p in (tracer, reporter):
            p.send_signal(signal.SIGINT)
        for p in (tracer, reporter):
            assert p.wait(timeout=300) == 0, p.stderr.read().decode()
    finally:
        for p in (tracer, reporter):
            if p.poll() is None:
                p.kill()
                p.wait()
    cgroup = "/system.slice/" + unit
    recs = [json.loads(line) for line in trace_out.read_text().splitlines()]
    mine = [r for r in recs if r["type"] == "event" and (r["path"] or "").startswith(str(workdir) + "/")]
    assert [(r["event"], r["path"]) for r in mine] == [
        ("create", str(workdir / "a")), ("create", str(workdir / "b")), ("rename", str(workdir / "b")),
        ("delete", str(workdir / "a"))]
    assert {(r["cgroup"], r["unit"]) for r in mine} == {(cgroup, unit)}
    assert any(r["type"] == "cgroup" and r["action"] == "mkdir" and r["path"] == cgroup for r in recs)
    doc = json.loads(report_out.read_text())
    row = next(r for r in doc["cgroups"] if r["path"] == cgroup)
    assert row["unit"] == unit
    assert (row["events"]["create"], row["events"]["rename"], row["events"]["delete"]) == (2, 1, 1), row
    files = {f["path"] for f in doc["files"]}
    assert {str(workdir / "a"), str(workdir / "b")} <= files, files


def test_real_units_are_named_from_their_cgroups():
    """The units systemd started itself: services, the init scope, the slices around them."""
    doc = json.loads(subprocess.run([FSTRACE, "cgroups", "--json"], capture_output=True, check=True,
                                    timeout=300).stdout)
    by_path = {c["path"]: c for c in doc["cgroups"]}
    journald = by_path["/system.slice/systemd-journald.service"]
    assert (journald["unit"], journald["slice"]) == ("systemd-journald.service", "system.slice"), journald
    assert by_path["/init.scope"]["unit"] == "init.scope"
    running = [u for u in units("*.service") if Path(doc["mount"], "system.slice", u).is_dir()]
    assert running and all(by_path["/system.slice/" + u]["unit"] == u for u in running)
