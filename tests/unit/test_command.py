"""`-- CMD`: how fstrace tells a systemd host, and how it asks systemd-run for a scope."""
import os
import signal
import subprocess
from pathlib import Path

import pytest

from bpftools.errors import ScopeNotStarted
from bpftools.session import command


def test_systemd_host_is_told_as_sd_booted_does(tmp_path):
    (tmp_path / "system").mkdir()
    (tmp_path / "file").write_text("")
    os.symlink(tmp_path / "system", tmp_path / "link")
    assert command.systemd_booted(str(tmp_path / "system"))
    assert not command.systemd_booted(str(tmp_path / "file"))
    assert not command.systemd_booted(str(tmp_path / "link"))        # lstat, as sd_booted(3)
    assert not command.systemd_booted(str(tmp_path / "missing"))


@pytest.mark.parametrize("text,path", [
    ("0::/system.slice/fstrace-run-1-abcdef.scope\n", "/system.slice/fstrace-run-1-abcdef.scope"),
    ("12:pids:/system.slice/x.scope\n1:name=systemd:/system.slice/x.scope\n0::/system.slice/x.scope\n",
     "/system.slice/x.scope"),                                          # a hybrid host
    ("1:name=systemd:/system.slice/x.scope\n", None),                  # v1 only
    ("0::/\n", "/"),
])
def test_unified_cgroup(text, path):
    assert command.unified_cgroup(text) == path


def test_scope_argv_runs_the_shim_in_a_named_collected_quiet_scope():
    argv = command.scope_argv("fstrace-run-1-abcdef.scope", ["make", "-j2", "a\nb"])
    assert argv[:argv.index("--")] == [
        "systemd-run", "--scope", "--quiet", "--collect", "--unit=fstrace-run-1-abcdef.scope",
        "--description=fstrace -- make -j2 'a?b'"]
    assert argv[argv.index("--") + 1:] == command.shim_argv(["make", "-j2", "a\nb"])
    assert command.shim_argv(["make"])[-1] == "make"


def test_run_names_are_unique_and_valid_unit_names():
    names = {command.run_name() for _ in range(50)}
    assert len(names) == 50
    assert all(n.startswith("fstrace-run-%d-" % os.getpid()) and n.replace("-", "").isalnum() for n in names)


def children() -> set[int]:
    """This process's children, alive or not yet reaped (in one pytest run, the privileged
    tests' session fixtures, such as the tracer pool, are children too)."""
    kids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path("/proc/%s/stat" % pid).read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
            kids.add(int(pid))
    return kids


def test_systemd_run_that_fails_is_one_error_and_no_process_left(tmp_path, capfd):
    before = children()
    with pytest.raises(ScopeNotStarted, match=r"systemd-run could not start scope fstrace-run-.*\(exit status 1\)"):
        command.TransientScope(str(tmp_path), ["true"], argv=lambda unit, cmd: [
            "/bin/sh", "-c", "echo 'Failed to start transient scope unit: Access denied' >&2; exit 1"])
    assert "Access denied" in capfd.readouterr().err      # systemd-run's own reason stays on stderr
    assert children() - before == set()


def test_a_shim_not_moved_into_its_scope_is_killed(tmp_path):
    before = children()
    with pytest.raises(ScopeNotStarted, match="not in scope fstrace-run-"):
        command.TransientScope(str(tmp_path), ["true"], argv=lambda unit, cmd: command.shim_argv(cmd))
    assert children() - before == set()


def test_the_shim_stops_then_execs_with_default_sigpipe(tmp_path):
    out = tmp_path / "out"
    child = subprocess.Popen(command.shim_argv(["/bin/sh", "-c", "grep SigIgn /proc/self/status > %s" % out]))
    _, status = os.waitpid(child.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status) and not out.exists()
    os.kill(child.pid, signal.SIGCONT)
    assert child.wait(timeout=30) == 0
    direct = subprocess.run(["/bin/sh", "-c", "grep SigIgn /proc/self/status"], capture_output=True, text=True)
    assert out.read_text() == direct.stdout          # Python's own SIG_IGN of SIGPIPE is not passed on
