#!/usr/bin/env python3
"""The speed targets of issue 16, measured side by side in one run.

    bench/speed.py [--rounds 7] [--ops 20000] [--workloads plain,cgroup] [--only SUBSTR,...]

Every round runs every contender once on every workload, the contenders in
an order rotated from round to round, so a noisy machine slows them alike;
the ratio of a round is the contender's wall time over the untraced run of
the same round, and the table gives medians with the range.  While a
tracer runs, bpf_stats is on (kernel.bpf_stats_enabled=1, restored after):
each BPF program the tracer holds reports run_time_ns / run_cnt, read from
the tracer's own fds (pidfd_getfd, BPF_OBJ_GET_INFO_BY_FD) before it stops,
so the table shows what one run of each program costs.  Counts are checked:
a counting contender must report every operation the workload made.

Needs root.  Prints a Markdown table and writes bench/results/<date>-speed.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import resource
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import run as runner
import system
import tools
import work
from system import prog_stats
from tools import Session

BENCH = Path(__file__).resolve().parent
STATS = Path("/proc/sys/kernel/bpf_stats_enabled")
CONTENDERS = ("nothing (untraced)", "fstrace top -b --json", "fstrace report --json --top 0",
              "fstrace trace --json", "bpftrace count() per cgroup/comm/probe", "fatrace")

def traced(contender, workload, scratch: Path) -> dict:
    outdir = Path(tempfile.mkdtemp(prefix="out-", dir=scratch))
    session = Session(contender, outdir)
    try:
        session.start()
        try:
            ready_s = session.wait_ready(runner.READY_TIMEOUT)
            before = prog_stats(session.pid)
            run, cpu = cpu_run(workload)
            after = prog_stats(session.pid)
        finally:
            stopped = session.stop()
        result = {"traced_s": run.seconds, "traced_cpu_s": cpu, "ready_s": ready_s, "exit_s": stopped.exit_s,
                  "peak_rss_kib": stopped.peak_rss_kib, "cpu_total_s": stopped.cpu_s,
                  "progs": {name: (after[name][0] - before.get(name, (0, 0))[0],
                                   after[name][1] - before.get(name, (0, 0))[1]) for name in after}}
        if stopped.exit_code or stopped.killed:
            result["stderr_tail"] = session.stderr_tail()
        if contender.parse:
            result.update(runner.tally(contender, workload, run, contender.parse(session.stdout, run)))
        return result
    finally:
        shutil.rmtree(outdir)


def cpu_run(workload):
    """Run workload once: (its Run, the CPU seconds its processes used, user and system).  BPF programs
    on the syscall tracepoints run in the workload's own context, so its CPU time carries their cost
    and, unlike wall time, little of the other load on the machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = workload.run()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return run, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def med(values):
    return statistics.median(values) if values else None


