"""fstrace report end to end: a known process family, exact counts, every format, a real browser."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
import zlib
from collections import Counter
from pathlib import Path

import pytest
from conftest import FSTRACE

from bpftools.abi import EVENT_NAMES

WORKLOADS = Path(__file__).parent / "workloads"
STATUS = 5
RUN_TIMEOUT = 900      # a run includes compiling the BPF program: minutes in the kernel matrix's TCG guests


def nonzero(events: dict) -> dict:
    return {k: v for k, v in events.items() if v}


@pytest.fixture(scope="module")
def family(tmp_path_factory, cg2_mount):
    """One report of family.py: (completed process, report document, expected, output dir)."""
    base = Path("/tmp") / ("fstrace-test-" + uuid.uuid4().hex[:10])
    base.mkdir()
    out = tmp_path_factory.mktemp("report")
    expected_file = out / "expected.json"
    try:
        proc = subprocess.run(
            [FSTRACE, "report", "--json", "--top", "0", "--path", str(base), "--csv", str(out / "csv"),
             "--svg", str(out / "r.svg"), "--html", str(out / "r.html"),
             "--", sys.executable, str(WORKLOADS / "family.py"), str(base), cg2_mount, str(expected_file),
             str(STATUS)], capture_output=True, timeout=RUN_TIMEOUT)
        expected = json.loads(expected_file.read_text())
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert proc.stdout, proc.stderr.decode()
    return proc, json.loads(proc.stdout), expected, out


def roles(expected):
    return [expected[r] for r in ("main", "daemon", "nested_child")]


def role_events(rec) -> Counter:
    total = Counter()
    for events in rec["files"].values():
        total.update({k: v for k, v in events.items() if ":" not in k})
    return total


def test_exit_status_is_the_commands_and_counting_was_announced(family):
    proc, doc, _, _ = family
    assert proc.returncode == STATUS, proc.stderr.decode()
    assert proc.stderr.decode().startswith("fstrace: counting with the tracepoint backend")
    assert doc["scope"]["exit_status"] == STATUS and doc["scope"]["command"][0] == sys.executable


def test_every_file_has_exactly_the_operations_made_on_it(family):
    _, doc, expected, _ = family
    want: dict[str, Counter] = {}
    for rec in roles(expected):
        for path, events in rec["files"].items():
            want.setdefault(path.rstrip("/"), Counter()).update({k: v for k, v in events.items() if ":" not in k})
    got = {f["path"]: nonzero(f["events"]) for f in doc["files"] if f["total"]}
    assert got == {p: dict(c) for p, c in want.items() if c}
    missing = next(f for f in doc["files"] if f["path"].endswith("/missing"))
    assert missing["failed"] == 1 and missing["total"] == 0


def test_every_process_is_counted_in_its_own_cgroup_daemon_included(family):
    _, doc, expected, _ = family
    procs = {p["pid"]: p for p in doc["processes"]}
    for rec in roles(expected):
        row = procs[rec["pid"]]
        assert row["cgroup"] == rec["cgroup"], rec["role"]
        assert nonzero(row["events"]) == dict(role_events(rec)), rec["role"]
    assert set(procs) == {rec["pid"] for rec in roles(expected)}
    assert procs[expected["daemon"]["pid"]]["comm"].startswith("python")


def test_cgroups_own_and_subtree_counts(family):
    _, doc, expected, _ = family
    cgs = {c["path"]: c for c in doc["cgroups"]}
    top_events = role_events(expected["main"]) + role_events(expected["daemon"])
    nested_events = role_events(expected["nested_child"])
    assert nonzero(cgs[expected["cgroup"]]["events"]) == dict(top_events)
    assert nonzero(cgs[expected["nested"]]["events"]) == dict(nested_events)
    assert cgs[expected["cgroup"]]["subtree_total"] == sum((top_events + nested_events).values())
    assert doc["totals"]["events"] == sum((top_events + nested_events).values())
    assert doc["totals"]["failed"] == 1
    assert doc["totals"]["lost"] == 0 and doc["totals"]["overflow"] == 0
    assert doc["errors"] == [{"errno": "ENOENT", "event": "open", "count": 1,
                              "top_process": "%s[%d]" % (procs_comm(doc, expected["main"]["pid"]),
                                                         expected["main"]["pid"]),
                              "top_path": os.path.join(os.path.dirname(next(iter(expected["main"]["files"]))),
                                                       "missing")}]


def procs_comm(doc, pid):
    return next(p["comm"] for p in doc["processes"] if p["pid"] == pid)


def test_the_short_lived_nested_cgroup_is_listed_with_its_lifetime(family):
    _, doc, expected, _ = family
    life = next(c for c in doc["cgroup_lifecycle"] if c["path"] == expected["nested"])
    assert life["created"] is not None and life["removed"] is not None
    # exact from the cgroup tracepoints; 0 when fanotify, which timestamps at read time, was read first
    assert 0 <= life["lifetime_s"] < 60, doc["cgroup_lifecycle"]
    assert life["events"] == sum(role_events(expected["nested_child"]).values())
    assert doc["start"] <= life["created"] <= life["removed"] <= doc["end"] + 1


def test_csv_files_agree_with_the_json(family):
    _, doc, _, out = family
    for table, key in (("files", "path"), ("processes", "pid"), ("cgroups", "path")):
        with open(out / "csv" / (table + ".csv"), newline="") as f:
            rows = {r[key]: r for r in csv.DictReader(f)}
        assert set(rows) == {str(r[key]) for r in doc[table]}
        for rec in doc[table]:
            row = rows[str(rec[key])]
            assert {e: int(row[e]) for e in EVENT_NAMES} == rec["events"]
            assert int(row["total"]) == rec["total"] and int(row["failed"]) == rec["failed"]
    with open(out / "csv" / "cgroup_lifecycle.csv", newline="") as f:
        lives = list(csv.DictReader(f))
    assert [float(r["lifetime_s"]) for r in lives] == [c["lifetime_s"] for c in doc["cgroup_lifecycle"]]


def test_a_terminal_report_in_a_pipe_is_plain_text(workdir):
    proc = subprocess.run([FSTRACE, "report", "--path", str(workdir), "--by", "file,event",
                           "--", "sh", "-c", "echo x > %s/f; rm %s/f" % (workdir, workdir)],
                          capture_output=True, timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode()
    assert "\x1b" not in out
    assert "fstrace report  command: sh -c" in out and "%s/f" % workdir in out
    assert "Files" in out and "Event types" in out and "Processes" not in out


def test_cgroups_the_command_leaves_behind_are_removed_with_its_own(cg2_mount):
    script = 'mkdir "%s$(grep "^0::" /proc/self/cgroup | cut -d: -f3)/left-behind"' % cg2_mount
    proc = subprocess.run([FSTRACE, "report", "--json", "--", "sh", "-c", script], capture_output=True,
                          timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, proc.stderr.decode()
    doc = json.loads(proc.stdout)
    left = doc["scope"]["command_cgroup"] + "/left-behind"
    assert [c["path"] for c in doc["cgroup_lifecycle"]] == [left]
    assert not os.path.exists(cg2_mount + doc["scope"]["command_cgroup"])


def test_report_until_sigint_counts_what_happened_meanwhile(workdir):
    rep = subprocess.Popen([FSTRACE, "report", "--json", "--path", str(workdir)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    try:
        assert rep.stderr.readline().startswith(b"fstrace: counting with the tracepoint backend")
        subprocess.run(["sh", "-c", "echo x > %s/f; rm %s/f" % (workdir, workdir)], check=True, timeout=30)
        rep.send_signal(signal.SIGINT)
        out, err = rep.communicate(timeout=60)
    finally:
        if rep.poll() is None:
            rep.kill()
            rep.wait()
    assert rep.returncode == 0, err.decode()
    doc = json.loads(out)
    assert doc["scope"]["command"] is None and doc["scope"]["filters"] == ["--path %s" % workdir]
    (f,) = doc["files"]
    assert f["path"] == "%s/f" % workdir and nonzero(f["events"]) == {"create": 1, "modify": 1, "delete": 1}


def test_report_for_a_duration_ends_by_itself(workdir):
    proc = subprocess.run([FSTRACE, "report", "-d", "1", "--json", "--path", str(workdir)], capture_output=True,
                          timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, proc.stderr.decode()
    doc = json.loads(proc.stdout)
    assert 0.9 <= doc["duration_s"] <= 2.0 and doc["totals"]["events"] == 0


# --- the pictures, in a real browser -------------------------------------------------------
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, timeout=900,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, capture_output=True)
        path = shutil.which("chromium")
    assert path, "chromium could not be installed"
    return path


def screenshot(browser: str, url: str, png: Path, profile: Path) -> None:
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    "--user-data-dir=%s" % profile, "--hide-scrollbars", "--window-size=1600,2400",
                    "--screenshot=%s" % png, url], check=True, timeout=120, capture_output=True)


def png_pixels(path: Path):
    """(width, height, rows of (r, g, b)) of an 8-bit RGB or RGBA PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = int.from_bytes(body[:4], "big"), int.from_bytes(body[4:8], "big")
            depth, colour = body[8], body[9]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert depth == 8 and colour in (2, 6)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    rows = []
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append([tuple(line[x * bpp:x * bpp + 3]) for x in range(width)])
        prev = line
    return width, height, rows


