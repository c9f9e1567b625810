#!/usr/bin/env python3
"""Inside a kernel-matrix guest: start systemd, run pytest under it, stop it.

virtme-ng's own init is the guest's pid 1 and `vng --systemd` hangs under
TCG here, so systemd runs as pid 1 of a pid and mount namespace of its own
(`unshare --pid --fork --mount-proc`), booted to basic.target.  Units that
cost minutes under TCG and test nothing are masked first, in the guest's
/etc (a throw-away overlay): the gettys, systemd-tmpfiles-setup (it walks
the host's /var through 9p) and the timers (a missed apt-daily would start).
The tests run inside systemd's namespaces (nsenter -p -m), where
/run/systemd/system exists and systemd-run reaches systemd: fstrace sees a
systemd host.  The guest's cgroup2 hierarchy is shared, so what systemd
makes (system.slice, the units' cgroups) is what the kernel reports.

usage: systemd_guest.py OUT [PYTEST-ARGS...]    (run as root, in the repository)
writes OUT/junit-systemd.xml, and OUT/systemd-times: seconds until systemd was
running, seconds of the tests
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

MASK = ["getty@tty1.service", "serial-getty@ttyS0.service", "console-getty.service",
        "systemd-tmpfiles-setup.service", "timers.target"]
TESTS = ["tests/privileged/systemd_checks.py"]
READY_TIMEOUT = float(os.environ.get("SYSTEMD_READY_TIMEOUT", "300"))
UNITS = Path("/etc/systemd/system")


def say(text: str) -> None:
    print("[systemd guest] " + text, flush=True)


def in_systemd(pid: int, argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", "-t", str(pid), "-p", "-m", "--wd=" + os.getcwd(), "--", *argv], **kw)


def start() -> tuple[subprocess.Popen, int]:
    """systemd in new pid and mount namespaces: (the unshare process, systemd's pid here)."""
    for unit in MASK:
        link = UNITS / unit
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("/dev/null")
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "/lib/systemd/systemd", "--system",
                             "--unit=basic.target"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children = Path("/proc/%d/task/%d/children" % (proc.pid, proc.pid))
    deadline = time.monotonic() + 30
    while not children.read_text().split():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("systemd did not start (unshare exit %s)" % proc.wait())
        time.sleep(0.05)
    return proc, int(children.read_text().split()[0])


def wait_running(pid: int) -> str:
    deadline = time.monotonic() + READY_TIMEOUT
    state = ""
    while time.monotonic() < deadline:
        state = in_systemd(pid, ["systemctl", "is-system-running"], capture_output=True, text=True).stdout.strip()
        if state in ("running", "degraded"):
            return state
        time.sleep(1)
    for what in (["systemctl", "list-jobs"], ["systemctl", "--failed"], ["journalctl", "-n", "40"]):
        say("$ " + " ".join(what))
        in_systemd(pid, [*what, "--no-pager"])
    raise SystemExit("systemd was still %r after %.0f s" % (state, READY_TIMEOUT))


def up() -> tuple[subprocess.Popen, int, str]:
    """A running systemd: (the unshare process, systemd's pid here, its state), or SystemExit saying why not."""
    proc, pid = start()
    try:
        return proc, pid, wait_running(pid)
    except SystemExit:
        os.kill(pid, signal.SIGKILL)
        proc.wait()
        raise


def boot() -> tuple[subprocess.Popen, int, str]:
    """up(), tried twice: one slow start of the guest's systemd says why and does not fail the matrix."""
    try:
        return up()
    except SystemExit as e:
        say("%s: starting it again" % e)
        return up()


def main() -> int:
    out = Path(sys.argv[1])
    pytest_args = ["-v", "-p", "no:cacheprovider", "-o", "console_output_style=classic", "-o", "junit_family=xunit1",
                   "--junitxml=%s" % (out / "junit-systemd.xml"), *TESTS, *sys.argv[2:]]
    t0 = time.monotonic()
    proc, pid, state = boot()
    try:
        ready = time.monotonic() - t0
        say("systemd (pid %d here) %s after %.0f s" % (pid, state, ready))
        if state == "degraded":
            in_systemd(pid, ["systemctl", "--failed", "--no-pager"])
        t1 = time.monotonic()
        rc = in_systemd(pid, [sys.executable, "-m", "pytest", *pytest_args]).returncode
        tests = time.monotonic() - t1
        say("tests took %.0f s (exit %d)" % (tests, rc))
        (out / "systemd-times").write_text("ready %.1f\ntests %.1f\n" % (ready, tests))
        return rc
    finally:
        os.kill(pid, signal.SIGKILL)        # pid 1 of its namespace: everything in it goes too
        proc.wait()


if __name__ == "__main__":
    sys.exit(main())
