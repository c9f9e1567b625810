"""Arming fsnotify with real fanotify marks (no BPF needed, so it runs on every kernel).

Checks what the kernel says it holds (the group's /proc fdinfo lists every
mark), that new mounts are armed and gone ones forgotten, that --mount
restricts, and that the ignore marks never queue an event.
"""
import ctypes
import fcntl
import os
import subprocess
import termios
import uuid
from pathlib import Path

import pytest

from bpftools import abi
from bpftools.kernel import arming, mountinfo


def sb_marks(fd: int) -> dict[int, dict[str, int]]:
    """dev -> {mflags, mask, ignored_mask} of the superblock marks of fanotify group fd."""
    marks = {}
    for line in Path("/proc/self/fdinfo/%d" % fd).read_text().splitlines():
        if line.startswith("fanotify sdev:"):
            fields = {k: int(v, 16) for k, v in (f.split(":") for f in line.split()[1:])}
            marks[fields.pop("sdev")] = fields
    return marks


def queued_bytes(fd: int) -> int:
    n = ctypes.c_int()
    fcntl.ioctl(fd, termios.FIONREAD, n)
    return n.value


@pytest.fixture
def tmpfs():
    """A fresh tmpfs (its own superblock, no marks yet), unmounted afterwards."""
    mounted = []

    def mount() -> Path:
        path = Path("/tmp") / ("fstrace-test-" + uuid.uuid4().hex[:10])
        path.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "fstrace-test", str(path)], check=True)
        mounted.append(path)
        return path
    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)
        path.rmdir()


class Seen:
    """The on_mount callback: what the BPF program would be told."""

    def __init__(self):
        self.sbs: dict[int, arming.Superblock] = {}
        self.forgotten: list[int] = []

    def __call__(self, sb, dev):
        if sb is None:
            self.sbs.pop(dev, None)
            self.forgotten.append(dev)
        else:
            self.sbs[dev] = sb


def dev_of(path: Path) -> int:
    st = os.stat(path)
    return mountinfo.kernel_dev(os.major(st.st_dev), os.minor(st.st_dev))


def test_every_real_filesystem_gets_one_ignore_only_mark(tmpfs):
    fs = tmpfs()
    seen = Seen()
    armer = arming.Armer(abi.EVENT_NAMES, seen)
    try:
        armer.start()
        marks = sb_marks(armer.group_fds["fid"])
        dev = dev_of(fs)
        assert seen.sbs[dev].traced and seen.sbs[dev].armed == "fid"
        assert seen.sbs[dev].point == os.fsencode(fs)
        assert marks[dev] == {"mflags": arming.FAN_MARK_IGNORED_SURV_MODIFY, "mask": 0,
                              "ignored_mask": arming.fanotify_mask(abi.EVENT_NAMES)}
        armed = {d for d, sb in seen.sbs.items() if sb.armed == "fid"}
        assert armed == set(marks)
        assert all(not sb.traced for sb in seen.sbs.values() if sb.fstype in arming.PSEUDO_FILESYSTEMS)
    finally:
        armer.close()


def test_nothing_queues_in_the_group(tmpfs):
    fs = tmpfs()
    armer = arming.Armer(abi.EVENT_NAMES, Seen(), only=(os.fsencode(fs),))
    try:
        armer.start()
        d = fs / "d"
        d.mkdir()
        (d / "f").write_text("x")
        (d / "f").read_text()
        os.chmod(d / "f", 0o600)
        os.rename(d / "f", d / "g")
        os.unlink(d / "g")
        d.rmdir()
        assert [queued_bytes(fd) for fd in armer.group_fds.values()] == [0]
    finally:
        armer.close()


def test_new_mounts_are_armed_and_gone_ones_forgotten(tmpfs):
    seen = Seen()
    armer = arming.Armer(("create",), seen)
    try:
        armer.start()
        assert not armer.poll()
        fs = tmpfs()
        dev = dev_of(fs)
        assert armer.poll()
        assert seen.sbs[dev].armed == "fid"
        assert sb_marks(armer.group_fds["fid"])[dev]["ignored_mask"] == 0x100
        subprocess.run(["umount", str(fs)], check=True)
        assert armer.poll()
        assert dev in seen.forgotten and dev not in armer.superblocks
    finally:
        armer.close()


def test_mount_option_traces_only_that_filesystem(tmpfs):
    one, other = tmpfs(), tmpfs()
    (one / "sub").mkdir()
    seen = Seen()
    armer = arming.Armer(("create", "delete"), seen, only=(os.fsencode(one / "sub"),))
    try:
        armer.start()
        assert set(sb_marks(armer.group_fds["fid"])) == {dev_of(one)}
        assert seen.sbs[dev_of(one)].traced
        assert not seen.sbs[dev_of(other)].traced          # known (for paths) but not traced
        assert seen.sbs[dev_of(other)].point == os.fsencode(other)
    finally:
        armer.close()


def test_unknown_mount_option_is_a_clear_error():
    armer = arming.Armer(("create",), Seen(), only=(b"/nonexistent/fstrace-test",))
    try:
        with pytest.raises(arming.ArmingError, match="--mount /nonexistent/fstrace-test: No such file"):
            armer.start()
    finally:
        armer.close()
