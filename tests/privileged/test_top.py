"""fstrace top end to end: pipes, JSON exactness, SIGINT, and the TUI in a real terminal (tmux)."""
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import FSTRACE

WORKLOADS = Path(__file__).parent / "workloads"
PYTHON_COMM = os.path.basename(os.path.realpath(sys.executable))[:15]
LAUNCH_COMM = os.path.basename(sys.executable)[:15]      # comm is the name exec'd


@pytest.fixture
def web_service(test_cgroup, cg2_mount):
    """(directory, path relative to the cgroup2 root) of a fresh …/web.service cgroup."""
    path = os.path.join(test_cgroup, "web.service")
    os.mkdir(path)
    return path, "/" + os.path.relpath(path, cg2_mount)


def start_in(cgroup_dir: str, args, **kw) -> subprocess.Popen:
    def enter():
        with open(os.path.join(cgroup_dir, "cgroup.procs"), "w") as f:
            f.write("0")
    return subprocess.Popen(args, preexec_fn=enter, **kw)


def wait_line(stream, prefix: bytes, timeout: float = 120) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        if line.startswith(prefix):
            return line
    raise AssertionError("no line starting with %r" % prefix)


def test_batch_mode_in_a_pipe_prints_n_tables():
    start = time.monotonic()
    proc = subprocess.run([FSTRACE, "top", "-b", "-n", "3", "-i", "0.5", "-g", "process"], capture_output=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode()
    assert out.count("fstrace top  ") == 3 and out.count("\nPROCESS ") == 3
    assert "\x1b" not in out
    assert proc.stderr.decode().startswith("fstrace: counting with the tracepoint backend")
    assert time.monotonic() - start < 60


def test_batch_mode_ends_cleanly_on_sigint_with_a_last_table():
    proc = subprocess.Popen([FSTRACE, "top", "-b", "-i", "0.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_line(proc.stderr, b"fstrace: counting")
        wait_line(proc.stdout, b"fstrace top  ")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()
    assert b"CGROUP" in out.rsplit(b"fstrace top  ", 1)[-1]
    assert b"Traceback" not in err


def test_json_snapshots_add_up_to_the_workloads_operations(web_service, workdir):
    cg_dir, cg_rel = web_service
    top = subprocess.Popen([FSTRACE, "top", "--json", "-i", "0.5", "--cgroup", cg_rel, "--path", str(workdir)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_line(top.stderr, b"fstrace: counting")
        work = start_in(cg_dir, [sys.executable, str(WORKLOADS / "paced.py"), str(workdir), "300", "2"],
                        stdout=subprocess.PIPE)
        made = int(work.communicate(timeout=60)[0])
        time.sleep(0.2)
        top.send_signal(signal.SIGINT)
        out, err = top.communicate(timeout=30)
    finally:
        for p in (top,):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert top.returncode == 0, err.decode()
    docs = [json.loads(line) for line in out.splitlines()]
    assert len(docs) >= 4 and all(d["type"] == "snapshot" for d in docs)
    assert made > 400
    sums = {"create": 0, "modify": 0, "close_write": 0, "delete": 0}
    for d in docs:
        for cg in d["cgroups"]:
            if cg["path"] == cg_rel:
                assert cg["unit"] == "web.service"
                for k in sums:
                    sums[k] += cg["events"][k]
        assert d["total"] == sum(cg["total"] for cg in d["cgroups"])
    assert sums == {k: made for k in sums}
    assert sum(d["total"] for d in docs) == 4 * made
    assert sum(d["lost"] + d["overflow"] for d in docs) == 0


# --- the TUI in tmux ---------------------------------------------------------------------------
class Tmux:
    """One command in its own tmux server (a private socket), at a fixed size."""

    def __init__(self, width: int, height: int, command: str):
        self.socket = "fstrace-test-" + uuid.uuid4().hex[:8]
        self.width, self.height = width, height
        self._tmux("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height),
                   "%s; echo EXIT=$?; sleep 600" % command)

    def _tmux(self, *args) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True,
                              timeout=30, env={**os.environ, "TERM": "xterm-256color"}).stdout

    def screen(self, history: bool = False) -> str:
        return self._tmux("capture-pane", "-p", "-t", "t", *(("-S", "-") if history else ()))

    def keys(self, *keys: str) -> None:
        for k in keys:
            self._tmux("send-keys", "-t", "t", k)
            time.sleep(0.15)

    def resize(self, width: int, height: int) -> None:
        self._tmux("resize-window", "-t", "t", "-x", str(width), "-y", str(height))

    def flag(self, name: str) -> str:
        return self._tmux("display-message", "-p", "-t", "t", "#{%s}" % name).strip()

    def wait_for(self, check, timeout: float, step: float = 0.1):
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            found = check(screen)
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError("timed out; the screen:\n" + screen)
            time.sleep(step)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30)


def number(cell: str) -> float:
    scale = {"k": 1e3, "M": 1e6}.get(cell[-1:], 1)
    return float(cell[:-1] if scale != 1 else cell) * scale


def row_total(screen: str, label: str) -> float | None:
    """The total/s of the first row labelled label, read through the column heads above it."""
    head = None
    for line in screen.splitlines():
        words = line.split()
        if words and words[0] in ("CGROUP", "PROCESS", "COMMAND", "FILE", "EVENT"):
            head = words
        elif head and words and words[0] == label:
            col = next(i for i, w in enumerate(head) if w.startswith("total"))
            return number(words[col])
    return None


RATE = 250          # operations per second; paced.py makes 4 events per operation
LIVENESS = 20       # s: a bound on hanging, not a speed target (bench/tui_latency.py measures speed)


@pytest.mark.parametrize("width,height", [(120, 40), (80, 24)])
def test_tui_shows_the_workload_and_answers_its_keys(width, height, web_service, workdir):
    cg_dir, cg_rel = web_service
    tui = Tmux(width, height, "%s top --cgroup %s" % (FSTRACE, cg_rel))
    work = None
    try:
        tui.wait_for(lambda s: "fstrace top" in s and "CGROUP" in s, timeout=120)
        work = start_in(cg_dir, [sys.executable, str(WORKLOADS / "paced.py"), str(workdir), str(RATE), "30"],
                        stdout=subprocess.DEVNULL)
        # the row comes, at the workload's real rate (±10%); how fast is bench/tui_latency.py's to say
        tui.wait_for(lambda s: (row_total(s, "web.service") or 0) > 0, timeout=LIVENESS)
        rate = tui.wait_for(lambda s: abs((row_total(s, "web.service") or 0) - 4 * RATE) <= 0.1 * 4 * RATE
                            and row_total(s, "web.service"), timeout=LIVENESS)
        assert abs(rate - 4 * RATE) <= 0.1 * 4 * RATE
        screen = tui.screen()
        assert all(len(line) <= width for line in screen.splitlines())
        assert screen.splitlines()[0].startswith("fstrace top") and "filters: --cgroup /fstrace-test-" in screen

        tui.keys("<")           # the column left of total: exec, shown even at 80 columns
        tui.wait_for(lambda s: "sort sync ▼" in s and "sync▼" in s, timeout=LIVENESS)
        tui.keys("r")
        tui.wait_for(lambda s: "sort sync ▲" in s and "sync▲" in s, timeout=LIVENESS)
        tui.keys(">", "r", "g")
        screen = tui.wait_for(lambda s: "group process" in s and s, timeout=LIVENESS)
        assert "PROCESS" in screen and "%s[%d]" % (LAUNCH_COMM, work.pid) in screen
        tui.keys("3")
        tui.wait_for(lambda s: "group comm" in s and row_total(s, LAUNCH_COMM), timeout=LIVENESS)
        tui.keys("5")
        tui.wait_for(lambda s: "group event" in s and row_total(s, "create"), timeout=LIVENESS)
        tui.keys("1", "/", "w", "e", "b", "Enter")
        tui.wait_for(lambda s: "filter web" in s, timeout=LIVENESS)

        tui.keys("End", "Enter")          # the last row left by the filter is web.service: drill in
        screen = tui.wait_for(lambda s: "processes of web.service" in s and "files of web.service" in s and s,
                              timeout=LIVENESS)
        assert "%s[%d]" % (LAUNCH_COMM, work.pid) in screen
        files = re.findall(r"^(\S*/f\d+)\s", screen, re.M)
        assert files and all(f.startswith(str(workdir)[:10]) for f in files)
        tui.keys("Escape")
        tui.wait_for(lambda s: "processes of" not in s and "CGROUP" in s, timeout=LIVENESS)

        tui.resize(width + 20, height)      # a wider terminal: the table grows at the next redraw
        tui.wait_for(lambda s: max(len(line.rstrip()) for line in s.splitlines()) > width, timeout=LIVENESS)
        tui.resize(width, height)

        tui.keys("?")
        tui.wait_for(lambda s: "fstrace top: keys" in s, timeout=LIVENESS)
        tui.keys("x")
        tui.wait_for(lambda s: "fstrace top: keys" not in s, timeout=LIVENESS)

        tui.keys("q")
        screen = tui.wait_for(lambda s: "EXIT=0" in s and s, timeout=LIVENESS, step=0.05)
        assert [line for line in screen.splitlines() if line.strip()] == ["EXIT=0"]
        assert tui.flag("alternate_on") == "0" and tui.flag("cursor_flag") == "1"
    finally:
        if work is not None and work.poll() is None:
            work.kill()
            work.wait()
        tui.close()


def test_tui_on_a_dumb_terminal_prints_plain_tables():
    tui = Tmux(100, 30, "TERM=dumb %s top -n 2 -i 0.5 -g process" % FSTRACE)
    try:
        tui.wait_for(lambda s: "EXIT=0" in s, timeout=120)
        screen = tui.screen(history=True)
        assert "TERM=dumb cannot draw the live view: plain tables instead" in screen
        assert screen.count("PROCESS ") == 2 and "\x1b" not in screen
    finally:
        tui.close()


def test_tui_stops_after_n_ticks_and_shows_no_zero_rate_before_the_first():
    tui = Tmux(100, 30, "%s top -n 3 -i 1" % FSTRACE)
    try:
        tui.wait_for(lambda s: "events/s …" in s, timeout=120, step=0.02)
        started = time.monotonic()
        tui.wait_for(lambda s: "EXIT=0" in s, timeout=30)
        assert time.monotonic() - started < 6
    finally:
        tui.close()


def test_tui_selection_stays_on_its_process_as_rows_reorder(web_service, workdir):
    """Two processes whose rates swap places: the selection follows the selected one, and Enter opens it."""
    cg_dir, cg_rel = web_service
    tui = Tmux(120, 30, "%s top -i 0.5 -g process --cgroup %s" % (FSTRACE, cg_rel))
    tui.wait_for(lambda s: "PROCESS" in s, timeout=120)
    fast_then_slow = start_in(cg_dir, [sys.executable, "-c", SWAP, str(workdir / "a"), "1"], stdout=subprocess.DEVNULL)
    slow_then_fast = start_in(cg_dir, [sys.executable, "-c", SWAP, str(workdir / "b"), "0"], stdout=subprocess.DEVNULL)
    try:
        first = "%s[%d]" % (LAUNCH_COMM, fast_then_slow.pid)
        tui.wait_for(lambda s: _order(s, fast_then_slow.pid, slow_then_fast.pid) == "first", timeout=5)
        tui.keys("Home")                # select the busiest: fast_then_slow
        tui.wait_for(lambda s: _order(s, fast_then_slow.pid, slow_then_fast.pid) == "second", timeout=20)
        time.sleep(1.2)                 # a few ticks after the swap
        tui.keys("Enter")
        tui.wait_for(lambda s: "files of %s" % first in s and str(workdir / "a") in s, timeout=5)
    finally:
        for p in (fast_then_slow, slow_then_fast):
            p.kill()
            p.wait()
        tui.close()


# writes to FILE at 400/s then 20/s (or the other way round with 0), switching after 4 s, for 30 s
SWAP = """
import sys, time
path, fast_first = sys.argv[1], sys.argv[2] == "1"
start = time.monotonic()
with open(path, "w") as f:
    while time.monotonic() - start < 30:
        fast = (time.monotonic() - start < 4) == fast_first
        f.write("x"); f.flush()
        time.sleep(1 / 400 if fast else 1 / 20)
"""


def _order(screen: str, a: int, b: int) -> str | None:
    """Which of the two processes is listed first ("first": a, "second": b)."""
    lines = screen.splitlines()
    pos = {pid: next((i for i, line in enumerate(lines) if "[%d]" % pid in line), None) for pid in (a, b)}
    if None in pos.values():
        return None
    return "first" if pos[a] < pos[b] else "second"


def test_json_processes_carry_their_parent(web_service, workdir):
    cg_dir, cg_rel = web_service
    top = subprocess.Popen([FSTRACE, "top", "--json", "-i", "0.5", "-n", "6", "--cgroup", cg_rel],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_line(top.stderr, b"fstrace: counting")
        sh = start_in(cg_dir, ["sh", "-c", "touch %s/a; sleep 0.2; touch %s/b" % (workdir, workdir)])
        sh.wait(timeout=30)
        out, _ = top.communicate(timeout=60)
    finally:
        if top.poll() is None:
            top.kill()
            top.wait()
    procs = [p for line in out.decode().splitlines() for p in json.loads(line)["processes"]]
    touches = [p for p in procs if p["comm"] == "touch"]
    assert touches and all(p["ppid"] == sh.pid for p in touches), procs
