"""Every event of hundreds of millisecond-lived cgroups names the exact cgroup it came from."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_alongside

WORKLOADS = Path(__file__).parent / "workloads"
COUNT = 300


@pytest.mark.parametrize("pattern,wanted", [
    ("{root}", lambda i: True),
    ("{root}/storm-*[02468].service", lambda i: i % 2 == 0),    # a glob follows cgroups born later
])
def test_storm_of_short_lived_cgroups_resolves_100_percent(pattern, wanted, test_cgroup, cg2_mount, workdir,
                                                           tmp_path):
    rel_root = "/" + os.path.relpath(test_cgroup, cg2_mount)
    spec = pattern.format(root=rel_root)
    first, out, err = run_alongside(
        ["trace", "--json", "--cgroup", spec, "-e", "create,delete"],
        lambda: subprocess.run([sys.executable, str(WORKLOADS / "cgstorm.py"), test_cgroup, str(COUNT),
                                str(workdir), str(tmp_path / "expected.json")], check=True, timeout=300))
    assert json.loads(first)["type"] == "start"
    expected = {path: name for path, name in json.loads((tmp_path / "expected.json").read_text()).items()
                if wanted(int(name[6:9]))}
    assert len(expected) >= COUNT // 2
    recs = [json.loads(line) for line in out.splitlines()]
    assert recs[-1]["type"] == "summary" and recs[-1]["lost"] == 0, err.decode()
    events = [r for r in recs if r["type"] == "event"]
    by_path = {}
    for r in events:
        by_path.setdefault(r["path"], []).append(r)
    assert set(by_path) == set(expected)
    for path, evs in by_path.items():
        assert [e["event"] for e in evs] == ["create", "delete"]
        for e in evs:
            assert e["cgroup"] == rel_root + "/" + expected[path]
            assert e["unit"] == expected[path]
    cg_records = [(r["action"], r["path"]) for r in recs if r["type"] == "cgroup"]
    assert cg_records == [(a, rel_root + "/" + name) for name in sorted(expected.values())
                          for a in ("mkdir", "rmdir")]
