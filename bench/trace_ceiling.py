#!/usr/bin/env python3
"""The held-out streaming check of issue 16, at several rates.

    bench/trace_ceiling.py [--seconds 3] [--json|--text] RATE...

For each RATE (open/close pairs per second): `fstrace trace [--json] -e
open,close_nowrite -- fstb-rate DIR RATE SECONDS > FILE`, then counts the
events on DIR/f in FILE against the pairs the generator reports making, and
reads `lost` from the summary record (--json) or the closing line (text).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tools
import work


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("rates", nargs="+", type=int)
    p.add_argument("--seconds", type=int, default=3)
    p.add_argument("--text", action="store_true", help="text output instead of --json")
    p.add_argument("--fstrace", default=str(tools.FSTRACE))
    args = p.parse_args(argv)
    rate_bin = work.build()["rate"]
    print("| output | asked pairs/s | generator reached | events expected | written | lost | wall s |")
    print("|---|---|---|---|---|---|---|")
    for rate in args.rates:
        with tempfile.TemporaryDirectory(prefix="fstrace-ceiling-") as d:
            out = Path(d) / "out"
            work_dir = Path(d) / "w"
            work_dir.mkdir()
            gen_report = Path(d) / "gen.json"
            argv = [args.fstrace, "trace", *([] if args.text else ["--json"]), "-e", "open,close_nowrite", "--",
                    "sh", "-c", "exec %s %s %d %d > %s" % (rate_bin, work_dir, rate, args.seconds, gen_report)]
            t = time.monotonic()
            with open(out, "wb") as f:
                proc = subprocess.run(argv, stdout=f, stderr=subprocess.PIPE)
            wall = time.monotonic() - t
            if proc.returncode:
                print("fstrace failed: %s" % proc.stderr.decode()[-500:], file=sys.stderr)
                return 1
            gen = json.loads(gen_report.read_text())
            target = str(work_dir / "f")
            # an open and a close_nowrite per pair (the first open creates f: a create and a close_write)
            expected = 2 * gen["ops"]
            text = out.read_text(errors="replace")
            if args.text:
                written = sum(1 for line in text.splitlines() if line.rstrip().endswith(" " + target))
                m = re.search(r"(\d+) lost", proc.stderr.decode() + text)
                lost = int(m.group(1)) if m else None
            else:
                written = sum(1 for line in text.splitlines()
                              if line.startswith('{"type":"event"') and json.loads(line)["path"] == target)
                summary = [json.loads(line) for line in text.splitlines() if line.startswith('{"type":"summary"')]
                lost = summary[-1]["lost"] if summary else None
            print("| %s | %d | %.0f | %d | %d | %s | %.1f |" % (
                "text" if args.text else "json", rate, gen["rate"], expected, written, lost, wall), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
