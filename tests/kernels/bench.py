"""Backend costs inside a kernel-matrix guest (relative figures: the guest runs under TCG).

usage: bench.py OUT_MARKDOWN BACKEND...      (root, in the guest; run.py --bench starts it)

The guest's time is the host's to give, and the host is shared: figures
taken minutes apart are not comparable.  So the backends are measured side
by side on the same events: one `fstrace trace --json -e all` per backend,
all attached while one file workload runs on a fresh tmpfs, each BPF
program's run_time_ns and run_cnt read from /proc fdinfo
(kernel.bpf_stats_enabled=1).  The tracepoint backend's programs also run
for the other fstrace processes' syscalls: a cost it has in production too,
for every process.  Then the cost of arming alone: rounds of the workload
with no fsnotify mark, with fstrace's marks for the default events, and for
all events (bpftools/kernel/arming.py, no BPF), interleaved, best of each.

Then latency against bcc's own tools (bpfcc-tools, on the host's root the
guest boots), on an ext4 filesystem made in the guest (a loop device on a
tmpfs file): one process opens, writes, fsyncs and reads back a file with
known counts of each, run untraced and under each tool in turn: fstrace
report (histograms in the kernel) against ext4dist, and fstrace trace
--slower-than against fileslower (a filter in the kernel).  The table
gives the workload's time under each and, for the two histogram tools,
the operations each counted per type: both must be the workload's own.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bpftools import abi  # noqa: E402
from bpftools.kernel import arming  # noqa: E402
from system import prog_stats  # noqa: E402

ITERATIONS = 2000
ROUNDS = 3              # workload runs under the backends
ARMING_ROUNDS = 5       # interleaved rounds of each arming setup
FSTRACE = str(REPO / ".venv" / "bin" / "fstrace")
# one iteration: 6 file syscalls and 6 file events (create, modify, close_write, attrib, rename, delete)
WORKLOAD = r"""
import os, sys, time
base, n = sys.argv[1], int(sys.argv[2])
t = time.perf_counter()
for i in range(n):
    p = "%s/f%d" % (base, i)
    fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"x" * 64)
    os.close(fd)
    os.chmod(p, 0o600)
    os.rename(p, p + ".r")
    os.unlink(p + ".r")
print(time.perf_counter() - t)
"""


def workload(base: Path, cgroup: str) -> float:
    """Seconds per iteration of one run."""
    def enter():
        Path(cgroup, "cgroup.procs").write_text("0")
    out = subprocess.run([sys.executable, "-c", WORKLOAD, str(base), str(ITERATIONS)], preexec_fn=enter,
                         check=True, capture_output=True, text=True).stdout
    return float(out) / ITERATIONS


def backend_costs(backends: list[str], base: Path, cgroup: str) -> list[str]:
    procs = {}
    for backend in backends:
        procs[backend] = subprocess.Popen(
            [FSTRACE, "trace", "--json", "-e", "all", "--backend", backend, "--cgroup", "/" + Path(cgroup).name],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    drains = []
    for backend, proc in procs.items():
        start = json.loads(proc.stdout.readline())
        assert start["backend"] == backend, start
        drains.append(subprocess.Popen(["cat"], stdin=proc.stdout, stdout=subprocess.DEVNULL))
    before = {b: prog_stats(p.pid) for b, p in procs.items()}
    for _ in range(ROUNDS):
        workload(base, cgroup)
    after = {b: prog_stats(p.pid) for b, p in procs.items()}
    for proc in procs.values():
        proc.send_signal(signal.SIGINT)
    for proc in procs.values():
        proc.wait(timeout=1800)     # under TCG, writing out the backlog of JSON takes minutes
    for drain in drains:
        drain.wait(timeout=60)
    iterations = ITERATIONS * ROUNDS
    lines = ["| backend (all attached at once) | BPF runs per iteration | BPF ns per run | BPF ns per iteration "
             "| vs %s |" % backends[0], "|---|---:|---:|---:|---:|"]
    per_iteration = {}
    for backend in backends:
        ns = sum(after[backend][k][0] - before[backend].get(k, (0, 0))[0] for k in after[backend])
        runs = sum(after[backend][k][1] - before[backend].get(k, (0, 0))[1] for k in after[backend])
        per_iteration[backend] = ns / iterations
        lines.append("| %s | %.1f | %.0f | %.0f | %.2fx |" % (
            backend, runs / iterations, ns / max(runs, 1), ns / iterations,
            per_iteration[backend] / per_iteration[backends[0]]))
    return lines


def arming_costs(base: Path, cgroup: str) -> list[str]:
    setups = {"no fsnotify mark": None, "arming marks, default events": abi.DEFAULT_EVENTS,
              "arming marks, all events": abi.EVENT_NAMES}
    best: dict[str, float] = {}
    for _ in range(ARMING_ROUNDS):
        for label, evs in setups.items():
            armer = None
            if evs is not None:
                armer = arming.Armer(evs, lambda sb, dev: None, only=(bytes(base),))
                armer.start()
            try:
                took = workload(base, cgroup)
            finally:
                if armer:
                    armer.close()
            best[label] = min(best.get(label, took), took)
    lines = ["| workload, no BPF attached | µs per iteration (best of %d) | vs no mark |" % ARMING_ROUNDS,
             "|---|---:|---:|"]
    for label, took in best.items():
        lines.append("| %s | %.0f | %+.1f%% |" % (label, took * 1e6,
                                                    (took / best["no fsnotify mark"] - 1) * 100))
    return lines


# One run of the latency workload: after its line "ready PID", a line on stdin starts
# TIMED_OPS operations on the file it is given (which exists and is empty).
TIMED_WORKLOAD = r"""
import os, sys, time
path, n, cgroup = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(cgroup + "/cgroup.procs", "w") as f:
    f.write("0")