CHART_BLUE = (0x1F, 0x77, 0xB4)     # the first series of views/report.py: PALETTE


SHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"     # kept for a reader to look at


@pytest.mark.parametrize("name", ["r.svg", "r.html"])
def test_picture_opens_in_chromium_with_chart_and_tables(family, name, tmp_path):
    _, _, _, out = family
    browser = chromium()
    SHOTS.mkdir(parents=True, exist_ok=True)
    png = SHOTS / ("report-%s.png" % name.replace(".", "-"))
    screenshot(browser, (out / name).as_uri(), png, tmp_path / "profile")
    width, height, rows = png_pixels(png)
    assert (width, height) == (1600, 2400)
    chart = sum(1 for row in rows[:450] for px in row if px == CHART_BLUE)
    assert chart > 50, "no chart line in the top of the page"
    text = sum(1 for row in rows[450:] for px in row if max(px) - min(px) > 40 or sum(px) < 300)
    assert text > 5000, "no tables below the chart"
    pixels = width * height
    light = sum(1 for row in rows for px in row if sum(px) > 700)
    dark = sum(1 for row in rows for px in row if sum(px) < 150)
    assert light > 0.7 * pixels, "not a light page (a dark terminal picture under a light chart?)"
    assert dark < 0.1 * pixels, "a dark block in the page"


def test_html_tables_sort_in_a_real_browser(family, tmp_path):
    """#sort=1.1 clicks the pid heading of the process table once the page has loaded: pids come largest first."""
    import re
    _, doc, _, out = family
    proc = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run",
                           "--user-data-dir=%s" % (tmp_path / "profile"), "--dump-dom",
                           (out / "r.html").as_uri() + "#sort=1.1"], capture_output=True, timeout=120, check=True)
    dom = proc.stdout.decode()
    table = dom.split('<table class="sortable">')[2].split("</table>")[0]
    assert 'class="num sorted-down"' in table.split("</thead>")[0]
    pids = [int(p) for p in re.findall(r'<tr><td class="name"[^>]*>[^<]*</td><td class="num" data-v="(\d+)"', table)]
    assert len(pids) == len(doc["processes"]) > 1
    assert pids == sorted(pids, reverse=True)          # the page was sorted by total; now by pid
