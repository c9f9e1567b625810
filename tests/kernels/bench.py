"""Backend costs inside a kernel-matrix guest (relative figures: the guest runs under TCG).

usage: bench.py OUT_MARKDOWN BACKEND...      (root, in the guest; run.py --bench starts it)

One file workload on a fresh tmpfs, run
  * with no fsnotify mark on the filesystem, then with fstrace's arming marks
    alone (bpftools/arming.py, no BPF), for the default events and for all;
  * under each backend (`fstrace trace --json -e all`, output discarded),
    reading every fstrace BPF program's run_time_ns and run_cnt from /proc
    fdinfo (kernel.bpf_stats_enabled=1).
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

from bpftools import arming, events  # noqa: E402

ITERATIONS = 3000
ROUNDS = 3
FSTRACE = str(REPO / ".venv" / "bin" / "fstrace")
# one iteration: 6 file syscalls, 7 file events (create, modify, close_write, attrib, rename, delete
# and, for fsnotify, the open of the created file that is folded into create)
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


def workload(base: Path, cgroup: str | None = None) -> float:
    """Seconds per iteration, best of ROUNDS."""
    enter = None
    if cgroup:
        def enter():
            Path(cgroup, "cgroup.procs").write_text("0")
    best = None
    for _ in range(ROUNDS):
        out = subprocess.run([sys.executable, "-c", WORKLOAD, str(base), str(ITERATIONS)], preexec_fn=enter,
                             check=True, capture_output=True, text=True).stdout
        took = float(out) / ITERATIONS
        best = took if best is None else min(best, took)
    return best


def prog_stats(pid: int) -> dict[str, tuple[int, int]]:
    """name -> (run_time_ns, run_cnt) of every BPF program pid holds."""
    stats = {}
    for fd in os.listdir("/proc/%d/fdinfo" % pid):
        try:
            text = Path("/proc/%d/fdinfo/%s" % (pid, fd)).read_text()
        except OSError:
            continue
        if "prog_type:" not in text:
            continue
        fields = dict(re.findall(r"^(\w+):\s+(\S+)", text, re.M))
        key = "%s/%s" % (fields.get("prog_type"), fields.get("prog_tag", fd)[:8])
        stats[key] = (int(fields.get("run_time_ns", 0)), int(fields.get("run_cnt", 0)))
    return stats


def main() -> None:
    out_file, backends = Path(sys.argv[1]), sys.argv[2:]
    Path("/proc/sys/kernel/bpf_stats_enabled").write_text("1")
    base = Path("/tmp/fstrace-bench")
    base.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "fstrace-bench", str(base)], check=True)
    cg_root = next(line.split()[4] for line in open("/proc/self/mountinfo") if " - cgroup2 " in line)
    cgroup = os.path.join(cg_root, "fstrace-test-bench")
    os.mkdir(cgroup)
    rows = []
    lines = ["kernel %s, %d iterations (6 syscalls each), best of %d rounds" % (
        os.uname().release, ITERATIONS, ROUNDS), ""]

    unarmed = workload(base, cgroup)
    rows.append(("no fsnotify mark, no BPF", unarmed, None))
    for label, evs in (("arming marks (default events), no BPF", events.DEFAULT_EVENTS),
                       ("arming marks (all events), no BPF", events.EVENT_NAMES)):
        armer = arming.Armer(evs, lambda sb, dev: None, only=(bytes(base),))
        armer.start()
        try:
            rows.append((label, workload(base, cgroup), None))
        finally:
            armer.close()

    for backend in backends:
        proc = subprocess.Popen([FSTRACE, "trace", "--json", "-e", "all", "--backend", backend,
                                 "--cgroup", "/fstrace-test-bench"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        start = json.loads(proc.stdout.readline())
        assert start["backend"] == backend, start
        drain = subprocess.Popen(["cat"], stdin=proc.stdout, stdout=subprocess.DEVNULL)
        before = prog_stats(proc.pid)
        took = workload(base, cgroup)
        after = prog_stats(proc.pid)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=1800)     # under TCG, writing out the backlog of JSON takes minutes
        drain.wait(timeout=60)
        ns = sum(after[k][0] - before.get(k, (0, 0))[0] for k in after)
        runs = sum(after[k][1] - before.get(k, (0, 0))[1] for k in after)
        rows.append(("%s backend attached" % backend, took, (ns, runs)))

    lines.append("| setup | workload µs/iteration | vs no mark | BPF runs/iteration | BPF ns/run | BPF µs/iteration |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    total_iterations = ITERATIONS * ROUNDS
    for label, took, bpf in rows:
        cells = [label, "%.1f" % (took * 1e6), "%+.0f%%" % ((took / unarmed - 1) * 100)]
        if bpf:
            ns, runs = bpf
            cells += ["%.1f" % (runs / total_iterations), "%.0f" % (ns / max(runs, 1)),
                      "%.2f" % (ns / total_iterations / 1e3)]
        else:
            cells += ["", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    out_file.write_text(text)
    print(text, flush=True)
    os.rmdir(cgroup)
    subprocess.run(["umount", str(base)], check=True)


if __name__ == "__main__":
    main()
