import pytest

from bpftools.session.paths import BoundedDict, Parents, normalize


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


def test_bounded_dict_forgets_the_oldest():
    d = BoundedDict(2)
    d[1] = "a"
    d[2] = "b"
    d[1] = "a2"
    d[3] = "c"
    assert list(d) == [1, 3]


@pytest.fixture
def fake_proc(tmp_path):
    """A /proc look-alike made of real files."""
    p = tmp_path / "proc"
    (p / "42").mkdir(parents=True)
    (p / "42" / "stat").write_bytes(b"42 (we ird) name) S 7 42 42 0")
    return str(p)


def test_ppid_parses_stat_with_parentheses_in_comm(fake_proc):
    assert Parents(proc=fake_proc).ppid(42) == 7


def test_forks_are_followed_without_proc(fake_proc):
    r = Parents(proc=fake_proc)
    r.forked(42, 1000)
    assert r.ppid(1000) == 42
    assert r.ppid(1001) is None
