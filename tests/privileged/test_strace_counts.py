"""Per-syscall counts for programs nobody here wrote equal strace -f -c counts for the same run."""
import collections
import json
import re
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


# fd syscalls compared per path: strace -y names each fd's file as the kernel does (/proc/PID/fd)
FD_SYSCALLS = ("read", "write", "pread64", "pwrite64", "readv", "writev", "preadv", "pwritev", "ftruncate",
               "fchmod", "fchown", "fsetxattr", "fremovexattr")
TWO_FD_SYSCALLS = {"copy_file_range": (0, 2), "splice": (0, 2), "sendfile": (1, 0)}
FD_ARG = re.compile(r"(\d+)<((?:[^>\\]|\\.)*)>")


def unescape(path: str) -> str:
    return path.encode("latin-1", "backslashreplace").decode("unicode_escape").encode("latin-1").decode(
        "utf-8", "surrogateescape")


def strace_by_path(cmd, prefix):
    """Counter of (syscall, path) from strace -ff -y: fd syscalls on files, and the files opens returned."""
    subprocess.run(["strace", "-ff", "-y", "-qq", "-s", "0", "-o", str(prefix), "--", *cmd],
                   check=True, capture_output=True)
    counts = collections.Counter()
    for out in prefix.parent.glob(prefix.name + ".*"):
        for line in out.read_text(errors="surrogateescape").splitlines():
            m = re.match(r"(\w+)\((.*)\) += (.*)$", line)
            if not m:
                continue
            name, args, ret = m.groups()
            fds = FD_ARG.findall(args)
            if name in FD_SYSCALLS and fds and args.startswith(fds[0][0] + "<"):
                paths = [fds[0][1]]
            elif name in TWO_FD_SYSCALLS:
                argv = [a.strip() for a in args.split(",")]
                paths = [FD_ARG.match(argv[i]).group(2) for i in TWO_FD_SYSCALLS[name]
                         if FD_ARG.match(argv[i])]
            elif name in ("openat", "open", "creat") and FD_ARG.match(ret):
                paths = [FD_ARG.match(ret).group(2)]
            else:
                continue
            for p in paths:
                if p.startswith("/"):           # not pipe:[..], socket:[..], anon_inode:[..]
                    counts[name, unescape(p)] += 1
    return counts


def fstrace_by_path(cmd):
    proc = subprocess.run([FSTRACE, "trace", "--json", "--failed", "-e", "all", "--", *cmd],
                          capture_output=True, check=True, timeout=300)
    recs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert recs[-1]["lost"] == 0
    wanted = set(FD_SYSCALLS) | set(TWO_FD_SYSCALLS)
    return collections.Counter(
        (r["syscall"], r["path"]) for r in recs if r["type"] == "event" and r["path"] and (
            r["syscall"] in wanted or r["syscall"] in ("openat", "open", "creat") and r["ret"] >= 0
            and r["event"] in ("open", "create")))


@pytest.mark.parametrize("tool", ["rsync", "tar", "cp"])
def test_every_file_syscall_names_the_file_strace_names(tool, workdir, archive):
    """rsync -a (its sender, generator and receiver talk through sockets and pipes), tar -x and cp -r:
    each read, write, ftruncate, fchmod, copy_file_range ... on a file, and each opened file, per path,
    as many times as strace -f -y sees them; nothing on pipes or sockets."""
    def cmd(dest):
        (workdir / dest).mkdir()
        if tool == "rsync":
            return ["rsync", "-a", str(workdir / "src") + "/", str(workdir / dest)]
        if tool == "tar":
            return ["tar", "-xf", str(archive), "-C", str(workdir / dest)]
        return ["cp", "-r", str(workdir / "src"), str(workdir / dest)]

    def same(counts, dest):
        """Both runs' files under one name; rsync's temporary names (.NAME.XXXXXX) made equal."""
        out = collections.Counter()
        for (s, p), n in counts.items():
            out[s, re.sub(r"/(\.[^/]+\.)[A-Za-z0-9]{6}$", r"/\1XXXXXX", p.replace(dest, "/dest", 1))] += n
        return out

    (workdir / "traces").mkdir()
    expected = same(strace_by_path(cmd("by-strace"), workdir / "traces" / "s"), "/by-strace")
    got = same(fstrace_by_path(cmd("by-fstrace")), "/by-fstrace")
    assert sum(n for (s, p), n in expected.items() if "/dest" in p) > 40
    assert (sorted((got - expected).items()), sorted((expected - got).items())) == ([], [])
