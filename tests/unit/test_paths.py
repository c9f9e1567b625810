import os

import pytest

from bpftools.abi import AT_FDCWD
from bpftools.session.paths import BoundedDict, PathResolver, join, normalize


@pytest.mark.parametrize("raw,norm", [
    (b"/a//b/./c/", b"/a/b/c"),
    (b"/a/b/../c", b"/a/c"),
    (b"/../..", b"/"),
    (b"rel/./x", b"rel/./x"),
    (b"/with space/\n", b"/with space/\n"),
    (b"/", b"/"),
    (b"/a/b", b"/a/b"),
    (b"/a/.hidden/..x", b"/a/.hidden/..x"),
    (b"/a/b/", b"/a/b"),
    (b"/.", b"/"),
    (b"//", b"/"),
])
def test_normalize(raw, norm):
    assert normalize(raw) == norm


def test_join_keeps_absolute_names_and_uses_base_for_empty_ones():
    assert join(b"/base", b"/abs") == b"/abs"
    assert join(b"/base", b"x") == b"/base/x"
    assert join(b"/base", b"") == b"/base"
    assert join(b"/base", None) == b"/base"


def test_bounded_dict_forgets_the_oldest():
    d = BoundedDict(2)
    d[1] = "a"
    d[2] = "b"
    d[1] = "a2"
    d[3] = "c"
    assert list(d) == [1, 3]


@pytest.fixture
def fake_proc(tmp_path):
    """A /proc look-alike made of real directories and symlinks."""
    p = tmp_path / "proc"
    (p / "42" / "fd").mkdir(parents=True)
    (p / "42" / "cwd").symlink_to("/srv/www")
    (p / "42" / "fd" / "5").symlink_to("/var/log")
    (p / "42" / "stat").write_bytes(b"42 (we ird) name) S 7 42 42 0")
    return str(p)


def test_relative_names_use_cwd_or_dirfd(fake_proc):
    r = PathResolver(proc=fake_proc)
    assert r.resolve(42, AT_FDCWD, 0, b"index.html") == b"/srv/www/index.html"
    assert r.resolve(42, 5, 0, b"syslog") == b"/var/log/syslog"
    r.opened(99, b"/etc")
    assert r.resolve(42, 5, 99, b"passwd") == b"/etc/passwd"      # the kernel's id beats /proc
    assert r.resolve(42, AT_FDCWD, 0, b"/abs/./x") == b"/abs/x"


def test_unknown_process_keeps_the_relative_name(fake_proc):
    assert PathResolver(proc=fake_proc).resolve(7, AT_FDCWD, 0, b"x") == b"x"


def test_fork_and_chdir_are_followed_without_proc(fake_proc):
    r = PathResolver(proc=fake_proc)
    r.forked(42, 1000)
    assert r.cwd(1000) == b"/srv/www"
    r.chdir(1000, b"/tmp/t")
    assert r.resolve(1000, AT_FDCWD, 0, b"../u") == b"/tmp/u"
    assert r.ppid(1000) == 42


def test_ppid_parses_stat_with_parentheses_in_comm(fake_proc):
    assert PathResolver(proc=fake_proc).ppid(42) == 7


def test_existing_fds_lists_files_of_live_processes():
    r = PathResolver()
    with open(__file__, "rb") as f:
        fd = f.fileno()
        found = [(n, path, w, cx) for tgid, n, path, w, cx in r.existing_fds(skip_tgid=-1)
                 if tgid == os.getpid() and n == fd]
    assert found == [(fd, os.path.realpath(__file__).encode(), False, True)]
