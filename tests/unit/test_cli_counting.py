"""top and report refuse bad input with one line, before loading anything."""
import subprocess
import sys
from pathlib import Path

import pytest

from bpftools.cli.counting import parse_tables
from bpftools.errors import UsageError
from bpftools.views.report import TABLES

FSTRACE = str(Path(sys.executable).with_name("fstrace"))


@pytest.mark.parametrize("args,message", [
    (["top", "-i", "0"], "fstrace: error: bad --interval 0: give a positive number of seconds"),
    (["top", "-g", "inode"], "fstrace: error: Invalid value for '-g' / '--group'"),
    (["top", "-s", "size"], "fstrace: error: Invalid value for '-s' / '--sort'"),
    (["top", "-n", "0"], "fstrace: error: Invalid value for '-n' / '--iterations'"),
    (["top", "--path", "srv"], "fstrace: error: bad --path 'srv': give an absolute path, e.g. --path /srv"),
    (["top", "-e", "write"], "fstrace: error: unknown event 'write'"),
    (["report", "--by", "files"], "fstrace: error: unknown table 'files' for --by; known: cgroup, process,"),
    (["report", "--top", "-1"], "fstrace: error: Invalid value for '--top'"),
    (["report", "-d", "soon"], "fstrace: error: bad duration 'soon'"),
    (["report", "--svg", "/nonexistent/r.svg"],
     "fstrace: error: cannot write file /nonexistent/r.svg: /nonexistent is not a writable directory"),
    (["report", "--csv", "/proc/1/nope"],
     "fstrace: error: cannot write directory /proc/1/nope: /proc/1 is not a writable directory"),
])
def test_bad_input_is_one_line(args, message):
    proc = subprocess.run([FSTRACE, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith(message), proc.stderr
    assert proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


def test_by_lists():
    assert parse_tables(None) == TABLES
    assert parse_tables("errno,file,errno") == ("errno", "file")
    assert parse_tables("all") == TABLES
    with pytest.raises(UsageError):
        parse_tables("file,")


@pytest.mark.parametrize("command,example", [("top", "fstrace top -b -n 3"), ("report", "fstrace report -- make -j2")])
def test_help_ends_with_examples(command, example):
    out = subprocess.run([FSTRACE, command, "--help"], capture_output=True, text=True, timeout=60).stdout
    assert "Examples:" in out and example in out