def summarize(rows: list[dict]) -> dict:
    ratios = [r["ratio"] for r in rows]
    cpu = [r["cpu_ratio"] for r in rows]
    out = {"ratio_median": med(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
           "cpu_ratio_median": med(cpu), "cpu_ratio_min": min(cpu), "cpu_ratio_max": max(cpu),
           "untraced_median_s": med([r["untraced_s"] for r in rows]),
           "untraced_cpu_median_s": med([r["untraced_cpu_s"] for r in rows])}
    for key in ("ready_s", "exit_s", "peak_rss_kib", "lost"):
        vals = [r[key] for r in rows if r.get(key) is not None]
        if vals:
            out[key + "_median"] = med(vals)
    exact = [r.get("captured_total") == r.get("expected_total") for r in rows if "expected_total" in r]
    if exact:
        out["exact_rounds"] = "%d/%d" % (sum(exact), len(exact))
    progs = {}
    for r in rows:
        for name, (ns, cnt) in r.get("progs", {}).items():
            progs.setdefault(name, []).append((ns, cnt))
    out["progs"] = {name: {"ns_per_run": med([ns / cnt for ns, cnt in v if cnt]) if any(c for _, c in v) else None,
                           "runs_median": med([c for _, c in v])} for name, v in progs.items()}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--ops", type=int, default=20000, help="fileops rounds per run (nine syscalls each)")
    p.add_argument("--workloads", default="plain,cgroup")
    p.add_argument("--only", help="comma-separated substrings of contender names (untraced always runs)")
    p.add_argument("--label", default="", help="a word for the results file name")
    p.add_argument("--baseline", help="another checkout of fstrace (with its .venv): its fstrace contenders run "
                   "too, named 'before: ...', side by side with this one's")
    p.add_argument("--baseline-only", help="comma-separated substrings: the baseline's contenders to run")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/speed.py needs root", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))     # the finally clauses stop tracers, remove cgroups
    system.ensure_packages(runner.PACKAGES)
    built = work.build()
    scratch = system.scratch_tmpfs("fstrace-speed-")
    stats_was = STATS.read_text().strip()
    STATS.write_text("1")
    started, date = time.monotonic(), time.strftime("%Y-%m-%d %H:%M:%S %Z")
    out = BENCH / "results" / (time.strftime("%Y-%m-%dT%H%M") + "-speed%s.json" % ("-" + args.label if args.label else ""))
    load = [system.load_average()]
    try:
        binaries = work.private_names({**built, "tar": Path(shutil.which("tar")), "rm": Path(shutil.which("rm"))},
                                      scratch)
        marker = scratch / "fstb-ready-marker"
        marker.touch()
        profile = runner.Profile(rounds=args.rounds, fileops_rounds=args.ops, short_cgroups=0, workloads=(),
                                 skip=(), ceiling=(), ceiling_start=0, ceiling_factor=1, ceiling_max=0,
                                 ceiling_step_s=1, ceiling_refine=0)
        workloads = runner.make_workloads(args.workloads.split(","), profile, scratch, binaries)
        wanted = [n for n in CONTENDERS if n == CONTENDERS[0] or not args.only
                  or any(s in n for s in args.only.split(","))]
        contenders = [c for c in tools.contenders(marker) if c.name in wanted]
        contenders.insert(1, tools.Contender("nothing, again (the noise floor)", ()))
        if args.baseline:
            other = str(Path(args.baseline, ".venv", "bin", "fstrace"))
            contenders += [dataclasses.replace(c, name="before: " + c.name, argv=(other,) + c.argv[1:])
                           for c in contenders if c.name.startswith("fstrace") and (
                               not args.baseline_only or any(x in c.name for x in args.baseline_only.split(",")))]
        rows = {(c.name, w.name): [] for c in contenders for w in workloads}
        for r in range(args.rounds):
            for w in workloads:
                order = contenders[r % len(contenders):] + contenders[:r % len(contenders)]
                times = {}
                for c in order:
                    if c.argv:
                        times[c.name] = traced(c, w, scratch)
                    else:
                        run, cpu = cpu_run(w)
                        times[c.name] = {"traced_s": run.seconds, "traced_cpu_s": cpu}
                base = times[CONTENDERS[0]]["traced_s"]
                base_cpu = times[CONTENDERS[0]]["traced_cpu_s"]
                for name, res in times.items():
                    res.update(round=r + 1, untraced_s=base, ratio=res["traced_s"] / base, untraced_cpu_s=base_cpu,
                               cpu_ratio=res["traced_cpu_s"] / base_cpu)
                    rows[(name, w.name)].append(res)
                save(out, date, started, load, rows, partial=True)
                runner.log("round %d %s: untraced %.2f s; %s" % (r + 1, w.name, base, ", ".join(
                    "%s ×%.2f (cpu ×%.2f)%s" % (n.split(" (")[0], t["ratio"], t["cpu_ratio"], " lost %s" % t["lost"] if t.get("lost") else "")
                    for n, t in times.items() if n != CONTENDERS[0])))
    finally:
        STATS.write_text(stats_was)
        system.remove_scratch(scratch)
    doc = save(out, date, started, load + [system.load_average()], rows, partial=False)
    print(markdown(doc))
    runner.log("wrote %s (%.0f s)" % (out, doc["duration_s"]))
    return 0


def save(out: Path, date: str, started: float, load: list, rows: dict, partial: bool) -> dict:
    """The results so far (partial: after each round, so a run cut short keeps what it measured)."""
    done = {key: v for key, v in rows.items() if v}
    doc = {"date": date, "argv": sys.argv[1:], "duration_s": time.monotonic() - started, "partial": partial,
           "load_average": load if not partial else load + [system.load_average()], "machine": system.machine(),
           "summary": {"%s | %s" % key: summarize(v) for key, v in done.items()},
           "rounds": {"%s | %s" % k: v for k, v in done.items()}}
    out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return doc


def markdown(doc: dict) -> str:
    lines = ["%s, load average %s → %s, %s" % (doc["date"], doc["load_average"][0], doc["load_average"][1],
                                              " ".join(doc["argv"])), "",
             "| contender | workload | wall ratio median (range) | CPU ratio median (range) | ready s | exit s "
             "| peak RSS MiB | lost | exact |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, s in doc["summary"].items():
        name, wl = key.split(" | ")
        lines.append("| %s | %s | **%.2f×** (%.2f–%.2f) | **%.2f×** (%.2f–%.2f) | %s | %s | %s | %s | %s |" % (
            name, wl, s["ratio_median"], s["ratio_min"], s["ratio_max"],
            s["cpu_ratio_median"], s["cpu_ratio_min"], s["cpu_ratio_max"],
            "%.2f" % s["ready_s_median"] if "ready_s_median" in s else "",
            "%.2f" % s["exit_s_median"] if "exit_s_median" in s else "",
            "%.0f" % (s["peak_rss_kib_median"] / 1024) if "peak_rss_kib_median" in s else "",
            s.get("lost_median", ""), s.get("exact_rounds", "")))
    lines += ["", "| contender | workload | BPF program | runs (median) | ns per run (median) |", "|---|---|---|---|---|"]
    for key, s in doc["summary"].items():
        name, wl = key.split(" | ")
        for prog, v in sorted(s["progs"].items()):
            if v["runs_median"]:
                lines.append("| %s | %s | %s | %d | %s |" % (name, wl, prog, v["runs_median"],
                                                           "%.0f" % v["ns_per_run"] if v["ns_per_run"] else ""))
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--show"]:           # bench/speed.py --show RESULTS.json: the tables again
        print(markdown(json.loads(Path(sys.argv[2]).read_text())))
        sys.exit(0)
    sys.exit(main())
