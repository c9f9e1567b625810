"""What only the fsnotify backends (fentry, kprobe) do: arming, path building, stacked filesystems.

Not collected by `pytest tests` (the name does not start with test_): the
kernel matrix (tests/kernels/run.py) passes it explicitly, with
FSTRACE_TEST_BACKENDS naming the fsnotify backends of the kernel it boots.
It shares the session's fstrace processes with test_backends.py.
"""
import ctypes
import fcntl
import os
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from conftest import overlay_mounted
from tracer import FSNOTIFY, enter_cgroup, specs_under_test

SPECS = [s for s in specs_under_test() if s.expect in FSNOTIFY]
if not SPECS:
    raise RuntimeError("fsnotify_checks.py needs FSTRACE_TEST_BACKENDS naming fentry or kprobe "
                       "(tests/kernels/run.py sets it)")
WORKLOADS = Path(__file__).parent / "workloads"
NR_PIDFD_OPEN, NR_PIDFD_GETFD = 434, 438
ARM_TIMEOUT = 60.0
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def kernel_dev(path) -> int:
    st = os.stat(path)
    return os.major(st.st_dev) << 20 | os.minor(st.st_dev)


def marks_on(dev: int) -> dict[int, list[str]]:
    """pid -> fdinfo mark lines (inotify or fanotify) of every process watching superblock dev."""
    holders = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir("/proc/%s/fdinfo" % pid):
                for line in Path("/proc/%s/fdinfo/%s" % (pid, fd)).read_text().splitlines():
                    if "sdev:%x " % dev in line + " ":
                        holders.setdefault(int(pid), []).append(line)
        except OSError:
            continue
    return holders


def arming_groups(pid: int) -> list[int]:
    """fds of pid's fanotify groups that hold ignore-only marks (fstrace's arming groups)."""
    fds = []
    for fd in os.listdir("/proc/%d/fdinfo" % pid):
        text = Path("/proc/%d/fdinfo/%s" % (pid, fd)).read_text()
        if "fanotify sdev:" in text and " mask:0 " in text:
            fds.append(int(fd))
    return fds


def queued_bytes(pid: int, fd: int) -> int:
    """FIONREAD on a copy of another process's fd (pidfd_getfd)."""
    pidfd = libc.syscall(NR_PIDFD_OPEN, pid, 0)
    assert pidfd >= 0, os.strerror(ctypes.get_errno())
    try:
        mine = libc.syscall(NR_PIDFD_GETFD, pidfd, fd, 0)
        assert mine >= 0, os.strerror(ctypes.get_errno())
        try:
            n = ctypes.c_int()
            fcntl.ioctl(mine, termios.FIONREAD, n)
            return n.value
        finally:
            os.close(mine)
    finally:
        os.close(pidfd)


def mount_tmpfs(path: Path) -> None:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "fstrace-test", str(path)], check=True)


def wait_armed(pool, directory: Path) -> float:
    """Create probe files in directory until every tracer reports one; seconds it took."""
    started = time.monotonic()
    cgroup, cgid = pool.child_cgroup("arm")
    n = 0
    try:
        while True:
            probe = str(directory / ("probe%d" % n))
            subprocess.run(["/bin/sh", "-c", ': > "$1"', "sh", probe], preexec_fn=enter_cgroup(cgroup), check=True)
            seen = [any(e["path"] == probe and e["event"] == "create" for e in t.events(cgid))
                    for t in pool.tracers.values()]
            if all(seen):
                return time.monotonic() - started
            assert time.monotonic() - started < ARM_TIMEOUT, "%s not armed after %.0f s" % (directory, ARM_TIMEOUT)
            n += 1
            time.sleep(0.5)
    finally:
        os.rmdir(cgroup)


@pytest.fixture(scope="module")
def checks(pool, scratch_fs):
    """The fsnotify-only scenarios, each run once while every tracer watches."""
    out = {}
    py = sys.executable
    base = scratch_fs / "queue"
    base.mkdir()
    out["queue"] = pool.run("queue", str(base), [py, "-c", (
        "import os, sys; b = sys.argv[1]\n"
        "for i in range(200):\n"
        "    p = '%s/f%d' % (b, i); fd = os.open(p, os.O_CREAT | os.O_WRONLY); os.write(fd, b'x')\n"
        "    os.close(fd); os.rename(p, p + '.r'); os.unlink(p + '.r')"), str(base)])

    newfs = scratch_fs / "newfs"
    mount_tmpfs(newfs)
    out["arm_seconds"] = wait_armed(pool, newfs)

    base = scratch_fs / "deep"
    base.mkdir()
    out["deep"] = pool.run("deep", str(base), [py, str(WORKLOADS / "deep.py"), str(base)])

    ov = newfs / "overlay"            # its upper layer on a filesystem mounted while tracing
    with overlay_mounted(ov, {"file": b"from the lower layer\n"}) as o:
        wait_armed(pool, o.merged)
        out["overlay"] = pool.run("overlay", str(ov), ["/bin/sh", "-c", 'cat "$1"/merged/file > /dev/null; '
                                                       'mv "$1"/merged/file "$1"/merged/moved', "sh", str(ov)])
    yield out
    subprocess.run(["umount", str(newfs)], check=True)


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_arming_alone_shows_every_event_and_queues_nothing(pool, scratch_fs, checks, spec):
    tracer = pool.tracers[spec.id]
    pids = {t.proc.pid for t in pool.tracers.values()}
    assert set(marks_on(kernel_dev(scratch_fs))) <= pids, "another watcher on the scratch filesystem"
    run = checks["queue"]
    got = [e["event"] for e in run.events(tracer)]
    assert got == ["create", "modify", "close_write", "rename", "delete"] * 200
    groups = arming_groups(tracer.proc.pid)
    assert groups
    assert [queued_bytes(tracer.proc.pid, fd) for fd in groups] == [0] * len(groups)


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_a_filesystem_mounted_while_tracing_is_armed(pool, scratch_fs, checks, spec):
    tracer = pool.tracers[spec.id]
    assert checks["arm_seconds"] < ARM_TIMEOUT
    assert tracer.proc.pid in marks_on(kernel_dev(scratch_fs / "newfs"))


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_paths_too_deep_or_too_long_come_as_relative_tails(pool, checks, spec):
    tracer = pool.tracers[spec.id]
    run = checks["deep"]
    leaves = {e["path"] for e in tracer.events(run.cgroup_id) if e["event"] == "create" and
              (e["path"] or "").endswith("/leaf")}
    deep = next(p for p in leaves if p.startswith("d/"))
    long = next(p for p in leaves if not p.startswith(("d/", "/")))
    assert deep == "/".join(["d"] * 63 + ["leaf"])       # FST_DEPTH_MAX components
    full_long = "/".join(["%02d" % i + "n" * 248 for i in range(20)] + ["leaf"])
    assert full_long.endswith("/" + long) and len(long.encode()) < 4095
    assert len(leaves) == 2


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_overlayfs_backing_files_are_not_reported(pool, checks, spec):
    """Nor its copy-up, rename and whiteout in the upper layer, of an overlay mounted while tracing."""
    run = checks["overlay"]
    events = [[e["event"], e["path"][len(run.base):], (e["path2"] or "")[len(run.base):]]
              for e in run.events(pool.tracers[spec.id])]
    assert events == [["open", "/merged/file", ""], ["access", "/merged/file", ""],
                      ["close_nowrite", "/merged/file", ""], ["rename", "/merged/file", "/merged/moved"]]
