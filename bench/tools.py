"""The contenders: how to start each tracer, know it is ready, stop it, and read what it saw.

A Session runs one tracer once: launched with posix_spawn (SIGINT reset to
its default, so a tracer started from a shell that ignores SIGINT still
stops), ready when its output says so, stopped with SIGINT by its pid, its
CPU time and peak RSS taken from wait4.
"""
from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from system import cpu_seconds, last_line
from work import Run

FSTRACE = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "fstrace"
# Another fstrace to measure side by side with this one (e.g. the last release's, without bytes).
FSTRACE_BASELINE = os.environ.get("FSTRACE_BASELINE")
TRACEFS_SYSCALLS = Path("/sys/kernel/tracing/events/syscalls")

# Syscalls fstrace turns into events (bpf/tracepoint.bpf.c, fst_decode), by
# default and with `-e all` (access and modify: every read and write).
FSTRACE_DEFAULT_SYSCALLS = frozenset("""
    open creat openat openat2 mkdir mkdirat mknod mknodat unlink unlinkat rmdir rename renameat renameat2
    link linkat symlink symlinkat chmod chown lchown utime utimes futimesat utimensat fchmodat fchmodat2
    fchownat fchmod fchown setxattr lsetxattr fsetxattr setxattrat removexattr lremovexattr fremovexattr
    removexattrat close execve execveat""".split())
FSTRACE_ALL_SYSCALLS = FSTRACE_DEFAULT_SYSCALLS | frozenset("""
    read pread64 readv preadv preadv2 write pwrite64 writev pwritev pwritev2 truncate ftruncate""".split())


class NotLoaded(Exception):
    """The tracer exited, or never became ready, before the workload could start."""


@dataclass
class Capture:
    """What a tracer reported about one workload run."""

    by_syscall: Counter | None = None       # events of the workload's processes, per syscall
    total: int | None = None                # ... or only their sum, exec events left out
    records: int | None = None              # output records of the workload's processes
    lost: int | None = None                 # loss the tool itself reported
    judged: int | None = None               # events whose cgroup could be checked
    right_cgroup: int | None = None         # ... and carried the right one


@dataclass(frozen=True)
class Ready:
    """Ready once every pattern has appeared in the tracer's stdout (or stderr); poke() is called while waiting."""

    patterns: tuple[str, ...]
    poke: Callable[[], None] | None = None
    describe: str = ""
    stream: str = "stdout"


@dataclass(frozen=True)
class Contender:
    name: str
    argv: tuple[str, ...]                          # () for the untraced reference
    ready: Ready | None = None
    parse: Callable[[Path, Run], Capture] | None = None
    follows: frozenset[str] | None = None          # syscalls it reports one event per call of
    successes_only: bool = False                   # ... counting only calls that succeeded
    files_only: bool = False                       # ... on files on a path: not the report's stdout pipe
    env: dict = field(default_factory=dict)
    missing: str | None = None                     # why it cannot run here, if it cannot

    def expected(self, run: Run, compared: frozenset[str] | None) -> Counter | None:
        """Per syscall, the events this contender should report for run."""
        if self.follows is None or run.calls is None:      # tar: nobody counted its syscalls
            return None
        names = self.follows if compared is None else self.follows & compared
        expected = Counter({name: run.calls[name] - (run.failed[name] if self.successes_only else 0)
                            for name in names if run.calls[name]})
        if self.files_only:         # counted.h's report(): open, write and close of /dev/stdout, a pipe
            expected.subtract({name: 1 for name in ("openat", "write", "close") if name in names})
        return +expected


@dataclass
class Stopped:
    exit_s: float
    cpu_s: float
    peak_rss_kib: int
    exit_code: int          # negative: killed by that signal
    killed: bool            # by us, after it outlived the timeout


