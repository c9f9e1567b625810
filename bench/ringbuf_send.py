#!/usr/bin/env python3
"""Do BPF ring-buffer sends fail while the ring has room?  (docs/benchmarks.md)

A minimal BCC program sends one record per syscall of an fstb-rate process
(open+close at a set rate) into an 8 MiB ring that bpftools/kernel/ringbuf.py
drains, and counts the sends that failed at the first try and those that
failed again when retried at once.  The ring's fullest moment is printed
too: failures with the ring far from full are the kernel's, not the reader's.

    .venv/bin/python bench/ringbuf_send.py [--rate EVENTS_PER_S] [--seconds S]

Needs root and bench/build/fstb-rate (built by `make bench` or `make bench-quick`).
"""
from __future__ import annotations

import argparse
import ctypes
import mmap
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bcc import BPF  # noqa: E402

from bpftools.kernel.ringbuf import RingBuffer  # noqa: E402

RING_PAGES = 2048
RECORD = 160
PROGRAM = r"""
BPF_RINGBUF_OUTPUT(events, RING_PAGES);
BPF_ARRAY(outcome, u64, 3);     /* sent at once, failed once, failed twice */
struct rec { char b[RECORD]; };
BPF_PERCPU_ARRAY(scratch, struct rec, 1);

TRACEPOINT_PROBE(raw_syscalls, sys_enter)
{
    if ((bpf_get_current_pid_tgid() >> 32) != TARGET)
        return 0;
    int zero = 0;
    struct rec *r = scratch.lookup(&zero);
    if (!r)
        return 0;
    if (events.ringbuf_output(r, sizeof(*r), BPF_RB_NO_WAKEUP) == 0) {
        outcome.atomic_increment(0);
        return 0;
    }
    outcome.atomic_increment(1);
    if (events.ringbuf_output(r, sizeof(*r), BPF_RB_NO_WAKEUP) != 0)
        outcome.atomic_increment(2);
    return 0;
}
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=int, default=40000, help="open+close events per second (default 40000)")
    ap.add_argument("--seconds", type=int, default=10, help="how long (default 10)")
    args = ap.parse_args()
    rate_bin = REPO / "bench" / "build" / "fstb-rate"
    if not rate_bin.exists():
        raise SystemExit("bench/ringbuf_send.py: %s is missing: run `make bench-quick` first" % rate_bin)
    with tempfile.TemporaryDirectory(prefix="fstrace-bench-") as work:
        # the generator waits on its stdin until the program is attached
        gen = subprocess.Popen(["sh", "-c", 'read _ && exec "$0" "$@"', str(rate_bin), work,
                                str(args.rate // 2), str(args.seconds)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        bpf = BPF(text=PROGRAM, cflags=["-DTARGET=%d" % gen.pid, "-DRING_PAGES=%d" % RING_PAGES,
                                        "-DRECORD=%d" % RECORD])
        ring = RingBuffer(bpf["events"].map_fd, RING_PAGES * mmap.PAGESIZE)
        received = fullest = 0

        def count(_record) -> None:
            nonlocal received
            received += 1

        gen.stdin.write("go\n")
        gen.stdin.close()
        while gen.poll() is None:
            ring.wait(50)
            fullest = max(fullest, ring.pending())
            ring.consume(count)
        ring.consume(count)
        report = gen.stdout.read().strip()
        sent, failed_once, failed_twice = (bpf["outcome"][ctypes.c_int(i)].value for i in range(3))
        ring.close()
    print("generator: %s" % report)
    print("sends: %d at the first try, %d failed at the first try, %d of those failed again; "
          "received %d; fullest ring %d of %d bytes"
          % (sent, failed_once, failed_twice, received, fullest, RING_PAGES * mmap.PAGESIZE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
