"""What `fstrace trace|report -- CMD` must keep, however CMD gets its cgroup (shared by the host's
test_command_cgroup.py and the systemd guest's systemd_checks.py; not a test module itself).

The command reads a line from stdin, prints it, its pid and its signal state, makes a file and
exits 3: fstrace must hand it stdin and stdout untouched, follow it from its exec in its own cgroup,
and exit with its status.
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

WORK = ('read line; echo "got $line"; sed -n -e "s/^NSpid:/pid:/p" -e "s/^PPid:/ppid:/p" /proc/$$/status; '
        'grep -E "^(SigBlk|SigIgn):" /proc/self/status; env -0 > "$1/env"; '
        ': > "$1/made"; exit 3')


@dataclass
class CommandRun:
    rc: int
    stdout: str
    stderr: str
    records: list[dict]
    status: dict[str, str]          # the command's pid and ppid (of the shell) and signal state (of its child)

    @property
    def start(self) -> dict:
        return self.records[0]

    @property
    def events(self) -> list[dict]:
        return [r for r in self.records if r["type"] == "event"]

    @property
    def pid(self) -> int:
        """The command's pid in the pid namespace of /proc (events carry the pid of the initial one)."""
        return int(self.status["pid"].split()[0])


def command_env(workdir: Path) -> dict[str, str]:
    """The environment the command ran with (it wrote it to workdir/env)."""
    pairs = (workdir / "env").read_bytes().split(b"\0")
    return dict(p.decode().split("=", 1) for p in pairs if p)


def direct_run(workdir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The same command run without fstrace: (its signal state, its environment)."""
    out = subprocess.run(["/bin/sh", "-c", WORK, "sh", str(workdir)], input=b"x\n", capture_output=True).stdout
    return parse_status(out.decode()), command_env(workdir)


def parse_status(text: str) -> dict[str, str]:
    return dict(m.groups() for m in re.finditer(r"^(pid|ppid|SigBlk|SigIgn):\s*(.*)$", text, re.M))


def trace_command(fstrace: list[str], workdir: Path, timeout: float = 600) -> CommandRun:
    """`fstrace trace --json -e all -o FILE -- sh -c WORK`, with a line on stdin (sh is looked up on PATH,
    as in the shim: the search must send no event of its own)."""
    events = workdir / "events.jsonl"
    proc = subprocess.run([*fstrace, "trace", "--json", "-e", "all", "-o", str(events), "--",
                           "sh", "-c", WORK, "sh", str(workdir)],           # found on PATH
                          input=b"hello\n", capture_output=True, timeout=timeout)
    recs = [json.loads(line) for line in events.read_text().splitlines()] if events.exists() else []
    return CommandRun(proc.returncode, proc.stdout.decode(), proc.stderr.decode(), recs,
                      parse_status(proc.stdout.decode()))


def check_command_run(run: CommandRun, workdir: Path, pidns: bool = False) -> None:
    """What holds whichever way the command got its cgroup.

    pidns: fstrace and the command run in a pid namespace (the systemd guest's), where the pids
    they see are not those the kernel puts in events.
    """
    assert run.rc == 3, run.stderr
    assert run.stdout.startswith("got hello\n"), run.stdout
    assert run.records and run.start["type"] == "start" and run.records[-1]["type"] == "summary", run.stderr
    assert int(run.status["ppid"]) == run.start["pid"]       # fstrace's own child: exec kept the pid
    cgroup = run.start["command_cgroup"]
    assert run.events and all(e["cgroup"] == cgroup for e in run.events), \
        {(e["cgroup"], e["comm"]) for e in run.events}
    made = [e for e in run.events if e["event"] == "create" and e["path"] == str(workdir / "made")]
    assert len(made) == 1, [(e["event"], e["comm"], e["path"]) for e in run.events]
    pid = made[0]["pid"]        # the shell itself made it (a redirection)
    assert pidns or pid == run.pid
    assert "exec" in [e["event"] for e in run.events if e["pid"] == pid], \
        [(e["event"], e["comm"], e["path"]) for e in run.events[:5]]
    assert run.records[-1]["exit_status"] == 3


def check_scope_run(run: CommandRun, unit_re: str) -> None:
    """In a scope: the command's exec is the first event (the shim that waited for it sent none)."""
    cgroup = run.start["command_cgroup"]
    assert re.fullmatch(unit_re, cgroup), cgroup
    unit = cgroup.rsplit("/", 1)[1]
    first = run.events[0]
    assert first["event"] == "exec" and first["path"].rsplit("/", 1)[1] in ("sh", "dash"), first
    assert all(e["unit"] == unit for e in run.events), {e["unit"] for e in run.events}
    # The fsnotify backends see what execve itself does (open the binary and its interpreter, close
    # the fds marked close-on-exec) while the task still has the shim's name: those come first, from
    # the command's pid; once it has its own name, nothing comes from the shim.
    named = next(i for i, e in enumerate(run.events) if not e["comm"].startswith("python"))
    during_exec = [(e["event"], e["comm"], e["pid"], e["path"]) for e in run.events[:named]]
    assert all(pid == first["pid"] for _, _, pid, _ in during_exec), during_exec
    assert not [e for e in run.events[named:] if e["comm"].startswith("python")], during_exec


def signalled_command(fstrace: list[str], workdir: Path, sig: int, timeout: float = 600) -> tuple[int, str]:
    """Send sig to fstrace while `-- CMD` sleeps: (fstrace's exit status, stderr); CMD gets sig."""
    proc = subprocess.Popen([*fstrace, "trace", "--json", "-o", str(workdir / "signalled.jsonl"), "--",
                             "/bin/sh", "-c", "echo ready; exec sleep 600"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"ready\n"
        time.sleep(0.2)          # the exec of sleep
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=timeout)
        return proc.returncode, err.decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


SIGNALS = (signal.SIGINT, signal.SIGTERM)