class Session:
    """One run of a tracer, with its stdout and stderr in files under outdir."""

    def __init__(self, contender: Contender, outdir: Path):
        self.contender = contender
        self.stdout = outdir / "stdout"
        self.stderr = outdir / "stderr"
        self.pid = 0
        self.pidfd = -1

    def start(self) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        self.launched = time.monotonic()
        self.pid = os.posix_spawnp(self.contender.argv[0], self.contender.argv,
                                   dict(os.environ, **self.contender.env),
                                   file_actions=[(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                                                 (os.POSIX_SPAWN_OPEN, 1, str(self.stdout), flags, 0o644),
                                                 (os.POSIX_SPAWN_OPEN, 2, str(self.stderr), flags, 0o644)],
                                   setsigdef=(signal.SIGINT,))
        self.pidfd = os.pidfd_open(self.pid)

    def wait_ready(self, timeout: float) -> float:
        """Seconds from launch until ready; NotLoaded if the tracer exits or times out first."""
        ready = self.contender.ready
        pending = [re.compile(p, re.M) for p in ready.patterns]
        seen = ""
        with open(self.stdout if ready.stream == "stdout" else self.stderr, errors="replace") as out:
            while pending:
                if ready.poke:
                    ready.poke()
                if select.select([self.pidfd], [], [], 0.01)[0]:
                    self._reap(0)
                    raise NotLoaded(why_not(self.stderr.read_text(errors="replace"))
                                    or last_line(self.stdout.read_text(errors="replace")) or "exited")
                if time.monotonic() - self.launched > timeout:
                    self.stop()
                    raise NotLoaded("not ready after %.0f s (waiting for %s)" % (timeout, ready.describe))
                seen = seen[-4096:] + out.read()
                pending = [p for p in pending if not p.search(seen)]
        return time.monotonic() - self.launched

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid) or 0.0

    def stop(self, timeout: float = 120.0) -> Stopped | None:
        """SIGINT, then wait for the exit; SIGKILL after timeout.  Always our own child, by pid;
        None if it has already been reaped."""
        if self.pidfd < 0:
            return None
        sent = time.monotonic()
        os.kill(self.pid, signal.SIGINT)
        killed = not select.select([self.pidfd], [], [], timeout)[0]
        if killed:
            os.kill(self.pid, signal.SIGKILL)
        return self._reap(sent, killed)

    def _reap(self, sent: float, killed: bool = False) -> Stopped:
        _, status, usage = os.wait4(self.pid, 0)
        exited = time.monotonic()
        os.close(self.pidfd)
        self.pidfd = -1
        return Stopped(exited - sent, usage.ru_utime + usage.ru_stime, usage.ru_maxrss,
                       os.waitstatus_to_exitcode(status), killed)

    def stderr_tail(self, lines: int = 5) -> list[str]:
        return self.stderr.read_text(errors="replace").splitlines()[-lines:]


def why_not(stderr: str) -> str:
    """The reason in a tracer's dying words: the last line, with BCC's attach call and BPF error
    when its traceback shows them ("Need super-user privileges" is how BCC reports EPERM)."""
    reason = last_line(stderr)
    calls = re.findall(r"in (attach_\w+)$", stderr, re.M)
    refused = re.search(r"^bpf: Failed to load program: (.+)$", stderr, re.M)
    if refused:
        reason += " (BPF program load: %s)" % refused.group(1).strip()
    return "%s: %s" % (calls[-1], reason) if calls else reason


# --- reading what the tracers wrote ---------------------------------------

