#!/usr/bin/env python3
"""How fast `fstrace top` answers a key and quits, in a real terminal (tmux).

    bench/tui_latency.py [--rounds 7]

Each round starts `fstrace top` in a private tmux server, waits for its
first table, then times (polling the screen every 10 ms) how long the help
overlay takes to appear after `?`, to go after `x`, and how long the process
takes to exit after `q`.  Medians and ranges over the rounds; the polling
step is the resolution.  The privileged tests only check that these happen
(tests/privileged/test_top.py); the numbers are this script's.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
import uuid

FSTRACE = os.environ.get("FSTRACE", "fstrace")
STEP = 0.01


def tmux(sock: str, *args: str) -> str:
    return subprocess.run(["tmux", "-L", sock, *args], capture_output=True, text=True, check=True,
                          env={**os.environ, "TERM": "xterm-256color"}).stdout


def until(sock: str, seen, timeout: float = 120) -> float:
    """Seconds until seen(screen) holds."""
    start = time.monotonic()
    while not seen(tmux(sock, "capture-pane", "-p", "-t", "t")):
        if time.monotonic() - start > timeout:
            raise SystemExit("tui_latency: timed out waiting for the screen")
        time.sleep(STEP)
    return time.monotonic() - start


def one_round() -> dict[str, float]:
    sock = "fstrace-test-bench-" + uuid.uuid4().hex[:8]
    tmux(sock, "new-session", "-d", "-s", "t", "-x", "120", "-y", "40", "%s top; echo EXIT=$?; sleep 600" % FSTRACE)
    try:
        times = {"first table": until(sock, lambda s: "CGROUP" in s)}
        tmux(sock, "send-keys", "-t", "t", "?")
        times["help shown"] = until(sock, lambda s: "fstrace top: keys" in s)
        tmux(sock, "send-keys", "-t", "t", "x")
        times["help gone"] = until(sock, lambda s: "fstrace top: keys" not in s)
        tmux(sock, "send-keys", "-t", "t", "q")
        times["exit after q"] = until(sock, lambda s: "EXIT=" in s)
        return times
    finally:
        subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    rounds = [one_round() for _ in range(args.rounds)]
    load = os.getloadavg()[0]
    print("| what | median s | range s |\n|---|---|---|")
    for key in rounds[0]:
        values = [r[key] for r in rounds]
        print("| %s | %.3f | %.3f–%.3f |" % (key, statistics.median(values), min(values), max(values)))
    print("\n%d rounds, screen polled every %d ms, load average %.1f" % (args.rounds, STEP * 1000, load))


if __name__ == "__main__":
    main()
