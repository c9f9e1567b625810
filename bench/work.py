"""The workloads: what the tracers watch, and what each run actually did.

Three are our own C programs (bench/workloads/*.c, built into bench/build/)
that count every file syscall they make and report the counts; one is tar
and rm, whose counts come from strace.  Every workload is checked once
against ``strace -f -c``.
"""
from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from system import BenchCgroup, own_cgroup

BENCH = Path(__file__).resolve().parent
SOURCES = BENCH / "workloads"
BUILD = BENCH / "build"
CFLAGS = ("-O2", "-Wall", "-Wextra", "-static")

# Syscalls naming a path: a tracer reports them whoever opened which fd.
# tar's reads, writes and closes also touch fds it did not open itself
# (stdin, the archive passed down, sockets), which fstrace does not follow.
PATH_SYSCALLS = frozenset({
    "open", "openat", "openat2", "creat", "mkdir", "mkdirat", "mknod", "mknodat", "unlink", "unlinkat",
    "rmdir", "rename", "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat", "chmod",
    "fchmodat", "chown", "lchown", "fchownat", "utime", "utimes", "futimesat", "utimensat", "truncate",
})


class WorkloadFailed(RuntimeError):
    pass


def build() -> dict[str, Path]:
    """Compile each bench/workloads/<name>.c into bench/build/fstb-<name> when out of date."""
    BUILD.mkdir(exist_ok=True)
    headers = list(SOURCES.glob("*.h"))
    binaries = {}
    for source in sorted(SOURCES.glob("*.c")):
        binary = BUILD / ("fstb-" + source.stem)
        newest = max(p.stat().st_mtime for p in [source, *headers])
        if not binary.exists() or binary.stat().st_mtime < newest:
            subprocess.run(["cc", *CFLAGS, "-o", str(binary), str(source)], check=True)
        binaries[source.stem] = binary
    return binaries


def private_names(programs: dict[str, Path], directory: Path) -> dict[str, Path]:
    """Symlinks in directory to programs, named <key>-<random>.  A process's name (comm) is the
    name it was executed by, so this run's workload processes have names no other process on
    the machine has, even another copy of the same program."""
    token = secrets.token_hex(3)
    links = {}
    for key, program in programs.items():
        links[key] = directory / ("%s-%s" % (key, token))[:15]
        links[key].symlink_to(program)
    return links


@dataclass(frozen=True)
class CgroupRef:
    path: str       # relative to the cgroup2 root, starting with "/"
    id: int


@dataclass
class Run:
    """One run of a workload: how long it took and what it did."""

    seconds: float                              # wall time, launch to exit
    pids: frozenset[int]                        # its processes
    comms: frozenset[str]                       # their names
    calls: Counter                              # syscall -> calls made
    failed: Counter                             # syscall -> calls that failed
    cgroups: dict[int, CgroupRef] = field(default_factory=dict)   # pid -> its cgroup, when it matters


def strace_argv(out: Path) -> list[str]:
    """The prefix that runs a command under strace -f -c, its summary going to out."""
    return [shutil.which("strace") or "strace", "-f", "-c", "-U", "name,calls,errors", "-o", str(out), "--"]


def strace_counts(out: Path) -> tuple[Counter, Counter]:
    """(calls, errors) per syscall, from the summary strace -c wrote to out."""
    calls, errors = Counter(), Counter()
    for line in out.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit() and parts[0] != "total":
            calls[parts[0]] = int(parts[1])
            if len(parts) == 3:
                errors[parts[0]] = int(parts[2])
    return calls, errors


def straced(argv: list[str], out: Path) -> tuple[Counter, Counter]:
    subprocess.run(strace_argv(out) + argv, check=True, stdout=subprocess.DEVNULL)
    return strace_counts(out)


def timed(argv: list[str]) -> tuple[float, str, int]:
    """Run argv: (wall seconds, its stdout, its pid)."""
    start = time.monotonic()
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        stdout, stderr = proc.communicate()
    seconds = time.monotonic() - start
    if proc.returncode:
        raise WorkloadFailed("%s exited %d: %s" % (argv[0], proc.returncode, stderr.strip()))
    return seconds, stdout, proc.pid