def parse_fstrace_json(stdout: Path, run: Run) -> Capture:
    """fstrace trace --json: event records of the workload, lost from the summary."""
    cap = Capture(by_syscall=Counter(), records=0)
    comms = {'"comm":%s' % json.dumps(c) for c in run.comms}
    with open(stdout, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            if line.startswith('{"type":"event"'):
                if not any(c in line for c in comms):
                    continue
                rec = json.loads(line)
                if rec["pid"] not in run.pids:
                    continue
                cap.records += 1
                cap.by_syscall[rec["syscall"]] += 1
                want = run.cgroups.get(rec["pid"])
                if run.cgroups:
                    cap.judged = (cap.judged or 0) + 1
                    cap.right_cgroup = (cap.right_cgroup or 0) + (want is not None and rec["cgroup"] == want.path)
            elif line.startswith('{"type":"summary"'):
                cap.lost = json.loads(line)["lost"]
    return cap


def json_documents(text: str):
    """The JSON documents of text, one after another (one per line or pretty-printed)."""
    decoder = json.JSONDecoder()
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return
        doc, pos = decoder.raw_decode(text, pos)
        yield doc


def parse_fstrace_counts(stdout: Path, run: Run) -> Capture:
    """fstrace top --json (a document per tick) or report --json (one): per-process counts summed;
    loss is ring-buffer loss plus counts that found the kernel map full ("overflow")."""
    cap = Capture(total=0, records=0, lost=0)
    for doc in json_documents(stdout.read_text(errors="replace")):
        counts = doc.get("totals", doc)          # report keeps them under "totals", top at the top
        cap.lost += counts["lost"] + counts["overflow"]
        for proc in doc["processes"]:
            if proc["pid"] not in run.pids:
                continue
            events = proc["total"] - proc["events"]["exec"]
            cap.total += events
            cap.records += 1
            if run.cgroups:
                want = run.cgroups.get(proc["pid"])
                cap.judged = (cap.judged or 0) + events
                cap.right_cgroup = (cap.right_cgroup or 0) + events * (want is not None and proc["cgroup"] == want.path)
    return cap


BPFTRACE_COUNT = re.compile(r"^@\[(\d+), (.*), tracepoint:syscalls:sys_enter_(\w+)\]: (\d+)$")
BPFTRACE_EVENT = re.compile(r"^(\d+) (\d+) (.*) tracepoint:syscalls:sys_enter_(\w+)$")
BPFTRACE_LOST = re.compile(r"Lost (\d+) events")


def cgroup_ids(run: Run) -> dict[int, int]:
    return {pid: ref.id for pid, ref in run.cgroups.items()}


def parse_bpftrace_count(stdout: Path, run: Run) -> Capture:
    """@[cgroup, comm, probe] = count(): counts of the workload's comms (the map has no pids, so
    another process of the same name would be counted too); attribution by id only.

    A count in a BPF map is lost only when the map is full, and bpftrace does not say so.
    """
    cap = Capture(by_syscall=Counter())
    ids = set(cgroup_ids(run).values())
    for line in stdout.read_text(errors="replace").splitlines():
        m = BPFTRACE_COUNT.match(line)
        if m and m.group(2) in run.comms:
            n = int(m.group(4))
            cap.by_syscall[m.group(3)] += n
            if ids:
                cap.judged = (cap.judged or 0) + n
                cap.right_cgroup = (cap.right_cgroup or 0) + n * (int(m.group(1)) in ids)
    cap.records = sum(cap.by_syscall.values())
    return cap


def parse_bpftrace_print(stdout: Path, run: Run) -> Capture:
    """One line per event: pid, cgroup id, comm, probe; "Lost N events" when the perf buffer overflowed."""
    cap = Capture(by_syscall=Counter(), records=0, lost=0)
    ids = cgroup_ids(run)
    with open(stdout, errors="replace") as f:
        for line in f:
            m = BPFTRACE_EVENT.match(line)
            if m:
                if int(m.group(1)) not in run.pids:
                    continue
                cap.records += 1
                cap.by_syscall[m.group(4)] += 1
                if ids:
                    cap.judged = (cap.judged or 0) + 1
                    cap.right_cgroup = (cap.right_cgroup or 0) + (ids.get(int(m.group(1))) == int(m.group(2)))
            else:
                lost = BPFTRACE_LOST.search(line)
                if lost:
                    cap.lost += int(lost.group(1))
    return cap


FATRACE_LINE = re.compile(r"^(.*)\((\d+)\): ")


def parse_fatrace(stdout: Path, run: Run) -> Capture:
    """fatrace prints one line per fanotify event, merged events share a line; no loss count."""
    cap = Capture(records=0)
    with open(stdout, errors="replace") as f:
        for line in f:
            m = FATRACE_LINE.match(line)
            if m and int(m.group(2)) in run.pids:
                cap.records += 1
    return cap


# --- the contenders --------------------------------------------------------

def fstrace_commands() -> set[str]:
    """Subcommands the installed fstrace lists in --help (none if it does not run)."""
    try:
        proc = subprocess.run([str(FSTRACE), "--help"], capture_output=True, text=True, timeout=60)
    except OSError:
        return set()
    if proc.returncode:
        return set()
    listing = proc.stdout.split("Commands:", 1)[-1] if "Commands:" in proc.stdout else ""
    return {line.split()[0] for line in listing.splitlines() if line.strip()}


def syscall_tracepoints(names: frozenset[str]) -> list[str]:
    """The syscalls of names with a sys_enter tracepoint on this kernel, sorted."""
    return sorted(n for n in names if (TRACEFS_SYSCALLS / ("sys_enter_" + n)).is_dir())


def bpftrace_script(body: str, syscalls: list[str]) -> str:
    """body on every sys_enter of syscalls, between two probes the harness fires to see that
    all are attached: whichever order bpftrace attaches in, the last one attached is an end."""
    marker = 'tracepoint:syscalls:sys_enter_getppid /pid == %d/ { printf("fstb-ready-%%s\\n", "%s"); }'
    probes = ",\n".join("tracepoint:syscalls:sys_enter_" + name for name in syscalls)
    return "\n".join([marker % (os.getpid(), "first"), probes + "\n{ " + body + " }",
                      marker % (os.getpid(), "last"), ""])


def bytes_script() -> str:
    """The bpftrace one-liner of issue 13: bytes written per cgroup, between the harness's two markers."""
    marker = 'tracepoint:syscalls:sys_enter_getppid /pid == %d/ { printf("fstb-ready-%%s\\n", "%s"); }'
    return "\n".join([marker % (os.getpid(), "first"),
                      "tracepoint:syscalls:sys_exit_write { @[cgroup] = sum(args.ret); }",
                      marker % (os.getpid(), "last"), ""])


def poke_getppid() -> None:
    os.getppid()


def opener(path: Path) -> Callable[[], None]:
    def poke() -> None:
        os.close(os.open(path, os.O_RDONLY))
    return poke


def contenders(marker: Path) -> list[Contender]:
    """Every contender, in table order; marker is a file whose opening fatrace reports."""
    fst = fstrace_commands()
    start_record = Ready((r'"type":"start"',), describe="the start record")
    counting = Ready((r"^fstrace: counting",), describe="its 'counting' line on stderr", stream="stderr")

    def fstrace(name, sub, argv, **kw):
        if sub not in fst:
            missing = "not available (fstrace has no `%s` command yet)" % sub if fst else "fstrace does not run"
            return Contender(name, (), missing=missing)
        return Contender(name, (str(FSTRACE), sub, *argv), **kw)

    traced = syscall_tracepoints(FSTRACE_ALL_SYSCALLS)
    bpftrace_ready = Ready(("fstb-ready-first", "fstb-ready-last"), poke_getppid, "both marker probes")
    bpftrace_env = {"BPFTRACE_MAP_KEYS_MAX": "65536"}
    banner = Ready((r"\S",), describe="its first output")
    unbuffered = {"PYTHONUNBUFFERED": "1"}     # BCC tools print their banner to a file only at exit otherwise

    found = [
        Contender("nothing (untraced)", ()),
        fstrace("fstrace trace --json", "trace", ("--json",), ready=start_record, parse=parse_fstrace_json,
                follows=FSTRACE_DEFAULT_SYSCALLS, successes_only=True, files_only=True),
        fstrace("fstrace trace --json -e all", "trace", ("--json", "-e", "all"), ready=start_record,
                parse=parse_fstrace_json, follows=FSTRACE_ALL_SYSCALLS, successes_only=True,
                files_only=True),
        fstrace("fstrace top -b --json", "top", ("-b", "--json"), ready=counting, parse=parse_fstrace_counts,
                follows=FSTRACE_ALL_SYSCALLS, successes_only=True, files_only=True),
        *([Contender("fstrace top -b --json (FSTRACE_BASELINE)", (FSTRACE_BASELINE, "top", "-b", "--json"),
                     ready=counting, parse=parse_fstrace_counts, follows=FSTRACE_ALL_SYSCALLS,
                     successes_only=True, files_only=True)] if FSTRACE_BASELINE else []),
        Contender("bpftrace sum(ret) of write per cgroup", ("bpftrace", "-e", bytes_script()), bpftrace_ready,
                  env=bpftrace_env),
        fstrace("fstrace report --json --top 0", "report", ("--json", "--top", "0"), ready=counting,
                parse=parse_fstrace_counts, follows=FSTRACE_ALL_SYSCALLS, files_only=True),
        Contender("fatrace", ("fatrace",), Ready((re.escape(marker.name),), opener(marker), "an open of a marker file"),
                  parse_fatrace),
        Contender("bpftrace count() per cgroup/comm/probe", ("bpftrace", "-e", bpftrace_script(
                  "@[cgroup, comm, probe] = count();", traced)), bpftrace_ready, parse_bpftrace_count,
                  frozenset(traced), env=bpftrace_env),
        Contender("bpftrace printf() per event", ("bpftrace", "-e", bpftrace_script(
                  'printf("%d %llu %s %s\\n", pid, cgroup, comm, probe);', traced)), bpftrace_ready,
                  parse_bpftrace_print, frozenset(traced), env=bpftrace_env),
    ]
    for tool, args in (("opensnoop", ()), ("filetop", ("-C",)), ("filelife", ()), ("statsnoop", ()),
                       ("syscount", ("-P",))):
        argv = ("%s-bpfcc" % tool, *args)
        found.append(Contender(" ".join(argv), argv, banner, env=unbuffered))
    return [c if not c.argv or shutil.which(c.argv[0]) else Contender(c.name, (), missing="not installed")
            for c in found]