print("ready", os.getpid(), flush=True)
sys.stdin.readline()
t = time.perf_counter()
block = b"x" * 4096
fd = os.open(path, os.O_RDWR)
for i in range(n):
    os.write(fd, block)
    if i % 16 == 15:
        os.fsync(fd)
os.lseek(fd, 0, 0)
for i in range(n):
    os.read(fd, 4096)
os.close(fd)
for i in range(n // 4):
    os.close(os.open(path, os.O_RDONLY))
print(time.perf_counter() - t, flush=True)
"""
TIMED_N = 1024
TIMED_ROUNDS = 3
# per run, as ext4dist names them: open 1 + n/4, write n, fsync n/16, read n; and fstrace's event for each
TIMED_OPS = {"open": 1 + TIMED_N // 4, "write": TIMED_N, "fsync": TIMED_N // 16, "read": TIMED_N}
FSTRACE_EVENT = {"open": "open", "write": "modify", "fsync": "sync", "read": "access"}
EXT4DIST, FILESLOWER = "/usr/sbin/ext4dist-bpfcc", "/usr/sbin/fileslower-bpfcc"


def timed_run(ext4: Path, cgroup: str, attach=None) -> float:
    """One run of TIMED_WORKLOAD on a fresh empty file on ext4: its seconds.  attach(pid) runs
    once the process is in the cgroup, before it starts."""
    path = ext4 / "timed"
    path.unlink(missing_ok=True)
    path.touch()
    proc = subprocess.Popen([sys.executable, "-c", TIMED_WORKLOAD, str(path), str(TIMED_N), cgroup],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pid = int(proc.stdout.readline().split()[1])
    if attach:
        attach(pid)
    proc.stdin.write("go\n")
    proc.stdin.flush()
    took = float(proc.stdout.readline())
    assert proc.wait(timeout=600) == 0
    return took


def start_tool(argv: list[str], ready: str, stream: str) -> subprocess.Popen:
    """A tracer, once a line of its stream (stdout or stderr) contains ready."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    out = proc.stdout if stream == "stdout" else proc.stderr
    for line in out:
        if ready in line:
            return proc
    proc.kill()
    raise SystemExit("%s: exited before it was ready: %s" % (argv[0], proc.stderr.read()[-2000:]))


def ext4dist_counts(text: str) -> dict[str, int]:
    """print_log2_hist's sections (operation = NAME) summed: operations counted per type."""
    counts: dict[str, int] = {}
    op = None
    for line in text.splitlines():
        m = re.match(r"operation = (\w+)", line.strip())
        if m:
            op = m.group(1)
        elif op and (m := re.match(r"\s*\d+ -> \d+\s*: (\d+)", line)):
            counts[op] = counts.get(op, 0) + int(m.group(1))
    return counts


def fstrace_counts(text: str, cgroup: str) -> dict[str, int]:
    """report --json's latency table: operations counted per type, as ext4dist names them."""
    got = {lat["event"]: lat["count"] for lat in json.loads(text)["latency"] if lat["cgroup"] == cgroup}
    return {op: got.get(event, 0) for op, event in FSTRACE_EVENT.items()}


def bcc_comparison(base: Path, cgroup: str) -> list[str]:
    img, ext4 = base / "ext4.img", base / "ext4"
    subprocess.run(["truncate", "-s", "256M", str(img)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(img)], check=True)
    subprocess.run(["modprobe", "loop"], check=True)      # mount -o loop does not load it
    ext4.mkdir()
    subprocess.run(["mount", "-o", "loop", str(img), str(ext4)], check=True)
    name = "/" + Path(cgroup).name
    # label: (argv for the workload's pid, what says it is ready, on which stream, what its output counted)
    tools = {
        "fstrace report --json": (lambda pid: [FSTRACE, "report", "--json", "--top", "0", "--cgroup", name],
                                  "fstrace: counting", "stderr", lambda out: fstrace_counts(out, name)),
        "ext4dist -p PID": (lambda pid: [EXT4DIST, "-p", str(pid)], "Tracing ext4", "stdout", ext4dist_counts),
        "fstrace trace --json --slower-than 10ms": (
            lambda pid: [FSTRACE, "trace", "--json", "--slower-than", "10ms", "--cgroup", name], '"type":"start"',
            "stdout", lambda out: {"slower": sum('"type":"event"' in line for line in out.splitlines())}),
        "fileslower -p PID 10": (lambda pid: [FILESLOWER, "-p", str(pid), "10"], "Tracing sync", "stdout",
                                 lambda out: {"slower": max(0, len(out.strip().splitlines()) - 1)}),
    }
    times: dict[str, list[float]] = {"untraced": []}
    counts: dict[str, dict[str, int]] = {}
    try:
        for label, (argv, ready, stream, counted) in tools.items():
            times[label] = []
            for _ in range(TIMED_ROUNDS):
                times["untraced"].append(timed_run(ext4, cgroup))
                tracer = []
                times[label].append(timed_run(ext4, cgroup, lambda pid: tracer.append(
                    start_tool(argv(pid), ready, stream))))
                tracer[0].send_signal(signal.SIGINT)
                out, _ = tracer[0].communicate(timeout=900)
                tally = counts.setdefault(label, {})
                for key, n in counted(out).items():
                    tally[key] = tally.get(key, 0) + n
    finally:
        subprocess.run(["umount", str(ext4)], check=False)
    med = {label: sorted(t)[len(t) // 2] for label, t in times.items()}
    ops = sum(TIMED_OPS.values())
    lines = ["latency on ext4: %d runs of (%s) per tool, each tool attached alone, an untraced run before each "
             "traced one" % (TIMED_ROUNDS, ", ".join("%d %s" % (n, op) for op, n in TIMED_OPS.items())), "",
             "| tool | µs per operation (median) | vs untraced | counted %s | slower than 10 ms |" %
             " / ".join(TIMED_OPS), "|---|---:|---:|---|---:|"]
    for label, took in med.items():
        c = counts.get(label, {})
        if label == "untraced":
            counted = "the workload's own: " + " / ".join(str(n * TIMED_ROUNDS) for n in TIMED_OPS.values())
        else:
            counted = " / ".join(str(c[op]) for op in TIMED_OPS) if "open" in c else ""
        lines.append("| %s | %.1f | %.2fx | %s | %s |" % (label, took / ops * 1e6, took / med["untraced"], counted,
                                                          c.get("slower", "")))
    return lines


def main() -> None:
    out_file, backends = Path(sys.argv[1]), sys.argv[2:]
    Path("/proc/sys/kernel/bpf_stats_enabled").write_text("1")
    base = Path("/tmp/fstrace-bench")
    base.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "fstrace-bench", str(base)], check=True)
    cg_root = next(line.split()[4] for line in open("/proc/self/mountinfo") if " - cgroup2 " in line)
    cgroup = os.path.join(cg_root, "fstrace-test-bench")
    os.mkdir(cgroup)
    try:
        lines = ["kernel %s: %d iterations of create+write+close+chmod+rename+unlink" % (
                 os.uname().release, ITERATIONS), ""]
        lines += backend_costs(backends, base, cgroup) + [""] + arming_costs(base, cgroup)
        lines += [""] + bcc_comparison(base, cgroup)
    finally:
        os.rmdir(cgroup)
        subprocess.run(["umount", str(base)], check=True)
    text = "\n".join(lines) + "\n"
    out_file.write_text(text)
    print(text, flush=True)


if __name__ == "__main__":
    main()
