"""`-- CMD` in fstrace's own cgroup (a host without systemd, as this one): the command keeps its
stdin, stdout, pid, signals and exit status.  The same checks (tests/privileged/commands.py) run
with the real systemd-run --scope in the kernel matrix's systemd guest (systemd_checks.py).
"""
import json
import os
import subprocess

import pytest
from commands import SIGNALS, check_command_run, command_env, direct_run, signalled_command, trace_command
from conftest import FSTRACE

pytestmark = pytest.mark.bpf


def test_command_keeps_stdin_stdout_pid_and_status(workdir, cg2_mount):
    run = trace_command([FSTRACE], workdir)
    check_command_run(run, workdir)
    env = command_env(workdir)
    status, direct_env = direct_run(workdir)
    assert {k: run.status[k] for k in ("SigBlk", "SigIgn")} == {k: status[k] for k in ("SigBlk", "SigIgn")}
    assert env == direct_env
    assert run.start["command_cgroup"].startswith("/fstrace-run-")
    # fstrace removes its own cgroup
    assert not os.path.exists(os.path.join(cg2_mount, run.start["command_cgroup"].lstrip("/"), "cgroup.procs"))


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_a_stop_signal_reaches_the_command(workdir, sig):
    rc, err = signalled_command([FSTRACE], workdir, sig)
    assert rc == 128 + sig, err


def test_report_counts_the_command_in_its_cgroup(workdir):
    proc = subprocess.run([FSTRACE, "report", "--json", "-o", str(workdir / "r.json"), "--",
                           "/bin/sh", "-c", 'touch "$1/a"; exit 5', "sh", str(workdir)],
                          capture_output=True, timeout=600)
    assert proc.returncode == 5, proc.stderr.decode()
    doc = json.loads((workdir / "r.json").read_text())
    cgroup = doc["scope"]["command_cgroup"]
    assert doc["scope"]["exit_status"] == 5
    row = next(r for r in doc["cgroups"] if r["path"] == cgroup)
    assert row["events"]["create"] == 1 and row["events"]["exec"] >= 1
