#!/usr/bin/env python3
"""How long `fstrace trace` takes to exit after SIGINT while a generator runs flat out.

    bench/trace_exit.py [--runs 5] [--rate 1000000] [--text] [--fstrace PATH]

Starts fstb-rate (bench/workloads/rate.c) opening and closing a file at
RATE pairs/s, then `fstrace trace [--json] -e open,close_nowrite --comm
<its name>` writing to a file; 3 s after the start record (JSON) or line
(text), SIGINT, and the time until fstrace has exited: the last drain of
the ring, the summary, detaching and exiting.  Prints one line per run and
the median.  Needs root.
"""
from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tools
import work


def one(fstrace: str, gen: Path, rate: int, as_json: bool) -> tuple[float, int, int | None]:
    """(seconds from SIGINT to exit, event lines written, lost) of one run."""
    with tempfile.TemporaryDirectory(prefix="fstrace-exit-") as d:
        generator = subprocess.Popen([str(gen), d, str(rate), "60"], stdout=subprocess.DEVNULL)
        out_path = Path(d) / "out"
        try:
            with open(out_path, "wb") as out:
                tracer = subprocess.Popen([fstrace, "trace", *(["--json"] if as_json else []), "-e",
                                           "open,close_nowrite", "--comm", gen.name[:15]],
                                          stdout=out, stderr=subprocess.PIPE)
                if as_json:
                    while out_path.stat().st_size == 0 and tracer.poll() is None:
                        time.sleep(0.02)
                else:
                    tracer.stderr.readline()
                time.sleep(3)
                t = time.monotonic()
                tracer.send_signal(signal.SIGINT)
                tracer.wait()
                took = time.monotonic() - t
                err = tracer.stderr.read().decode()
        finally:
            generator.send_signal(signal.SIGINT)
            generator.wait()
        data = out_path.read_bytes()
    if tracer.returncode:
        raise SystemExit("fstrace failed: %s" % err[-500:])
    if as_json:
        recs = [json.loads(line) for line in data.splitlines()]
        return took, sum(1 for r in recs if r["type"] == "event"), recs[-1].get("lost")
    summary = [line for line in err.splitlines() if " events in " in line]
    lost = int(summary[-1].split(", ")[-1].split()[0]) if summary else None
    return took, data.count(b"\n"), lost


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--rate", type=int, default=1_000_000)
    p.add_argument("--text", action="store_true", help="text output instead of --json")
    p.add_argument("--fstrace", default=str(tools.FSTRACE))
    args = p.parse_args(argv)
    gen = work.build()["rate"]
    times = []
    for i in range(args.runs):
        took, written, lost = one(args.fstrace, gen, args.rate, not args.text)
        times.append(took)
        print("run %d: exit %.2f s after SIGINT, %d lines written, lost %s" % (i + 1, took, written, lost), flush=True)
    print("median %.2f s (%.2f–%.2f) over %d runs" % (statistics.median(times), min(times), max(times), len(times)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
