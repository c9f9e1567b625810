#!/usr/bin/env python3
"""Record the replay fixtures (as root): what the kernel sends for a small workload.

    .venv/bin/python tests/replay/record.py [NAME...]

runs tests/replay/workload.sh in a cgroup of its own twice, once streamed
(trace -e all) and once counted (report), and tests/replay/hostile.py
(names no terminal or parser should trust) streamed, through a real probe
whose records and counter drains are written to
tests/replay/{stream,count,hostile}.rec (format: bpftools/kernel/replay.py),
with the cgroup's id in meta.json (hostile.json for hostile.rec).  With
NAMEs (stream, count, hostile), only those (stream and count go together).
Run it again when the record layout (bpf/fstrace.h) changes, then review
and commit the new fixtures and tests/replay/expected-*.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from bpftools import abi  # noqa: E402
from bpftools.cgroups.map import cgroup2_mount  # noqa: E402
from bpftools.kernel import probe as kprobe  # noqa: E402
from bpftools.kernel.replay import DRAIN, HISTS, RECORD, frame  # noqa: E402
from bpftools.session import open_session  # noqa: E402
from bpftools.session.contract import Options  # noqa: E402

CGROUP = "/fstrace-test-replay"
WORKDIR = "/tmp/fstrace-test-replay"


def recording_probe(out: list[bytes]):
    """A load_probe that writes what the real probe delivers into out."""
    def load(cfg, on_record):
        def tee(data):
            out.append(frame(RECORD, bytes(data)))
            on_record(data)
        p = kprobe.Probe(cfg, tee)
        make_counters = p.counters

        def counters():
            c = make_counters()
            swap = c.swap

            def recorded_swap():
                entries = swap()
                out.append(frame(DRAIN, b"".join(abi.AGG_KEY.pack(e.cgroup_id, e.file, e.pid, e.err)
                                                 + abi.AGG_VALUE.pack(*e.counts, e.read_bytes, e.write_bytes,
                                                                      *e.lat_ns, *e.timed, e.comm)
                                                 for e in entries)))
                out.append(frame(HISTS, b"".join(abi.HIST_KEY.pack(h.cgroup_id, h.op, 0)
                                                 + abi.HIST_VALUE.pack(*h.buckets, h.sum_ns, h.max_ns)
                                                 for h in c.hists)))
                return entries
            c.swap = recorded_swap
            return c
        p.counters = counters
        return p
    return load


class Quiet:
    """A sink that keeps nothing (the recording is what matters)."""
    interval = 0.5
    finished = False
    formatter = None        # the session's Python path: FileEvents to event(), here dropped

    def __getattr__(self, _name):
        return lambda *a, **k: None


WORKLOADS = {
    "stream": ["sh", str(HERE / "workload.sh"), WORKDIR],
    "count": ["sh", str(HERE / "workload.sh"), WORKDIR],
    "hostile": [sys.executable, str(HERE / "hostile.py"), WORKDIR],
}


def record(name: str, aggregate: bool, cgdir: str) -> None:
    out: list[bytes] = []
    opts = Options(events=abi.EVENT_NAMES, failed=True, cgroups=(CGROUP,), duration=2.0, aggregate=aggregate)
    session = open_session(opts, Quiet(), load_probe=recording_probe(out))
    session.start()

    def workload():
        time.sleep(0.3)
        subprocess.run(WORKLOADS[name], check=True, cwd="/",
                       preexec_fn=lambda: Path(cgdir, "cgroup.procs").write_text("0"))
    t = threading.Thread(target=workload)
    t.start()
    try:
        session.run()
    finally:
        t.join()
        session.close()
    (HERE / (name + ".rec")).write_bytes(b"".join(out))


# recordings made in one cgroup, and the file that keeps its path and id
SETS = (("meta.json", ("stream", "count")), ("hostile.json", ("hostile",)))


def main() -> None:
    wanted = set(sys.argv[1:] or WORKLOADS)
    cgdir = os.path.join(cgroup2_mount(), CGROUP.lstrip("/"))
    for meta_file, names in SETS:
        if not wanted & set(names):
            continue
        os.mkdir(cgdir)
        try:
            (HERE / meta_file).write_text(json.dumps({"cgroup": CGROUP, "cgroup_id": os.stat(cgdir).st_ino}) + "\n")
            for name in names:          # together: they share the cgroup id of meta_file
                record(name, name == "count", cgdir)
        finally:
            os.rmdir(cgdir)


if __name__ == "__main__":
    main()
