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


@pytest.mark.parametrize("command", ["trace", "report"])
def test_nothing_after_double_dash_is_a_usage_error(command):
    proc = subprocess.run([FSTRACE, command, "--"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == "fstrace: error: nothing after --: give the command to run, e.g. fstrace %s -- make -j2\n" \
        % command


@pytest.mark.parametrize("args,message", [
    (["report", "-d", "5", "--csv", "{file}"], "cannot write CSV files into {file}: it exists and is not a directory"),
    (["report", "-d", "5", "--html", "{dir}"], "cannot write file {dir}: it is a directory"),
    (["report", "-d", "5", "--svg", "{dir}/missing/r.svg"], "cannot write file {dir}/missing/r.svg: "),
    (["report", "-d", "5", "-o", "{dir}"], "cannot write -o {dir}: it is a directory"),
    (["trace", "-d", "5", "-o", "{dir}/missing/ev.txt"], "cannot write -o {dir}/missing/ev.txt: No such file"),
])
def test_outputs_are_checked_before_anything_starts(args, message, tmp_path):
    existing = tmp_path / "existing"
    existing.write_text("keep me")
    fill = {"file": str(existing), "dir": str(tmp_path)}
    proc = subprocess.run([FSTRACE, *(a.format(**fill) for a in args)], capture_output=True, text=True,
                          timeout=10)      # counting for 5 s first would miss this
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("fstrace: error: " + message.format(**fill)), proc.stderr
    assert proc.stderr.count("\n") == 1
    assert existing.read_text() == "keep me"


def test_command_check_answers_as_a_shell(tmp_path):
    from bpftools.errors import CommandNotExecutable, CommandNotFound
    from bpftools.session.command import check
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(CommandNotExecutable, match="job.sh: permission denied"):
        check([str(script)])
    with pytest.raises(CommandNotExecutable):
        check([str(tmp_path)])
    with pytest.raises(CommandNotFound, match="no-such-command-here: command not found"):
        check(["no-such-command-here"])
    script.chmod(0o755)
    check([str(script)])
    check(["sh", "-c", "true"])
    assert CommandNotFound.exit_code == 127 and CommandNotExecutable.exit_code == 126
