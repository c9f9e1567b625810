"""Per-syscall counts for programs nobody here wrote equal strace -f -c counts for the same run."""
import collections
import json
import subprocess
import tarfile

import pytest
from conftest import FSTRACE

# syscalls whose every call fstrace reports with --failed -e all (close, read and
# write only count when every fd involved is a file the program opened itself)
COMPARED = ("openat", "mkdirat", "mkdir", "unlinkat", "unlink", "rmdir", "renameat2", "rename", "utimensat",
            "fchmodat", "fchownat", "fchown", "fchmod", "symlinkat", "linkat", "chmod", "chown")


def strace_counts(cmd, out):
    subprocess.run(["strace", "-f", "-c", "-U", "name,calls,errors", "-o", str(out), "--", *cmd],
                   check=True, capture_output=True)
    counts = {}
    for line in out.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit() and parts[0] in COMPARED:
            counts[parts[0]] = int(parts[1])
    return counts


def fstrace_counts(cmd):
    proc = subprocess.run([FSTRACE, "trace", "--json", "--failed", "-e", "all", "--", *cmd],
                          capture_output=True, check=True, timeout=300)
    recs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert recs[-1]["lost"] == 0
    counts = collections.Counter(r["syscall"] for r in recs if r["type"] == "event")
    return {name: counts[name] for name in COMPARED if counts[name]}


@pytest.fixture
def archive(workdir):
    src = workdir / "src"
    (src / "a/b/c").mkdir(parents=True)
    for i in range(40):
        (src / "a" / ("f%d.txt" % i)).write_text("x" * i)
        (src / "a/b/c" / ("g%d" % i)).write_bytes(b"\0" * (i * 100))
    (src / "a/link").symlink_to("f1.txt")
    path = workdir / "src.tar"
    with tarfile.open(path, "w") as t:
        t.add(src, arcname="src")
    return path


@pytest.mark.parametrize("tool", ["tar", "cp"])
def test_counts_equal_strace(tool, workdir, archive):
    def cmd(dest):
        (workdir / dest).mkdir()
        if tool == "tar":
            return ["tar", "-xf", str(archive), "-C", str(workdir / dest)]
        return ["cp", "-a", str(workdir / "src"), str(workdir / dest)]

    expected = strace_counts(cmd("by-strace"), workdir / "strace.out")
    got = fstrace_counts(cmd("by-fstrace"))
    assert expected.get("openat", 0) > 40
    assert got == expected
