"""Every event names the file the kernel acted on (tracepoint backend, real BPF, real files).

The fd numbers in these workloads lie on purpose (reused, duplicated, shared
with a child or a thread); the names must come from the kernel's fd table.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import FSTRACE

WORKLOAD = Path(__file__).parent / "workloads" / "fdtruth.py"


def trace(scenario, *args):
    base = Path("/tmp") / ("fstrace-test-" + os.urandom(5).hex())
    base.mkdir()
    try:
        proc = subprocess.run([FSTRACE, "trace", "--json", "--backend", "tracepoint", *args, "--",
                               sys.executable, str(WORKLOAD), scenario, str(base)],
                              capture_output=True, timeout=300)
        assert proc.returncode == 0, proc.stderr.decode()
        recs = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    finally:
        shutil.rmtree(base)
    return [r for r in recs if r["type"] == "event"], str(base)


def mine(events, base):
    return [(e["event"], e["path"][len(base) + 1:]) for e in events if (e["path"] or "").startswith(base + "/")]


def test_a_childs_pipe_io_is_never_put_on_the_files_its_parent_reuses_the_fds_for():
    events, _ = trace("pipe", "-e", "all")
    on = [(e["event"], e["path"]) for e in events if e["path"] in ("/etc/hostname", "/etc/passwd")]
    assert sorted(on) == sorted([("open", "/etc/hostname"), ("open", "/etc/passwd"),
                                 ("close_nowrite", "/etc/hostname"), ("close_nowrite", "/etc/passwd")])
    assert not [e for e in events if e["path"] is None or not e["path"].startswith("/")]


def test_close_write_alone_names_each_of_20_created_files():
    events, base = trace("close20", "-e", "close_write")
    assert mine(events, base) == [("close_write", "f%02d" % i) for i in range(20)]


def test_o_creat_of_an_existing_file_is_an_open_not_a_create():
    events, base = trace("append", "-e", "open,create")
    assert mine(events, base) == [("create", "existing"), ("open", "existing")]


def test_futimens_is_one_attrib_on_the_file():
    events, base = trace("futimens", "-e", "attrib")
    assert mine(events, base) == [("attrib", "stamped")]


def test_copy_file_range_is_access_on_the_source_and_modify_on_the_destination():
    events, base = trace("copy", "-e", "access,modify")
    copied = [(e["event"], e["path"][len(base) + 1:]) for e in events if e["syscall"] == "copy_file_range"]
    assert copied == [("access", "src"), ("modify", "dst")]


def test_dup_dup2_dup3_f_dupfd_close_range_threads_and_fd_reuse_never_change_the_file():
    events, base = trace("dups", "-e", "modify,close_write")
    writes = [p for e, p in mine(events, base) if e == "modify"]
    assert writes == ["a", "c", "a", "c", "c", "e"]
    closes = [p for e, p in mine(events, base) if e == "close_write"]
    assert sorted(closes) == ["a", "c", "e"]     # each file once: when its last fd goes


def test_files_left_open_are_closed_at_exit_by_the_last_process_holding_them():
    events, base = trace("leftopen", "-e", "close_write,close_nowrite")
    got = [(e["event"], e["path"][len(base) + 1:], e["syscall"], e["pid"]) for e in events
           if (e["path"] or "").startswith(base + "/")]
    child = [g for g in got if g[1] == "child"]
    parent = sorted(g[:3] for g in got if g[1] != "child")
    assert [g[:3] for g in child] == [("close_write", "child", "exit_group")]
    assert parent == [("close_nowrite", "read", "exit_group"), ("close_write", "written", "exit_group")]
    assert child[0][3] != got[-1][3]
