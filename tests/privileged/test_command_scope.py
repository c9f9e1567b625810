"""`-- CMD` in a transient systemd scope, with systemd-run played by a stand-in (this host has no
systemd; tests/privileged/scope_standin.py), beside today's cgroup of fstrace's own: both must
keep the command's stdin, stdout, pid, signals and exit status alike.  The real systemd-run runs
in the kernel matrix's systemd guest (systemd_checks.py).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from commands import (SIGNALS, check_command_run, check_scope_run, command_env, direct_run, signalled_command,
                      trace_command)
from conftest import FSTRACE


STANDIN = str(Path(__file__).with_name("scope_standin.py"))

pytestmark = pytest.mark.bpf


@pytest.fixture(params=["cgroup", "scope"])
def fstrace(request, test_cgroup):
    """How fstrace runs: as on this host (a cgroup of its own), or as on a systemd host (a scope)."""
    if request.param == "cgroup":
        return [FSTRACE]
    return [sys.executable, STANDIN, test_cgroup]


def test_command_keeps_stdin_stdout_pid_and_status(fstrace, workdir, cg2_mount):
    run = trace_command(fstrace, workdir)
    check_command_run(run, workdir)
    env = command_env(workdir)
    status, direct_env = direct_run(workdir)
    assert {k: run.status[k] for k in ("SigBlk", "SigIgn")} == {k: status[k] for k in ("SigBlk", "SigIgn")}
    assert env == direct_env
    if fstrace[0] != FSTRACE:
        check_scope_run(run, r"/fstrace-test-[0-9a-f]+/fstrace-run-\d+-[0-9a-f]{6}\.scope")
    else:
        assert run.start["command_cgroup"].startswith("/fstrace-run-")
    assert not os.path.exists(os.path.join(cg2_mount, run.start["command_cgroup"].lstrip("/"), "cgroup.procs")) \
        or fstrace[0] != FSTRACE        # fstrace removes its own cgroup; systemd removes a scope


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_a_stop_signal_reaches_the_command(fstrace, workdir, sig):
    rc, err = signalled_command(fstrace, workdir, sig)
    assert rc == 128 + sig, err


def test_report_counts_the_command_in_its_scope(fstrace, workdir):
    proc = subprocess.run([*fstrace, "report", "--json", "-o", str(workdir / "r.json"), "--",
                           "/bin/sh", "-c", 'touch "$1/a"; exit 5', "sh", str(workdir)],
                          capture_output=True, timeout=600)
    assert proc.returncode == 5, proc.stderr.decode()
    doc = json.loads((workdir / "r.json").read_text())
    cgroup = doc["scope"]["command_cgroup"]
    assert doc["scope"]["exit_status"] == 5
    row = next(r for r in doc["cgroups"] if r["path"] == cgroup)
    assert row["events"]["create"] >= 1 and row["events"]["exec"] >= 1
    if fstrace[0] != FSTRACE:
        assert row["unit"] == cgroup.rsplit("/", 1)[1]
