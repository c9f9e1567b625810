"""Long-running `fstrace trace --json` processes shared by the backend tests.

BCC compiles a program in ~25 s (minutes under TCG in the kernel matrix),
so each backend under test gets one fstrace process for the whole session
and every scenario runs against all of them at once.  A scenario runs its
workload in its own child of the traced cgroup, so its events are told
apart by cgroup id; a marker file created last, from the same cgroup, says
that all of them have arrived.

Which backends: FSTRACE_TEST_BACKENDS="fentry,kprobe" (the kernel matrix
sets it) means `--backend auto` must pick fentry, and kprobe runs forced;
unset, one `--backend auto` run that may pick anything.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from conftest import FSTRACE

START_TIMEOUT = float(os.environ.get("FSTRACE_TEST_START_TIMEOUT", "900"))
EVENT_TIMEOUT = 120.0
FSNOTIFY = ("fentry", "kprobe")


@dataclass(frozen=True)
class Spec:
    """One fstrace process under test: the --backend it gets and the backend it must end up with."""

    arg: str
    expect: str | None

    @property
    def id(self) -> str:
        return self.arg if self.expect in (None, self.arg) else "%s(auto)" % self.expect


def specs_under_test() -> list[Spec]:
    names = [n for n in os.environ.get("FSTRACE_TEST_BACKENDS", "").split(",") if n]
    if not names:
        return [Spec("auto", None)]
    return [Spec("auto", names[0])] + [Spec(n, n) for n in names[1:]]


def family(backend: str) -> str:
    """The expected lists distinguish two kinds of backend (docs/backends.md)."""
    return "fsnotify" if backend in FSNOTIFY else "tracepoint"


def enter_cgroup(cgroup_dir: str):
    def enter():
        with open(os.path.join(cgroup_dir, "cgroup.procs"), "w") as f:
            f.write("0")
    return enter


class Tracer:
    def __init__(self, spec: Spec, cgroup: str):
        self.spec = spec
        self.records: list[dict] = []
        self.stderr = b""
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            [FSTRACE, "trace", "--json", "-e", "all", "--backend", spec.arg, "--cgroup", cgroup],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            rec = json.loads(line)
            with self._cond:
                self.records.append(rec)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        self.stderr = self.proc.stderr.read()

    def wait(self, predicate, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = next((r for r in self.records if predicate(r)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError("%s: no %s after %.0f s (exit %s); stderr: %s" % (
                        self.spec.id, what, timeout, self.proc.poll(), self.stderr.decode()[-2000:]))
                self._cond.wait(min(left, 1.0))

    @property
    def start(self) -> dict:
        return self.wait(lambda r: r["type"] == "start", START_TIMEOUT, "start record")

    @property
    def backend(self) -> str:
        return self.start["backend"]

    def events(self, cgroup_id: int) -> list[dict]:
        with self._cond:
            return [r for r in self.records if r["type"] == "event" and r["cgroup_id"] == cgroup_id]

    def lost(self) -> int:
        """Records lost so far (its lost records)."""
        with self._cond:
            return sum(r["count"] for r in self.records if r["type"] == "lost")

    def stop(self) -> dict | None:
        """SIGINT, then the summary record (None if fstrace died)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with self._cond:
            last = self.records[-1] if self.records else None
        return last if last and last["type"] == "summary" else None


@dataclass
class Run:
    """One scenario's workload, run once and seen by every tracer."""

    name: str
    cgroup_id: int
    base: str
    expected: list = field(default_factory=list)

    def events(self, tracer: Tracer) -> list[dict]:
        """The events tracer saw from this run under its base directory, marker left out."""
        marker = self.base + "/.done"
        return [r for r in tracer.events(self.cgroup_id)
                if r["path"] != marker and (r["path"] or "").startswith(self.base + "/")]


class Pool:
    """The fstrace processes of a session, the traced cgroup, and the runs made under it."""

    def __init__(self, cg2_mount: str, specs: list[Spec]):
        self.cg2_mount = cg2_mount
        self.dir = os.path.join(cg2_mount, "fstrace-test-" + uuid.uuid4().hex[:10])
        os.mkdir(self.dir)
        self.specs = specs
        self.tracers: dict[str, Tracer] = {}

    def child_cgroup(self, name: str) -> tuple[str, int]:
        path = os.path.join(self.dir, "%s-%s" % (name, uuid.uuid4().hex[:6]))
        os.mkdir(path)
        return path, os.stat(path).st_ino

    def start(self) -> None:
        """Start every tracer at once (their compiles overlap), then wait for all start records."""
        cgroup = "/" + os.path.relpath(self.dir, self.cg2_mount)
        for spec in self.specs:
            self.tracers[spec.id] = Tracer(spec, cgroup)
        for tracer in self.tracers.values():
            tracer.start

    def run(self, name: str, base: str, argv: list[str], expected_file: str | None = None, **popen) -> Run:
        """Run argv in a new child cgroup; return once every tracer has seen all it did."""
        cgroup, cgid = self.child_cgroup(name)
        subprocess.run(argv, preexec_fn=enter_cgroup(cgroup), check=True, timeout=600, **popen)
        return self.finish(name, base, cgroup, cgid, expected_file)

    def finish(self, name: str, base: str, cgroup: str, cgid: int, expected_file: str | None = None) -> Run:
        marker = base + "/.done"
        subprocess.run(["/bin/sh", "-c", ': > "$1"', "sh", marker], preexec_fn=enter_cgroup(cgroup), check=True)
        for tracer in self.tracers.values():
            tracer.wait(lambda r: r["type"] == "event" and r["cgroup_id"] == cgid and r["path"] == marker
                        and r["event"] == "create", EVENT_TIMEOUT, "event for the end marker of " + name)
        os.unlink(marker)
        os.rmdir(cgroup)
        expected = json.loads(Path(expected_file).read_text()) if expected_file else []
        return Run(name, cgid, base, expected)

    def close(self) -> dict[str, dict | None]:
        """Stop every tracer; their summary records."""
        return {tid: t.stop() for tid, t in self.tracers.items()}
