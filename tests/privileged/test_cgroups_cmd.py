"""fstrace cgroups: the map as a table, as JSON, and as a live stream of a storm."""
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import FSTRACE, run_alongside

WORKLOADS = Path(__file__).parent / "workloads"


def test_snapshot_lists_cgroups_with_units(test_cgroup, cg2_mount):
    os.mkdir(os.path.join(test_cgroup, "web.service"))
    rel = "/" + os.path.relpath(test_cgroup, cg2_mount)
    doc = json.loads(subprocess.run([FSTRACE, "cgroups", "--json"], capture_output=True, check=True,
                                    timeout=60).stdout)
    assert doc["mount"] == cg2_mount
    assert doc["sources"]["sweep"] == "live" and doc["sources"]["fanotify"] == "live"
    mine = {c["path"]: c for c in doc["cgroups"] if c["path"].startswith(rel)}
    web = mine[rel + "/web.service"]
    assert web["unit"] == "web.service" and web["alive"] and web["id"] == os.stat(
        os.path.join(test_cgroup, "web.service")).st_ino
    assert 0 <= web["age_s"] < 60
    text = subprocess.run([FSTRACE, "cgroups"], capture_output=True, text=True, check=True, timeout=60).stdout
    line = next(line for line in text.splitlines() if line.split()[1:2] == [rel + "/web.service"])
    assert line.split()[2] == "web.service" and line.split()[3] == "alive"


def test_watch_reports_every_mkdir_and_rmdir_of_a_storm_in_order(test_cgroup, cg2_mount, workdir, tmp_path):
    rel = "/" + os.path.relpath(test_cgroup, cg2_mount)
    first, out, err = run_alongside(
        ["cgroups", "--watch", "--json"],
        lambda: subprocess.run([sys.executable, str(WORKLOADS / "cgstorm.py"), test_cgroup, "200", str(workdir),
                                str(tmp_path / "expected.json")], check=True, timeout=300))
    start = json.loads(first)
    assert start["type"] == "start" and start["sources"]["tracepoint"] == "live"
    recs = [json.loads(line) for line in out.splitlines()]
    assert recs[-1]["type"] == "summary", err.decode()
    storm = [(r["action"], r["path"]) for r in recs if r["type"] == "cgroup" and r["path"].startswith(rel + "/")]
    names = sorted(json.loads((tmp_path / "expected.json").read_text()).values())
    assert storm == [(a, rel + "/" + n) for n in names for a in ("mkdir", "rmdir")]
    units = {r["unit"] for r in recs if r["type"] == "cgroup" and r["path"].startswith(rel + "/")}
    assert units == set(names)


def as_nobody(*args):
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", FSTRACE, *args],
                          capture_output=True, text=True, timeout=60)


def test_an_unprivileged_user_gets_the_list_and_the_reasons_for_what_is_off(test_cgroup, cg2_mount):
    rel = "/" + os.path.relpath(test_cgroup, cg2_mount)
    proc = as_nobody("cgroups", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["sources"]["sweep"] == "live"
    assert doc["sources"]["fanotify"].startswith("off: ")
    assert rel in {c["path"] for c in doc["cgroups"]}
    assert doc["sources"]["tracepoint"]       # available, or unknown with the reason
    watch = as_nobody("cgroups", "--watch", "-d", "1")
    assert watch.returncode == 77 and watch.stderr.count("\n") == 1 and "root" in watch.stderr
