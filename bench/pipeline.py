#!/usr/bin/env python3
"""What one ring-buffer record costs in user space, from bytes to a JSON line.

`fstrace trace` keeps up with the kernel only while its per-record work
(decode, path and cgroup resolution, formatting: the compiled formatter of
bpftools/fastpath, Python once per cgroup and process) is faster than the
events arrive: this is the ceiling the BPF side cannot lift.  This replays
records as the tracepoint backend sends them for fstb-fileops' loop (create,
write, close, rename, open, read, close, unlink) through a real Session and
its JSON (or text) sink, writing to /dev/null, with the cgroup map live: the
session's probe is a ReplayProbe (bpftools/kernel/replay.py), its public seam,
which lays each poll's records out in memory as the kernel's ring does.

    .venv/bin/python bench/pipeline.py [--records N] [--text] [--profile]

Needs root (the cgroup map watches the cgroup2 mount with fanotify).
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bpftools import abi  # noqa: E402
from bpftools.abi import REC_FILE, Record  # noqa: E402
from bpftools.kernel.replay import RECORD, ReplayProbe, frame  # noqa: E402
from bpftools.session import open_session  # noqa: E402
from bpftools.session.contract import Options  # noqa: E402

SYSCALLS = {name: nr for nr, name in abi.SYSCALL_NAMES.items()}


def loop_records(rounds: int, cgroup_id: int, base: bytes) -> list[bytes]:
    """The records of `rounds` iterations of fstb-fileops' loop, as one process in base sends them."""
    pid = os.getpid() + 1       # some other process's records
    out = []
    ts = time.monotonic_ns()

    def rec(op, syscall, file_id=0, fd=-1, ret=0, name1=None, name2=None, dirfd=abi.AT_FDCWD):
        nonlocal ts
        ts += 1000
        out.append(abi.encode(Record(
            ts, cgroup_id, file_id, 0, 0, ret, REC_FILE, abi.EVENT_CODES[op], pid, pid, 0,
            SYSCALLS[syscall], 0, 0, fd, dirfd, abi.AT_FDCWD, b"fstb-fileops", name1, name2)))

    for i in range(rounds):
        a, b = base + b"/f%d" % i, base + b"/g%d" % i
        rec("create", "openat", file_id=2 * i + 1, fd=3, ret=3, name1=a)
        rec("modify", "write", file_id=2 * i + 1, fd=3, ret=4096)
        rec("close_write", "close", file_id=2 * i + 1, fd=3)
        rec("rename", "rename", name1=a, name2=b)
        rec("open", "openat", file_id=2 * i + 2, fd=3, ret=3, name1=b)
        rec("access", "read", file_id=2 * i + 2, fd=3, ret=4096)
        rec("close_nowrite", "close", file_id=2 * i + 2, fd=3)
        rec("delete", "unlink", name1=b)
    return out


def _own_cgroup_id() -> int:
    """The cgroup2 id of this process's cgroup (the map knows it from its sweep)."""
    from bpftools.cgroups.map import cgroup2_mount
    with open("/proc/self/cgroup") as f:
        path = next(line.split(":", 2)[2].strip() for line in f if line.startswith("0::"))
    return os.stat(os.path.join(cgroup2_mount(), path.lstrip("/"))).st_ino


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=200_000, help="records to replay (default 200000)")
    ap.add_argument("--text", action="store_true", help="the text sink instead of JSON Lines")
    ap.add_argument("--profile", action="store_true", help="print the 25 costliest functions")
    args = ap.parse_args()
    with open(os.devnull, "wb") as out:
        if args.text:
            from bpftools.views.text import TextSink
            sink = TextSink(out, sys.stderr, colour=False)
        else:
            from bpftools.views.jsonl import JsonSink
            sink = JsonSink(out)
        cgroup_id = _own_cgroup_id()         # a cgroup the map knows
        records = loop_records(args.records // 8, cgroup_id, b"/tmp/fstrace-pipeline")
        recording = b"".join(frame(RECORD, data) for data in records)
        session = open_session(Options(events=abi.EVENT_NAMES, duration=0), sink,
                               load_probe=lambda cfg, on_record: ReplayProbe(recording, cfg, on_record))
        session.start()
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        started, cpu = time.perf_counter(), time.process_time()
        session.run()           # a duration of 0: one poll, which delivers every record
        sink.flush()
        took, cpu = time.perf_counter() - started, time.process_time() - cpu
        if profiler:
            profiler.disable()
        session.close()
    print("%d records in %.3f s (%.3f s CPU): %.2f µs CPU per record, %.0fk records/s per CPU (%s sink)" % (
        len(records), took, cpu, cpu / len(records) * 1e6, len(records) / cpu / 1000, "text" if args.text else "JSON"))
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
