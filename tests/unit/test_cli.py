"""The CLI's own checks: one line on stderr, a non-zero exit, no traceback."""
import subprocess
import sys
from pathlib import Path

import pytest

from bpftools.cli.options import parse_duration
from bpftools.errors import UsageError

FSTRACE = str(Path(sys.executable).with_name("fstrace"))


@pytest.mark.parametrize("text,seconds", [("30", 30), ("30s", 30), ("500ms", 0.5), ("2m", 120), ("1.5h", 5400)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


def test_parse_duration_rejects_garbage():
    with pytest.raises(UsageError, match="bad duration 'soon'"):
        parse_duration("soon")


@pytest.mark.parametrize("args,message", [
    (["trace", "-e", "write"], "fstrace: error: unknown event 'write'; known: open, exec, access, modify, attrib,"),
    (["trace", "-d", "soon"], "fstrace: error: bad duration 'soon'"),
    (["trace", "-p", "abc"], "fstrace: error: bad --pid 'abc'"),
    (["trace", "--backend", "magic"], "fstrace: error: Invalid value for '--backend'"),
    (["nosuch"], "fstrace: error: No such command 'nosuch'"),
])
def test_bad_input_is_one_line(args, message):
    proc = subprocess.run([FSTRACE, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith(message)
    assert proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


def test_help_ends_with_examples():
    out = subprocess.run([FSTRACE, "trace", "--help"], capture_output=True, text=True, timeout=60).stdout
    assert "Examples:" in out and "fstrace trace --json | jq .path" in out
