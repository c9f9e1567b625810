#!/usr/bin/env python3
"""How long fstrace takes to become ready, next to the floor: an empty BCC program.

    bench/ready.py [--rounds 5] [--baseline OTHER_CHECKOUT]

Each round starts, in an order rotated from round to round: `fstrace trace
--json` (ready at its start record), `fstrace top -b --json` (ready at its
"counting" line), the same of --baseline, and the floor (python3 -c 'import
bcc; bcc.BPF(text=<one empty function>)').  For each it records the wall
time to ready and the CPU time the process used until then (user + system:
clang's compile and the kernel's verifier both count), which a busy machine
inflates far less than wall time.  Medians and ranges.
"""
from __future__ import annotations

import argparse
import dataclasses
import signal
import statistics
import sys
import tempfile
from pathlib import Path

import tools
from system import cpu_seconds
from tools import Session

FLOOR = "import bcc; bcc.BPF(text='int empty(void *ctx) { return 0; }'); print('ready', flush=True)"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--baseline", help="another checkout of fstrace with its .venv")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    scratch = Path(tempfile.mkdtemp(prefix="fstrace-ready-"))
    marker = scratch / "marker"
    marker.touch()
    by_name = {c.name: c for c in tools.contenders(marker)}
    mine = [by_name["fstrace trace --json"], by_name["fstrace top -b --json"]]
    contenders = list(mine)
    if args.baseline:
        other = str(Path(args.baseline, ".venv", "bin", "fstrace"))
        contenders += [dataclasses.replace(c, name="before: " + c.name, argv=(other,) + c.argv[1:]) for c in mine]
    contenders.append(tools.Contender("floor: an empty BPF()", ("/usr/bin/python3", "-c", FLOOR),
                                      tools.Ready((r"^ready",), describe="ready")))
    found: dict[str, list[tuple[float, float]]] = {}
    for r in range(args.rounds):
        for c in contenders[r % len(contenders):] + contenders[:r % len(contenders)]:
            outdir = Path(tempfile.mkdtemp(prefix="out-", dir=scratch))
            s = Session(c, outdir)
            s.start()
            try:
                wall = s.wait_ready(120)
                cpu = cpu_seconds(s.pid) or 0.0
            finally:
                s.stop()
            found.setdefault(c.name, []).append((wall, cpu))
            print("round %d %-32s ready %.2f s wall, %.2f s CPU" % (r + 1, c.name, wall, cpu), file=sys.stderr)
    print("| | ready, wall (median, range) | CPU until ready (median, range) |\n|---|---|---|")
    for name, v in found.items():
        w, c = [x[0] for x in v], [x[1] for x in v]
        print("| %s | %.2f s (%.2f–%.2f) | %.2f s (%.2f–%.2f) |" % (
            name, statistics.median(w), min(w), max(w), statistics.median(c), min(c), max(c)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