class Workload:
    """A named, repeatable workload; run() gives a fresh Run each time."""

    name = ""
    # syscalls whose counts are exact for every tracer; None: all it counts
    compared: frozenset[str] | None = None

    def __init__(self, scratch: Path):
        self.scratch = scratch

    def describe(self) -> str:
        raise NotImplementedError

    def run(self) -> Run:
        raise NotImplementedError

    def verify(self) -> dict:
        """Run once under strace -f -c; say whether its counts agree with the workload's own."""
        raise NotImplementedError

    def workdir(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="work-", dir=self.scratch))


def compare_counts(own: Run, calls: Counter, errors: Counter) -> dict:
    """The workload's counts against strace's, per syscall the workload counts."""
    differ = {name: {"workload": (own.calls[name], own.failed[name]), "strace": (calls[name], errors[name])}
              for name in own.calls if (own.calls[name], own.failed[name]) != (calls[name], errors[name])}
    return {"agree": not differ, "differ": differ, "strace_calls": dict(calls)}


class FileOps(Workload):
    """fstb-fileops: N rounds of create/write/close/rename/stat/open/read/close/unlink."""

    def __init__(self, scratch: Path, binaries: dict[str, Path], rounds: int, cgroup_root: Path | None = None):
        super().__init__(scratch)
        self.binary = binaries["fileops"]
        self.launcher = binaries["incgroup"]
        self.rounds = rounds
        self.cgroup_root = cgroup_root          # set: each run born into a fresh cgroup of its own
        self.name = "cgroup" if cgroup_root else "plain"

    def describe(self) -> str:
        text = "fstb-fileops: %d × (create, write 4 KiB, close, rename, stat, open, read, close, unlink)" % self.rounds
        return text + (", born into a fresh cgroup per run" if self.cgroup_root else "")

    def _launch(self, launch, wrapper=()):
        """launch(argv) for the workload's argv (after wrapper, e.g. strace), in a cgroup if asked."""
        work = self.workdir()
        argv = [*wrapper, str(self.binary), str(work), str(self.rounds)]
        cgroup = BenchCgroup(self.cgroup_root) if self.cgroup_root else None
        try:
            return launch([str(self.launcher), str(cgroup.dir), *argv] if cgroup else argv), cgroup
        finally:
            if cgroup:
                cgroup.remove()
            shutil.rmtree(work)

    def run(self) -> Run:
        (seconds, stdout, _), cgroup = self._launch(timed)
        report = json.loads(stdout)           # its pid: the launcher's child when in a cgroup
        return Run(seconds, frozenset({report["pid"]}), frozenset({self.binary.name}), Counter(report["syscalls"]),
                   Counter(report["failed"]), {report["pid"]: CgroupRef(cgroup.path, cgroup.id)} if cgroup else {})

    def verify(self) -> dict:
        own = self.run()
        out = self.scratch / "strace.txt"
        self._launch(lambda argv: subprocess.run(argv, check=True, stdout=subprocess.DEVNULL),
                     wrapper=strace_argv(out))
        return compare_counts(own, *strace_counts(out))


class ShortCgroups(Workload):
    """fstb-shortcg: M cgroups, each living for one child born into it doing ten file operations."""

    name = "shortcg"

    def __init__(self, scratch: Path, binary: Path, count: int, cgroup_root: Path):
        super().__init__(scratch)
        self.binary = binary
        self.count = count
        self.cgroup_root = cgroup_root

    def describe(self) -> str:
        return ("fstb-shortcg: %d cgroups made one after another, each entered by one child (clone3 "
                "CLONE_INTO_CGROUP) doing 10 file operations, removed as soon as it exits" % self.count)

    def _launch(self, launch):
        work = self.workdir()
        parent = BenchCgroup(self.cgroup_root)
        try:
            return launch([str(self.binary), str(work), str(self.count), str(parent.dir)])
        finally:
            parent.remove()
            shutil.rmtree(work)

    def run(self) -> Run:
        seconds, stdout, _ = self._launch(timed)
        report = json.loads(stdout)
        home = own_cgroup()
        cgroups = {report["pid"]: CgroupRef(home, (self.cgroup_root / home.lstrip("/")).stat().st_ino)}
        for cg in report["cgroups"]:
            path = "/" + str(Path(cg["dir"]).relative_to(self.cgroup_root))
            cgroups[cg["pid"]] = CgroupRef(path, cg["id"])
        return Run(seconds, frozenset(cgroups), frozenset({self.binary.name}), Counter(report["syscalls"]),
                   Counter(report["failed"]), cgroups)

    def verify(self) -> dict:
        own = self.run()
        out = self.scratch / "strace.txt"
        return compare_counts(own, *self._launch(lambda argv: straced(argv, out)))


