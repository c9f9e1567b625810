#!/usr/bin/env python3
"""fstrace side by side with the tools users would pick instead (`make bench`).

Each contender (fstrace, fatrace, bpftrace one-liners, BCC tools) watches the
same workloads.  Traced and untraced runs alternate (A B, then B A, ...), so
a noisy machine slows both alike and the per-round ratio traced/untraced
stays meaningful.  Per contender and workload it reports that ratio, events
captured against the counts the workload knows, loss as the tool reports it,
cgroup attribution, the tracer's CPU time and peak RSS, and its time to
become ready and to exit.  Then it steps a generator's rate up until fstrace
loses events.

    make bench          full run: writes docs/benchmarks.md and bench/results/<date>.json
    make bench-quick    a smaller run in under two minutes: prints the tables, writes the JSON

Needs root.  Installs fatrace and bpftrace with apt-get if they are missing.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import report
import system
import tools
import work
from tools import Contender, NotLoaded, Session
from work import Workload

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
DOCS = BENCH.parent / "docs" / "benchmarks.md"
PACKAGES = {"fatrace": "fatrace", "bpftrace": "bpftrace", "strace": "strace", "opensnoop-bpfcc": "bpfcc-tools"}
READY_TIMEOUT = 120.0


@dataclass(frozen=True)
class Profile:
    rounds: int
    fileops_rounds: int          # plain and cgroup: rounds of nine syscalls
    short_cgroups: int           # shortcg: cgroups made
    workloads: tuple[str, ...]
    skip: tuple[str, ...]        # contenders left out: those whose name contains one of these
    ceiling: tuple[str, ...]     # contenders whose throughput ceiling is measured
    ceiling_start: int           # events/s of the first step
    ceiling_factor: int          # from one step to the next
    ceiling_max: int
    ceiling_step_s: int
    ceiling_refine: int          # bisections between the last clean and first lossy step


PROFILES = {
    "full": Profile(
        rounds=5, fileops_rounds=30000, short_cgroups=2000, workloads=("plain", "cgroup", "shortcg", "tar"),
        skip=(), ceiling=("fstrace trace --json", "fstrace top -b --json"),
        ceiling_start=10000, ceiling_factor=2, ceiling_max=1280000, ceiling_step_s=3, ceiling_refine=2),
    # one small workload, no trace -e all and no BCC tools, one ceiling step (is 40k events/s loss-free?)
    "quick": Profile(
        rounds=2, fileops_rounds=3000, short_cgroups=300, workloads=("cgroup",),
        skip=(" -e all", "-bpfcc"), ceiling=("fstrace trace --json",),
        ceiling_start=40000, ceiling_factor=4, ceiling_max=40000, ceiling_step_s=1, ceiling_refine=0),
}


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def make_workloads(names, profile: Profile, scratch: Path, binaries: dict[str, Path]) -> list[Workload]:
    root = system.cgroup2_root()
    makers = {
        "plain": lambda: work.FileOps(scratch, binaries, profile.fileops_rounds),
        "cgroup": lambda: work.FileOps(scratch, binaries, profile.fileops_rounds, cgroup_root=root),
        "shortcg": lambda: work.ShortCgroups(scratch, binaries["shortcg"], profile.short_cgroups, root),
        "tar": lambda: work.Tarball(scratch, binaries["tar"], binaries["rm"]),
    }
    return [makers[name]() for name in names]


def traced_run(contender: Contender, workload: Workload, scratch: Path) -> dict:
    """Start the tracer, wait until it is ready, run the workload once, stop it, read its output."""
    outdir = Path(tempfile.mkdtemp(prefix="out-", dir=scratch))
    session = Session(contender, outdir)
    try:
        session.start()
        try:
            ready_s = session.wait_ready(READY_TIMEOUT)
            cpu_ready = session.cpu_seconds()
            run = workload.run()
            cpu_run = session.cpu_seconds() - cpu_ready
        finally:
            stopped = session.stop()
        result = {"traced_s": run.seconds, "ready_s": ready_s, "exit_s": stopped.exit_s, "cpu_run_s": cpu_run,
                  "cpu_total_s": stopped.cpu_s, "peak_rss_kib": stopped.peak_rss_kib,
                  "exit_code": stopped.exit_code, "killed": stopped.killed}
        if stopped.exit_code or stopped.killed:
            result["stderr_tail"] = session.stderr_tail()
        if contender.parse:
            result.update(tally(contender, workload, run, contender.parse(session.stdout, run)))
        return result
    finally:
        shutil.rmtree(outdir)


def tally(contender: Contender, workload: Workload, run: work.Run, cap: tools.Capture) -> dict:
    """What the tracer reported of run, next to what it should have reported."""
    found = {"records": cap.records, "lost": cap.lost, "judged": cap.judged, "right_cgroup": cap.right_cgroup}
    expected = contender.expected(run, workload.compared)
    if cap.by_syscall is not None:
        captured = {name: cap.by_syscall[name] for name in expected}
        found.update(expected=dict(expected), captured=captured,
                     expected_total=sum(expected.values()), captured_total=sum(captured.values()))
    elif cap.total is not None:
        found["captured_total"] = cap.total
        if workload.compared is None:           # a sum cannot be narrowed down to the compared syscalls
            found.update(expected=dict(expected), expected_total=sum(expected.values()))
    return found


def measure(contender: Contender, workload: Workload, rounds: int, scratch: Path) -> list[dict]:
    """rounds of one untraced and one traced run, in alternating order."""
    results = []
    for r in range(rounds):
        order = ("untraced", "traced") if r % 2 == 0 else ("traced", "untraced")
        result = {"round": r + 1, "order": " then ".join(order)}
        for which in order:
            if which == "untraced":
                result["untraced_s"] = workload.run().seconds
            elif contender.argv:
                result.update(traced_run(contender, workload, scratch))
            else:
                result["traced_s"] = workload.run().seconds
        result["ratio"] = result["traced_s"] / result["untraced_s"]
        results.append(result)
        log("  %-8s round %d/%d: untraced %.2f s, traced %.2f s (×%.2f)%s" % (
            workload.name, r + 1, rounds, result["untraced_s"], result["traced_s"], result["ratio"],
            "".join(", %s %s" % (k, fmt(result[k])) for k in ("ready_s", "exit_s", "lost", "captured_total",
                                                               "expected_total", "right_cgroup")
                    if result.get(k) is not None)))
    return results


def fmt(value) -> str:
    return "%.2f" % value if isinstance(value, float) else str(value)


def compare(contenders: list[Contender], workloads: list[Workload], rounds: int, scratch: Path,
            started: float) -> list[dict]:
    """Every contender against every workload; a contender that does not load is tried once."""
    results = []
    for c in contenders:
        log("%s (at %.0f s)" % (c.name, time.monotonic() - started))
        failure = c.missing
        for w in workloads:
            entry = {"contender": c.name, "workload": w.name, "argv": list(c.argv)}
            if not failure:
                try:
                    entry["rounds"] = measure(c, w, rounds, scratch)
                    entry["summary"] = report.summarize(entry["rounds"])
                except NotLoaded as e:
                    failure = "does not load: %s" % e
                    log("  " + failure)
            if failure:
                entry["status"] = failure
            results.append(entry)
    return results


def ceiling(contender: Contender, binary: Path, profile: Profile, scratch: Path) -> dict:
    try:
        return ceiling_steps(contender, binary, profile, scratch)
    except NotLoaded as e:
        return {"contender": contender.name, "status": "does not load: %s" % e}


def ceiling_steps(contender: Contender, binary: Path, profile: Profile, scratch: Path) -> dict:
    """Raise the generator's rate until the tracer loses or misses events, or until the generator,
    slowed by the tracing, stops getting faster; then bisect between the last clean and the first
    lossy rate.  The rates reported are those the generator reached."""
    log("ceiling: %s" % contender.name)
    workload = work.Rate(scratch, binary, profile.ceiling_step_s)
    steps = []

    def step(target: int) -> dict:
        workload.rate = target
        result = traced_run(contender, workload, scratch)
        st = {"target_rate": target, "rate": workload.reached, "reached": workload.reached >= 0.97 * target,
              "lost": result["lost"], "captured_pct": 100.0 * result["captured_total"] / result["expected_total"],
              "clean": result["lost"] == 0 and result["captured_total"] == result["expected_total"],
              "ready_s": result["ready_s"], "exit_s": result["exit_s"]}
        steps.append(st)
        log("  ceiling %7d events/s: generator %.0f/s, lost %s, captured %.1f %% (ready %.1f s, exit %.1f s)" % (
            target, st["rate"], st["lost"], st["captured_pct"], st["ready_s"], st["exit_s"]))
        return st

    target, previous = profile.ceiling_start, 0.0
    while target <= profile.ceiling_max:
        st = step(target)
        if not st["clean"] or (not st["reached"] and st["rate"] < 1.1 * previous):
            break
        previous, target = st["rate"], target * profile.ceiling_factor
    for _ in range(profile.ceiling_refine):
        clean = max((st["target_rate"] for st in steps if st["clean"]), default=None)
        lossy = min((st["target_rate"] for st in steps if not st["clean"]), default=None)
        if clean is None or lossy is None or lossy < clean:
            break
        step((clean + lossy) // 2)
    return {"contender": contender.name, "steps": steps,
            "highest_clean": max((st["rate"] for st in steps if st["clean"]), default=None),
            "lowest_lossy": min((st["rate"] for st in steps if not st["clean"]), default=None)}


def versions() -> dict:
    found = {"fstrace": (subprocess.run([str(tools.FSTRACE), "--version"], capture_output=True, text=True)
                         .stdout.strip().split()[-1:] or ["not installed"])[0]}
    for name, package in (("bpftrace", "bpftrace"), ("fatrace", "fatrace"), ("bcc", "bpfcc-tools"),
                          ("strace", "strace"), ("tar", "tar")):
        found[name] = system.package_version(package) or "not installed"
    found["python"] = platform.python_version()
    return found


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds, smaller workloads: under two minutes")
    p.add_argument("--rounds", type=int, help="untraced/traced pairs per contender and workload")
    p.add_argument("--only", help="comma-separated substrings: run only contenders whose name has one")
    p.add_argument("--workloads", help="comma-separated subset of plain,cgroup,shortcg,tar")
    p.add_argument("--no-ceiling", action="store_true", help="skip the throughput ceiling")
    args = p.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        p.error("--rounds must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        log("bench/run.py needs root: it loads BPF programs, makes cgroups and may install packages")
        return 1
    # Ctrl-C and kill end the run through the finally clauses that stop tracers and remove
    # cgroups and scratch files.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    profile = PROFILES["quick" if args.quick else "full"]
    rounds = args.rounds or profile.rounds
    names = tuple(args.workloads.split(",")) if args.workloads else profile.workloads
    partial = bool(args.only or args.workloads or args.rounds or args.no_ceiling)
    started, date = time.monotonic(), time.strftime("%Y-%m-%d %H:%M:%S %Z")
    load_at_start = system.load_average()

    setup = system.ensure_packages(PACKAGES) + system.ensure_tracefs()
    built = work.build()
    scratch = system.scratch_tmpfs("fstrace-bench-")
    try:
        binaries = work.private_names({**built, "tar": Path(shutil.which("tar")), "rm": Path(shutil.which("rm"))},
                                      scratch)
        marker = scratch / "fstb-ready-marker"
        marker.touch()
        workloads = make_workloads(names, profile, scratch, binaries)
        contenders = [c for c in tools.contenders(marker) if not any(s in c.name for s in profile.skip)]
        if args.only:
            wanted = args.only.split(",")
            contenders = [c for c in contenders if any(w in c.name for w in wanted)]
        doc_workloads = []
        for w in workloads:
            log("checking %s against strace -f -c" % w.name)
            doc_workloads.append({"name": w.name, "description": w.describe(), "strace_check": w.verify()})
        results = compare(contenders, workloads, rounds, scratch, started)
        for w in doc_workloads:
            w["untraced_s"] = report.spread([r["untraced_s"] for e in results if e["workload"] == w["name"]
                                             for r in e.get("rounds", [])])
        ceilings, generator_max = [], None
        if not args.no_ceiling:
            flat_out = work.Rate(scratch, binaries["rate"], profile.ceiling_step_s)
            flat_out.rate = 10**8
            flat_out.run()
            generator_max = flat_out.reached
            failed = {e["contender"] for e in results if e.get("status")}
            ceilings = [ceiling(c, binaries["rate"], profile, scratch) for c in contenders
                        if c.name in profile.ceiling and c.name not in failed]
    finally:
        system.remove_scratch(scratch)

    kind = "quick" if args.quick else "full"
    suffix = "" if kind == "full" and not partial else "-" + ("partial" if partial else kind)
    results_file = RESULTS / (time.strftime("%Y-%m-%dT%H%M") + suffix + ".json")
    command = "make bench-quick" if args.quick and not partial else (
        "make bench" if not partial else "bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    doc = {"date": date, "command": command, "profile": kind, "rounds": rounds,
           "duration_s": time.monotonic() - started, "results_file": str(results_file.relative_to(BENCH.parent)),
           "machine": system.machine(), "load_average": [load_at_start, system.load_average()],
           "versions": versions(), "setup": setup, "workloads": doc_workloads,
           "results": results, "ceilings": ceilings, "generator_max_rate": generator_max,
           "ceiling_step_s": profile.ceiling_step_s}
    report.write_json(doc, results_file)
    if kind == "full" and not partial:
        report.write_markdown(doc, DOCS)
        log("wrote %s and %s" % (DOCS, results_file))
    else:
        print(report.generated(doc))
        log("wrote %s (docs/benchmarks.md is written by full runs only)" % results_file)
    log("took %.0f s" % doc["duration_s"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
