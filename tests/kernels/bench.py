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
"""
from __future__ import annotations

import json
import os
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
    finally:
        os.rmdir(cgroup)
        subprocess.run(["umount", str(base)], check=True)
    text = "\n".join(lines) + "\n"
    out_file.write_text(text)
    print(text, flush=True)


if __name__ == "__main__":
    main()
