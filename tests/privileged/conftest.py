"""Fixtures for tests that need root, real BPF, real cgroups and real files."""
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

import pytest

from bpftools.cgroups import cgroup2_mount

FSTRACE = str(Path(sys.executable).with_name("fstrace"))


@pytest.fixture(autouse=True)
def _needs_root():
    if os.geteuid() != 0:
        pytest.skip("needs root (FSTRACE_REQUIRE_BPF=1 makes this a failure)")


@pytest.fixture(scope="session")
def cg2_mount() -> str:
    return cgroup2_mount()


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
