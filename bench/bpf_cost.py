#!/usr/bin/env python3
"""What each BPF program of a counting tracer costs, per run and per workload operation.

    bench/bpf_cost.py [--rounds 3] [--ops 5000] [--baseline OTHER_CHECKOUT]

With bpf_stats on (kernel.bpf_stats_enabled=1, restored after), each tracer
(fstrace top -b of this checkout, of --baseline, bpftrace count()) watches two
workloads in turn, in an order rotated from round to round: `fileops` (the
plain loop of bench/work.py) and `fdio` (dd bs=1 of a 200 kB file to
/dev/null: 400 000 reads and writes, fd events only).  The tracer's programs'
run_time_ns and run_cnt are read before and after each workload run; the
table gives, as medians over the rounds, the ns per run of each program and
the BPF time per workload syscall (every program's time over the syscalls
the workload made).  Programs run on every syscall of the machine, so the
per-syscall figure includes other processes' syscalls too: the ns per run is
the cleaner one.  Untraced runs of the same workloads, in the same rotation,
give the CPU time (user + system) the workload itself needs: the CPU time a
tracer adds per workload syscall is the cleanest figure of all, since BPF
programs on the syscall tracepoints run in the workload's own context and
other processes' syscalls do not land in it.  Wall-clock ratios on a busy
machine are noise; these are not.
"""
from __future__ import annotations

import argparse
import resource
import dataclasses
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import run as runner
import system
import tools
import work
from speed import STATS
from system import prog_stats
from tools import Session

BENCH = Path(__file__).resolve().parent


def fdio(scratch: Path) -> int:
    """dd bs=1 of 200 kB to /dev/null: 400 000 syscalls, each an fd event on a file."""
    src = scratch / "fdio-200k"
    if not src.exists():
        src.write_bytes(b"x" * 200_000)
    subprocess.run(["dd", "if=%s" % src, "of=/dev/null", "bs=1"], check=True, stderr=subprocess.DEVNULL)
    return 400_000


def cpu_of(run) -> tuple[int, float]:
    """(syscalls, CPU seconds) of run(): the CPU time of the processes it ran and reaped."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    syscalls = run()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return syscalls, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--ops", type=int, default=5000, help="fileops rounds (nine syscalls each)")
    p.add_argument("--baseline", help="another checkout of fstrace with its .venv")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/bpf_cost.py needs root", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    built = work.build()
    scratch = system.scratch_tmpfs("fstrace-bpfcost-")
    stats_was = STATS.read_text().strip()
    STATS.write_text("1")
    rows: dict[tuple[str, str], list[dict]] = {}
    date = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load = [system.load_average()]
    try:
        binaries = work.private_names(built, scratch)
        fileops = work.FileOps(scratch, binaries, args.ops)
        marker = scratch / "marker"
        marker.touch()
        by_name = {c.name: c for c in tools.contenders(marker)}
        top = by_name["fstrace top -b --json"]
        contenders = [top]
        if args.baseline:
            contenders.append(dataclasses.replace(
                top, name="before: " + top.name, argv=(str(Path(args.baseline, ".venv", "bin", "fstrace")),)
                + top.argv[1:]))
        contenders.append(by_name["bpftrace count() per cgroup/comm/probe"])
        contenders.append(tools.Contender("nothing (untraced)", ()))
        jobs = {"fileops": lambda: sum(fileops.run().calls.values()), "fdio": lambda: fdio(scratch)}
        for r in range(args.rounds):
            for c in contenders[r % len(contenders):] + contenders[:r % len(contenders)]:
                if not c.argv:
                    for name, job in jobs.items():
                        syscalls, cpu = cpu_of(job)
                        rows.setdefault((c.name, name), []).append({"progs": {}, "syscalls": syscalls, "cpu_s": cpu,
                                                                    "bpf_ns_per_syscall": 0.0})
                    continue
                outdir = Path(tempfile.mkdtemp(prefix="out-", dir=scratch))
                session = Session(c, outdir)
                session.start()
                try:
                    session.wait_ready(runner.READY_TIMEOUT)
                    for name in ("fileops", "fdio"):
                        before = prog_stats(session.pid)
                        syscalls, cpu = cpu_of(jobs[name])
                        after = prog_stats(session.pid)
                        progs = {k: (after[k][0] - before.get(k, (0, 0))[0], after[k][1] - before.get(k, (0, 0))[1])
                                 for k in after}
                        total_ns = sum(ns for ns, _ in progs.values())
                        rows.setdefault((c.name, name), []).append(
                            {"progs": progs, "syscalls": syscalls, "cpu_s": cpu, "bpf_ns_per_syscall": total_ns / syscalls})
                        runner.log("round %d %s %s: %.0f BPF ns per workload syscall" % (
                            r + 1, c.name, name, total_ns / syscalls))
                finally:
                    session.stop()
                    shutil.rmtree(outdir)
    finally:
        STATS.write_text(stats_was)
        system.remove_scratch(scratch)
    load.append(system.load_average())
    lines = ["%s, load average %.1f → %.1f, %s" % (date, load[0], load[1], " ".join(sys.argv[1:])), "",
             "| tracer | workload | CPU ns added per workload syscall (median, range) "
             "| BPF ns per workload syscall (median, range) | program: ns per run (median) |",
             "|---|---|---|---|---|"]
    base = {wl: statistics.median([x["cpu_s"] / x["syscalls"] for x in v])
            for (name, wl), v in rows.items() if name == "nothing (untraced)"}
    for (name, wl), v in rows.items():
        per = [x["bpf_ns_per_syscall"] for x in v]
        progs, spent = {}, {}
        for x in v:
            for k, (ns, cnt) in x["progs"].items():
                spent[k] = spent.get(k, 0) + ns
                if cnt:
                    progs.setdefault(k, []).append(ns / cnt)
        busy = sorted(progs, key=lambda k: -spent[k])[:5]       # the five that took the most time
        added = [1e9 * (x["cpu_s"] / x["syscalls"] - base.get(wl, 0.0)) for x in v]
        lines.append("| %s | %s | **%.0f** (%.0f–%.0f) | **%.0f** (%.0f–%.0f) | %s |" % (
            name, wl, statistics.median(added), min(added), max(added), statistics.median(per), min(per), max(per),
            ", ".join("%s %.0f" % (k, statistics.median(progs[k])) for k in busy)))
    text = "\n".join(lines)
    out = BENCH / "results" / (time.strftime("%Y-%m-%dT%H%M") + "-bpfcost.json")
    out.write_text(json.dumps({"date": date, "argv": sys.argv[1:], "load_average": load, "table": text,
                               "rows": {"%s | %s" % k: v for k, v in rows.items()}}, indent=1) + "\n")
    print(text)
    runner.log("wrote %s" % out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