class Tarball(Workload):
    """tar -xf of an archive of /usr/include, then rm -rf of the tree: programs nobody here wrote."""

    name = "tar"
    compared = PATH_SYSCALLS

    def __init__(self, scratch: Path, tar: Path, rm: Path, source: Path = Path("/usr/include")):
        super().__init__(scratch)
        self.tar, self.rm = tar, rm
        self.source = source
        self.archive = BUILD / ("%s.tar" % str(source).strip("/").replace("/", "-"))
        if not self.archive.exists():
            partial = self.archive.with_suffix(".partial")
            subprocess.run(["tar", "-cf", str(partial), "-C", str(source.parent), source.name], check=True)
            partial.rename(self.archive)
        listing = subprocess.run(["tar", "-tf", str(self.archive)], check=True, capture_output=True, text=True)
        self.entries = len(listing.stdout.splitlines())
        self.calls: Counter | None = None       # set by verify()
        self.errors: Counter | None = None

    def describe(self) -> str:
        return ("tar -xf %s (an archive of %s, %d entries), then rm -rf of the tree; counts from strace"
                % (self.archive.name, self.source, self.entries))

    def _commands(self, work: Path) -> list[list[str]]:
        return [[str(self.tar), "-xf", str(self.archive), "-C", str(work)],
                [str(self.rm), "-rf", str(work / self.source.name)]]

    def run(self) -> Run:
        work = self.workdir()
        try:
            runs = [timed(argv) for argv in self._commands(work)]
        finally:
            shutil.rmtree(work)
        return Run(sum(r[0] for r in runs), frozenset(r[2] for r in runs), frozenset({self.tar.name, self.rm.name}),
                   self.calls, self.errors)

    def verify(self) -> dict:
        """The counts of a run are strace's: take them here, and check they repeat."""
        counted = []
        for attempt in range(2):
            work = self.workdir()
            calls, errors = Counter(), Counter()
            try:
                for i, argv in enumerate(self._commands(work)):
                    c, e = straced(argv, self.scratch / ("strace-%d.txt" % i))
                    calls += c
                    errors += e
            finally:
                shutil.rmtree(work)
            counted.append((calls, errors))
        self.calls, self.errors = counted[0]
        same = {name for name in PATH_SYSCALLS if counted[0][0][name] == counted[1][0][name]}
        return {"agree": same == PATH_SYSCALLS, "differ": sorted(PATH_SYSCALLS - same),
                "strace_calls": dict(self.calls)}


class Rate(Workload):
    """fstb-rate: open+close pairs at `rate` events/s (two events a pair) for `seconds`."""

    name = "rate"

    def __init__(self, scratch: Path, binary: Path, seconds: int):
        super().__init__(scratch)
        self.binary = binary
        self.seconds = seconds
        self.rate = 0               # events/s asked for
        self.reached = 0.0          # events/s the last run reached

    def run(self) -> Run:
        work = self.workdir()
        try:
            seconds, stdout, _ = timed([str(self.binary), str(work), str(max(self.rate // 2, 1)), str(self.seconds)])
        finally:
            shutil.rmtree(work)
        report = json.loads(stdout)
        self.reached = 2 * report["rate"]
        return Run(seconds, frozenset({report["pid"]}), frozenset({self.binary.name}), Counter(report["syscalls"]),
                   Counter(report["failed"]))
