"""Fixtures for tests that need root, real BPF, real cgroups and real files."""
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from bpftools.cgroups.map import cgroup2_mount

FSTRACE = str(Path(sys.executable).with_name("fstrace"))


@pytest.fixture(autouse=True)
def _needs_root():
    if os.geteuid() != 0:
        pytest.skip("needs root (FSTRACE_REQUIRE_BPF=1 makes this a failure)")


@pytest.fixture(scope="session")
def cg2_mount() -> str:
    return cgroup2_mount()


def run_alongside(args, workload, timeout: float = 300):
    """Start `fstrace ARGS`, wait for its first line (start record), run workload(), then
    stop fstrace with SIGINT: (first line, stdout after it, stderr)."""
    tracer = subprocess.Popen([FSTRACE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = tracer.stdout.readline()
        workload()
        tracer.send_signal(signal.SIGINT)
        out, err = tracer.communicate(timeout=timeout)
    finally:
        if tracer.poll() is None:
            tracer.kill()
            tracer.wait()
    return first, out, err


def remove_cgroup_tree(path: str, timeout: float = 5.0) -> None:
    """rmdir a cgroup and its children, deepest first, waiting for exiting tasks."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            for dirpath, _dirs, _files in sorted(os.walk(path), key=lambda w: -w[0].count("/")):
                os.rmdir(dirpath)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def test_cgroup(cg2_mount):
    """A fresh fstrace-test-* cgroup (directory path), removed afterwards."""
    path = os.path.join(cg2_mount, "fstrace-test-" + uuid.uuid4().hex[:10])
    os.mkdir(path)
    try:
        yield path
    finally:
        remove_cgroup_tree(path)


@pytest.fixture
def workdir():
    """A scratch directory on a real filesystem, removed afterwards."""
    path = Path("/tmp") / ("fstrace-test-" + uuid.uuid4().hex[:10])
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def scratch_fs():
    """A fresh tmpfs: a filesystem on which nothing but fstrace itself watches, unmounted afterwards."""
    path = Path("/tmp") / ("fstrace-test-" + uuid.uuid4().hex[:10])
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "fstrace-test", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
        path.rmdir()


@dataclass(frozen=True)
class Overlay:
    merged: Path        # where it is mounted: what its users see
    upper: Path         # where overlayfs writes, on scratch_fs
    work: Path


@contextlib.contextmanager
def overlay_mounted(base: Path, lower_files: dict[str, bytes]):
    """An overlay of base/lower (holding lower_files) with base/upper and base/work, mounted on base/merged."""
    o = Overlay(base / "merged", base / "upper", base / "work")
    lower = base / "lower"
    for d in (lower, o.upper, o.work, o.merged):
        d.mkdir(parents=True)
    for name, data in lower_files.items():
        (lower / name).write_bytes(data)
    subprocess.run(["mount", "-t", "overlay", "fstrace-test", "-o", "lowerdir=%s,upperdir=%s,workdir=%s" % (
        lower, o.upper, o.work), str(o.merged)], check=True)
    try:
        yield o
    finally:
        subprocess.run(["umount", str(o.merged)], check=True)


@pytest.fixture(scope="session")
def overlay_fs(scratch_fs):
    """An overlay on scratch_fs (as a container's root is), mounted before the tracers start.

    Its lower layer holds two files, `old` and `gone`, for a workload to rename and delete.
    """
    with overlay_mounted(scratch_fs / "pool-overlay", {"old": b"old", "gone": b"gone"}) as o:
        yield o


@pytest.fixture(scope="session")
def pool(cg2_mount, scratch_fs, overlay_fs):
    """One fstrace process per backend under test (tracer.py), all started together.

    A helper opens scratch_fs/preopened/file before any of them starts:
    pool.preopened is (its Popen, its cgroup dir, its cgroup id).
    """
    from tracer import Pool, specs_under_test

    p = Pool(cg2_mount, specs_under_test())
    base = scratch_fs / "preopened"
    base.mkdir()
    cgroup, cgid = p.child_cgroup("preopened")
    helper = subprocess.Popen([sys.executable, str(Path(__file__).parent / "workloads/preopened.py"),
                               str(base / "file")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              preexec_fn=lambda: Path(cgroup, "cgroup.procs").write_text("0"))
    try:
        assert helper.stdout.readline() == b"open\n"
        p.preopened = (helper, cgroup, cgid)
        p.start()
        yield p
    finally:
        if helper.poll() is None:
            helper.kill()
            helper.wait()
        p.close()
        remove_cgroup_tree(p.dir)
