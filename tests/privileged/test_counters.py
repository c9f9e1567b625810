"""The in-kernel counters: the Python mirror of their layout, exactness at full speed, overflow shown."""
import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import FSTRACE

from bpftools import abi
from bpftools.kernel import counters, probe

WORKLOADS = Path(__file__).parent / "workloads"
RUN_TIMEOUT = 900      # a run includes compiling the BPF program: minutes in the kernel matrix's TCG guests


def test_entry_layout_matches_the_compiled_structs():
    p = probe.Probe(probe.ProbeConfig(aggregate=True), lambda data: None)
    try:
        table = p.bpf["agg_a"]
        key, leaf = table.Key, table.Leaf
    finally:
        p.close()
    assert ctypes.sizeof(key) == abi.AGG_KEY.size
    assert [(name, getattr(key, name).offset) for name, _ in key._fields_] == [
        ("cgroup_id", 0), ("file", 8), ("pid", 16), ("err", 20)]
    assert ctypes.sizeof(leaf) == abi.AGG_VALUE.size
    ev = len(abi.EVENT_NAMES)
    assert [(name, getattr(leaf, name).offset) for name, _ in leaf._fields_] == [
        ("n", 0), ("read_bytes", 8 * ev), ("write_bytes", 8 * ev + 8), ("comm", 8 * ev + 16)]


def test_counts_stay_exact_at_full_speed_across_many_ticks(workdir):
    """Two processes open and close one file as fast as they can while the maps swap 4 times a second."""
    target = workdir / "hot"
    target.write_bytes(b"")
    spin = "%s %s %s 3" % (sys.executable, WORKLOADS / "spin.py", target)
    proc = subprocess.run([FSTRACE, "report", "--json", "--top", "0", "--path", str(target),
                           "--", "sh", "-c", "%s > %s/a & %s > %s/b; wait" % (spin, workdir, spin, workdir)],
                          capture_output=True, timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, proc.stderr.decode()
    doc = json.loads(proc.stdout)
    made = int((workdir / "a").read_text()) + int((workdir / "b").read_text())
    assert made > 10_000
    (row,) = doc["files"]
    assert row["path"] == str(target)
    assert row["events"]["open"] == made and row["events"]["close_nowrite"] == made
    assert doc["totals"]["events"] == 2 * made
    assert len(doc["timeline"]["points"]) >= 3            # the maps swapped while it ran (fewer ticks on a busy machine)
    assert doc["totals"]["lost"] == 0 and doc["totals"]["overflow"] == 0


def test_entries_that_do_not_fit_are_counted_as_overflow(workdir):
    script = "import os; os.read(0, 1)\nfor i in range(100): os.close(os.open('%s/f%%d' %% i, os.O_CREAT | os.O_WRONLY))" \
        % workdir
    r, w = os.pipe()
    child = subprocess.Popen([sys.executable, "-c", script], stdin=r)
    os.close(r)
    try:
        p = probe.Probe(probe.ProbeConfig(aggregate=True, agg_entries=16, pids=(child.pid,), events=("create",)),
                        lambda data: None)
        try:
            c = counters.Counters.from_probe(p)
            c.start()
            os.write(w, b"go")
            child.wait(timeout=60)
            entries = c.swap()
            overflow = c.overflow()
        finally:
            p.close()
    finally:
        os.close(w)
        if child.poll() is None:
            child.kill()
            child.wait()
    created = sum(e.counts[abi.EVENT_CODES["create"]] for e in entries)
    assert len(entries) == 16
    assert created + overflow[abi.EVENT_CODES["create"]] == 100
    assert sum(overflow) == overflow[abi.EVENT_CODES["create"]] == 84
